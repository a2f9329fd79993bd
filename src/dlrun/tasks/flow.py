"""The flow of one run, from the composed config to the summary, read top to bottom:

    seed + device -> dataset -> model -> loss, optimizer, schedule      (here)
      -> fit                                                            (fit.py)
      -> test the weights to test -> tables, plots, exports, report    (evaluate.py)

task=predict (predict.py), task=lr_find (lr_finder.py) and task=inspect branch off on the
way; cross-validation (cross_validation.py) is a loop of whole runs around it. The caller is
the run path (job.run), which has checked the config.
"""

from omegaconf import OmegaConf, open_dict

from dlrun import build, console
from dlrun import data as datasets
from dlrun.config import sources as config
from dlrun.config import validate
from dlrun.errors import DlrunError
from dlrun.layout import RunDir
from dlrun.results import artifacts, checkpoint, plot_workers, record, reuse
from dlrun.results.summary import Summary
from dlrun.sweeps import pruning, tracking
from dlrun.tasks import cross_validation, evaluate, fit, inspection, lr_finder, messages, predict
from dlrun.train import device as devices
from dlrun.train import distributed
from dlrun.train.fit_policy import FitState


def execute(cfg, run_dir, run_fold, show_config=False, job_num=None, sweep_dir=None, overrides=None, raw=None,
            config_dir=None):
    """Run the config in `run_dir`; returns the summary (also in summary.json).

    The caller has run `validate.check_config` (before torch was imported);
    `job_num` is the job's number in the sweep in `sweep_dir` (it picks a GPU when there are
    several; the sweep's files say whether it is an Optuna trial or an MLflow child run).
    With `cv.folds > 1`, each fold is one run of `run_fold` (the run path, job.run).
    `overrides` (default: the run directory's) are recorded in checkpoints, with the user's
    `config_dir` and where the plugins came from; `raw` is the dataset builder's data when the
    caller has it (the folds of a cross-validation)."""
    run = RunDir(run_dir)
    build.load_components(cfg)
    sources = config.code_sources(config_dir, cfg.plugins)
    validate.check_components(cfg)
    device = distributed.setup(devices.for_job(devices.select(cfg.device.name), job_num), cfg.trainer.collective_timeout)
    devices.configure(cfg.device.deterministic, cfg.device.matmul_precision)
    overrides = config.run_overrides(run.root) if overrides is None else overrides
    if show_config and distributed.is_main():
        console.show_config(cfg, overrides, device, config.stored_run(cfg.ckpt_path)[0] if cfg.ckpt_path else ())
    if cfg.cv.folds > 1 and cfg.cv.fold is None:
        return cross_validation.cross_validate(cfg, run, device, overrides, run_fold, config_dir, sweep_dir)
    if cfg.task == "predict":
        return predict.task(cfg, run, device)
    prefer = checkpoint.WEIGHTS_FIRST if cfg.task == "eval" else ("last", "best")
    ckpt = checkpoint.load(cfg.ckpt_path, unverified=cfg.trust_unverified_ckpt, prefer=prefer) if cfg.ckpt_path else None
    if distributed.is_main():  # killed writes of an earlier attempt in this directory
        for folder in (run.root, run.checkpoints, run.plots):
            artifacts.remove_stale_temporaries(folder)
    if ckpt is not None and cfg.task == "train":
        checkpoint.require_training_state(ckpt, cfg.ckpt_path)
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
    plots go to `painter` (plot_workers.PlotWorkers); `observers` are the tracked run
    (MLflow or W&B: tracking.tracked) and the Optuna trial (pruning.Trial), each None when not asked for."""
    devices.seed_everything(cfg.seed + (cfg.cv.fold or 0))  # each fold its own initial weights
    summary = Summary(run.root, cfg, device)
    linked = _done_before(cfg, run, ckpt, summary)
    if linked is not None:
        return linked
    data, loop = _prepare(cfg, run, device, overrides, sources, raw, ckpt, summary, observers[0])
    with summary.timed("first_look"):
        _first_look(cfg, run, data, summary.data, painter)
    if cfg.task == "inspect":
        painter.wait()
        return summary.finish("completed", FitState())
    if cfg.task == "lr_find":
        return lr_finder.task(cfg, run, loop, summary)
    if cfg.task == "eval":
        if not len(data.test):
            raise DlrunError("task=eval evaluates on the test split, and this config has none (split.test=0).")
        loop.use_weights(ckpt, cfg.ckpt_path)
        state = FitState(**ckpt["fit"])  # what the evaluated weights went through: epochs, best epoch, history
        summary.data["evaluated"] = str(checkpoint.resolve(cfg.ckpt_path, prefer=checkpoint.WEIGHTS_FIRST))
        summary.data["tested_weights"] = evaluate.held_by(ckpt, summary.data["evaluated"])
    else:
        state = loop.load_state_dict(ckpt, cfg.ckpt_path) if ckpt else FitState()
        if ckpt:
            within = f", part of the way through epoch {state.epoch + 1}" if state.partial else ""
            messages.phase(cfg, f"resuming from {checkpoint.resolve(cfg.ckpt_path)}: {state.epoch} epoch(s) done, "
                           f"step {state.step}{within}")
            fit.warn_if_world_changed(ckpt, cfg.trainer.batch_size)
        if cfg.device.compile:  # compiled here, so that a time budget counts training only
            with summary.timed("compile"):
                fit.compile_ahead(cfg, loop)
        # Under torchrun, a process's failure is told to the others, which stop naming it.
        with summary.timed("training"), distributed.failures_told(lambda: state.step + 1,
                                                                  cfg.trainer.collective_timeout):
            fit.fit(cfg, loop, state, run, summary, observers)
        if not distributed.is_main():  # rank 0 evaluates and writes the results
            distributed.shutdown()
            return summary.finish("completed", state)
    try:
        evaluate.results(cfg, run, loop, data, state, summary, painter)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while the results are written
        raise evaluate.interrupted_in_results(exc, cfg, run, summary, state) from None
    distributed.shutdown()
    return summary.write()


def _done_before(cfg, run, ckpt, summary):
    """With cache=true, the record of a run that trained the same (reuse.py), its files linked into
    this run's directory; None when there is none, or the run is no plain one-process training."""
    if not (cfg.cache and cfg.task == "train" and ckpt is None and distributed.shard()[1] == 1):
        return None
    earlier = reuse.completed_like(summary.data["cache_key"], config.outputs_root(), run.root)
    if earlier is None:
        return None
    messages.phase(cfg, f"cache=true: this config, code, packages, device and data completed in "
                        f"{earlier['path']}; its files are linked here and nothing is trained")
    return record.write(run.summary, reuse.link(earlier, run.root, summary.data))


