"""The one run path around the flow of flow.py: config checks before torch is
even imported, failure records, the Hydra task function, and the
skip-or-continue logic of resumed sweeps.

Nothing here imports torch, so a bad config fails in well under a second.
"""

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

from omegaconf import open_dict

from dlrun import console, layout, stopping
from dlrun.config import validate
from dlrun.errors import DlrunError, first_line
from dlrun.layout import RunDir
from dlrun.results import artifacts, record

log = logging.getLogger("dlrun")


def run(cfg, run_dir, keep_failed=False, sweep_dir=None, **flow_args):
    """The one run path (the CLI, `dlrun.run()`, every sweep job and every
    cross-validation fold): check the config, run the flow in `run_dir`, and
    record a failure in summary.json before raising it. Returns the summary.

    A run that fails before it starts leaves no directory behind, unless
    `keep_failed` (a sweep's job, a fold) records the failure there. Stops are
    stopping.current()'s, and a job of the sweep in `sweep_dir` stops with it."""
    run_dir = Path(run_dir)
    try:
        validate.check_config(cfg)
        from dlrun.tasks.flow import execute

        with stopping.current().watching(sweep_dir):
            return execute(cfg, run_dir, run, sweep_dir=sweep_dir, **flow_args)
    except KeyboardInterrupt as exc:  # a second Ctrl-C in training, or a stop outside it; every file is whole
        what = str(exc).splitlines()[0] if str(exc) else "stopped by a signal"
        _fail(KeyboardInterrupt(f"{what}; checkpoints/last.pt, if there is one, is the last saved position"),
              run_dir, keep=keep_failed, status="interrupted")
        raise
    except BaseException as exc:
        _fail(exc, run_dir, keep=keep_failed, status=getattr(exc, "status", "failed"))
        raise


