"""The flow of one run, from the composed config to the summary:

    validate -> seed + device -> dataset -> model -> loss, optimizer, schedule
      -> fit -> evaluate best.pt on test -> artifacts -> objective

Cross-validation is a loop of this same flow, one call per fold.
"""

import logging

import numpy as np
from omegaconf import open_dict

from dlrun import build, console, registry, stopping
from dlrun import data as datasets
from dlrun.config import sources as config
from dlrun.config import validate
from dlrun.errors import ConfigError, DlrunError
from dlrun.layout import RunDir
from dlrun.results import artifacts, checkpoint, plot_workers, report
from dlrun.results.evaluation import evaluate, write_tables
from dlrun.results.summary import Summary
from dlrun.sweeps import pruning, tracking
from dlrun.tasks import debugging, inspection, job
from dlrun.train import device as devices
from dlrun.train import distributed
from dlrun.train.fit_policy import FitState
from dlrun.train.progress import TrainingProgress
from dlrun.train.trainer import Diverged, Interrupted

log = logging.getLogger("dlrun")


def execute(cfg, run_dir, show_config=False, job_num=None, sweep_dir=None, overrides=None, raw=None,
            config_dir=None):
    """Run the config in `run_dir`; returns the summary (also in summary.json).

    The caller has run `validate.check_config` (before torch was imported);
    `job_num` is the job's number in the sweep in `sweep_dir` (it picks a GPU when there are
    several; the sweep's files say whether it is an Optuna trial or an MLflow child run).
    With `cv.folds > 1`, each fold is one call of this function (see cross_validate).
    `overrides` (default: the run directory's) are recorded in checkpoints, with the user's
    `config_dir` and where the plugins came from; `raw` is the dataset builder's data when the
    caller has it (the folds of a cross-validation)."""
    run = RunDir(run_dir)
    build.load_components(cfg)
    sources = config.code_sources(config_dir, cfg.plugins)
    validate.check_components(cfg)
    device = distributed.setup(devices.for_job(devices.select(cfg.device.name), job_num))
    devices.configure(cfg.device.deterministic)
    overrides = config.run_overrides(run.root) if overrides is None else overrides
    if show_config and distributed.is_main():
        console.show_config(cfg, overrides, device)
    if cfg.cv.folds > 1 and cfg.cv.fold is None:
        return cross_validate(cfg, run, device, overrides, config_dir, sweep_dir)
    if cfg.task == "predict":
        return _predict(cfg, run, device)
    ckpt = checkpoint.load(cfg.ckpt_path, unverified=cfg.trust_unverified_ckpt) if cfg.ckpt_path else None
    if distributed.is_main():  # killed writes of an earlier attempt in this directory
        for folder in (run.root, run.checkpoints, run.plots):
            artifacts.remove_stale_temporaries(folder)
    if ckpt is not None and cfg.task == "train":
        checkpoint.check_same_model_and_data(ckpt, build.plain(cfg), cfg.ckpt_path)
    # Plot workers start now, so that their imports overlap with loading the data and training.
    workers = plot_workers.worker_count(cfg.plots) if distributed.is_main() and cfg.task in ("train", "eval") else 0
    # rank 0 alone tracks the run; the trial of a pruning sweep (one process: see trial_of)
    trial = (pruning.trial_of(sweep_dir, job_num, cfg.trainer.max_epochs, distributed.shard()[1])
             if cfg.task == "train" else None)
    tracks = distributed.is_main() and cfg.task in ("train", "eval")
    with plot_workers.PlotWorkers(workers) as painter, tracking.tracked(cfg, run.root, tracks, sweep_dir) as tracker:
        return _train_or_evaluate(cfg, run, device, overrides, sources, raw, ckpt, painter, (tracker, trial))


