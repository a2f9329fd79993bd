"""Why a run stops before its end, owned by one object, and the one protocol by which the
processes of a sweep tell each other to stop.

In one process, `Stop` (one per process: `current()`) answers "should this run stop, and why"
for every cause: Ctrl-C (SIGINT), SIGTERM (what schedulers send before a kill), the stop of
the sweep the run belongs to, the cluster's preemption (SLURM's USR2, hydra_plugins/dlrun_slurm)
and the time budget (trainer.max_time).

- Outside training (loading data, evaluating, plotting) a stop raises `Stopped` (a
  KeyboardInterrupt) where the program is, so that the run records what was done.
- In training (`Stop.training()`) a stop only records its reason; the loop reads `why()` after
  each optimizer step, finishes the step, saves the exact position and ends. A second Ctrl-C
  raises at once; every file is written atomically, so nothing is left half-written.

Across processes a sweep's stop is one file, `.stopping` in the sweep directory
(layout.SweepDir.stopping), holding the exit code (130 or 143):

- whoever sees a stop first writes it: the sweep's own process on a signal between jobs
  (`SweepStop.install`), or a job that a signal stopped;
- every job of a sweep, in whatever process its launcher runs it (Hydra's own process, joblib's
  workers, a SLURM node), watches the file and stops as on SIGTERM when it appears, and no job
  starts once it is there;
- the sweep's process removes it when the sweep starts and before it ends, so that nothing a
  killed process left behind can wedge a later continuation;
- a second Ctrl-C in the sweep's process exits at once, with one line, also while it winds down.

The other files a sweep's processes share (the Optuna study, the MLflow parent run) are listed
by layout.SweepDir: nothing passes through the environment.

A preempted SLURM job is not a sweep stop: it stops itself (cause "preemption") and is
requeued, and its sweep goes on. Under torchrun the loop makes every rank stop at the same step
as soon as one has a reason, and a worker whose launcher dies gets SIGTERM
(train/distributed.py).
"""

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from dlrun.results import artifacts

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
WATCH_EVERY_S = 0.2  # how often a sweep's job looks for the sweep's stop


@dataclass(frozen=True)
class Reason:
    """`cause`: SIGINT, SIGTERM, sweep, preemption or time budget; `exit_code`: the command's exit
    code after such a stop (0 for the time budget: the run ends with its results)."""

    cause: str
    exit_code: int

    @property
    def ends_run(self):
        return self.exit_code != 0


TIME_BUDGET = Reason("time budget", 0)


class Stopped(KeyboardInterrupt):
    """A stop that raises where the program is (outside training, or a second Ctrl-C)."""

    def __init__(self, text, exit_code):
        super().__init__(text)
        self.exit_code = exit_code


class Stop:
    """The one answer to "should this run stop, and why" in this process."""

    def __init__(self):
        self.reason = None      # the first stop asked for (a Reason), None until one is
        self.deadline = None    # time.perf_counter() value at which the time budget runs out
        self._in_training = False
        self._watching = False
        self._past = False      # the reason is that of a run that is over (read after it, then dropped)

    def why(self):
        """The reason to stop now, or None: the stop asked for, else the exhausted time budget."""
        if self.reason is not None:
            return self.reason
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return TIME_BUDGET
        return None

    def handle(self, signum, frame=None):
        """The signal handler of SIGINT and SIGTERM in a run."""
        if self.reason is not None and self._in_training:
            if signum == signal.SIGINT:  # a second Ctrl-C: at once
                raise Stopped("stopped at once by a second Ctrl-C", EXIT_CODES[signal.SIGINT])
            return
        self.request(Reason(signal.Signals(signum).name, EXIT_CODES[signum]))

    def request(self, reason):
        """Ask the run to stop (the first reason stays); in a run outside training this raises at
        once. Outside a run (`watching`) it is kept for the next run, which stops as it begins (a
        scheduler's signal just before the job starts)."""
        if self.reason is None or self._past:
            self.reason, self._past = reason, False
        if self._watching and not self._in_training:
            raise self._stopped()

    def _stopped(self):
        return Stopped(f"stopped by {self.reason.cause}", self.reason.exit_code)

    @property
    def preempted(self):
        return self.reason is not None and self.reason.cause == "preemption"

    @contextlib.contextmanager
    def training(self, max_time=None):
        """Inside this block a stop is a reason that the loop reads (`why`) after each step, not an
        exception; one that came after the loop's last look raises as the block ends.
        `max_time`: the time budget (s)."""
        self.deadline = None if max_time is None else time.perf_counter() + max_time
        self._in_training = True
        try:
            yield self
        finally:
            self._in_training = False
            self.deadline = None
        if self._watching and self.reason is not None and self.reason.ends_run:
            raise self._stopped()

    @contextlib.contextmanager
    def watching(self, sweep_dir=None):
        """Around one run: the signal handlers (in the main thread; signals can be handled nowhere
        else) and, for a job of a sweep, the watch of the sweep's stop. The reason of an earlier
        run is dropped; one asked for since is this run's, and it stops at once."""
        if self._past:
            self.reason, self._past = None, False
        self.deadline, self._in_training = None, False
        with _handlers({sig: self.handle for sig in EXIT_CODES}) as handled, _watch(self, sweep_dir, handled):
            outer, self._watching = self._watching, True  # a fold of a cross-validation is a run in a run
            try:
                if self.reason is not None:
                    raise self._stopped()
                yield self
            finally:
                self._watching = outer
                self._past = not outer
                if self.reason is not None:
                    forget_interrupted_imports()