def _prepare(cfg, run, device, overrides, sources, raw, ckpt, summary, tracker):
    """The data, the model and its loop, and the start of the record (and of the MLflow run)."""
    with summary.timed("data"):  # reading, decoding and splitting the dataset
        data = _evaluated_data(cfg, raw, ckpt, summary)
    if data.extra["cautions"] and cfg.cv.fold in (None, 0):  # said once, not again for every fold
        summary.data["warnings"] = [messages.warn(text) for text in data.extra["cautions"]]
    _without_validation(cfg, data, summary)
    validate.check_monitor(cfg.trainer.monitor, data.task)
    net = build.model(cfg, data)
    if ckpt is not None and cfg.task == "train":
        build.keep_path(data, ckpt)
    if ckpt is not None:
        build.keep_batch_size(cfg, ckpt)
    about = {"init_from": _init_from(cfg, net) if ckpt is None else None}
    if cfg.device.compile:
        fit.share_compile_cache()
    loop = build.loop(cfg, data, net, device, overrides, sources)  # applies model.freeze, so the summary counts it
    if data.extra.get("streamed"):
        messages.phase(cfg, data.extra["streamed_why"])
    about.update(model_summary=inspection.model_summary(net, data.input_shape),
                 data_summary=inspection.data_summary(data, loop.train_batches), class_weights=_class_weights(cfg, loop, data))
    # the batch as trained (trainer.batch_size=auto: as found)
    about["data_summary"]["batches"].update(size=cfg.trainer.batch_size, accumulate=cfg.trainer.accumulate_grad_batches)
    summary.start(data, about)
    if tracker is not None:
        tracker.start()
    return data, loop


