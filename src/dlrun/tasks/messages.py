"""What a run tells its user as it goes: one line per phase, in run.log and (with progress on,
rank 0 only) in the terminal."""

import logging
import os

from dlrun import console
from dlrun.train import distributed

log = logging.getLogger("dlrun")


def phase(cfg, text):
    """What happens next or why training stopped: one line in run.log and, with progress on, in
    the terminal (above the live display while it runs)."""
    log.info("%s", text)
    if shows(cfg):
        console.say(f"[dim]>[/] {text}")


def warn(text):
    """Something the user should know that does not stop the run: in run.log and, on rank 0, in the
    terminal (whatever trainer.progress says). Returns `text`, for the summary."""
    log.warning("%s", text)
    if distributed.is_main():
        console.error(text, title="warning")
    return text


def shows(cfg):
    """Whether this process prints progress (under torchrun, rank 0 only)."""
    return bool(cfg.trainer.progress) and distributed.is_main()


def skipped(reasons, record):
    """Plots that were asked for and do not apply: each named with why, in run.log and the summary."""
    for name, why in reasons.items():
        log.info("plot %s skipped: %s", name, why)
    if reasons:
        record["plots_skipped"] = {**record.get("plots_skipped", {}), **reasons}


def resume_command(run_dir, *more):
    """The command that resumes the run in `run_dir` (with `more` overrides): under torchrun, with
    as many processes (the batch is per process, so their number is part of the position)."""
    world, local = distributed.world()[1], int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    launch = ("dlrun" if world == 1 else f"dlrun torchrun --standalone --nproc_per_node={world}" if world == local
              else "dlrun torchrun <the same torchrun options, on each node>")
    return " ".join([launch, f"ckpt_path={run_dir}", *more])
