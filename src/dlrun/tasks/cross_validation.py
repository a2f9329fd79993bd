"""k-fold cross-validation (cv.folds > 1): a loop of whole runs, one per fold, around the run
path; the parent run gets folds.csv, the mean and std of every metric, and its own report."""

import numpy as np
from omegaconf import open_dict

from dlrun import build
from dlrun import data as datasets
from dlrun.config import sources as config
from dlrun.errors import DlrunError
from dlrun.layout import RunDir
from dlrun.results import artifacts, report
from dlrun.results.summary import Summary
from dlrun.tasks import messages
from dlrun.train.trainer import Interrupted


def cross_validate(cfg, run, device, overrides, run_fold, config_dir=None, sweep_dir=None):
    """k-fold cross-validation: fold i is a whole run in fold_<i>/ (cv.fold=i), run by
    `run_fold` (the run path, job.run); the parent gets folds.csv, mean and std of every
    metric, and its own report.

    Resuming (ckpt_path=<this run>) continues every fold from its last.pt (a
    completed fold at max_epochs is only evaluated again); task=eval evaluates
    every fold's best.pt. The data is loaded once, and a split that cannot be made
    (more folds than rows of a class) is refused before anything is written."""
    raw = build.raw_dataset(cfg)
    datasets.split_rows(raw, cfg.split, (cfg.cv.folds, 0, cfg.cv.stratified), cfg.seed)  # labels only
    summary = Summary(run.root, cfg, device)
    summary.start_cv()
    source = RunDir(config.run_dir_of(cfg.ckpt_path)) if cfg.ckpt_path else None
    rows, results = [], []
    try:
        for i in range(cfg.cv.folds):
            messages.phase(cfg, f"fold {i + 1} of {cfg.cv.folds} (cv.fold={i}) in {run.fold(i).root}")
            result = run_fold(_fold_config(cfg, i, source), run.fold(i).root, keep_failed=True,
                              sweep_dir=sweep_dir, overrides=overrides, raw=raw, config_dir=config_dir)
            results.append(result)
            rows.append(_fold_row(i, result))
        return _conclude(cfg, run, summary, rows, results)
    except (KeyboardInterrupt, Interrupted) as exc:  # a fold stopped in training, or a stop between folds
        raise _interrupted(exc, cfg, run, summary, len(rows)) from None


def _conclude(cfg, run, summary, rows, results):
    """Every fold done: folds.csv, the parent's record, folds.png and its report."""
    artifacts.write_csv(run.folds, rows)
    result = summary.conclude_cv(rows, _mean_std(rows), results)
    if "curves" in cfg.plots and cfg.task == "train":
        _draw_folds(run, rows, result["monitor"]["name"])
    if cfg.report:
        report.write(run.root, result, cfg)
    return summary.write()


def _interrupted(exc, cfg, run, summary, done):
    """Record a stop of the parent truthfully: which folds are complete, and the one command that
    continues them all (a fold's own record names its own directory, not the parent's)."""
    where = (f"in fold {done + 1} of {cfg.cv.folds} ({run.fold(done).root.name}); the folds before it are complete"
             if done < cfg.cv.folds else "while writing the cross-validation's results; every fold is complete")
    again = (f"dlrun task=eval ckpt_path={cfg.ckpt_path}" if cfg.task == "eval" else
             f"dlrun ckpt_path={run.root} (each fold continues from its last.pt; a complete one is only evaluated)")
    error = Interrupted(f"interrupted {where}. Continue with: {again}", getattr(exc, "exit_code", 130))
    summary.data.update(status="interrupted", error=str(error))
    summary.write()
    return error


def _fold_config(cfg, fold, source):
    """The config of one fold: its index, and its own checkpoint when resuming or evaluating."""
    fold_cfg = cfg.copy()
    with open_dict(fold_cfg):
        fold_cfg.cv.fold = fold
        fold_cfg.ckpt_path = None
        if source is not None:
            ckpt = source.fold(fold).checkpoint("best" if cfg.task == "eval" else "last")
            if ckpt.is_file():
                fold_cfg.ckpt_path = str(ckpt)
            elif cfg.task == "eval":
                raise DlrunError(f"ckpt_path={cfg.ckpt_path} is a {cfg.cv.folds}-fold run, but fold {fold} has no "
                                 f"checkpoints/best.pt to evaluate.")
    return fold_cfg


def _fold_row(fold, result):
    """One fold's line of folds.csv: its best epoch, and its test metrics, or (without a
    test split) its validation metrics at the best epoch."""
    monitor = result.get("monitor", {})
    row = {"fold": fold, "epochs_run": result.get("epochs_run"), "best_epoch": monitor.get("best_epoch"),
           "best_value": monitor.get("best_value")}
    row.update({f"test/{k}": v for k, v in (result.get("test") or {}).items() if isinstance(v, float)})
    row.update({k: v for k, v in (result.get("best_val") or {}).items() if isinstance(v, float)})
    return row


def _draw_folds(run, rows, monitor):
    """plots/folds.png, the parent's training curves: every fold's monitored metric per epoch,
    and the held-out metric that says most (accuracy, R², else the loss) of each fold."""
    from dlrun.results import plots

    tested = next((key for split in ("test", "val") for name in ("accuracy", "r2", "loss")
                   if (key := f"{split}/{name}") in rows[0]), None)
    histories = [artifacts.read_history(run.fold(row["fold"]).metrics) for row in rows]
    if tested is None or not all(histories):
        return
    job = plots.Job(plots.folds, (histories, monitor, [row["best_epoch"] for row in rows],
                                  (tested, [row[tested] for row in rows])), run.plots / "folds.png")
    job.draw()


def _mean_std(rows):
    """Mean and standard deviation over folds of every metric that has a value."""
    stats = {}
    for key in (k for k in rows[0] if k not in ("fold", "best_epoch", "epochs_run")):
        values = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
        if not np.isnan(values).all():  # e.g. no best value when evaluating
            stats[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    return stats
