"""Data-parallel training of one model under torchrun (PyTorch's own DDP).

    torchrun --standalone --nproc_per_node=2 -m dlrun model=cnn

Each process trains on its shard of every epoch's permutation; DDP averages
the gradients; training metrics are summed across processes; validation is
the same on every process. Rank 0 alone writes the run directory: the other
ranks run in a temporary directory that is removed when they finish.
"""

import contextlib
import datetime
import logging
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from dlrun import stopping
from dlrun.errors import ConfigError, DlrunError, first_line

log = logging.getLogger("dlrun")


def world():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def active():
    return dist.is_available() and dist.is_initialized()


def is_main():
    return not active() or dist.get_rank() == 0


def setup(device, timeout=300.0):
    """Join the process group when started by torchrun; returns the device for this rank. A
    collective that waits more than `timeout` seconds for another process fails (the backends'
    default is 30 minutes: a process that hangs would hold the others that long)."""
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
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout))
    if device.type == "cuda":  # stop votes stay on the CPU: reading an NCCL result would wait for the GPU
        global _votes_group
        _votes_group = dist.new_group(backend="gloo")
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


class RankFailed(DlrunError):
    """A data-parallel run that one of its processes ended (an error, a kill, a hang): raised on
    the process that failed, after it told the others, and on the others, naming it; rank 0 says it."""

    told = True  # what job._ended_early reads: the other processes know, and rank 0 speaks


# Where a failing process leaves its error for the others: a key of torchrun's own store per rank.
FAILED_KEY = "dlrun/failed/{rank}"
# How long the others look for that word after a collective broke (the failing process writes it
# before it exits, and its exit is what breaks the collective).
WORD_WAIT_S = 2.0


@contextlib.contextmanager
def failures_told(step, timeout):
    """Under DDP: an exception on this process is left in torchrun's store (with `step()`, the
    step it failed at) before it propagates as RankFailed; a collective that breaks because another
    process ended or stopped answering (for `timeout` seconds) becomes RankFailed naming that
    process, with its own error when it left one. Without a process group, nothing changes."""
    if not active():
        yield
        return
    try:
        yield
    except (KeyboardInterrupt, RankFailed):
        raise
    except Exception as exc:
        if getattr(exc, "status", None) == "interrupted":  # a stop: every process stops at the same step
            raise
        # The run is failing, for this process's reason or another's: torchrun's SIGTERM once a
        # process has ended must not turn that into a stop, nor end this one before its record.
        stopping.ignore_signals_for_good()
        if isinstance(exc, dist.DistError) or _broken_collective(exc):
            raise RankFailed(_what_happened(step(), timeout, exc)) from None
        rank = dist.get_rank()
        message = f"rank {rank} failed at step {step()}: {first_line(exc)}"
        _store().set(FAILED_KEY.format(rank=rank), message)
        if isinstance(exc, DlrunError):  # divergence, a failed write: said as it is, by rank 0
            exc.told = True
            raise
        log.error("%s", message, exc_info=exc)  # run.log keeps the traceback
        raise RankFailed(message) from exc


def _broken_collective(exc):
    """gloo reports a peer that closed its connection or did not answer as a RuntimeError."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("gloo" in text or "Connection closed by peer" in text
                                              or "Timed out waiting" in text)


def _what_happened(step, timeout, exc):
    """The other processes' own words, if one left them; else which one stopped answering."""
    store, rank, size = _store(), dist.get_rank(), dist.get_world_size()
    others = [r for r in range(size) if r != rank]
    keys = {r: FAILED_KEY.format(rank=r) for r in others}
    deadline = time.monotonic() + WORD_WAIT_S
    while not (told := [r for r, key in keys.items() if store.check([key])]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if told:
        return store.get(keys[told[0]]).decode()
    who = f"rank {others[0]}" if size == 2 else f"one of ranks {', '.join(map(str, others))}"
    if "timed out" in str(exc).lower():
        return (f"{who} stopped answering at step {step}: no reply within {timeout:g} s "
                f"(trainer.collective_timeout); it hangs, or its machine is gone")
    return f"{who} ended at step {step} without a word (killed, or out of memory)"


def _store():
    return dist.distributed_c10d._get_default_store()


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


class StopVotes:
    """Whether data-parallel processes stop, agreed without a host-device sync per step: each
    optimizer step posts this process's votes (integers: a stop's exit code, the time budget)
    to an all-reduce of their maxima that runs in the background, on CPU tensors (gloo: a
    group of its own beside NCCL), and takes the result of the previous step's. Every process
    reads the same results at the same step, so all stop at the same position, one step after
    the first reason; the last step of an epoch (`wait`) waits for its own vote too, so no
    reason is carried past the epoch it came in."""

    def __init__(self):
        self._pending = None  # (the background all-reduce, its tensor)

    def agree(self, votes, wait=False):
        """The agreed votes: the previous step's (zeros at the first), or with `wait` the largest of
        the previous step's and this one's."""
        if not active():
            return tuple(votes)
        tensor = torch.tensor(votes, dtype=torch.int64)
        work = dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_votes_group, async_op=True)
        previous, self._pending = self._pending, (work, tensor)
        agreed = torch.zeros_like(tensor)
        if previous is not None:
            previous[0].wait()  # posted a whole step ago: done by now, or nearly
            agreed = previous[1]
        if wait:
            work.wait()
            agreed, self._pending = torch.maximum(agreed, tensor), None
        return tuple(agreed.tolist())


_votes_group = None  # the group that agrees stops: None (the default group) under gloo, a gloo group beside NCCL


def wrap(model, device):
    """The model as DDP sees it, for the training forward pass."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shutdown():
    """Leave the process group. No barrier: once training ends, rank 0 evaluates and writes the
    results alone, which may take longer than a collective may wait."""
    if active():
        dist.destroy_process_group()
