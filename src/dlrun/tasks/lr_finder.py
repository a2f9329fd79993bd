"""The learning-rate range test (task=lr_find): train for a few hundred steps while the
learning rate grows exponentially, record the loss, suggest learning rates, and put
every state back as it was (weights, optimizer, schedule, batches, random generators).

The test stops when a running average of the loss exceeds four times its minimum, but
not before a tenth of its steps are done, and the suggestions ignore that first tenth:
an early spike, common in the first steps of a fresh model, neither ends the test nor
drives a suggestion. The suggestions read a centred average of the loss, which does not
lag behind it as the running average does.
"""

import copy
import math
from dataclasses import dataclass

import numpy as np

from dlrun.errors import DlrunError
from dlrun.results import artifacts
from dlrun.tasks import messages
from dlrun.train.fit_policy import FitState

BETA = 0.98          # the running average that decides when to stop
BLOW_UP = 4.0        # stop when the smoothed loss exceeds this multiple of its minimum


@dataclass
class RangeTest:
    lrs: list
    losses: list
    stop_reason: str

    @property
    def smoothed(self):
        """The loss averaged over a centred window (a twentieth of the steps): no lag, unlike the
        running average that decides when to stop, so the suggestions sit where the loss really falls."""
        losses = np.array(self.losses)
        half = max(2, len(losses) // 40)
        sums = np.concatenate([[0.0], np.cumsum(losses)])
        low = np.clip(np.arange(len(losses)) - half, 0, None)
        high = np.clip(np.arange(len(losses)) + half + 1, None, len(losses))
        return ((sums[high] - sums[low]) / (high - low)).tolist()

    def suggestions(self):
        """Three suggestions, each a learning rate: `steepest` (the steepest descent of the smoothed
        loss against log lr), `minimum/10` (a tenth of the lr at the smoothed loss's minimum) and
        `valley` (the middle of the descent, from where the loss has fallen a tenth of the way
        from its highest to its lowest down to the lowest: the most robust of the three)."""
        lrs, loss = np.array(self.lrs), np.array(self.smoothed)
        skip = max(1, len(loss) // 10)  # the first steps: a fresh model's spike is not a descent
        lowest = skip + int(np.argmin(loss[skip:]))
        slope = np.gradient(loss, np.log(lrs))
        steepest = skip + int(np.argmin(slope[skip:lowest + 1]))
        plateau = float(loss[skip:lowest + 1].max())
        falling = np.flatnonzero(loss[:lowest + 1] < plateau - 0.1 * (plateau - loss[lowest]))
        begin = int(falling[0]) if len(falling) else lowest
        return {"steepest": float(lrs[steepest]), "minimum/10": float(lrs[lowest] / 10),
                "valley": float(lrs[(begin + lowest) // 2])}


def lr_at(step, steps, min_lr, max_lr):
    """The exponential ramp: min_lr at step 0, max_lr at the last step."""
    return min_lr * (max_lr / min_lr) ** (step / max(steps - 1, 1))


def run(loop, min_lr, max_lr, steps):
    """The range test on `loop`'s model, optimizer and training batches; every state is restored
    afterwards (the same in-memory copy a checkpoint would hold)."""
    saved = copy.deepcopy(loop.state_dict(FitState()))
    ratios = [group["lr"] / loop.optimizer.param_groups[0]["lr"] for group in loop.optimizer.param_groups]
    schedule, loop.schedule = loop.schedule, _Ramp()  # the test sets every learning rate itself
    try:
        return _ramp(loop, min_lr, max_lr, steps, ratios)
    finally:
        loop.schedule = schedule
        loop.load_state_dict(saved, "the learning-rate range test's saved state")


class _Ramp:
    """Stands in for the run's schedule during the test, which must not advance it."""

    def after_batch(self):
        pass


def _ramp(loop, min_lr, max_lr, steps, ratios):
    state, lrs, losses = FitState(), [], []
    average, best, stop_reason = 0.0, math.inf, f"its {steps} steps"
    loop.model.train()
    batches = _windows(loop)
    for step in range(steps):
        lr = lr_at(step, steps, min_lr, max_lr)
        for group, ratio in zip(loop.optimizer.param_groups, ratios):  # keeps head_lr's ratio
            group["lr"] = lr * ratio
        loss = _window_loss(loop, state, next(batches))
        if not math.isfinite(loss):
            stop_reason = f"a loss of {loss} at lr {lr:.3g}"
            break
        lrs.append(lr), losses.append(loss)
        average = BETA * average + (1 - BETA) * loss
        running = average / (1 - BETA ** (step + 1))  # bias-corrected running average: causal, for stopping
        best = min(best, running)
        if step >= steps // 10 and running > BLOW_UP * best:
            stop_reason = f"the loss passing {BLOW_UP:g}x its minimum at lr {lr:.3g}"
            break
    if len(lrs) < 10:
        raise DlrunError(f"the learning-rate range test ended after {len(lrs)} steps ({stop_reason}); "
                         f"lower lr_find.min_lr (now {min_lr:g}).")
    return RangeTest(lrs, losses, stop_reason)


def _windows(loop):
    """Accumulation windows of training batches, epoch after epoch: each [(x, y, share), ...]."""
    while True:
        window = []
        for _, x, y, share, _, window_end in loop.micro_batches():
            window.append((x, y, share))
            if window_end:
                yield window
                window = []


def _window_loss(loop, state, window):
    """One optimizer step over a window's batches; its mean loss (a host-device sync)."""
    total, count = 0.0, 0
    for k, (x, y, share) in enumerate(window):
        loss, _, _ = loop.step(x, y, state, share, k == 0, k == len(window) - 1)
        total += float(loss.detach()) * y.shape[0]
        count += y.shape[0]
    return total / count


def task(cfg, run_dir, loop, summary):
    """The learning-rate range test: lr_find.csv, plots/lr_find.png and the suggestions."""
    from dlrun.results import plots

    spec = cfg.lr_find
    messages.phase(cfg, f"learning-rate range test: {spec.steps} steps from lr {spec.min_lr:g} to {spec.max_lr:g}; "
                   f"every state is restored afterwards")
    test = run(loop, spec.min_lr, spec.max_lr, spec.steps)
    suggestions = test.suggestions()
    smoothed = test.smoothed
    artifacts.write_csv(run_dir.lr_find, [{"lr": lr, "loss": loss, "smoothed": smooth}
                                      for lr, loss, smooth in zip(test.lrs, test.losses, smoothed)])
    plots.save(plots.lr_range(test.lrs, test.losses, smoothed, suggestions), run_dir.plots / "lr_find.png")
    summary.data["lr_find"] = {"suggestions": suggestions, "recommended": "valley", "steps": len(test.lrs),
                               "stop_reason": test.stop_reason}
    return summary.finish("completed", FitState())
