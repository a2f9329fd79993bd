"""trainer.batch_size=auto: the largest batch that fits, found by halving on real out-of-memory
errors (the allocator's own), with accumulation that keeps the effective batch; said, recorded,
kept by a resume, and leaving no trace in the training."""

import pytest
import torch

import dlrun
from conftest import summary_of
from dlrun.errors import ConfigError
from dlrun.results import artifacts, checkpoint
from dlrun.train import batch_size
from dlrun.train.trainer import MEASURED

QUIET = ["plugins=[memory_bound]", "model.name=memory_bound_mlp", "+model.max_batch=16", "trainer.progress=false",
         "plots=[]", "report=false", "trainer.early_stopping.enabled=false", "model.dropout=0.2"]


def _epochs(run):
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in artifacts.read_csv(run / "metrics.csv")]


def test_the_sizes_tried_divide_the_effective_batch():
    assert batch_size.next_smaller(256, 256) == 128 and batch_size.next_smaller(300, 300) == 150
    assert batch_size.next_smaller(150, 300) == 75 and batch_size.next_smaller(75, 300) == 30
    fits = []
    assert batch_size.largest_fitting(lambda n: fits.append(n) if n <= 40 else torch.empty(2**50), 300) == \
        (30, [300, 150, 75])
    with pytest.raises(RuntimeError, match="can't allocate memory"):  # not even one row fits
        batch_size.largest_fitting(lambda n: torch.empty(2**50), 8)
    with pytest.raises(ValueError):  # other errors are not a size's
        batch_size.largest_fitting(lambda n: int("x"), 8)


def test_auto_finds_the_batch_that_fits_and_trains_as_those_numbers_would(tmp_path, caplog):
    auto = ["trainer.batch_size=auto", "trainer.effective_batch_size=64"]
    dlrun.run([*QUIET, *auto, "trainer.max_epochs=2"], run_dir=tmp_path / "auto")
    ckpt = checkpoint.load(tmp_path / "auto" / "checkpoints" / "last.pt")
    trainer = ckpt["config"]["trainer"]
    assert (trainer["batch_size"], trainer["accumulate_grad_batches"]) == (16, 4)
    assert summary_of(tmp_path / "auto")["data_summary"]["batches"] == {"path": "tensor", "workers": 0, "size": 16,
                                                                        "accumulate": 4}
    log = (tmp_path / "auto" / "run.log").read_text()
    assert "trainer.batch_size=auto: 16 per batch x 4 accumulated = 64 samples per optimizer step on cpu " \
           "(64, 32 did not fit)" in log
    dlrun.run([*QUIET, "trainer.batch_size=16", "trainer.accumulate_grad_batches=4", "trainer.max_epochs=2"],
              run_dir=tmp_path / "given")
    assert _epochs(tmp_path / "auto") == _epochs(tmp_path / "given")  # the search left no trace
    dlrun.run([*QUIET, *auto, "trainer.max_epochs=1"], run_dir=tmp_path / "resumed")
    dlrun.run(["trainer.max_epochs=2", f"ckpt_path={tmp_path / 'resumed'}", "trust_run_code=true"],
              run_dir=tmp_path / "resumed")
    assert _epochs(tmp_path / "resumed") == _epochs(tmp_path / "given")
    assert (tmp_path / "resumed" / "run.log").read_text().count("trainer.batch_size=auto:") == 1  # found once


@pytest.mark.parametrize("setting", ["trainer.accumulate_grad_batches=2", "trainer.fast_dev_run=true"])
def test_auto_is_refused_where_it_would_contradict(setting):
    with pytest.raises(ConfigError, match="(sets the accumulation itself|give trainer.batch_size as a number)"):
        dlrun.run(["trainer.batch_size=auto", setting, "trainer.max_epochs=1"])
