"""Where validation comes from: a carved split, the dataset's own, or none (split.val=0, every
training row trains); and which weights are tested (trainer.test_weights)."""

import numpy as np
import pytest
import torch

import dlrun
from conftest import summary_of
from dlrun.data import DATASETS, Data
from dlrun.errors import ConfigError

QUIET = ["trainer.progress=false", "show_config=none", "plots=[curves]", "report=true"]


@DATASETS.register("test_own_validation")
def _own_validation(n=400):
    """A paper's dataset: its own train, validation and test rows (float64, as NumPy gives them)."""
    rng = np.random.default_rng(0)

    def rows(m):
        x = rng.normal(size=(m, 6))
        return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)

    (x, y), (x_val, y_val), (x_test, y_test) = rows(n), rows(100), rows(150)
    return Data(x=x, y=y, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, standardize=True)


def test_split_val_zero_trains_on_every_training_row_and_tests_the_last_weights(tmp_path):
    summary = dlrun.run([*QUIET, "split.val=0", "trainer.max_epochs=4"], run_dir=tmp_path / "run")
    assert summary["sizes"] == {"train": 1527, "val": 0, "test": 270}  # digits: 1,797 rows less the test split
    assert summary["monitor"]["name"] == "train/loss" and summary["best_val"] is None
    assert summary["validation"].startswith("none (split.val=0): all 1527 training rows train")
    assert summary["tested_weights"] == "the last epoch's (epoch 4)"
    # ranked by the held-out test loss, not by the loss on the rows it trained on; no "best" epoch kept
    assert (summary["objective"], summary["objective_metric"]) == (summary["test"]["loss"], "test/loss")
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert not any(k.startswith("val/") for k in dlrun_history(tmp_path / "run")[0])
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    evaluated = dlrun.run([*QUIET, "task=eval", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.pt'}"],
                          run_dir=tmp_path / "eval")
    assert evaluated["test"]["accuracy"] == summary["test"]["accuracy"] and last["fit"]["epoch"] == 4
    assert "tested weights" in (tmp_path / "run" / "report.html").read_text()


def dlrun_history(run_dir):
    from dlrun.results import artifacts

    return artifacts.read_csv(run_dir / "metrics.csv")


def test_what_needs_validation_rows_is_refused_without_them(tmp_path):
    for extra, key in ((["trainer.monitor=val/accuracy", "trainer.mode=max"], "trainer.monitor=val/accuracy"),
                       (["dataset.positive_class=4", "dataset.threshold=auto"], "dataset.threshold=auto"),
                       (["trainer.test_weights=both"], "trainer.test_weights=both")):
        with pytest.raises(ConfigError, match=f"{key} needs validation rows, and split.val=0 keeps none"):
            dlrun.run([*QUIET, "split.val=0", *extra], run_dir=tmp_path / "refused")
        assert not (tmp_path / "refused").exists()


def test_a_builder_s_own_validation_split_is_used_whole(tmp_path):
    summary = dlrun.run([*QUIET, "dataset.name=test_own_validation", "trainer.max_epochs=3", "split.val=0.3"],
                        run_dir=tmp_path / "own")
    assert summary["sizes"] == {"train": 400, "val": 100, "test": 150}
    assert summary["validation"] == "the dataset's own validation split (100 rows)"
    assert summary["best_val"] and summary["tested_weights"].startswith("best.pt (epoch ")
    with pytest.raises(ConfigError, match="has its own validation split"):
        dlrun.run([*QUIET, "dataset.name=test_own_validation", "cv.folds=3"], run_dir=tmp_path / "cv")


def test_both_weights_are_tested_into_two_tables(tmp_path):
    # Early stopping after one bad epoch, with a high learning rate: best and last differ.
    summary = dlrun.run([*QUIET, "trainer.max_epochs=12", "trainer.test_weights=both", "optimizer.lr=0.05",
                         "trainer.early_stopping.patience=3"], run_dir=tmp_path / "both")
    best, last = summary["monitor"]["best_epoch"], summary["epochs_run"]
    assert best < last
    assert summary["tested_weights"] == (f"best.pt (epoch {best}, the best val/loss); test_last: the last epoch's "
                                         f"(epoch {last})")
    assert summary["test"]["loss"] != summary["test_last"]["loss"]
    page = (tmp_path / "both" / "report.html").read_text()
    assert f"Test metrics of best.pt (epoch {best}" in page and "Test metrics of the last epoch's weights" in page
    last_only = dlrun.run([*QUIET, "trainer.max_epochs=12", "trainer.test_weights=last", "optimizer.lr=0.05",
                           "trainer.early_stopping.patience=3", "plots=[]", "report=false"], run_dir=tmp_path / "last")
    assert last_only["test"]["loss"] == pytest.approx(summary["test_last"]["loss"])


def test_runs_without_validation_are_ranked_by_their_held_out_test_loss(tmp_path):
    from dlrun.sweeps import pages

    for lr in ("0.01", "0.0001"):
        dlrun.run([*QUIET, "split.val=0", "trainer.max_epochs=2", f"optimizer.lr={lr}", "plots=[]", "report=false"],
                  run_dir=tmp_path / "runs" / lr)
    rows, _ = pages.write(tmp_path / "board", [tmp_path / "runs"])
    assert [r["job"] for r in rows] == ["0.01", "0.0001"]  # the larger step learns more in two epochs
    for r in rows:
        assert r["monitor"] == "test/loss" and r["objective"] == summary_of(r["path"])["test"]["loss"]
    title = (tmp_path / "board" / "summary.md").read_text().splitlines()[0]
    assert "objective: test/loss of the tested weights (the runs have no validation rows" in title


def test_the_shown_config_has_the_monitor_a_run_without_validation_uses(cli):
    shown = cli("--cfg", "job", "split.val=0").stdout
    assert "monitor: train/loss" in shown and "save_best: false" in shown
    assert "monitor: val/loss" in cli("--cfg", "job").stdout
    # a plugin's builder may bring its own validation rows: the run decides once it has the data
    assert "monitor: val/loss" in cli("--cfg", "job", "split.val=0", "plugins=[json]").stdout
    refused = cli("--cfg", "job", "split.val=0", "trainer.monitor=val/accuracy", check=False)
    assert refused.returncode == 2 and "trainer.monitor=val/accuracy needs validation rows" in refused.stderr
