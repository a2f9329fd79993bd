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
    (["model.channels=[4,4]"], "was trained with model.channels=[4, 8], and this run asks for [4, 4]"),
    (["dataset.name=iris"], "was trained with dataset.name='digits'"),
])
def test_a_resume_that_changes_model_or_data_is_refused_and_the_run_kept(cnn_run, change, message):
    before = (cnn_run / "summary.json").read_text()
    with pytest.raises(DlrunError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dlrun.run([f"ckpt_path={cnn_run}", "trainer.max_epochs=3", *change])
    assert (cnn_run / "summary.json").read_text() == before


def test_tabular_and_regression_preprocessing_is_recorded(tmp_path):
    dlrun.run([*SMOKE, "dataset=iris", "plots=[]", "report=false"], run_dir=tmp_path / "iris")
    pre = _load(tmp_path / "iris" / "checkpoints" / "best.pt")["preprocessing"]
    assert pre["feature_mean"].shape == (4,) and (pre["feature_std"] > 0).all() and pre["target_mean"] is None
    dlrun.run([*SMOKE, "dataset=diabetes", "plots=[]", "report=false"], run_dir=tmp_path / "reg")
    pre = _load(tmp_path / "reg" / "checkpoints" / "best.pt")["preprocessing"]
    assert pre["task"] == "regression" and pre["target_mean"].numel() == 1 and pre["target_std"].item() > 1