def _train_or_evaluate(cfg, run, device, overrides, sources, raw, ckpt, painter, observers):
    """Train (or evaluate, inspect, test learning rates), then test and write the results; the
    plots go to `painter` (plot_workers.PlotWorkers); `observers` are the MLflow run
    (tracking.TrackedRun) and the Optuna trial (pruning.Trial), each None when not asked for."""
    devices.seed_everything(cfg.seed + (cfg.cv.fold or 0))  # each fold its own initial weights
    summary = Summary(run.root, cfg, device)
    data, loop = _prepare(cfg, run, device, overrides, sources, raw, ckpt, summary, observers[0])
    with summary.timed("first_look"):
        _first_look(cfg, run, data, summary.data, painter)
    if cfg.task == "inspect":
        painter.wait()
        return summary.finish("completed", FitState())
    if cfg.task == "lr_find":
        return _lr_find(cfg, run, loop, summary)
    if cfg.task == "eval":
        if not len(data.test):
            raise DlrunError("task=eval evaluates on the test split, and this config has none (split.test=0).")
        loop.use_weights(ckpt, cfg.ckpt_path)
        state = FitState()
        summary.data["evaluated"] = str(checkpoint.resolve(cfg.ckpt_path))
    else:
        state = loop.load_state_dict(ckpt, cfg.ckpt_path) if ckpt else FitState()
        if ckpt:
            _warn_if_world_changed(ckpt, cfg.trainer.batch_size)
        with summary.timed("training"):
            _fit(cfg, loop, state, run, summary, observers)
        if not distributed.is_main():  # rank 0 evaluates and writes the results
            distributed.shutdown()
            return summary.finish("completed", state)
    try:
        _results(cfg, run, loop, data, state, summary, painter)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while the results are written
        raise _interrupted_in_results(exc, cfg, run, summary, state) from None
    distributed.shutdown()
    return summary.write()


def _prepare(cfg, run, device, overrides, sources, raw, ckpt, summary, tracker):
    """The data, the model and its loop, and the start of the record (and of the MLflow run)."""
    data = build.dataset(cfg, raw)
    _without_validation(cfg, data, summary)
    validate.check_monitor(cfg.trainer.monitor, data.task)
    net = build.model(cfg, data)
    if ckpt is not None and cfg.task == "train":
        build.keep_path(data, ckpt)
    about = {"init_from": _init_from(cfg, net) if ckpt is None else None}
    loop = build.loop(cfg, data, net, device, overrides, sources)  # applies model.freeze, so the summary counts it
    if data.extra.get("streamed"):
        _phase(cfg, data.extra["streamed_why"])
    about.update(model_summary=inspection.model_summary(net, data.input_shape),
                 data_summary=inspection.data_summary(data))
    summary.start(data, about)
    if tracker is not None:
        tracker.start()
    return data, loop


def _results(cfg, run, loop, data, state, summary, painter):
    """Test the weights to test, then the tables, plots, exports and report (summary.json last)."""
    with summary.timed("evaluation"):
        if cfg.task == "train":
            _weights_to_test(cfg, run, loop, data, state, summary)
        _decision_threshold(cfg, run, loop, data, summary)
        ev = _test(cfg, run, loop, data)
        _interpretation(run, loop, ev, data, summary)
    with summary.timed("plots"):  # the time the run waits for them: drawn in parallel, begun during training
        _plots(cfg, run, loop, data, ev, state, summary.data, painter)
    with summary.timed("export"):
        _export(cfg, run, loop, data)
    result = summary.conclude("completed", state, ev.metrics if ev else None)
    if cfg.report:
        _phase(cfg, "writing report.html")
        with summary.timed("report"):
            report.write(run.root, result, cfg, ev.per_class if ev else None, state.history)


def _predict(cfg, run, device):
    """task=predict: the checkpoint's model and preprocessing on new inputs, into predictions.csv
    (a run directory's best.pt, else its last.pt)."""
    from dlrun import models
    from dlrun.results import deployment
    from dlrun.tasks import finetune, predict

    summary = Summary(run.root, cfg, device)
    path = checkpoint.resolve(cfg.ckpt_path, "ckpt_path", finetune.WEIGHTS_FIRST)
    ckpt = checkpoint.load(path, unverified=cfg.trust_unverified_ckpt)
    pre, spec = ckpt["preprocessing"], _model_spec(ckpt, path, cfg.trust_run_code)
    net = models.build({k: v for k, v in spec.items() if k not in ("input_shape", "num_outputs")},
                       spec["input_shape"], spec["num_outputs"])
    checkpoint.load_model_state(net, ckpt, path)
    x, ids = predict.read(cfg.predict.input, pre)
    _phase(cfg, f"predicting {len(ids)} input(s) from {cfg.predict.input}")
    out = predict.outputs(deployment.Deployed(net, pre), x, device, cfg.trainer.eval_batch_size)
    threshold = pre.get("threshold") or build.threshold(cfg)
    artifacts.write_csv(run.predictions, predict.rows(ids, out, pre, threshold, cfg.probabilities))
    summary.data.update(problem=pre["task"], classes=pre["class_names"], predicted={
        "input": str(cfg.predict.input), "rows": len(ids), "checkpoint": str(path),
        "file": str(run.predictions)})
    return summary.finish("completed", FitState())