_current = Stop()


def current():
    """This process's Stop."""
    return _current


def forget_interrupted_imports():
    """A stop that raised inside an import (of matplotlib, say, as the plots begin) leaves the
    submodules imported so far in sys.modules without their package, and a later import of the
    package (the sweep's leaderboard) would find them and fail. They are forgotten, so that the
    next import is whole."""
    while True:
        orphans = [name for name in list(sys.modules) if "." in name and name.rpartition(".")[0] not in sys.modules]
        if not orphans:
            return
        for name in orphans:
            del sys.modules[name]



_deaf = False  # whether this process ignores SIGINT and SIGTERM until it ends (`ignore_signals_for_good`)


def ignore_signals_for_good():
    """SIGINT and SIGTERM are ignored from now until this process ends, also where a block would
    put an earlier handler back. For a data-parallel process whose run is failing: torchrun sends
    SIGTERM to every process once one has ended, which must neither turn the failure into a stop
    nor end the process before it has written the failed record."""
    global _deaf
    _deaf = True
    if threading.current_thread() is threading.main_thread():
        for sig in EXIT_CODES:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def _handlers(handlers):
    """Install `handlers` (signal -> handler) inside the block and put the previous ones back
    (unless the process ignores signals for good by then); yields whether it could (signal handlers
    belong to the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if _deaf else handler)


@contextlib.contextmanager
def _watch(stop, sweep_dir, handled):
    """A thread that turns the sweep's stop into this run's: a reason, and outside training a
    SIGTERM to this process, which raises where the program is (it wakes a blocking call, too).
    Where this thread's SIGTERM would not be `handled` (a run outside the main thread), only the
    reason. Nothing without a sweep."""
    if sweep_dir is None:
        yield
        return
    sweep, over, lock = SweepStop(sweep_dir), threading.Event(), threading.Lock()

    def watch():
        while not over.wait(WATCH_EVERY_S):
            code = sweep.requested()
            if code is None:
                continue
            with lock:  # the handlers stay installed until the block ends, which takes this lock
                if not over.is_set() and stop.reason is None:
                    stop.reason = Reason("sweep", code)
                    if handled and not stop._in_training:
                        os.kill(os.getpid(), signal.SIGTERM)
            return

    watcher = threading.Thread(target=watch, name="dlrun-sweep-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with lock:
            over.set()
        watcher.join()


class SweepStop:
    """The stop of the sweep in `folder`, as the file of the protocol above; in the sweep's own
    process also whether the sweep is winding down (its file already removed)."""

    def __init__(self, folder):
        from dlrun.layout import SweepDir

        self.folder = SweepDir(folder).root
        self.marker = SweepDir(folder).stopping
        self.winding_down = False

    def request(self, exit_code):
        """Mark the sweep as stopping: no further job starts, running jobs save and stop."""
        if not self.marker.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            artifacts.write_text(self.marker, str(exit_code))

    def requested(self):
        """The exit code of a requested stop, or None."""
        try:
            return int(self.marker.read_text())
        except (FileNotFoundError, ValueError):  # none, or not yet whole (written atomically: never)
            return None

    def clear(self):
        self.marker.unlink(missing_ok=True)

    def wind_down(self):
        """The sweep's process ends the stopped sweep: the file goes first, so that nothing after
        can leave it behind; a signal from now on does not mark the sweep again."""
        self.winding_down = True
        self.clear()

    def install(self, at_once):
        """The sweep process's handler of SIGINT and SIGTERM between jobs, for the sweep's life
        (main thread only): the first signal stops the sweep; a second Ctrl-C calls `at_once()`,
        which ends the process."""

        def handle(signum, frame):
            if signum == signal.SIGINT and (self.winding_down or self.requested() is not None):
                at_once()
            if not self.winding_down:
                self.request(EXIT_CODES[signum])

        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                signal.signal(sig, handle)
