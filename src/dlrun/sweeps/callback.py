"""The Hydra callback around a multirun (conf/config.yaml): the sweep's stop (dlrun/stopping.py)
installed as it starts, the leaderboard written as it ends, and the exit code of the whole sweep."""

import logging
import os
import signal
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from dlrun.errors import DlrunError, first_line
from dlrun.layout import SweepDir
from dlrun.stopping import EXIT_CODES, SweepStop
from dlrun.sweeps import tracking
from dlrun.sweeps.pages import write
from dlrun.sweeps.resume import planned_jobs, resume_command


def _stop(config, stop, exit_code):
    """End an interrupted sweep, whichever sweeper ran it: the leaderboard with its interrupted
    and not started jobs, the command that continues it, and the signal's exit code."""
    folder = stop.folder
    stop.wind_down()
    jobs = planned_jobs(folder)
    pending = [(str(k), job) for k, job in enumerate(jobs or []) if not SweepDir(folder).job(k).root.is_dir()]
    rows, _ = write(folder, pending=pending)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("completed", "interrupted", "failed")}
    left = f"{len(pending)} not started" if jobs is not None else "the trials left not started"
    _end_tracked_sweep(config, folder, "KILLED")
    from dlrun.console import error

    error(f"sweep interrupted: {counts['completed']} completed, {counts['interrupted']} interrupted, "
          f"{counts['failed']} failed, {left}; leaderboard: {SweepDir(folder).summary_md}. "
          f"Resume with: {resume_command(folder)}", title=None)
    sys.exit(exit_code)


def _stop_at_once(folder):
    """A second Ctrl-C while the sweep winds down: exit now, with one line; every file written so
    far is whole (written atomically), and the resume command continues from there. The process
    ends here, not through an exception: the signal lands anywhere in Hydra's code, and an
    exception raised inside OmegaConf's half-done update would end as another error, exit 1."""
    SweepStop(folder).clear()
    from dlrun.console import error

    resume = f" Resume with: {resume_command(folder)}" if SweepDir(folder).multirun.is_file() else ""
    error(f"sweep stopped at once by a second Ctrl-C; the leaderboard was not updated.{resume}", title=None)
    logging.shutdown()  # run.log's last lines
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODES[signal.SIGINT])


class Leaderboard(Callback):
    """Around a multirun: the first Ctrl-C or SIGTERM between jobs stops the sweep (one during a
    job stops that job, which stops the sweep: job.run_from_hydra); at the end, the leaderboard,
    and a non-zero exit if a job failed or the sweep was interrupted."""

    stop = None          # the sweep's stop (stopping.SweepStop), from the multirun's start
    stopped_with = None  # the exit code of a stopped sweep, once its end has read it

    def on_multirun_start(self, config, **kwargs):
        folder = Path(config.hydra.sweep.dir)
        tracker = tracking.tracker_of(config.get("logger"))
        if tracker is not None:
            try:
                tracking.check(config)
                tracker.start_sweep(config, folder)
            except DlrunError as exc:  # before any job: one line
                from dlrun.console import error

                error(str(exc))
                sys.exit(exc.exit_code)

        self.stop = SweepStop(folder)
        self.stop.clear()  # left by a process that is gone (kill -9): this sweep is not stopping
        self.stop.install(at_once=lambda: _stop_at_once(folder))

    def on_multirun_end(self, config, **kwargs):
        """The leaderboard; Hydra would turn an exception here into a warning and exit 0, so a
        leaderboard that cannot be written is one line and exit 1."""
        folder = Path(config.hydra.sweep.dir)
        if not folder.is_dir():
            return
        try:
            self._end(config, folder)
        except Exception as exc:
            from dlrun.console import error

            error(f"the leaderboard of {folder} could not be written ({first_line(exc)}); rebuild it with: "
                  f"dlrun leaderboard {folder}")
            sys.exit(self.stopped_with or 1)

    def _end(self, config, folder):
        stop = self.stop or SweepStop(folder)
        self.stopped_with = code = stop.requested()
        if code is not None:
            _stop(config, stop, code)
        rows, paired = write(folder)
        failed = [r for r in rows if r["status"] in ("failed", "diverged")]
        _end_tracked_sweep(config, folder, bool(failed))
        done = sum(r["status"] == "completed" for r in rows)
        more = {status: sum(r["status"] == status for r in rows) for status in ("interrupted", "pruned")}
        print(f"leaderboard: {SweepDir(folder).summary_md} ({done} completed, {len(failed)} failed"
              + "".join(f", {n} {status}" for status, n in more.items() if n) + ")")
        if paired:
            print(paired["verdict"])
        if more["interrupted"]:  # left so by the launcher (a SLURM job out of requeues): the sweep is not done
            from dlrun.console import error

            error(f"{more['interrupted']} job(s) interrupted and not continued; their summary.json says why. "
                  f"Resume with: {resume_command(folder)}")
        if failed or more["interrupted"]:
            sys.exit(1)


def _end_tracked_sweep(config, folder, failed):
    """With a tracker (logger=mlflow, wandb), the leaderboard goes to the sweep's own run there."""
    tracker = tracking.tracker_of(config.get("logger"))
    if tracker is not None:
        tracker.end_sweep(config, folder, failed)
