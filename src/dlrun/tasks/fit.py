"""Training, the fit phase of a run: the loop from its state, its checkpoints, each epoch to its
observers (metrics.csv, run.log, the display, MLflow, TensorBoard, the Optuna trial), and the end
recorded truthfully (completed, the time budget, diverged, pruned or stopped)."""

import logging
import os
import time

from dlrun import layout, stopping
from dlrun.config.sources import outputs_root
from dlrun.data.batches import worker_count
from dlrun.results import artifacts, checkpoint
from dlrun.sweeps import pruning
from dlrun.tasks import debugging, messages
from dlrun.train import distributed
from dlrun.train.progress import TrainingProgress
from dlrun.train.trainer import Diverged, Interrupted

# An epoch that waits longer than this share of its time for data gets a hint (once a run).
DATA_WAIT_HINT = 0.5

log = logging.getLogger("dlrun")


def share_compile_cache():
    """device.compile: one compile cache for every run under the outputs root (the jobs of a sweep,
    folds, later runs; on a cluster's shared file system, every node), unless
    TORCHINDUCTOR_CACHE_DIR says where. Set before torch.compile is first called, which fixes it."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(layout.compile_cache(outputs_root())))


def compile_ahead(cfg, loop):
    """device.compile: every graph of training and validation compiled before training starts."""
    started = time.perf_counter()
    loop.compile_ahead()
    messages.phase(cfg, f"device.compile: compiled in {time.perf_counter() - started:.1f} s before training (not "
                        f"counted in trainer.max_time; the compiled code is cached in "
                        f"{os.environ.get('TORCHINDUCTOR_CACHE_DIR')})")


def fit(cfg, loop, state, run, summary, observers):
    """Train `loop` from `state`: checkpoints into `run`, each epoch to its observers (metrics.csv,
    run.log, the display, MLflow, TensorBoard, the Optuna trial), and the end recorded truthfully."""
    tensorboard = _tensorboard(cfg, run)
    log.info("training on %s from epoch %d", loop.device, state.epoch)
    _averaging_note(cfg, loop)
    try:
        with TrainingProgress(cfg.trainer.max_epochs, cfg.trainer.batch_size, cfg.trainer.monitor,
                              loop.task, state.epoch, messages.shows(cfg)) as progress, \
                debugging.profiled(loop, run.profile, cfg.trainer.profile_steps, note=lambda t: messages.phase(cfg, t)), \
                debugging.anomaly_detection(cfg.trainer.detect_anomaly):
            watchers = _epoch_watchers(cfg, loop, run, progress, (*observers, tensorboard))
            loop.fit(state, _checkpoint_writer(run), stopping.current(), on_epoch=lambda st, row: [w(st, row) for w in watchers],
                     on_step=progress.step, on_validation=_step_validations(cfg, run, state))
            if state.timed_out:
                messages.phase(cfg, f"trainer.max_time={cfg.trainer.max_time:g} s reached at step {state.step}: "
                               f"checkpoints/last.pt holds the exact position (continue with: "
                               f"{messages.resume_command(run.root, 'trainer.max_time=...')}); the results are those "
                               f"of best.pt.")
        if cfg.trainer.overfit_batches:
            summary.data["overfit_check"] = verdict = debugging.overfit_verdict(state.history, cfg.trainer.overfit_batches)
            messages.phase(cfg, verdict["text"])
    except (Diverged, pruning.Pruned, Interrupted) as exc:
        raise _fit_stopped(exc, state, run, summary) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()


def warn_if_world_changed(ckpt, batch_size):
    """A run continued by another number of processes than trained it steps with another global
    batch (trainer.batch_size is per process): said, with both numbers, not silently changed."""
    before, now = ckpt.get("world_size", 1), distributed.shard()[1]
    if before != now:
        messages.warn(f"this run was trained by {before} process(es) and continues with {now}: the global batch "
                      f"changes from {before * batch_size} to {now * batch_size} (trainer.batch_size={batch_size} "
                      f"per process), and the learning rate and schedule are not adjusted")


def _checkpoint_writer(run):
    """save(name, state) for the loop: rank 0 writes checkpoints/<name>.pt (an epoch's best, last and
    kept ones are one state, serialized once); save(name, None) removes a kept epoch's file."""
    written = {}

    def save(name, ckpt):
        if not distributed.is_main():  # rank 0 keeps the checkpoints; the others' scratch holds none
            return
        if ckpt is None:
            run.checkpoint(name).unlink(missing_ok=True)
            return
        if written.get("state") is not ckpt:
            written.update(state=ckpt, data=checkpoint.serialize(ckpt))
        checkpoint.write(run.checkpoint(name), written["data"])

    return save