def _model_spec(ckpt, path, trusted):
    """The checkpoint's model, to be built by its registered name: a checkpoint is data, so an
    import path in it (`_target_`, at any depth) is followed only with trust_run_code=true."""
    spec = dict(ckpt["model_spec"])
    targets = list(registry.targets(spec))
    if targets and not trusted:
        raise DlrunError(f"{path} names code to build its model ({', '.join(targets)}). A checkpoint is read as "
                         f"data: add trust_run_code=true if you trust where it came from.")
    return spec


def _lr_find(cfg, run, loop, summary):
    """The learning-rate range test: lr_find.csv, plots/lr_find.png and the suggestions."""
    from dlrun.results import plots
    from dlrun.tasks import lr_finder

    spec = cfg.lr_find
    _phase(cfg, f"learning-rate range test: {spec.steps} steps from lr {spec.min_lr:g} to {spec.max_lr:g}; "
                f"every state is restored afterwards")
    test = lr_finder.run(loop, spec.min_lr, spec.max_lr, spec.steps)
    suggestions = test.suggestions()
    smoothed = test.smoothed
    artifacts.write_csv(run.lr_find, [{"lr": lr, "loss": loss, "smoothed": smooth}
                                      for lr, loss, smooth in zip(test.lrs, test.losses, smoothed)])
    plots.save(plots.lr_range(test.lrs, test.losses, smoothed, suggestions), run.plots / "lr_find.png")
    summary.data["lr_find"] = {"suggestions": suggestions, "recommended": "valley", "steps": len(test.lrs),
                               "stop_reason": test.stop_reason}
    return summary.finish("completed", FitState())


def _init_from(cfg, net):
    """Start from another run's weights (init_from): what was loaded, or None."""
    if not cfg.init_from:
        return None
    from dlrun.tasks import finetune

    loaded = finetune.init_from(net, cfg.init_from, build.patterns(cfg.init_from_exclude), cfg.trust_unverified_ckpt)
    _phase(cfg, finetune.describe(loaded))
    return loaded


def _interrupted_in_results(signal, cfg, run, summary, state):
    """Record a stop during evaluation, plots or report truthfully: what is done, what is not,
    and the command that finishes it."""
    again = (f"dlrun task=eval ckpt_path={cfg.ckpt_path}" if cfg.task == "eval"
             else f"dlrun ckpt_path={run.root} (training is done: it only evaluates and writes the results)")
    error = Interrupted(f"interrupted while evaluating and writing the results; the checkpoints are whole, "
                        f"the test metrics, plots or report are incomplete. Finish with: {again}",
                        getattr(signal, "exit_code", 130))
    summary.finish("interrupted", state, error=error)
    return error


def _fit(cfg, loop, state, run, summary, observers):
    """Train `loop` from `state`: checkpoints into `run`, each epoch to its observers (metrics.csv,
    run.log, the display, MLflow, TensorBoard, the Optuna trial), and the end recorded truthfully."""
    tensorboard = _tensorboard(cfg, run)
    log.info("training on %s from epoch %d", loop.device, state.epoch)
    _averaging_note(cfg, loop)
    try:
        with TrainingProgress(cfg.trainer.max_epochs, cfg.trainer.batch_size, cfg.trainer.monitor,
                              loop.task, state.epoch, _shows(cfg)) as progress, \
                debugging.profiled(loop, run.profile, cfg.trainer.profile_steps, note=lambda t: _phase(cfg, t)), \
                debugging.anomaly_detection(cfg.trainer.detect_anomaly):
            watchers = _epoch_watchers(cfg, loop, run, progress, (*observers, tensorboard))
            loop.fit(state, _checkpoint_writer(run), stopping.current(), on_epoch=lambda st, row: [w(st, row) for w in watchers],
                     on_step=progress.step, on_validation=_step_validations(cfg, run, state))
            if state.timed_out:
                _phase(cfg, f"trainer.max_time={cfg.trainer.max_time:g} s reached at step {state.step}: "
                            f"checkpoints/last.pt holds the exact position (continue with: dlrun ckpt_path={run.root} "
                            f"trainer.max_time=...); the results are those of best.pt.")
        if cfg.trainer.overfit_batches:
            summary.data["overfit_check"] = verdict = debugging.overfit_verdict(state.history, cfg.trainer.overfit_batches)
            _phase(cfg, verdict["text"])
    except (Diverged, pruning.Pruned, Interrupted) as exc:
        raise _fit_stopped(exc, state, run, summary) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()


