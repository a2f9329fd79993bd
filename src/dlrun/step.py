"""The update half of a training step: one precision path, one clip path, and
non-finite safety decided on the device.

A step is bad when its loss or its gradient norm is not finite. A bad step
never changes the weights or the optimizer state, on any device:

- fused optimizers (dlrun builds SGD, Adam and AdamW fused wherever torch has
  the kernels) receive the flag as `found_inf`, the mechanism GradScaler uses,
  and skip their own update on the device: no host-device synchronisation;
- any other optimizer is stepped only after the host reads the flag (one
  synchronisation per step, on accelerators only where such an optimizer is used).

Bad steps are counted on the device. The loop reads the count when it reads
anything else (every step on the CPU, where a read is free; a few times a
second and at each epoch's end on accelerators) and stops once more than
`skip_nonfinite` steps were bad.
"""

from dataclasses import dataclass

import torch
from torch.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm


@dataclass
class BadSteps:
    """What the host learns at a read: how many steps were skipped, and the first of them."""

    count: int
    first_step: int
    first_loss: float
    first_grad_norm: float


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
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.first_step = torch.zeros((), dtype=torch.long, device=device)
        self.first_loss = torch.zeros((), device=device)
        self.first_norm = torch.zeros((), device=device)

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
        norm = get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
        bad = ~torch.isfinite(loss) if self.fp16 else ~(torch.isfinite(loss) & torch.isfinite(norm))
        skip = bad | ~torch.isfinite(norm)
        self._record(bad, step_number, loss, norm)
        if self.clip_mode == "norm":
            clip_grads_with_norm_(self.params, self.clip_max, norm)
        elif self.clip_mode == "value":
            clip_grad_value_(self.params, self.clip_max)
        if self.fused:
            self.optimizer.found_inf = skip.float()  # read by the fused kernels on the device
            self.optimizer.step()
            del self.optimizer.found_inf
        elif not skip.item():  # host-device sync: this optimizer cannot skip on the device
            self.optimizer.step()
        if self.scaler.is_enabled():
            self.scaler.update()
        return skip

    def _record(self, bad, step_number, loss, norm):
        """Count a bad step and remember the first one, without leaving the device."""
        first = bad & (self.count == 0)
        self.first_step.masked_fill_(first, step_number)
        self.first_loss.copy_(torch.where(first, loss, self.first_loss))
        self.first_norm.copy_(torch.where(first, norm.float(), self.first_norm))
        self.count.add_(bad.long())

    def bad_count(self):
        """Host-device sync: how many steps were bad so far."""
        return int(self.count)

    def read(self):
        """Host-device sync: the bad-step record as plain numbers."""
        count, step, loss, norm = self._record_tensor().tolist()
        return BadSteps(int(count), int(step), loss, norm)

    def _record_tensor(self):
        return torch.stack([self.count.double(), self.first_step.double(), self.first_loss.double(),
                            self.first_norm.double()])

    def state_dict(self):
        return {"scaler": self.scaler.state_dict(), "bad": self._record_tensor().cpu()}

    def load_state_dict(self, state):
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        count, step, loss, norm = state["bad"].tolist()
        self.count.fill_(int(count))
        self.first_step.fill_(int(step))
        self.first_loss.fill_(loss)
        self.first_norm.fill_(norm)