def _epoch_watchers(cfg, loop, run, progress, observers):
    """What sees each finished epoch (state, row): the record (metrics.csv, run.log), the display,
    and the observers asked for (the MLflow run, the Optuna trial, TensorBoard; None when not)."""
    tracker, trial, tensorboard = observers

    hinted = []

    def record(state, row):
        artifacts.write_csv(run.metrics, state.history)
        log.info("epoch %d: %s", state.epoch, {k: round(v, 6) for k, v in row.items()})
        progress.epoch(state, row)
        if row.get("data_wait", 0) > DATA_WAIT_HINT and not hinted:
            hinted.append(state.epoch)
            messages.phase(cfg, f"training waited for its data {row['data_wait']:.0%} of epoch {state.epoch}: "
                           f"{_feeding_advice(cfg, loop)}")
        if state.stopped_early:
            es = cfg.trainer.early_stopping
            messages.phase(cfg, f"early stopping at epoch {state.epoch}: {cfg.trainer.monitor} has not improved by more than "
                           f"{es.min_delta} for {es.patience} epochs; the best, {state.best_value:.4f}, was at epoch "
                           f"{state.best_epoch} (checkpoints/best.pt).")

    def scalars(state, row):
        values = {k: v for k, v in row.items() if k != "epoch"}
        if tracker is not None:
            tracker.log_metrics(values, state.epoch)
        if tensorboard is not None:
            for key, value in values.items():
                tensorboard.add_scalar(key, value, state.epoch)
            tensorboard.flush()

    def report_to_trial(state, row):
        trial.after_epoch(state.epoch, cfg.trainer.monitor, row[cfg.trainer.monitor], last=not loop.policy.running(state))

    return [record, scalars] + ([report_to_trial] if trial is not None else [])


def _feeding_advice(cfg, loop):
    """What would feed a training that waits for its data."""
    workers = loop.train_batches.workers
    if loop.train_batches.path != "loader":
        return ("its batches are held in memory, and preparing them (augmentation, resizing) takes that time; "
                "a larger trainer.batch_size spreads it")
    if workers == 0:
        auto = worker_count("auto")
        return (f"trainer.num_workers=auto would read batches in parallel ({auto} worker{'s' if auto != 1 else ''} "
                f"on this machine's {os.cpu_count()} cores)")
    return f"{workers} DataLoader workers do not keep up; more of them, or a dataset held in memory, would"


def _step_validations(cfg, run, state):
    """on_validation(state, row) for validations within epochs, into val_steps.csv; a resume keeps
    the rows up to its checkpoint's step."""
    val_steps = [row for row in _read_rows(run.val_steps) if float(row["step"]) <= state.step]

    def on_validation(state, row):
        val_steps.append(row)
        artifacts.write_csv(run.val_steps, val_steps)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val/"))
        messages.phase(cfg, f"step {row['step']} (epoch {row['epoch']:.2f}): {shown}")

    return on_validation


def _fit_stopped(exc, state, run, summary):
    """The record of a fit that did not run its course, and the error that says so."""
    if isinstance(exc, pruning.Pruned):
        summary.finish("pruned", state, error=exc)
        return exc
    if isinstance(exc, Diverged):
        kept = (f"checkpoints/last.pt keeps epoch {state.epoch}, the last good one." if run.checkpoint("last").is_file()
                else "No checkpoint had been written yet.")
        error = Diverged(f"{exc} {kept} Try a lower optimizer.lr, gradient clipping (regularization=grad_clip), or "
                         f"trainer.skip_nonfinite=N to skip that many bad batches.")
        summary.finish("diverged", state, error=error)
        return error
    error = Interrupted(f"{exc} Resume with: {messages.resume_command(run.root)}", exc.exit_code)
    summary.finish("interrupted", state, error=error)
    return error


def _read_rows(path):
    return artifacts.read_csv(path) if path.is_file() else []


def _averaging_note(cfg, loop):
    """Which weights stand for the model when averaging is on."""
    averaging = cfg.trainer.averaging
    if averaging.kind == "ema":
        messages.phase(cfg, f"EMA of the weights (decay {averaging.ema_decay}): the averaged weights are validated, kept in "
                       f"best.pt, evaluated and exported")
    elif averaging.kind == "swa":
        messages.phase(cfg, f"SWA from epoch {loop.averaging.start_epoch + 1}: from then on the average of the epochs' weights "
                       f"is validated, kept in best.pt, evaluated and exported")


def _tensorboard(cfg, run):
    """A TensorBoard writer into the run's tensorboard/ with logger=tensorboard (rank 0 only)."""
    if cfg.logger != "tensorboard" or not distributed.is_main():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run.root / "tensorboard"))
