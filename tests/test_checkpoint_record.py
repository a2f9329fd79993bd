"""A checkpoint carries what it needs: the resolved config, the overrides that
composed it, the preprocessing and the model's build spec."""

import json
import shutil

import pytest
import torch

import dlrun
from conftest import SMOKE
from dlrun.errors import DlrunError
from dlrun.models import build
from dlrun.results import checkpoint

CNN = [*SMOKE, "model=cnn", "model.channels=[4,8]", "plots=[]", "report=false"]


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    dlrun.run(CNN, run_dir=run_dir)
    return run_dir


def test_the_record_rebuilds_the_model_and_its_preprocessing(cnn_run):
    state = _load(cnn_run / "checkpoints" / "best.pt")
    assert state["overrides"] == CNN == json.loads((cnn_run / "summary.json").read_text())["overrides"]
    spec = dict(state["model_spec"])
    model = build(spec, tuple(spec.pop("input_shape")), spec.pop("num_outputs"))
    model.load_state_dict(state["model"])
    pre = state["preprocessing"]
    assert pre["class_names"] == [str(i) for i in range(10)] and pre["input_shape"] == [1, 8, 8]
    assert pre["task"] == "multiclass" and pre["image"] and pre["feature_mean"] is None
    assert state["config"]["model"]["channels"] == [4, 8]


def test_a_checkpoint_moved_elsewhere_resumes_with_its_own_config(cnn_run, tmp_path):
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(cnn_run / "checkpoints" / "last.pt", moved)
    summary = dlrun.run([f"ckpt_path={moved}", "trainer.max_epochs=3", "trainer.progress=false", "plots=[]"],
                        run_dir=tmp_path / "resumed")
    assert summary["model"] == "cnn" and summary["epochs_run"] == 3
    assert _load(tmp_path / "resumed" / "checkpoints" / "last.pt")["config"]["model"]["channels"] == [4, 8]


@pytest.mark.parametrize("change,message", [
    (["model=mlp"], "was trained with model=cnn, and this run asks for model=mlp"),
    (["optimizer=sgd"], "optimizer.name='adam' -> 'sgd'"),
    (["model.channels=[4,4]"], "model.channels=[4, 8] -> [4, 4]"),
    (["dataset.name=iris"], "dataset.name='digits' -> 'iris'"),
    (["optimizer.lr=1e6"], "optimizer.lr=0.001 -> 1000000.0"),
    (["regularization.weight_decay=0.1"], "regularization.weight_decay=0.0 -> 0.1"),
    (["seed=7"], "seed=42 -> 7"),  # the seed drew the split; the generators continue from the checkpoint
])
def test_a_resume_that_changes_what_it_restores_is_refused_and_the_run_kept(cnn_run, change, message):
    before = (cnn_run / "summary.json").read_text()
    with pytest.raises(DlrunError) as raised:
        dlrun.run([f"ckpt_path={cnn_run}", "trainer.max_epochs=3", *change])
    assert message in str(raised.value)
    assert (cnn_run / "summary.json").read_text() == before


def _with_stored_overrides(run_dir, extra, tmp_path):
    """A copy of the run's last.pt whose stored overrides carry `extra`, with a valid checksum (as a
    file made to deceive would have: the checksum catches changed bytes, not intent)."""
    state = _load(run_dir / "checkpoints" / "last.pt")
    state["overrides"] = [*state["overrides"], *extra]
    path = tmp_path / "tampered.pt"
    checkpoint.save(path, state)
    return path


@pytest.mark.parametrize("stored", [["+dataset._target_=os.system"], ["plugins=[evil]"],
                                    ["+model.head={_target_: os.system, command: touch pwned}"]])
@pytest.mark.parametrize("task", ["train", "eval"])
def test_a_stored_run_never_runs_code_it_names(cnn_run, tmp_path, monkeypatch, stored, task):
    monkeypatch.chdir(tmp_path)
    ckpt = _with_stored_overrides(cnn_run, stored, tmp_path)
    with pytest.raises(DlrunError, match="makes dlrun import or run code. A stored run is read as data"):
        dlrun.run([f"task={task}", f"ckpt_path={ckpt}", "trainer.max_epochs=3"], run_dir=tmp_path / "out")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_the_hydra_overrides_file_of_a_run_is_held_to_the_same_standard(cnn_run, tmp_path):
    run_dir = tmp_path / "shared"
    shutil.copytree(cnn_run, run_dir)
    state = _load(run_dir / "checkpoints" / "last.pt")
    del state["overrides"]  # an older checkpoint: the run directory's .hydra/overrides.yaml is read instead
    torch.save(state, run_dir / "checkpoints" / "last.pt")
    overrides = run_dir / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + "- +dataset._target_=os.system\n")
    with pytest.raises(DlrunError, match="'[+]dataset._target_=os.system', which makes dlrun import or run code"):
        dlrun.run(["task=eval", f"ckpt_path={run_dir}"], run_dir=tmp_path / "eval")


def test_code_a_stored_run_names_runs_when_the_user_trusts_it(cnn_run, tmp_path):
    ckpt = _with_stored_overrides(cnn_run, ["seed=7"], tmp_path)  # no code: composed as stored
    summary = dlrun.run(["task=eval", f"ckpt_path={ckpt}", "plots=[]"], run_dir=tmp_path / "plain")
    assert summary["status"] == "completed" and summary["seed"] == 7
    ckpt = _with_stored_overrides(cnn_run, ["plugins=[json]"], tmp_path)  # a module import: needs trust
    with pytest.raises(DlrunError, match="trust_run_code=true"):
        dlrun.run(["task=eval", f"ckpt_path={ckpt}", "plots=[]"], run_dir=tmp_path / "refused")
    summary = dlrun.run(["task=eval", f"ckpt_path={ckpt}", "plots=[]", "trust_run_code=true"],
                        run_dir=tmp_path / "trusted")
    assert summary["status"] == "completed"


