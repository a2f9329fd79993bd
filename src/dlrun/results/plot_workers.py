"""Plots drawn beside the run: worker processes started with the run import matplotlib while
the model trains, draw the data plots during training and the result plots in parallel, so that
the run's own process never pays for matplotlib. A run with a few plots draws them itself.

Workers are spawned (not forked: a fork of a process that has run torch's thread pools can
hang), once per process (the folds of a cross-validation and the jobs of an in-process sweep
share them), ignore Ctrl-C (the run handles it; they end with the process), and write each PNG
atomically, as the run itself would. With one core, or no plot to draw, the plots are drawn in the run's process.
"""

import contextlib
import multiprocessing
import signal
import sys
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from dlrun.machine import cores

MAX_WORKERS = 4
FEW_PLOTS = 3


def _ready():
    """Ignore Ctrl-C, and pay matplotlib's start-up (imports, the font cache, the PNG writer, the
    first use of each kind of artist) while the run trains, with one small figure of them all."""
    import io

    import numpy as np

    from dlrun.results import plots

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fig, (lines, image) = plots._figure(2, size=(4, 2))
    lines.plot([0, 1], [1, 0], "--", marker="o", label="a")
    lines.scatter([0.5], [0.5], s=10, label="b")
    lines.hist(np.linspace(0, 1, 5), histtype="stepfilled")
    lines.bar([0.2], [0.3])
    lines.legend()
    plots._integer_ticks(lines.xaxis)
    fig.colorbar(image.imshow(np.eye(2), cmap="Blues"), ax=image)
    image.text(0, 0, "1", ha="center").set_in_layout(False)
    fig.suptitle("warm-up")
    fig.savefig(io.BytesIO(), format="png")


def _warm():
    """A first task, so that every worker starts (and imports) at once."""


def _draw(job):
    job.draw()


def worker_count(plots):
    """How many workers a run with these plots gets: none on a single core, and none for a few
    plots (a worker's start-up, about a second and a half of CPU, competes with training and
    costs more than drawing three plots here)."""
    return 0 if cores() < 2 or len(plots) <= FEW_PLOTS else min(MAX_WORKERS, cores(), len(plots))


@contextlib.contextmanager
def _main_module_hidden():
    """A spawned process imports the parent's __main__ first: a user's script that calls
    dlrun.run() without an `if __name__ == "__main__":` guard would run again in every worker.
    The workers need only dlrun.results.plots, so they are started with an empty __main__."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


_POOL = {}  # the process's one pool, by worker count: the folds of a cross-validation and the jobs of an
           # in-process sweep reuse its warm workers


def _pool(workers):
    """The process's pool of `workers` plot workers, started (and warmed) on first use."""
    pool = _POOL.get(workers)
    if pool is None:
        with _main_module_hidden():
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ready)
            for _ in range(workers):  # each submit starts a worker, until there are `workers`
                pool.submit(_warm)
        _POOL[workers] = pool
    return pool


class PlotWorkers:
    """Draw plot jobs (plots.Job) in `workers` processes, or here with 0. `wait` returns when
    every job submitted so far is on disk, and raises the first job's error."""

    def __init__(self, workers):
        self.workers = workers
        self.pool = _pool(workers) if workers else None
        self.pending = []

    def submit(self, jobs):
        for job in jobs:
            if self.pool is None:
                job.draw()
                continue
            try:
                self.pending.append(self.pool.submit(_draw, job))
            except BrokenProcessPool:  # a worker was killed: its pool is gone, a new one takes over
                _POOL.pop(self.workers, None)
                self.pool = _pool(self.workers)
                self.pending.append(self.pool.submit(_draw, job))

    def wait(self):
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # On an error or a stop, this run's queued plots are dropped; those being drawn finish.
        for future in self.pending:
            future.cancel()
        self.pending = []
        return False
