"""The flow of one run, from the composed config to the summary:

    validate -> seed + device -> dataset -> model -> loss, optimizer, schedule
      -> fit -> evaluate best.pt on test -> artifacts -> objective
"""

import logging
from pathlib import Path

import numpy as np

from dlrun import artifacts, build, checkpoint, console, distributed, report, validate
from dlrun import device as devices
from dlrun.evaluation import evaluate, write_tables
from dlrun.interrupt import StopFlag
from dlrun.summary import Summary
from dlrun.trainer import Diverged, FitState, Interrupted

log = logging.getLogger("dlrun")


def execute(cfg, run_dir, show_config=False, job_num=None):
    """Run the config in `run_dir`; returns the summary (also in summary.json).

    The caller has run `validate.check_config` (before torch was imported);
    `job_num` is the job's number in a sweep (it picks a GPU when there are several)."""
    run_dir = Path(run_dir)
    build.load_components(cfg)
    validate.check_components(cfg)
    device = distributed.setup(devices.for_job(devices.select(cfg.device.name), job_num))
    ckpt = checkpoint.load(cfg.ckpt_path) if cfg.ckpt_path else None
    if show_config:
        console.config_tree(cfg)
    devices.configure(cfg.device.deterministic)
    devices.seed_everything(cfg.seed)
    summary = Summary(run_dir, cfg, device)
    if cfg.cv.folds > 1:
        return _cross_validate(cfg, run_dir, device, summary)
    data = build.dataset(cfg)
    validate.check_monitor(cfg.trainer.monitor, data.task)
    loop = build.loop(cfg, data, build.model(cfg, data), device)
    summary.start(data)
    if cfg.task == "eval":
        checkpoint.load_model_state(loop.model, ckpt, cfg.ckpt_path)
        state = FitState()
    else:
        state = loop.load_state_dict(ckpt, cfg.ckpt_path) if ckpt else FitState()
        _fit(cfg, loop, state, run_dir, summary)
        if not distributed.is_main():  # rank 0 evaluates and writes the results
            distributed.shutdown()
            return summary.finish("completed", state)
        _load_best(loop, run_dir)
    ev = _test(cfg, run_dir, loop, data, state)
    result = summary.finish("completed", state, ev.metrics)
    if cfg.report:
        report.write(run_dir, result, cfg, ev.per_class, state.history)
    distributed.shutdown()
    return result


def _fit(cfg, loop, state, run_dir, summary):
    tensorboard = _tensorboard(cfg, run_dir)

    def on_epoch(state, row):
        artifacts.write_csv(run_dir / "metrics.csv", state.history)
        log.info("epoch %d: %s", state.epoch, {k: round(v, 6) for k, v in row.items()})
        progress.epoch(state, row, cfg.trainer.monitor)
        if tensorboard is not None:
            for key, value in row.items():
                if key != "epoch":
                    tensorboard.add_scalar(key, value, state.epoch)
            tensorboard.flush()

    log.info("training on %s from epoch %d", loop.device, state.epoch)
    try:
        with StopFlag() as flag, console.EpochProgress(cfg.trainer.max_epochs, state.epoch,
                                                       cfg.trainer.progress) as progress:
            loop.fit(state, run_dir / "checkpoints", flag, on_epoch=on_epoch, on_step=progress.step)
    except Diverged:
        summary.finish("diverged", state)
        raise
    except Interrupted:
        summary.finish("interrupted", state)
        raise
    finally:
        if tensorboard is not None:
            tensorboard.close()


def _tensorboard(cfg, run_dir):
    """A TensorBoard writer into run_dir/tensorboard with logger=tensorboard (rank 0 only)."""
    if cfg.logger != "tensorboard" or not distributed.is_main():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _load_best(loop, run_dir):
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        checkpoint.load_model_state(loop.model, checkpoint.load(best), best)


def _test(cfg, run_dir, loop, data, state):
    """Evaluate the loop's model on the test split and write predictions, plots and the export."""
    ev = evaluate(loop, build.test_batches(cfg, data, loop.device), data)
    write_tables(run_dir, ev, data.class_names, probabilities=cfg.probabilities)
    if cfg.plots:
        from dlrun import plots

        plots.draw_all(run_dir / "plots", cfg.plots, loop, data, ev, state.history)
    if cfg.export:
        from dlrun import export

        export.write(cfg.export, loop.model, data, run_dir / "checkpoints")
    return ev


def _cross_validate(cfg, run_dir, device, summary):
    """One model per fold in fold_<i>/, then mean and std of every test metric."""
    folds = []
    for i in range(cfg.cv.folds):
        fold_dir = run_dir / f"fold_{i}"
        data = build.dataset(cfg, cv_fold=(cfg.cv.folds, i, cfg.cv.stratified))
        validate.check_monitor(cfg.trainer.monitor, data.task)
        devices.seed_everything(cfg.seed + i)
        loop = build.loop(cfg, data, build.model(cfg, data), device)
        if i == 0:
            summary.start(data)
        state = FitState()
        _fit(cfg, loop, state, fold_dir, summary)
        _load_best(loop, fold_dir)
        ev = _test(cfg, fold_dir, loop, data, state)
        folds.append({"fold": i, "best_epoch": state.best_epoch, "best_value": state.best_value,
                      **{k: v for k, v in ev.metrics.items() if isinstance(v, float)}})
    artifacts.write_csv(run_dir / "folds.csv", folds)
    keys = [k for k in folds[0] if k not in ("fold", "best_epoch")]
    stats = {k: {"mean": float(np.nanmean([f[k] for f in folds])), "std": float(np.nanstd([f[k] for f in folds]))}
             for k in keys}
    return summary.finish_cv(folds, stats)
