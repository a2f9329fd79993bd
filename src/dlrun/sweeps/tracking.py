"""Experiment trackers beside the CSV record: `logger=mlflow` (mlflow_tracking) and `logger=wandb`
(wandb_tracking), one table entry each.

A tracker module provides `TrackedRun(cfg, run_dir, sweep_dir)` (`start`, `log_metrics(values,
step)`, `finish(outcome, error)`), `check(cfg)` (before the run: what it needs answers), and
`start_sweep(cfg, sweep_dir)` / `end_sweep(cfg, sweep_dir, failed)` around a sweep. What a run
ends with (its outcome, final metrics and files) is read here, once, for all of them.
"""

import contextlib
import importlib
import importlib.util

from dlrun.errors import ConfigError
from dlrun.layout import SweepDir
from dlrun.results import record

# logger -> (the tracker's module, the package it needs, the extra that installs it)
TRACKERS = {
    "mlflow": ("dlrun.sweeps.mlflow_tracking", "mlflow", "tracking"),
    "wandb": ("dlrun.sweeps.wandb_tracking", "wandb", "wandb"),
}


def tracker_of(logger):
    """The tracker module of `logger`, or None for the loggers that only write files."""
    return importlib.import_module(TRACKERS[logger][0]) if logger in TRACKERS else None


def check(cfg):
    """The tracker's package is installed, and what it tracks to answers (one clear error)."""
    if cfg.logger not in TRACKERS:
        return
    _, package, extra = TRACKERS[cfg.logger]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"logger={cfg.logger} needs the {package} package: pip install {package} "
                          f"(or pip install 'dlrun[{extra}]'). CSV metrics are written either way.")
    tracker_of(cfg.logger).check(cfg)


def outcome(exc):
    """How a run ended, as its record says: finished, interrupted, pruned, diverged or failed."""
    if exc is None:
        return "finished"
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else getattr(exc, "status", "failed")


@contextlib.contextmanager
def tracked(cfg, run_dir, enabled, sweep_dir=None):
    """The tracked run of this run around its work (None unless `enabled` and the logger is a
    tracker); it ends with the run's outcome."""
    tracker = tracker_of(cfg.logger) if enabled else None
    if tracker is None:
        yield None
        return
    run = tracker.TrackedRun(cfg, run_dir, sweep_dir)
    try:
        yield run
    except BaseException as exc:
        run.finish(outcome(exc), exc)
        raise
    run.finish(outcome(None))


def final_metrics(run):
    """What a run ends with, from its summary.json: ({"test/<metric>": ..., "objective": ...},
    the epochs it ran); nothing when it wrote none."""
    if not run.summary.is_file():
        return {}, 0
    summary = record.read(run.summary)
    final = {f"test/{k}": v for k, v in (summary.get("test") or {}).items() if is_number(v)}
    if is_number(summary.get("objective")):
        final["objective"] = summary["objective"]
    return final, summary.get("epochs_run") or 0


def files_of(run):
    """The files a tracker keeps of a run, those written: (path, its name in the run directory)."""
    paths = (run.summary, run.metrics, run.report, run.checkpoint("best"))
    return [(path, path.relative_to(run.root).as_posix()) for path in paths if path.is_file()]


def sweep_files(sweep_dir):
    """The files a tracker keeps of a sweep, those written: its leaderboard."""
    sweep = SweepDir(sweep_dir)
    return [path for path in (sweep.summary_csv, sweep.summary_md, sweep.leaderboard) if path.is_file()]


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
