"""When fitting stops and which epochs are kept: early stopping and the
checkpoint policy, as plain values, and the state that a checkpoint carries."""

import math
from dataclasses import dataclass, field

from dlrun.results import metrics


@dataclass
class FitState:
    """What a checkpoint needs to continue the loop exactly."""

    epoch: int = 0                  # epochs completed
    step: int = 0                   # optimizer steps taken (skipped non-finite ones included)
    best_value: float = None
    best_epoch: int = None
    bad_epochs: int = 0             # epochs without improvement (early stopping)
    skipped: int = 0                # non-finite steps skipped
    stopped_early: bool = False
    timed_out: bool = False         # stopped by the time budget (cleared when a resume starts)
    history: list = field(default_factory=list)
    partial: dict = None            # mid-epoch position and running sums


@dataclass
class FitPolicy:
    max_epochs: int
    monitor: str = "val/loss"       # the history column that decides the best epoch
    mode: str = "min"               # min | max
    min_delta: float = 0.0          # smaller changes are not improvements
    early_stopping: bool = False
    patience: int = 10              # epochs without improvement before stopping
    save_best: bool = True
    save_last: bool = True
    skip_nonfinite: int = 0         # non-finite steps tolerated before the run is declared diverged
    max_time: float = None          # seconds of training in this process, or None
    checkpoint_every: int = None    # optimizer steps between mid-epoch `last` checkpoints, or None
    last_every: int = 1             # epochs between `last` checkpoints (the final epoch always writes one)
    val_every: int = None           # optimizer steps between mid-epoch validations, or None
    keep_every: int = None          # epochs between kept (named, never overwritten) checkpoints, or None
    top_k: int = 0                  # the best epochs kept as named checkpoints

    def due(self, every, state):
        """Whether the step just taken is one of every `every` (None: never)."""
        return every is not None and state.step % every == 0

    def last_due(self, state):
        """Whether the epoch just ended writes the `last` checkpoint."""
        return self.save_last and (state.epoch % self.last_every == 0 or not self.running(state))

    def kept_epochs(self, history):
        """The epochs kept as named checkpoints after `history`: every `keep_every`-th, and the
        `top_k` best by the monitor (ties: the earlier epoch)."""
        every = {row["epoch"] for row in history if self.keep_every and row["epoch"] % self.keep_every == 0}
        scored = [row for row in history if math.isfinite(row[self.monitor])]
        ranked = sorted(scored, key=lambda row: (-row[self.monitor] if self.mode == "max" else row[self.monitor],
                                                 row["epoch"]))
        return every | {row["epoch"] for row in ranked[:self.top_k]}

    def running(self, state):
        return state.epoch < self.max_epochs and not state.stopped_early and not state.timed_out

    def end_epoch(self, state, row):
        """Record the epoch's row; returns True when it is the best so far."""
        state.epoch += 1
        state.history.append(row)
        value = row[self.monitor]
        if metrics.is_better(value, state.best_value, self.mode, self.min_delta):
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            return True
        state.bad_epochs += 1
        state.stopped_early = bool(self.early_stopping and state.bad_epochs >= self.patience)
        return False