def test_tabular_and_regression_preprocessing_is_recorded(tmp_path):
    dlrun.run([*SMOKE, "dataset=iris", "plots=[]", "report=false"], run_dir=tmp_path / "iris")
    pre = _load(tmp_path / "iris" / "checkpoints" / "best.pt")["preprocessing"]
    assert pre["feature_mean"].shape == (4,) and (pre["feature_std"] > 0).all() and pre["target_mean"] is None
    dlrun.run([*SMOKE, "dataset=diabetes", "plots=[]", "report=false"], run_dir=tmp_path / "reg")
    pre = _load(tmp_path / "reg" / "checkpoints" / "best.pt")["preprocessing"]
    assert pre["task"] == "regression" and pre["target_mean"].numel() == 1 and pre["target_std"].item() > 1


def test_resume_cleans_killed_writes_and_falls_back_to_best_when_last_is_missing(cnn_run, tmp_path):
    run_dir = tmp_path / "killed"
    shutil.copytree(cnn_run, run_dir)
    (run_dir / "checkpoints" / "last.pt").unlink()  # as if a kill cut its first write
    stale = [run_dir / "checkpoints" / ".last.pt.x1y2z3.tmp", run_dir / ".summary.json.a1b2c3.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    summary = dlrun.run([f"ckpt_path={run_dir}", "trainer.max_epochs=3", "trainer.progress=false", "plots=[]"],
                        run_dir=run_dir)
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    assert not any(path.exists() for path in stale)
    assert _load(run_dir / "checkpoints" / "last.pt")["fit"]["epoch"] == 3


def test_a_checkpoint_with_changed_tensor_bytes_is_refused(cnn_run, tmp_path):
    state = _load(cnn_run / "checkpoints" / "best.pt")
    assert checkpoint.checksum(state) == state["checksum"]
    key = next(iter(state["model"]))
    state["model"][key].view(-1)[:4] += 1e-3  # a few corrupted values inside one tensor
    torch.save(state, tmp_path / "corrupted.pt")
    with pytest.raises(DlrunError, match="is corrupted or was edited"):
        dlrun.run(["task=eval", f"ckpt_path={tmp_path / 'corrupted.pt'}"], run_dir=tmp_path / "eval")


def test_a_refused_resume_leaves_the_whole_record_as_it_was(cnn_run, cli):
    """Through the real CLI, where Hydra rewrites .hydra/ before dlrun checks anything."""
    record = {p.name: p.read_bytes() for p in [cnn_run / "summary.json", *(cnn_run / ".hydra").glob("*.yaml")]}
    proc = cli(f"ckpt_path={cnn_run}", "optimizer.lr=0.5", "trainer.max_epochs=3", check=False)
    assert proc.returncode == 1 and "optimizer.lr=0.001 -> 0.5" in " ".join(proc.stderr.split())
    after = {p.name: p.read_bytes() for p in [cnn_run / "summary.json", *(cnn_run / ".hydra").glob("*.yaml")]}
    assert after == record


@pytest.mark.parametrize("field,change", [
    ("config", lambda state: state["config"]["model"].update(channels=[4, 9])),
    ("overrides", lambda state: state["overrides"].append("seed=7")),
    ("model_spec", lambda state: state["model_spec"].update(_target_="os.system")),
    ("preprocessing", lambda state: state["preprocessing"].update(threshold=0.9)),
    ("fit", lambda state: state["fit"].update(best_epoch=1)),
])
def test_every_field_is_covered_by_the_checksum(cnn_run, tmp_path, field, change):
    state = _load(cnn_run / "checkpoints" / "best.pt")
    change(state)
    torch.save(state, tmp_path / "edited.pt")  # the old checksum kept
    with pytest.raises(DlrunError, match="is corrupted or was edited"):
        checkpoint.load(tmp_path / "edited.pt")


def test_a_checkpoint_without_a_checksum_is_refused_unless_accepted_knowingly(cnn_run, tmp_path):
    state = _load(cnn_run / "checkpoints" / "best.pt")
    del state["checksum"]
    torch.save(state, tmp_path / "unchecked.pt")
    with pytest.raises(DlrunError, match="has no checksum.*add trust_unverified_ckpt=true"):
        dlrun.run(["task=eval", f"ckpt_path={tmp_path / 'unchecked.pt'}", "plots=[]"], run_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    summary = dlrun.run(["task=eval", f"ckpt_path={tmp_path / 'unchecked.pt'}", "plots=[]", "report=false",
                         "trust_unverified_ckpt=true"], run_dir=tmp_path / "accepted")
    assert summary["status"] == "completed"


@pytest.mark.parametrize("spec", [{"_target_": "os.system", "command": "touch pwned"},
                                  {"head": {"_target_": "os.system", "command": "touch pwned"}},
                                  {"blocks": [{"_target_": "os.system", "command": "touch pwned"}]}])
def test_predict_never_builds_code_that_a_checkpoint_names(cnn_run, tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    state = _load(cnn_run / "checkpoints" / "best.pt")
    state["model_spec"].update(spec)
    checkpoint.save(tmp_path / "deceiving.pt", state)  # a valid checksum: the checksum is no signature
    inputs = tmp_path / "x.npy"
    import numpy as np

    np.save(inputs, np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(DlrunError, match="names code to build its model.*trust_run_code=true"):
        dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'deceiving.pt'}", f"predict.input={inputs}"],
                  run_dir=tmp_path / "predicted")
    assert not (tmp_path / "pwned").exists()
