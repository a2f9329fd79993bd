"""The live display of training: the epoch counted from 1, a bar over its
batches, samples per second, an ETA for the whole run from the first batches
on, and under the bar the last epoch's metrics and the best so far. Each epoch
also prints one line, which is all that is shown without a terminal.

The loop calls `step` at most a few times a second and `epoch` once per
epoch, so the display costs nothing measurable.
"""

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from dlrun.console import console
from dlrun.results.metric_names import REGRESSION_SCALARS


class _BarWithNote(Progress):
    """rich's Progress with one line under the bar."""

    note = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.note:
            yield Text(self.note)


class TrainingProgress:
    def __init__(self, max_epochs, batch_size, monitor, task, start_epoch=0, enabled=True):
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.max_epochs, self.batch_size, self.monitor, self.task = max_epochs, batch_size, monitor, task
        self.epoch_now = start_epoch + 1
        self.bar = _BarWithNote(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"),
            console=console, disable=not self.live)
        self.bar_task = self.bar.add_task("train", total=None, epoch=self._counter(), speed="", eta="-:--:--")
        self.epoch_started = time.perf_counter()
        self.first_step = None  # (global step, time) where the ETA's measurement starts

    def __enter__(self):
        self.bar.__enter__()
        if self.task == "regression":
            self.say(f"regression: the losses are on standardised targets; {', '.join(REGRESSION_SCALARS[1:])} "
                     f"are in the target's own units.")
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

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
                        speed=f"{speed:,.0f} samples/s", eta=self._eta(now, done, total))

    def _eta(self, now, done, total):
        first_done, first_time = self.first_step
        if done <= first_done:
            return "-:--:--"
        seconds = (now - first_time) / (done - first_done) * (self.max_epochs * total - done)
        return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0))).removeprefix("0")

    def epoch(self, state, row):
        """An epoch ended: print its line, keep it (and the best so far) under the bar."""
        metrics = "  ".join(f"{k} {row[k]:.4f}" for k in _shown_keys(row, self.monitor))
        best = (f"best {self.monitor} {state.best_value:.4f} (epoch {state.best_epoch})"
                if state.best_epoch is not None else "")
        line = f"epoch {state.epoch}/{self.max_epochs}  {metrics}  {row['seconds']:.1f} s"
        self.say(line)
        self.bar.note = f"last: {metrics}   {best}"
        finished = state.epoch >= self.max_epochs or state.stopped_early
        self.epoch_now = state.epoch if finished else state.epoch + 1
        if not finished:  # a finished run's bar stays full
            self.epoch_started = time.perf_counter()
            self.bar.update(self.bar_task, completed=0)
        self.bar.update(self.bar_task, epoch=self._counter())

    def say(self, text):
        """A line above the bar (or, without a terminal, a plain line)."""
        if self.enabled:
            console.print(text, highlight=False, soft_wrap=True)


def _shown_keys(row, monitor):
    """The few metrics of an epoch worth a glance: the losses, the monitored one, accuracy or r2."""
    keys = ["train/loss", "train/accuracy", "val/loss", monitor, "val/accuracy", "val/r2"]
    return [k for k in dict.fromkeys(keys) if k in row]
