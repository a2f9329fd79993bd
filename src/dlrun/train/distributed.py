"""Data-parallel training of one model under torchrun (PyTorch's own DDP).

    torchrun --standalone --nproc_per_node=2 -m dlrun model=cnn

Each process trains on its shard of every epoch's permutation; DDP averages
the gradients; training metrics are summed across processes; validation is
the same on every process. Rank 0 alone writes the run directory: the other
ranks run in a temporary directory that is removed when they finish.
"""

import os
import signal
import sys

import torch
import torch.distributed as dist

from dlrun.errors import ConfigError


def world():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def active():
    return dist.is_available() and dist.is_initialized()


def is_main():
    return not active() or dist.get_rank() == 0


def setup(device):
    """Join the process group when started by torchrun; returns the device for this rank."""
    rank, size, local = world()
    if size == 1 or active():
        return device
    _stop_with_the_launcher()
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started {size} processes, but this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s): one process per GPU (--nproc_per_node), or device=cpu.")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _stop_with_the_launcher():
    """torchrun starts its workers in sessions of their own, so a kill -9 of torchrun (or of its
    process group) leaves nothing to stop them: on Linux each worker asks the kernel for SIGTERM
    when its parent dies, and stops on it as on any SIGTERM (the step ends, last.pt is written,
    exit 143). Elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() == 1:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def shard():
    """(rank, world size) of the running process group, or (0, 1)."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def sum_across(*tensors):
    """Sum each tensor over all processes (in place); a no-op without a process group."""
    if active():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return tensors


def summed(*tensors):
    """Copies of the tensors, each summed over all processes (the tensors themselves unchanged)."""
    return sum_across(*(t.clone() for t in tensors))


def max_across(values, device):
    """The largest of each integer in `values` over all processes, as a tuple of ints."""
    if not active():
        return tuple(values)
    tensor = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(tensor.tolist())


def wrap(model, device):
    """The model as DDP sees it, for the training forward pass."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shutdown():
    if active():
        dist.barrier()
        dist.destroy_process_group()