def _checkpoint_writer(run):
    """save(name, state) for the loop: rank 0 writes checkpoints/<name>.pt; an epoch's best and last
    are one state, serialized once."""
    written = {}

    def save(name, ckpt):
        if not distributed.is_main():  # rank 0 keeps the checkpoints; the others' scratch holds none
            return
        if written.get("state") is not ckpt:
            written.update(state=ckpt, data=checkpoint.serialize(ckpt))
        checkpoint.write(run.checkpoint(name), written["data"])

    return save


def _epoch_watchers(cfg, loop, run, progress, observers):
    """What sees each finished epoch (state, row): the record (metrics.csv, run.log), the display,
    and the observers asked for (the MLflow run, the Optuna trial, TensorBoard; None when not)."""
    tracker, trial, tensorboard = observers

    def record(state, row):
        artifacts.write_csv(run.metrics, state.history)
        log.info("epoch %d: %s", state.epoch, {k: round(v, 6) for k, v in row.items()})
        progress.epoch(state, row)
        if state.stopped_early:
            es = cfg.trainer.early_stopping
            _phase(cfg, f"early stopping at epoch {state.epoch}: {cfg.trainer.monitor} has not improved by more than "
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


def _step_validations(cfg, run, state):
    """on_validation(state, row) for validations within epochs, into val_steps.csv; a resume keeps
    the rows up to its checkpoint's step."""
    val_steps = [row for row in _read_rows(run.val_steps) if float(row["step"]) <= state.step]

    def on_validation(state, row):
        val_steps.append(row)
        artifacts.write_csv(run.val_steps, val_steps)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val/"))
        _phase(cfg, f"step {row['step']} (epoch {row['epoch']:.2f}): {shown}")

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
    error = Interrupted(f"{exc} Resume with: dlrun ckpt_path={run.root}", exc.exit_code)
    summary.finish("interrupted", state, error=error)
    return error


def _read_rows(path):
    return artifacts.read_csv(path) if path.is_file() else []


def _averaging_note(cfg, loop):
    """Which weights stand for the model when averaging is on."""
    averaging = cfg.trainer.averaging
    if averaging.kind == "ema":
        _phase(cfg, f"EMA of the weights (decay {averaging.ema_decay}): the averaged weights are validated, kept in "
                    f"best.pt, evaluated and exported")
    elif averaging.kind == "swa":
        _phase(cfg, f"SWA from epoch {loop.averaging.start_epoch + 1}: from then on the average of the epochs' weights "
                    f"is validated, kept in best.pt, evaluated and exported")


def _first_look(cfg, run, data, record, painter):
    """The model and data summaries of the record, and the plots of the data, before training."""
    if not distributed.is_main():
        return
    inspection.show(record["model_summary"], record["data_summary"], full=cfg.show_config == "full" or
                    cfg.task == "inspect", enabled=cfg.show_config != "none")
    if cfg.plots:
        from dlrun.results import plots

        jobs, skipped = plots.data_jobs(run.plots, cfg.plots, data, record["data_summary"], cfg.regularization.augment,
                                        cfg.seed)
        painter.submit(jobs)
        _skipped(skipped, record)


def _skipped(reasons, record):
    """Plots that were asked for and do not apply: each named with why, in run.log and the summary."""
    for name, why in reasons.items():
        log.info("plot %s skipped: %s", name, why)
    if reasons:
        record["plots_skipped"] = {**record.get("plots_skipped", {}), **reasons}


def _shows(cfg):
    """Whether this process prints progress (under torchrun, rank 0 only)."""
    return bool(cfg.trainer.progress) and distributed.is_main()


def _warn_if_world_changed(ckpt, batch_size):
    """A run continued by another number of processes than trained it steps with another global
    batch (trainer.batch_size is per process): said, with both numbers, not silently changed."""
    before, now = ckpt.get("world_size", 1), distributed.shard()[1]
    if before != now and distributed.is_main():
        text = (f"this run was trained by {before} process(es) and continues with {now}: the global batch changes "
                f"from {before * batch_size} to {now * batch_size} (trainer.batch_size={batch_size} per process), "
                f"and the learning rate and schedule are not adjusted")
        log.warning("%s", text)
        console.error(text, title="warning")


def _phase(cfg, text):
    """What happens next or why training stopped: one line in run.log and, with progress on, in
    the terminal (above the live display while it runs)."""
    log.info("%s", text)
    if _shows(cfg):
        console.console.print(f"[dim]>[/] {text}", highlight=False, soft_wrap=True)


def _tensorboard(cfg, run):
    """A TensorBoard writer into the run's tensorboard/ with logger=tensorboard (rank 0 only)."""
    if cfg.logger != "tensorboard" or not distributed.is_main():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run.root / "tensorboard"))


