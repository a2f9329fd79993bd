"""The debugging aids of the trainer group (debug=... presets): the profiler over a few
steps, autograd anomaly detection, and the verdict of the overfit-one-batch check."""

import contextlib
import os
import sys

import torch

from dlrun.errors import DlrunError
from dlrun.train import distributed

NEAR_ZERO = 0.05  # a validation loss below this on the memorised batches counts as fitted


@contextlib.contextmanager
def profiled(loop, folder, steps, note):
    """With `steps` > 0, torch.profiler records `steps` training steps (after one of warm-up)
    and writes folder/trace.json (open it in chrome://tracing or Perfetto) and
    folder/top_operators.txt (the operators that took the most time)."""
    if not steps or not distributed.is_main():
        yield
        return
    from torch.profiler import ProfilerActivity, profile, schedule

    cuda = loop.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def write(prof):
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / ".trace.json.tmp"
        prof.export_chrome_trace(str(partial))
        os.replace(partial, folder / "trace.json")
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                          row_limit=25)
        (folder / "top_operators.txt").write_text(f"The {steps} profiled training steps, by own time:\n{table}\n")

    prof = profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=steps, repeat=1),
                   on_trace_ready=write, record_shapes=True)
    remaining = [steps + 1]

    def step():
        """The profiler's step while it records (its native library starts and stops in it)."""
        if remaining[0] > 0:
            remaining[0] -= 1
            with _native_stderr_quiet():
                prof.step()

    with _native_stderr_quiet():
        prof.start()
    loop.step_hooks.append(step)
    try:
        yield
    finally:
        loop.step_hooks.remove(step)
        with _native_stderr_quiet():
            prof.stop()
    if (folder / "trace.json").is_file():
        note(f"profile of {steps} steps: {folder / 'trace.json'} (chrome://tracing or ui.perfetto.dev) and "
             f"{folder / 'top_operators.txt'}")
    else:
        note(f"trainer.profile_steps={steps}: training ended before {steps + 1} steps (one of warm-up), so no "
             f"profile was written; lower profile_steps.")


@contextlib.contextmanager
def _native_stderr_quiet():
    """The profiler's native library writes start/stop chatter straight to file descriptor 2;
    it goes to /dev/null while the profiler starts and stops (nothing of dlrun's is written then)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def anomaly_detection(enabled):
    """Autograd anomaly detection: a backward operation that produces NaN stops the run, named
    (the forward operation behind it is printed by torch above the error)."""
    if not enabled:
        yield
        return
    with torch.autograd.detect_anomaly(check_nan=True):
        try:
            yield
        except RuntimeError as exc:
            if "returned nan values" not in str(exc):
                raise
            raise DlrunError(f"autograd anomaly detection: {str(exc).splitlines()[0]} The traceback of the forward "
                             f"operation that caused it is printed above (torch's warning).") from None


def overfit_verdict(history, batches):
    """Whether training on `batches` batches drove the loss on them near zero: the first step
    of every tuning recipe (a model that cannot memorise one batch has a bug or a bad lr)."""
    losses = [row["val/loss"] for row in history]
    best, first = min(losses), losses[0]
    fitted = best < NEAR_ZERO
    verdict = (f"overfit check passed: the loss on the {batches} memorised batch(es) went from {first:.4f} to "
               f"{best:.4f} (< {NEAR_ZERO}) in {len(losses)} epochs." if fitted else
               f"overfit check FAILED: the loss on the {batches} memorised batch(es) only went from {first:.4f} to "
               f"{best:.4f} in {len(losses)} epochs (near zero is < {NEAR_ZERO}). Check the labels, the loss and "
               f"the learning rate (task=lr_find), or train longer (trainer.max_epochs).")
    return {"passed": fitted, "first_loss": first, "best_loss": best, "epochs": len(losses), "text": verdict}
