"""The live display of training: the epoch counted from 1, a bar over its
batches, samples per second, the time since training began (ticking between
updates), an ETA for the whole run from the first batches on, and under the bar
the last epoch's metrics and the best so far. Each epoch also prints one line,
which is all that is shown without a terminal. The last frame says how
training ended (done, early stopping, stopped); a display that never saw a
batch (a resume that only finishes) leaves no bar behind.

The loop calls `step` at most a few times a second and `epoch` once per
epoch, so the display costs nothing measurable.
"""

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text

from dlrun.console import console, say
from dlrun.results.metric_names import REGRESSION_SCALARS


class _BarWithNote(Progress):
    """rich's Progress with one line under the bar."""

    note = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.note:
            yield Text(self.note)


class _Elapsed(ProgressColumn):
    """The time since training began, read at every refresh: it ticks while the loop is busy
    between updates (rich's own column stops at the first full bar)."""

    def __init__(self, started):
        super().__init__()
        self.started = started

    def render(self, task):
        return Text(_clock(time.perf_counter() - self.started), style="progress.elapsed")


def _clock(seconds):
    return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0))).removeprefix("0")


class TrainingProgress:
    def __init__(self, max_epochs, batch_size, monitor, task, start_epoch=0, enabled=True):
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.max_epochs, self.batch_size, self.monitor, self.task = max_epochs, batch_size, monitor, task
        self.epoch_now = start_epoch + 1
        self.epoch_started = time.perf_counter()
        self.bar = _BarWithNote(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"), _Elapsed(self.epoch_started), TextColumn("{task.fields[eta]}"),
            console=console, disable=not self.live)
        self.bar_task = self.bar.add_task("train", total=None, epoch=self._counter(), speed="", eta="eta -:--:--")
        self.first_step = None  # (global step, time) where the ETA's measurement starts
        self.ended = None  # how training ended, for the last frame: "done" or "early stopping"

    def __enter__(self):
        self.bar.__enter__()
        if self.task == "regression":
            self.say(f"regression: the losses are on standardised targets; {', '.join(REGRESSION_SCALARS[1:])} "
                     f"are in the target's own units.")
        return self

    def __exit__(self, *exc):
        self._last_frame()
        self.bar.__exit__(*exc)

    def _last_frame(self):
        """The frame left on screen says how training ended; without a batch seen, no bar at all."""
        if self.bar.tasks[0].total is None:
            self.bar.remove_task(self.bar_task)
            return
        self.bar.update(self.bar_task, eta=self.ended or "stopped")

    def _counter(self):
        return f"{min(self.epoch_now, self.max_epochs)}/{self.max_epochs}"

    def step(self, batch, total):
        """`batch` of `total` batches of the current epoch are done."""
        now = time.perf_counter()
        done = (self.epoch_now - 1) * total + batch
        if self.first_step is None:
            self.first_step = (done - batch, self.epoch_started)  # from the start of this epoch
        speed = batch * self.batch_size / max(now - self.epoch_started, 1e-9)
        self.bar.update(self.bar_task, total=total, completed=batch, epoch=self._counter(),
                        speed=f"{speed:,.0f} samples/s", eta=f"eta {self._eta(now, done, total)}")

    def _eta(self, now, done, total):
        first_done, first_time = self.first_step
        if done <= first_done:
            return "-:--:--"
        return _clock((now - first_time) / (done - first_done) * (self.max_epochs * total - done))

    def epoch(self, state, row):
        """An epoch ended: print its line, keep it (and the best so far) under the bar."""
        metrics = "  ".join(f"{k} {row[k]:.4f}" for k in _shown_keys(row, self.monitor))
        best = (f"best {self.monitor} {state.best_value:.4f} (epoch {state.best_epoch})"
                if state.best_epoch is not None else "")
        waited = f" (data {row['data_wait']:.0%})" if "data_wait" in row else ""  # not in older checkpoints' rows
        line = f"epoch {state.epoch}/{self.max_epochs}  {metrics}  {row['seconds']:.1f} s{waited}"
        self.say(line)
        self.bar.note = f"last: {metrics}   {best}"
        finished = state.epoch >= self.max_epochs or state.stopped_early
        self.epoch_now = state.epoch if finished else state.epoch + 1
        total = self.bar.tasks[0].total
        if finished:  # the bar stays full (the loop's last update may have come a few batches early)
            self.ended = "early stopping" if state.stopped_early else "done"
            self.bar.update(self.bar_task, completed=total or 0)
        else:
            self.epoch_started = time.perf_counter()
            self.bar.update(self.bar_task, completed=0, speed="")  # this epoch's speed comes with its first update
        self.bar.update(self.bar_task, epoch=self._counter())

    def say(self, text):
        """A line above the bar (or, without a terminal, a plain line)."""
        if self.enabled:
            say(text)


def _shown_keys(row, monitor):
    """The few metrics of an epoch worth a glance: the losses, the monitored one, accuracy or r2."""
    keys = ["train/loss", "train/accuracy", "val/loss", monitor, "val/accuracy", "val/r2"]
    return [k for k in dict.fromkeys(keys) if k in row]
