"""The debug presets (debug=...) and the step-wise checkpoint and validation options."""

import csv
import io
import json

import pytest
import torch

import dlrun
from conftest import built_loop, summary_of
from dlrun.errors import DlrunError
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState
from dlrun.train.loss import LOSSES

QUIET = ["trainer.progress=false", "report=false", "plots=[]", "show_config=none"]


class _SqrtAtZero(torch.nn.Module):
    """Cross-entropy plus 0 * sqrt(0): finite forward, NaN gradient in SqrtBackward0."""

    def forward(self, logits, target):
        return torch.nn.functional.cross_entropy(logits, target) + 0 * torch.sqrt(logits - logits).sum()


@LOSSES.register("test_sqrt_at_zero")
def _sqrt_at_zero():
    return _SqrtAtZero()


def test_overfit_batch_memorises_one_batch_and_says_so(tmp_path):
    summary = dlrun.run([*QUIET, "debug=overfit_batch", "trainer.max_epochs=100"], run_dir=tmp_path / "ok")
    assert summary["sizes"]["train"] == summary["sizes"]["val"] == 64
    assert summary["overfit_check"]["passed"] and summary["overfit_check"]["best_loss"] < 0.05
    summary = dlrun.run([*QUIET, "debug=overfit_batch", "trainer.max_epochs=5", "optimizer.lr=1e-6"],
                        run_dir=tmp_path / "stuck")
    assert not summary["overfit_check"]["passed"] and "FAILED" in summary["overfit_check"]["text"]


def test_fraction_limits_the_batches_of_every_epoch(tmp_path):
    summary = dlrun.run([*QUIET, "debug=fraction", "trainer.max_epochs=3", "trainer.early_stopping.enabled=false"],
                        run_dir=tmp_path / "run")
    assert summary["steps"] == 3 * 2  # 10% of 20 batches of 64 per epoch
    full = dlrun.run([*QUIET, "trainer.max_epochs=1"], run_dir=tmp_path / "full")
    assert full["steps"] == 20


def test_profile_writes_a_trace_and_the_top_operators(tmp_path):
    dlrun.run([*QUIET, "debug=profile", "trainer.profile_steps=3"], run_dir=tmp_path / "run")
    trace = json.loads((tmp_path / "run" / "profile" / "trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"aten::addmm", "ProfilerStep#1", "ProfilerStep#3"} <= names and "ProfilerStep#4" not in names
    table = (tmp_path / "run" / "profile" / "top_operators.txt").read_text()
    assert "aten::addmm" in table and "The 3 profiled training steps" in table


def test_anomaly_detection_names_the_operation(tmp_path):
    with pytest.raises(DlrunError, match=r"the gradients became non-finite \(loss 2\.\d+\) at step 1 .* learning rate"):
        dlrun.run([*QUIET, "loss=mse", "loss.name=test_sqrt_at_zero"], run_dir=tmp_path / "plain")
    with pytest.raises(DlrunError, match="anomaly detection: Function 'SqrtBackward0' returned nan values"):
        dlrun.run([*QUIET, "debug=anomaly", "loss=mse", "loss.name=test_sqrt_at_zero"], run_dir=tmp_path / "run")
    assert summary_of(tmp_path / "run")["status"] == "failed"


def test_validation_within_epochs(tmp_path):
    dlrun.run([*QUIET, "trainer.max_epochs=1", "trainer.val_every_n_steps=8"], run_dir=tmp_path / "run")
    dlrun.run([f"ckpt_path={tmp_path / 'run'}", "trainer.max_epochs=2"])  # the resume keeps the first rows
    with open(tmp_path / "run" / "val_steps.csv") as handle:
        rows = list(csv.DictReader(handle))
    # 20 steps an epoch: steps 8 and 16 in the first, 24 and 32 in the second (not at epoch ends)
    assert [int(r["step"]) for r in rows] == [8, 16, 24, 32]
    assert float(rows[0]["epoch"]) == pytest.approx(0.4) and 0 < float(rows[0]["val/loss"]) < 3


def _loop(*overrides):
    return built_loop(*QUIET, "trainer.max_epochs=2", *overrides)


def test_step_checkpoints_hold_exact_positions():
    saved = []
    straight = _loop("trainer.checkpoint.every_n_steps=7")
    straight.fit(FitState(), lambda name, ckpt: saved.append(_written(ckpt)) if name == "last" else None, Stop())
    mid = [c for c in saved if c["fit"]["partial"]]
    assert [c["fit"]["step"] for c in mid] == [7, 14, 21, 28, 35]  # steps 20 and 40 end epochs
    resumed = _loop("trainer.checkpoint.every_n_steps=7")
    state = resumed.load_state_dict(mid[2], "step 21")
    resumed.fit(state, lambda name, ckpt: None, Stop())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def _written(ckpt):
    """The checkpoint as written at that moment (its tensors are the live model's)."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.slow
def test_fast_dev_run_through_the_command(cli):
    cli("debug=fast_dev_run", "trainer.progress=false", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["status"] == "completed" and summary["steps"] == 1
    assert summary["sizes"] == {"train": 64, "val": 64, "test": 64}
    assert (cli.cwd / "run" / "report.html").is_file() and (cli.cwd / "run" / "plots" / "curves.png").is_file()
