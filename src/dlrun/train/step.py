"""The update half of a training step: one precision path, one clip path, and
non-finite safety decided on the device.

A step is bad when its loss or any of its gradients is not finite. A bad step
never changes the weights or the optimizer state, on any device:

- fused optimizers (dlrun builds SGD, Adam and AdamW fused wherever torch has
  the kernels) receive the flag as `found_inf`, the mechanism GradScaler uses,
  and skip their own update on the device: no host-device synchronisation;
- any other optimizer is stepped only after the host reads the flag (one
  synchronisation per step, on accelerators only where such an optimizer is used).

The flag is one multi-tensor check of the loss and every gradient (the check
GradScaler runs, with a scale of 1); the gradient norm is computed only where
clipping by norm needs it. Bad steps are counted on the device. The loop reads
the count when it reads anything else (every step on the CPU, where a read is
free; a few times a second and at each epoch's end on accelerators) and stops
once more than `skip_nonfinite` steps were bad.
"""

import math
from dataclasses import dataclass

import torch
from torch.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm


@dataclass
class BadSteps:
    """What the host learns at a read: how many steps were skipped, and the first of them."""

    count: int
    first_step: int
    first_loss: float

    def what(self):
        """What went wrong at the first bad step, in words."""
        if math.isfinite(self.first_loss):
            return f"the gradients became non-finite (loss {self.first_loss:.4g})"
        return f"the training loss became {self.first_loss}"


def _zero_momentum_buffers(optimizer):
    """Fused SGD creates its momentum buffers uninitialised on the first step and fills
    them in the kernel, which a skipped (non-finite) first step never runs. Zero buffers
    give the same first update (buffer = momentum * 0 + grad)."""
    for group in optimizer.param_groups:
        if group["momentum"] > 0:
            for p in group["params"]:
                optimizer.state[p].setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))


class GuardedUpdate:
    """Backward, unscale, clip and a step that is skipped on the device when non-finite."""

    def __init__(self, optimizer, device, precision="fp32", clip_mode=None, clip_max=None):
        self.optimizer = optimizer
        self.clip_mode, self.clip_max = clip_mode, clip_max
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        # Under fp16 an overflowing gradient is the scaler's business (it lowers the
        # scale and the step is skipped); only a non-finite loss counts as bad.
        self.fp16 = precision == "fp16"
        self.fused = getattr(optimizer, "_step_supports_amp_scaling", False)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.fused and isinstance(optimizer, torch.optim.SGD):
            _zero_momentum_buffers(optimizer)
        self.window_loss = None  # the summed losses of the accumulation window so far
        self.found = torch.zeros((), device=device)  # this step's flag: 1.0 when bad
        self.unit = torch.ones((), device=device)
        # count, first bad step, its loss: float64, so a step number stays exact
        self.record = torch.zeros(3, dtype=torch.float64, device=device)

    def __call__(self, loss, step_number, final=True):
        """Backward and (unless non-finite) update for the loss of step `step_number`;
        returns the on-device flag of a skipped step.

        With gradient accumulation, the micro-batches before the last of a window pass
        `final=False`: their gradients only add up (their flag says whether their own loss was
        finite); the final one decides on the whole window's loss and updates once."""
        self.scaler.scale(loss).backward()
        loss = loss.detach().float()
        if not final:
            self.window_loss = loss if self.window_loss is None else self.window_loss + loss
            return ~torch.isfinite(loss)
        if self.window_loss is not None:  # the whole window's loss: non-finite if any part was
            loss, self.window_loss = loss + self.window_loss, None
        self.scaler.unscale_(self.optimizer)  # a no-op unless fp16
        grads = [p.grad for p in self.params if p.grad is not None]
        skip = self._non_finite([*grads, loss])  # the backward is done: a check that scales by 1 may touch the loss
        # Under fp16 an overflowing gradient is the scaler's business (it lowers the scale and
        # the step is skipped); only a non-finite loss counts as bad.
        self._record((~torch.isfinite(loss)).double() if self.fp16 else skip.double(), step_number, loss)
        if self.clip_mode == "norm":
            clip_grads_with_norm_(self.params, self.clip_max, get_total_norm(grads))
        elif self.clip_mode == "value":
            clip_grad_value_(self.params, self.clip_max)
        if self.fused:
            self.optimizer.found_inf = skip  # read by the fused kernels on the device
            self.optimizer.step()
            del self.optimizer.found_inf
        elif not skip.item():  # host-device sync: this optimizer cannot skip on the device
            self.optimizer.step()
        if self.scaler.is_enabled():
            self.scaler.update()
        return skip.bool()

    def with_closure(self, closure, loss, step_number):
        """The update of an optimizer that evaluates the loss itself (L-BFGS, through `closure`):
        a step whose first loss is not finite is skipped before its line search follows it."""
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss)
        self._record(bad.double(), step_number, loss)
        if not bad.item():  # host-device sync: L-BFGS reads the loss on the host anyway
            self.optimizer.step(closure)
        return bad

    def _non_finite(self, tensors):
        """1.0 on the device when any of `tensors` holds a NaN or an infinity, else 0.0: one
        multi-tensor kernel (GradScaler's own check; scaling by 1 leaves the values as they are)."""
        self.found.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, self.found, self.unit)
        return self.found

    def _record(self, bad, step_number, loss):
        """Count a bad step and remember the first one, without leaving the device."""
        count, first_step, first_loss = self.record.unbind()  # views: updated in place
        first = bad * (count == 0)
        first_step.add_(first, alpha=step_number)
        first_loss.copy_(torch.where(first.bool(), loss.double(), first_loss))
        count.add_(bad)

    def bad_count(self):
        """Host-device sync: how many steps were bad so far."""
        return int(self.record[0])

    def read(self):
        """Host-device sync: the bad-step record as plain numbers."""
        count, step, loss = self.record.tolist()
        return BadSteps(int(count), int(step), loss)

    def state_dict(self):
        return {"scaler": self.scaler.state_dict(), "bad": self.record.cpu()}

    def load_state_dict(self, state):
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.record.copy_(state["bad"])
