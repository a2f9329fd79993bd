"""Cross-validation is a loop of the one run path: every fold is a whole run."""

import json
import os
import signal
import time

import numpy as np
import pytest
from matplotlib.image import imread

import dlrun
from conftest import SMOKE, chromium, render_in_chromium
from dlrun.errors import ConfigError
from dlrun.results.artifacts import read_csv
from dlrun.tasks import evaluate
from dlrun.train.trainer import Interrupted

QUICK = [*SMOKE, "dataset=iris", "plots=[curves]"]


def _summary(path):
    return json.loads((path / "summary.json").read_text())


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cv") / "run"
    return run_dir, dlrun.run([*QUICK, "cv.folds=3"], run_dir=run_dir)


def test_each_fold_is_a_whole_run_and_the_parent_aggregates_them(cv_run):
    run_dir, summary = cv_run
    folds = [_summary(run_dir / f"fold_{i}") for i in range(3)]
    for i, fold in enumerate(folds):
        assert fold["status"] == "completed"
        for name in ("report.html", "metrics.csv", "predictions.csv", "checkpoints/best.pt", "plots/curves.png"):
            assert (run_dir / f"fold_{i}" / name).is_file(), (i, name)
    accuracies = [f["test"]["accuracy"] for f in folds]
    assert summary["cv"]["test/accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["cv"]["test/accuracy"]["std"] == pytest.approx(np.std(accuracies))
    # no model trained the folds' epochs together: the parent names each fold's
    assert summary["epochs_run"] is None and summary["problem"] == "multiclass"
    rows = read_csv(run_dir / "folds.csv")
    assert [float(r["test/accuracy"]) for r in rows] == pytest.approx(accuracies)


def test_the_parent_page_shows_the_folds_once_each_and_links_their_reports(cv_run, tmp_path):
    run_dir, summary = cv_run
    page = (run_dir / "report.html").read_text()
    epochs = ", ".join(str(_summary(run_dir / f"fold_{i}")["epochs_run"]) for i in range(3))
    assert f"<th>epochs run per fold</th><td>{epochs}</td>" in page and "None" not in page
    assert "Cross-validation: 3 folds (mean ± std over the folds)" in page and "Test metrics" not in page
    assert page.count(">test/accuracy<") == 2  # the mean ± std, and the column of each fold
    for i in range(3):
        assert f'<a href="fold_{i}/report.html">report</a>' in page
    image = imread(run_dir / "plots" / "folds.png")
    assert image.shape[:2] == (500, 1100) and image[..., :3].std() > 0.05 and 'alt="folds"' in page
    if chromium() is not None:  # .ci/run installs it: the page whole at 1280 px, nothing cut
        title, _ = render_in_chromium(run_dir / "report.html", tmp_path)
        assert title == "loaded 1/1 width 1280/1280 cut 0"


def test_folds_differ_in_their_validation_rows_and_initial_weights(cv_run):
    run_dir, _ = cv_run
    first = [_summary(run_dir / f"fold_{i}")["monitor"]["best_value"] for i in range(3)]
    assert len(set(first)) == 3


def test_eval_of_a_cv_run_evaluates_every_fold_best_checkpoint(cv_run, tmp_path):
    run_dir, summary = cv_run
    again = dlrun.run(["task=eval", f"ckpt_path={run_dir}", "trainer.progress=false"], run_dir=tmp_path / "eval")
    assert again["cv"]["test/accuracy"] == summary["cv"]["test/accuracy"]
    for i in range(3):
        fold = _summary(tmp_path / "eval" / f"fold_{i}")
        assert fold["evaluated"] == str(run_dir / f"fold_{i}" / "checkpoints" / "best.pt")
    assert "None" not in (tmp_path / "eval" / "report.html").read_text()  # nothing trained: no best epoch, said as –


def test_k_fold_over_all_data_without_a_test_split(tmp_path):
    summary = dlrun.run([*QUICK, "cv.folds=3", "split.test=0"], run_dir=tmp_path / "run")
    folds = [_summary(tmp_path / "run" / f"fold_{i}") for i in range(3)]
    assert sum(f["sizes"]["val"] for f in folds) == 150 and all(f["sizes"]["test"] == 0 for f in folds)
    assert summary["test"] is None and "val/accuracy" in summary["cv"]
    assert summary["cv"]["val/accuracy"]["mean"] == pytest.approx(np.mean([f["best_val"]["val/accuracy"] for f in folds]))


def test_a_two_way_split_trains_and_says_there_is_no_test(tmp_path):
    summary = dlrun.run([*QUICK, "split.test=0"], run_dir=tmp_path / "run")
    assert summary["status"] == "completed" and summary["test"] is None and summary["sizes"]["test"] == 0
    assert (tmp_path / "run" / "plots" / "curves.png").is_file()
    assert not (tmp_path / "run" / "predictions.csv").exists()
    with pytest.raises(dlrun.errors.DlrunError, match="has none"):
        dlrun.run(["task=eval", f"ckpt_path={tmp_path / 'run'}"], run_dir=tmp_path / "eval")


def test_one_fold_alone_and_an_out_of_range_fold():
    assert dlrun.compose(["cv.folds=3", "cv.fold=2"]).cv.fold == 2
    with pytest.raises(ConfigError, match=r"cv.fold=3 is out of range; with cv.folds=3 it must be in 0..2"):
        dlrun.run([*QUICK, "cv.folds=3", "cv.fold=3"])


def test_a_failure_after_the_start_is_recorded_by_the_python_api(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("plots broke")

    monkeypatch.setattr(evaluate, "_test", broken)
    with pytest.raises(RuntimeError):
        dlrun.run(QUICK, run_dir=tmp_path / "run")
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "failed" and summary["error"] == "plots broke"


def test_a_failing_fold_is_recorded_in_the_fold_and_in_the_parent(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("fold broke")

    monkeypatch.setattr(evaluate, "_test", broken)
    with pytest.raises(RuntimeError):
        dlrun.run([*QUICK, "cv.folds=3"], run_dir=tmp_path / "run")
    fold, parent = _summary(tmp_path / "run" / "fold_0"), _summary(tmp_path / "run")
    assert (fold["status"], fold["error"]) == ("failed", "fold broke")
    assert (parent["status"], parent["error"]) == ("failed", "fold broke")


def test_a_stop_after_the_last_fold_leaves_a_record_that_the_resume_completes(tmp_path, monkeypatch):
    """SIGTERM while the parent draws folds.png (every fold done, the parent's record not yet
    concluded): the parent says interrupted, nothing is half-written, and the resume concludes it
    from the folds as they are."""
    from dlrun.tasks import cross_validation

    draw = cross_validation._draw_folds

    def signalled(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        draw(*args)

    monkeypatch.setattr(cross_validation, "_draw_folds", signalled)
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted) as raised:
        dlrun.run([*QUICK, "cv.folds=2"], run_dir=run_dir)
    assert raised.value.exit_code == 143
    parent, folds = _summary(run_dir), [_summary(run_dir / f"fold_{i}") for i in range(2)]
    assert parent["status"] == "interrupted" and [f["status"] for f in folds] == ["completed", "completed"]
    assert "every fold is complete" in parent["error"] and f"Continue with: dlrun ckpt_path={run_dir} " in parent["error"]
    assert not (run_dir / "report.html").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    monkeypatch.undo()
    resumed = dlrun.run([f"ckpt_path={run_dir}", "trainer.progress=false"])
    assert resumed["status"] == "completed" and resumed["run_dir"] == str(run_dir)
    assert [f["epochs_run"] for f in resumed["folds"]] == [f["epochs_run"] for f in folds]
    assert resumed["cv"]["test/accuracy"]["mean"] == pytest.approx(np.mean([f["test"]["accuracy"] for f in folds]))
    assert (run_dir / "plots" / "folds.png").is_file() and (run_dir / "report.html").is_file()
