"""Checkpoints outlive the version that wrote them: tests/checkpoints holds files of every format,
each written by a past dlrun (tests/checkpoints/write.sh), with what that version measured with
it. The present dlrun loads each as the current format, evaluates it to the same numbers and
resumes it to the same third epoch; a file of an older or newer format names what to do."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets as skd

import dlrun
from conftest import SMOKE
from dlrun.errors import DlrunError
from dlrun.models import build
from dlrun.results import checkpoint
from dlrun.results.checkpoint_formats import FORMAT, TENSORS_ONLY

CORPUS = Path(__file__).parent / "checkpoints"
FILES = sorted(CORPUS.glob("*.pt"))
QUIET = ["plots=[]", "report=false", "show_config=none"]


def _stored_format(path):
    return torch.load(path, weights_only=True)["format"]


def _trust(path):
    return ["trust_unverified_ckpt=true"] if _stored_format(path) in TENSORS_ONLY else []


def _measured(path):
    return json.loads(path.with_suffix(".json").read_text())


def test_the_corpus_holds_a_file_of_every_format():
    assert {_stored_format(path) for path in FILES} == set(range(1, FORMAT + 1))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_stored_checkpoint_loads_as_the_current_format(path):
    state = checkpoint.load(path, unverified=bool(_trust(path)))
    assert state["format"] == FORMAT
    assert set(checkpoint.RECORD + checkpoint.TRAINING) <= set(state)
    pre = state["preprocessing"]
    assert pre["pixel_max"] == (16.0 if pre["image"] else None) and "input_range" in pre
    assert state["update"]["bad"].shape == (3,)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_stored_checkpoint_evaluates_as_the_version_that_wrote_it(path, tmp_path):
    summary = dlrun.run(["task=eval", f"ckpt_path={path}", *QUIET, *_trust(path)], run_dir=tmp_path / "eval")
    measured = _measured(path)["test"]
    assert {k: summary["test"][k] for k in measured} == pytest.approx(measured, rel=1e-6)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_stored_checkpoint_resumes_as_the_version_that_wrote_it(path, tmp_path):
    measured = _measured(path)
    summary = dlrun.run([*measured["overrides"], f"ckpt_path={path}", "trainer.max_epochs=3", "trainer.progress=false",
                         *QUIET, *_trust(path)], run_dir=tmp_path / "resumed")
    assert summary["status"] == "completed" and summary["epochs_run"] == measured["resumed"]["epochs_run"] == 3
    assert summary["objective"] == pytest.approx(measured["resumed"]["objective"], rel=1e-6)
    assert checkpoint.load(tmp_path / "resumed")["format"] == FORMAT  # what it writes is checked whole


def test_an_image_model_from_before_its_scale_was_recorded_takes_its_datasets_pixels(tmp_path):
    """The format-2 file predates the recorded input scale: the migration gives it the 0..16 that
    load_digits() holds and the model was trained on (divided by 16), not 0..255."""
    path = CORPUS / "format2-mlp-digits.pt"
    assert "pixel_max" not in torch.load(path, weights_only=True)["preprocessing"]
    images = skd.load_digits().images[:50]
    np.save(tmp_path / "digits.npy", images)
    dlrun.run(["task=predict", f"ckpt_path={path}", f"predict.input={tmp_path / 'digits.npy'}", "probabilities=true",
               *QUIET], run_dir=tmp_path / "predicted")
    with open(tmp_path / "predicted" / "predictions.csv", newline="") as handle:
        predicted = torch.tensor([[float(row[f"prob_{c}"]) for c in range(10)] for row in csv.DictReader(handle)])
    state = checkpoint.load(path)
    spec = dict(state["model_spec"])
    model = build(spec, tuple(spec.pop("input_shape")), spec.pop("num_outputs")).eval()
    model.load_state_dict(state["model"])
    with torch.no_grad():
        expected = torch.softmax(model(torch.tensor(images, dtype=torch.float32)[:, None] / 16), 1)
    assert torch.allclose(predicted, expected, atol=1e-5)


def test_a_format_1_file_is_used_only_when_accepted_and_its_tensors_are_still_checked(tmp_path):
    path = CORPUS / "format1-mlp-digits.pt"
    with pytest.raises(DlrunError, match="older dlrun .checkpoint format 1.*covers only the tensors.*"
                                         "trust_unverified_ckpt=true"):
        dlrun.run(["task=eval", f"ckpt_path={path}", *QUIET], run_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    state = torch.load(path, weights_only=True)
    next(iter(state["model"].values())).view(-1)[0] += 1
    torch.save(state, tmp_path / "changed.pt")
    with pytest.raises(DlrunError, match="is corrupted or was edited"):
        checkpoint.load(tmp_path / "changed.pt", unverified=True)


def test_a_checkpoint_of_a_newer_format_says_to_upgrade(tmp_path):
    state = torch.load(CORPUS / f"format{FORMAT}-mlp-digits.pt", weights_only=True)
    state["format"] = FORMAT + 1
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(DlrunError, match=f"format {FORMAT + 1}; this dlrun .* reads formats 1 to {FORMAT}.*newer "
                                         "dlrun: upgrade dlrun"):
        checkpoint.load(tmp_path / "newer.pt")


def _layout(node, depth=0):
    """What a checkpoint holds, as names and kinds (the run's own config, model and optimizer
    contents vary with its settings and are left out)."""
    if isinstance(node, dict):
        return {key: (_layout(value, depth + 1) if depth or key not in ("config", "model", "optimizer",
                                                                        "model_spec") else "…")
                for key, value in node.items() if key != "checksum"}
    if torch.is_tensor(node):
        return f"tensor{tuple(node.shape) if node.dim() == 1 and node.numel() < 8 else node.dim()}"
    return type(node).__name__ if node is not None else "None"


def test_what_a_checkpoint_holds_changes_only_with_its_format(tmp_path):
    """A checkpoint written now holds what the corpus's file of the current format holds. When this
    fails, the contents changed: bump FORMAT in dlrun/results/checkpoint_formats.py with a migration
    from the last one, and add a file with tests/checkpoints/write.sh."""
    dlrun.run([*SMOKE, "model.hidden_sizes=[8]", *QUIET], run_dir=tmp_path / "now")
    now = torch.load(tmp_path / "now" / "checkpoints" / "last.pt", weights_only=True)
    stored = torch.load(CORPUS / f"format{FORMAT}-mlp-digits.pt", weights_only=True)
    assert _layout(now) == _layout(stored)