def _class_weights(cfg, loop, data):
    """{class: weight} of the loss when loss.class_weights weights it (said once), else None."""
    weights = getattr(loop.loss_fn, "class_weights", None)
    if weights is None:
        return None
    named = dict(zip(map(str, data.class_names), weights, strict=True))
    if cfg.task == "train":
        messages.phase(cfg, f"loss.class_weights={cfg.loss.class_weights}: " +
                       ", ".join(f"{name} {weight:.3g}" for name, weight in named.items()))
    return named


def _evaluated_data(cfg, raw, ckpt, summary):
    """The prepared data; for task=eval with dataset.classes other than the checkpoint's, the data
    the checkpoint was trained on, tested on the rows of those classes only (labels unchanged: the
    mini-challenge's "4s only" and "all but the 4s" test sets)."""
    stored = ((ckpt or {}).get("config") or {}).get("dataset", {}).get("classes")
    asked = build.plain(cfg.dataset.get("classes"))
    if cfg.task != "eval" or asked is None or asked == stored:
        return build.dataset(cfg, raw)
    with open_dict(cfg):
        cfg.dataset.classes = stored
    data = build.dataset(cfg)  # not `raw`: a builder's data relabelled for the asked classes
    with open_dict(cfg):
        cfg.dataset.classes = asked
    data.test = datasets.rows_of_classes(data.test, asked, data.class_names)
    summary.data["evaluated_classes"] = [data.class_names[i] for i in sorted(set(data.test.y.tolist()))]
    messages.phase(cfg, f"evaluating on the {len(data.test)} test rows of {', '.join(summary.data['evaluated_classes'])}"
                        f" (of the checkpoint's {len(data.class_names)} classes)")
    return data


def _init_from(cfg, net):
    """Start from another run's weights (init_from): what was loaded, or None."""
    if not cfg.init_from:
        return None
    from dlrun.tasks import finetune

    loaded = finetune.init_from(net, cfg.init_from, build.patterns(cfg.init_from_exclude), cfg.trust_unverified_ckpt,
                                cfg.model.get("name"))
    messages.phase(cfg, finetune.describe(loaded))
    if loaded["warning"]:
        messages.warn(loaded["warning"])
    return loaded


def _first_look(cfg, run, data, record, painter):
    """The model and data summaries of the record, and the plots of the data, before training."""
    if not distributed.is_main():
        return
    inspection.show(record["model_summary"], record["data_summary"], full=cfg.show_config == "full" or
                    cfg.task == "inspect", enabled=cfg.show_config != "none")
    if cfg.plots:
        from dlrun.results import plots

        jobs, skipped = plots.data_jobs(run.plots, cfg.plots, data, record,
                                        build.augmentation(cfg.regularization), cfg.seed)
        painter.submit(jobs)
        messages.skipped(skipped, record)


def _without_validation(cfg, data, summary):
    """Where the validation rows come from; without any (split.val=0) the loop monitors the training
    loss and nothing that needs validation rows is accepted."""
    summary.data["validation"] = data.extra["validation"]
    if len(data.val) or cfg.task != "train":
        return
    with open_dict(cfg):
        for key, value in validate.without_validation(cfg).items():
            OmegaConf.update(cfg, key, value)
    summary.data["monitor"] = {"name": cfg.trainer.monitor, "mode": cfg.trainer.mode}
    ranked = "the test loss ranks it in a sweep" if len(data.test) else "no held-out rows: a sweep ranks it by it"
    summary.data["validation"] = (f"none (split.val=0): all {len(data.train)} training rows train; the training loss "
                                  f"is monitored, no best.pt is kept (nothing is chosen by validation), {ranked}")
    messages.phase(cfg, summary.data["validation"])
