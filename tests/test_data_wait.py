"""The share of training spent waiting for data: per epoch in metrics.csv and the terminal's
epoch line, its mean in summary.json, and a hint when it dominates; measured on a data path
slower than its training and on a training slower than its data (tests/paced.py)."""

import dlrun
from conftest import SMOKE, paced
from dlrun.results import artifacts

QUICK = [*SMOKE, "plots=[]", "report=false", "trainer.max_epochs=2"]


def test_a_slow_data_path_is_measured_and_named(tmp_path, capsys):
    summary = dlrun.run([*QUICK, "trainer.progress=true", "plugins=[paced]", "dataset.name=paced_digits",
                         "+dataset.seconds_per_row=0.002"], run_dir=tmp_path / "run")
    waits = [float(row["data_wait"]) for row in artifacts.read_csv(tmp_path / "run" / "metrics.csv")]
    assert len(waits) == 2 and all(w > 0.6 for w in waits)
    assert summary["throughput"]["data_wait"] == sum(waits) / 2
    shown = capsys.readouterr().out
    assert f"(data {waits[0]:.0%})" in shown
    hint = "training waited for its data"
    assert shown.count(hint) == 1 and "trainer.num_workers=" in shown  # once a run, with what would help
    assert hint in (tmp_path / "run" / "run.log").read_text()


def test_a_slow_training_does_not_wait_for_its_data(tmp_path):
    summary = dlrun.run([*QUICK, *paced(0.02)], run_dir=tmp_path / "run")
    waits = [float(row["data_wait"]) for row in artifacts.read_csv(tmp_path / "run" / "metrics.csv")]
    assert all(0 <= w < 0.2 for w in waits) and summary["throughput"]["data_wait"] < 0.2
    assert "training waited for its data" not in (tmp_path / "run" / "run.log").read_text()
