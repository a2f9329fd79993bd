"""Plots drawn in worker processes: the same files as drawn in the run's process, errors raised
where the run waits for them, and a user's script without a __main__ guard is not run again."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from dlrun.results import plot_workers, plots


def _jobs(folder):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 9, (4, 4))
    return [plots.Job(plots.confusion, (matrix, list("abcd")), folder / "confusion.png"),
            plots.Job(plots.image_grid, (rng.random((6, 1, 8, 8)), [f"image {i}" for i in range(6)], "six"),
                      folder / "grid.png")]


def test_workers_draw_what_the_run_would_draw_itself(tmp_path):
    (tmp_path / "here").mkdir()
    (tmp_path / "workers").mkdir()
    with plot_workers.PlotWorkers(0) as painter:
        painter.submit(_jobs(tmp_path / "here"))
    with plot_workers.PlotWorkers(2) as painter:
        painter.submit(_jobs(tmp_path / "workers"))
        painter.wait()
    for name in ("confusion.png", "grid.png"):
        assert np.array_equal(imread(tmp_path / "here" / name), imread(tmp_path / "workers" / name))


def test_a_failing_plot_fails_where_the_run_waits(tmp_path):
    bad = plots.Job(plots.confusion, ("not a matrix", ["a"]), tmp_path / "bad.png")
    with plot_workers.PlotWorkers(1) as painter:
        painter.submit([bad])
        with pytest.raises(Exception):  # noqa: B017 (matplotlib's own error, as in the run's process)
            painter.wait()
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.slow
def test_a_script_without_a_main_guard_starts_workers_once(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("from pathlib import Path\n"
                      "from dlrun.results import plot_workers, plots\n"
                      "Path('runs.txt').open('a').write('ran\\n')\n"
                      "with plot_workers.PlotWorkers(2) as painter:\n"
                      "    painter.submit([plots.Job(plots.per_class, ([{'class': 'a', 'accuracy': 1.0, 'support': 3}],),"
                      " Path('per_class.png'))])\n"
                      "    painter.wait()\n")
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=120, capture_output=True)
    assert (tmp_path / "runs.txt").read_text() == "ran\n" and (tmp_path / "per_class.png").is_file()


def test_worker_count_follows_the_cores_and_the_plots():
    assert plot_workers.worker_count([]) == plot_workers.worker_count(["curves", "confusion"]) == 0
    from dlrun import machine

    cores = machine.cores()
    assert plot_workers.worker_count(["curves"] * 5) == (0 if cores < 2 else min(4, cores))


@pytest.mark.slow
def test_runs_in_one_process_share_the_workers_and_a_killed_one_is_replaced(tmp_path):
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    first, second = plot_workers.PlotWorkers(2), plot_workers.PlotWorkers(2)
    assert first.pool is second.pool
    first.submit(_jobs(tmp_path))
    first.wait()
    second.submit(_jobs(tmp_path))  # being drawn (a plot takes far longer than the kill below)
    for process in list(second.pool._processes.values()):  # as the OOM killer would
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):  # the run that was drawing fails
        second.wait()
    for png in tmp_path.glob("*.png"):
        png.unlink()
    with plot_workers.PlotWorkers(2) as later:  # the next run in this process gets new workers
        later.submit(_jobs(tmp_path))
        later.wait()
    assert later.pool is not first.pool
    assert {p.name for p in tmp_path.glob("*.png")} == {"confusion.png", "grid.png"}
