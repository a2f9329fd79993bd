"""loss.class_weights is one fact: the loss computes the weights, and the record, run.log, the
class_counts plot and the report show those numbers."""

import pytest
from matplotlib.image import imread

import dlrun

QUIET = ["trainer.progress=false", "show_config=none", "trainer.max_epochs=1", "dataset=synthetic_imbalanced"]


def test_balanced_weights_are_recorded_logged_drawn_and_shown(tmp_path):
    summary = dlrun.run([*QUIET, "loss.class_weights=balanced", "plots=[class_counts]"], run_dir=tmp_path / "run")
    train = summary["data_summary"]["class_counts"]["train"]
    expected = {name: sum(train.values()) / (len(train) * count) for name, count in train.items()}  # n / (k n_c)
    assert summary["class_weights"] == pytest.approx(expected, rel=1e-6)
    log = (tmp_path / "run" / "run.log").read_text()
    assert "loss.class_weights=balanced: cat 0.503, dog 0.668, bird 1.33, cow 1.98, lynx 3.87" in log
    image = imread(tmp_path / "run" / "plots" / "class_counts.png")
    assert image.shape[:2] == (500, 800) and image[..., :3].std() > 0.05
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<th>weight in the loss</th>" in page and f'<td class="num">{expected["lynx"]:.4f}</td>' in page


def test_a_run_without_weights_records_none(tmp_path):
    summary = dlrun.run([*QUIET, "plots=[]", "report=false"], run_dir=tmp_path / "run")
    assert summary["class_weights"] is None and "class_weights" not in (tmp_path / "run" / "run.log").read_text()