def run_from_hydra(cfg):
    """The Hydra task function: run, report, and return the objective for sweepers.

    In a sweep a failed job does not stop the others: it is recorded in its
    summary.json and returns NaN; the leaderboard lists it and the command
    exits non-zero at the end.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun rank 0 speaks; the others only warn
        log.setLevel(logging.WARNING)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    folder = Path(hydra_cfg.sweep.dir)
    if multirun and stopping.SweepStop(folder).requested() is not None:  # a stopping sweep starts no further job
        _remove_unstarted(run_dir)
        return float("nan")
    if multirun and cfg.resume:
        done = _resume_job(cfg, run_dir)
        if done is not None:
            return done
    try:
        with _where_this_rank_writes(run_dir, multirun) as where:
            summary = run(cfg, where, keep_failed=multirun, sweep_dir=folder if multirun else None,
                          job_num=hydra_cfg.job.num if multirun else None, show_config=not multirun,
                          config_dir=user_config_dir(hydra_cfg))
    except (KeyboardInterrupt, DlrunError) as exc:
        return _ended_early(exc, run_dir, folder if multirun else None)
    except Exception:  # a bug: recorded by run(); Hydra shows the traceback (in a sweep, run.log has it)
        if not multirun:
            raise
        log.exception("job failed")
        return float("nan")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        console.summary_table(summary)
    return summary["objective"]


def _ended_early(exc, run_dir, folder):
    """A run that stopped (a signal, the sweep's stop, preemption) or failed as it may (a
    DlrunError): say so once, and exit with its code, or in a sweep (`folder`) return NaN and
    stop the sweep with a stopped job."""
    if folder is not None and stopping.current().preempted:  # the cluster launcher requeues the job; the sweep goes on
        log.warning("stopped by the cluster's scheduler (preemption or time limit) with its exact position in "
                    "%s; submitit requeues it (after a time limit, at most hydra.launcher.max_num_timeout times)",
                    RunDir(run_dir).checkpoint("last"))
        return float("nan")
    stopped = isinstance(exc, KeyboardInterrupt) or exc.status == "interrupted"
    if int(os.environ.get("RANK", "0")) > 0 and (stopped or getattr(exc, "told", False)):
        pass  # under torchrun rank 0 alone says where the run is, or which process failed and why
    elif isinstance(exc, KeyboardInterrupt):
        _say_stopped(run_dir)
    elif exc.status == "pruned":  # an Optuna trial stopped by its pruner: the sweep goes on
        console.console.print(f"job {run_dir.name}: {exc}", highlight=False)
    else:
        console.error(str(exc), title=None if stopped else "error")
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise exc
    code = getattr(exc, "exit_code", 130)
    if folder is None:
        sys.exit(code)
    if stopped:  # the sweep stops with its job
        stopping.SweepStop(folder).request(code)
    return float("nan")


@contextlib.contextmanager
def _where_this_rank_writes(run_dir, multirun):
    """The job's directory; for the other processes of a sweep's DDP job (SLURM's tasks), a scratch
    directory removed when they end, however they end. (A single run under torchrun gets its
    scratch directory from cli.prepare_argv, before Hydra writes anything.)"""
    if not multirun or int(os.environ.get("RANK", "0")) == 0:
        yield run_dir
        return
    scratch = layout.rank_scratch()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def user_config_dir(hydra_cfg):
    """The user's --config-dir, as Hydra records it among the config sources."""
    return next((source.path for source in hydra_cfg.runtime.config_sources if source.provider == "command-line"),
                None)


def _say_stopped(run_dir):
    """One line after a stop that did not wait for the run to save (a second Ctrl-C)."""
    file = RunDir(run_dir).summary
    kept = record.read(file) if file.is_file() else {}
    if kept.get("status") == "interrupted":
        from dlrun.tasks.messages import resume_command  # here: the module imports torch, this one does not

        console.error(f"{kept.get('error')}. Resume with: {resume_command(run_dir)}", title=None)
    else:
        console.error("stopped before the run started; nothing was kept.", title=None)


def _resume_job(cfg, run_dir):
    """For a resumed sweep: a completed job's objective, or None after pointing
    ckpt_path at an interrupted job's last.pt."""
    file = RunDir(run_dir).summary
    previous = record.read(file) if file.is_file() else {}
    if previous.get("status") == "completed":
        console.console.print(f"job {run_dir.name}: completed before, skipped")
        return previous.get("objective")
    last = RunDir(run_dir).checkpoint("last")
    if last.is_file() and not cfg.ckpt_path:
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    return None


def _fail(exc, run_dir, keep=False, status="failed"):
    """Record `exc` as `status`. A run that failed before it started leaves no
    directory behind, unless `keep` records the failure there."""
    message = first_line(exc)
    summary_file = RunDir(run_dir).summary
    if not summary_file.is_file():
        if keep:
            _write(summary_file, {"status": status, "error": message, "run_dir": str(run_dir)})
        else:
            _remove_unstarted(run_dir)
        return
    summary = record.read(summary_file)
    if summary.get("status") != "running":
        return  # not started (a refused resume) or already recorded by the flow: the record stays as it is
    summary.update(status=status, error=message)
    _write(summary_file, summary)
    log.error("%s", exc)


def _write(file, summary):
    """Write a failure record; when even that fails (a full disk), the record on disk stays
    the last one written ("running", never "completed") and the error is still reported."""
    try:
        record.write(file, summary)
    except DlrunError as exc:
        log.error("%s", exc)


@contextlib.contextmanager
def record_kept_unless_started(run_dir):
    """A resume in place that fails before it starts leaves the run's record as it was.
    Hydra rewrites the run's .hydra/ before dlrun can check anything, so those files
    are put back when summary.json shows the run never started."""
    run = RunDir(run_dir)
    if not run.summary.is_file():
        yield
        return
    summary = run.summary.read_bytes()
    saved = {path: path.read_bytes() for path in run.hydra.glob("*.yaml")}
    try:
        yield
    finally:
        if run.summary.is_file() and run.summary.read_bytes() == summary:
            for path in set(run.hydra.glob("*.yaml")) - set(saved):
                path.unlink()
            for path, data in saved.items():
                artifacts.atomic_write(path, lambda handle, data=data: handle.write(data))


def _remove_unstarted(run_dir):
    """Remove what Hydra put in a run directory that never started (and nothing else): a job that
    started in an earlier attempt (it has a summary.json) keeps all it has."""
    if RunDir(run_dir).summary.is_file():
        return
    logging.shutdown()
    shutil.rmtree(RunDir(run_dir).hydra, ignore_errors=True)
    RunDir(run_dir).log.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty: the user's own directory, left as it was
