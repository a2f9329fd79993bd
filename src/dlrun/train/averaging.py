"""Weight averaging on torch.optim.swa_utils: an exponential moving average of the weights
after every optimizer step (EMA), or stochastic weight averaging of the weights at the
end of each epoch from a start epoch on (SWA, with BatchNorm statistics recomputed by
update_bn and an optional constant learning rate through SWALR).

When averaging is on, the averaged weights are the ones validated (EMA: every epoch;
SWA: from its start), chosen for best.pt, evaluated and exported; checkpoints keep
them as `model` and the weights being trained as `trained_model`, with everything a
resume needs to continue bit for bit.
"""

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from dlrun.errors import ConfigError


def ema_update(decay, warmup):
    """The EMA update for AveragedModel: averaged <- decay * averaged + (1 - decay) * current on
    floating-point tensors (integer buffers, e.g. BatchNorm's batch count, are copied). With
    `warmup`, the decay is min(decay, (1 + n) / (10 + n)) after n updates, so the first
    updates are not dominated by the random initial weights."""

    def update(averaged, current, num_averaged):
        n = int(num_averaged)  # AveragedModel has read it on the host already
        rate = 1 - (min(decay, (1 + n) / (10 + n)) if warmup else decay)
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], rate)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():
                a.copy_(c)

    return update


class Averaging:
    """The averaged copy of a model and when it is updated and used."""

    def __init__(self, model, kind, max_epochs, optimizer=None, ema_decay=0.999, ema_warmup=True, swa_start=0.75,
                 swa_lr=None):
        self.kind = kind  # ema or swa (the config check has refused anything else)
        if kind == "ema":
            self.model = AveragedModel(model, multi_avg_fn=ema_update(ema_decay, ema_warmup), use_buffers=True)
            self.start_epoch = 0
        else:
            self.model = AveragedModel(model)
            # an epoch number (from 1), or a fraction of the epochs
            self.start_epoch = int(swa_start - 1 if swa_start >= 1 else swa_start * max_epochs)
            if self.start_epoch >= max_epochs:
                raise ConfigError(f"trainer.averaging.swa_start={swa_start} starts after the last of the "
                                  f"{max_epochs} epochs; choose an earlier epoch (or a fraction below 1).")
        self.swa_schedule = SWALR(optimizer, swa_lr, anneal_epochs=1) if kind == "swa" and swa_lr else None

    def active(self, epoch):
        """Whether the averaged weights stand for the model during epoch `epoch` (from 0)."""
        return epoch >= self.start_epoch

    def after_step(self, model):
        if self.kind == "ema":
            self.model.update_parameters(model)

    def after_epoch(self, model, epoch, batches):
        """SWA: average the weights of epoch `epoch` (from 0) when it is one of its epochs, and
        recompute the BatchNorm statistics of the average with a pass over `batches`."""
        if self.kind == "swa" and self.active(epoch):
            self.model.update_parameters(model)
            if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                update_bn((x for x, _ in batches.epoch()), self.model)

    def owns_schedule(self, epoch):
        """Whether SWALR sets the learning rate during epoch `epoch` (from 0) instead of the run's schedule."""
        return self.swa_schedule is not None and self.active(epoch)

    def state_dict(self):
        return {"n_averaged": self.model.n_averaged.detach().cpu(),
                "swa_schedule": self.swa_schedule.state_dict() if self.swa_schedule is not None else None}

    def load_state_dict(self, state, weights):
        self.model.module.load_state_dict(weights)
        self.model.n_averaged.copy_(state["n_averaged"])
        if self.swa_schedule is not None and state.get("swa_schedule"):
            self.swa_schedule.load_state_dict(state["swa_schedule"])
