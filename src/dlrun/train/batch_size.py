"""trainer.batch_size=auto: the largest batch that fits the device, and accumulation that keeps
the requested effective batch.

The effective batch (trainer.effective_batch_size) is tried first as one batch: a forward and
backward pass of that many samples, with room held for an optimizer's two state tensors per
weight. On out-of-memory the size drops to the largest divisor of the effective batch at most half
as big, so that batch x accumulation is still exactly the effective batch. The trial leaves no
trace: the model's buffers (batch-norm statistics), its gradients and the random state are as
they were, so a run with auto trains as one given the found numbers.
"""

import gc

import torch

from dlrun.train import device as devices

OUT_OF_MEMORY = ("out of memory", "can't allocate memory")  # CUDA and MPS; the CPU allocator


def out_of_memory(error):
    return isinstance(error, torch.OutOfMemoryError) or any(text in str(error) for text in OUT_OF_MEMORY)


def next_smaller(size, effective):
    """The largest divisor of `effective` at most half of `size`."""
    return max(d for d in range(1, size // 2 + 1) if effective % d == 0)


def largest_fitting(try_batch, effective):
    """The largest batch `try_batch` runs without running out of memory, among the divisors of
    `effective` from itself down; and the sizes that did not fit."""
    size, too_big = effective, []
    while True:
        try:
            try_batch(size)
            return size, too_big
        except RuntimeError as error:
            if not out_of_memory(error) or size == 1:
                raise
        # Out of the except block: the error's traceback, which holds the failed pass's tensors, is gone.
        too_big.append(size)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        size = next_smaller(size, effective)


def trial(model, loss_fn, example, target, autocast):
    """A training step's memory for a batch size: forward and backward of `example` (one input
    row) and `target` (one target) repeated, the model's state put back afterwards."""

    def run(size):
        x = example.expand(size, *example.shape[1:]).contiguous()
        y = target.expand(size, *target.shape[1:]).contiguous()
        room = [torch.empty_like(p) for p in model.parameters() if p.requires_grad for _ in range(2)]
        with devices.untouched(model):
            model.train()
            with autocast:
                loss = loss_fn(model(x), y)
            loss.backward()
        del room

    return run
