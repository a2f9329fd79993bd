"""Learning-rate schedules, each with an optional linear warmup.

:class:`Schedule` hides the difference between per-epoch schedulers,
ReduceLROnPlateau (which reads the monitored metric) and per-batch ones
(one-cycle), so the loop calls ``after_batch()`` and ``after_epoch(metric)``.
"""

import torch

from dlrun.registry import Registry

SCHEDULERS = Registry("scheduler", context=["optimizer", "max_epochs", "steps_per_epoch", "mode"],
                      handled=["warmup_epochs"])
PER_BATCH = {"onecycle"}


@SCHEDULERS.register("none")
def constant(optimizer):
    return None


@SCHEDULERS.register("step")
def step(optimizer, step_size=10, gamma=0.1):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("multistep")
def multistep(optimizer, milestones=(10, 15), gamma=0.1):
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)


@SCHEDULERS.register("exponential")
def exponential(optimizer, gamma=0.95):
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(optimizer, max_epochs, t_max=None, eta_min=0.0):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max or max_epochs, eta_min=eta_min)


@SCHEDULERS.register("plateau")
def plateau(optimizer, mode, factor=0.1, patience=3, threshold=1e-4, min_lr=0.0):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr)


@SCHEDULERS.register("onecycle")
def onecycle(optimizer, max_epochs, steps_per_epoch, max_lr=None, pct_start=0.25):
    peak = max_lr or [10 * g["lr"] for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, epochs=max_epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start)


class Schedule:
    def __init__(self, optimizer, inner, warmup_epochs=0, per_batch=False):
        self.optimizer = optimizer
        self.inner = inner
        self.warmup_epochs = warmup_epochs
        self.per_batch = per_batch
        self.epoch = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self._warm(0)

    def _warm(self, epoch):
        if epoch < self.warmup_epochs:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * (epoch + 1) / self.warmup_epochs
        elif epoch == self.warmup_epochs and self.warmup_epochs:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base

    @property
    def warming(self):
        return self.epoch < self.warmup_epochs

    def after_batch(self):
        if self.per_batch and self.inner is not None and not self.warming:
            self.inner.step()

    def after_epoch(self, metric):
        """Advance one epoch; `metric` is the monitored validation value."""
        was_warming = self.warming
        self.epoch += 1
        if was_warming:
            self._warm(self.epoch)
        elif self.inner is not None and not self.per_batch:
            if isinstance(self.inner, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.inner.step(metric)
            else:
                self.inner.step()

    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return {"epoch": self.epoch, "inner": self.inner.state_dict() if self.inner is not None else None}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]
        if self.inner is not None and state["inner"] is not None:
            self.inner.load_state_dict(state["inner"])


def build(spec, optimizer, max_epochs, steps_per_epoch, mode):
    warmup = spec.get("warmup_epochs", 0) or 0
    inner = SCHEDULERS.build(spec, optimizer=optimizer, max_epochs=max(1, max_epochs - warmup),
                             steps_per_epoch=steps_per_epoch, mode=mode)
    return Schedule(optimizer, inner, warmup, per_batch=spec.get("name") in PER_BATCH)