def _without_validation(cfg, data, summary):
    """Where the validation rows come from; without any (split.val=0) the loop monitors the training
    loss and nothing that needs validation rows is accepted."""
    summary.data["validation"] = data.extra["validation"]
    if len(data.val) or cfg.task != "train":
        return
    monitor = cfg.trainer.monitor
    if monitor.startswith("val/") and monitor != "val/loss":
        raise ConfigError(f"trainer.monitor={monitor} needs validation rows, and split.val=0 keeps none; monitor "
                          f"train/loss or train/accuracy, or keep a validation split.")
    needs = {"dataset.threshold=auto": cfg.dataset.get("threshold") == "auto",
             f"trainer.val_every_n_steps={cfg.trainer.val_every_n_steps}": cfg.trainer.val_every_n_steps}
    for setting, given in needs.items():
        if given:
            raise ConfigError(f"{setting} needs validation rows, and split.val=0 keeps none; remove it or keep a "
                              f"validation split.")
    with open_dict(cfg):
        cfg.trainer.monitor, cfg.trainer.mode = "train/loss", "min"
    summary.data["monitor"] = {"name": "train/loss", "mode": "min"}
    summary.data["validation"] = (f"none (split.val=0): all {len(data.train)} training rows train; the training loss "
                                  f"is monitored, nothing is chosen by validation")
    _phase(cfg, summary.data["validation"])


def _tested_weights(setting, has_validation):
    """trainer.test_weights: auto is the best epoch's weights with a validation split, the last without."""
    if setting == "auto":
        return "best" if has_validation else "last"
    return setting


def _weights_to_test(cfg, run, loop, data, state, summary):
    """Put the weights to test in the loop (trainer.test_weights): best.pt's, or the last epoch's,
    which the loop holds after training; with `both`, the last ones are tested first, into test_last."""
    which = _tested_weights(cfg.trainer.test_weights, len(data.val) > 0)
    best = run.checkpoint("best")
    if which == "both" and len(data.test):
        _phase(cfg, f"evaluating the last epoch's weights on the test split ({len(data.test)} samples)")
        summary.data["test_last"] = evaluate(loop, build.test_batches(cfg, data, loop.device), data).metrics
    if which == "last" or not best.is_file():  # no best.pt with trainer.checkpoint.save_best=false
        tested = f"the last epoch's (epoch {state.epoch})"
    else:
        loop.use_weights(checkpoint.load(best), best)
        tested = f"best.pt (epoch {state.best_epoch}, the best {cfg.trainer.monitor})"
        # each epoch validated only the metrics it needed; the best one gets them all
        summary.data["best_val"] = {f"val/{k}": v for k, v in loop.validate(full=True).items()} or None
    if "test_last" in summary.data:
        tested += f"; test_last: the last epoch's (epoch {state.epoch})"
    summary.data["tested_weights"] = tested


def _decision_threshold(cfg, run, loop, data, summary):
    """A binary task's decision threshold: the configured one, or (dataset.threshold=auto) the one
    that maximises dataset.threshold_metric (F1) on the validation split, then used on test and
    recorded in best.pt (so that task=predict and the exports use it too)."""
    if data.task != "binary":
        return
    if cfg.dataset.get("threshold") == "auto":
        from dlrun.results.metrics import best_threshold

        metric = cfg.dataset.get("threshold_metric", "f1")
        out, y, _, _ = loop.predict(loop.val_batches)
        p = loop.predictions(out, y)
        loop.threshold, value = best_threshold(p.true, p.probs[:, 1], metric)
        summary.data["threshold"] = {"value": loop.threshold, "chosen_by": f"validation {metric}", f"val_{metric}": value}
        _phase(cfg, f"decision threshold {loop.threshold:.4f}: the best {metric} of '{data.class_names[1]}' on the "
                    f"validation split ({value:.4f})")
        best = run.checkpoint("best")
        if best.is_file() and cfg.task == "train":
            ckpt = checkpoint.load(best)
            ckpt["preprocessing"]["threshold"] = loop.threshold
            checkpoint.save(best, ckpt)
    else:
        summary.data["threshold"] = {"value": loop.threshold, "chosen_by": "dataset.threshold"}


def _interpretation(run, loop, ev, data, summary):
    """What the model gets wrong and what its weights look like: the most confused pairs and the
    per-layer weight statistics, in the summary (and CSV files)."""
    stats = inspection.weight_stats(loop.eval_model)
    artifacts.write_csv(run.weight_stats, stats)
    summary.data["weight_stats"] = stats
    if ev is not None and data.task != "regression":
        summary.data["most_confused"] = ev.confused[:5]


def _test(cfg, run, loop, data):
    """Evaluate the loop's model on the test split and write predictions.csv and per_class.csv;
    None when there is no test split (split.test=0)."""
    if not len(data.test):
        _phase(cfg, "no test split (split.test=0): the best epoch's validation metrics are the result")
        return None
    _phase(cfg, f"evaluating on the test split ({len(data.test)} samples)")
    ev = evaluate(loop, build.test_batches(cfg, data, loop.device), data)
    write_tables(run.root, ev, data.class_names, probabilities=cfg.probabilities)
    return ev


def _plots(cfg, run, loop, data, ev, state, record, painter):
    """The plots of the results (without a test split, only those of training), and those of the
    data begun before training, all on disk when this returns."""
    if cfg.plots:
        from dlrun.results import plots

        _phase(cfg, f"drawing plots into {run.plots}")
        jobs, skipped = plots.result_jobs(run.plots, cfg.plots, loop, data, ev, state)
        painter.submit(jobs)
        _skipped(skipped, record)
    painter.wait()


def _export(cfg, run, loop, data):
    if cfg.export:
        from dlrun.results import export

        _phase(cfg, f"exporting the model ({cfg.export})")
        export.write(cfg.export, loop.eval_model, {**build.preprocessing(data), "threshold": loop.threshold},
                     run.checkpoints, loop.threshold)


def cross_validate(cfg, run, device, overrides, config_dir=None, sweep_dir=None):
    """k-fold cross-validation: fold i is a whole run in fold_<i>/ (cv.fold=i);
    the parent gets folds.csv, mean and std of every metric, and its own report.

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
    for i in range(cfg.cv.folds):
        _phase(cfg, f"fold {i + 1} of {cfg.cv.folds} (cv.fold={i}) in {run.fold(i).root}")
        result = job.run(_fold_config(cfg, i, source), run.fold(i).root, keep_failed=True, sweep_dir=sweep_dir,
                         overrides=overrides, raw=raw, config_dir=config_dir)
        results.append(result)
        rows.append(_fold_row(i, result))
    artifacts.write_csv(run.folds, rows)
    result = summary.conclude_cv(rows, _mean_std(rows), results)
    if cfg.report:
        report.write(run.root, result, cfg)
    return summary.write()


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


def _mean_std(rows):
    """Mean and standard deviation over folds of every metric that has a value."""
    stats = {}
    for key in (k for k in rows[0] if k not in ("fold", "best_epoch", "epochs_run")):
        values = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
        if not np.isnan(values).all():  # e.g. no best value when evaluating
            stats[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    return stats
