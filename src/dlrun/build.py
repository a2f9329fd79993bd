"""Turn the composed config into the objects the loop drives."""

import contextlib
import importlib
import traceback
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from dlrun import data as datasets
from dlrun import models
from dlrun.data.batches import Augmentation, DeviceTransform, device_budget, limit, make_batches, resident_bytes
from dlrun.errors import ConfigError
from dlrun.results.metric_names import PROBABILITY_METRICS, mode_of
from dlrun.tasks import messages
from dlrun.tasks.finetune import Freezing
from dlrun.train import batch_size, distributed, loss, optimizer, scheduler
from dlrun.train import device as devices
from dlrun.train.averaging import Averaging
from dlrun.train.fit_policy import FitPolicy
from dlrun.train.regularization import set_dropout
from dlrun.train.schedule_free import switches_weights
from dlrun.train.trainer import Loop


def plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def namespace(node):
    """A config group as nested plain attributes (an OmegaConf attribute access costs
    microseconds, which adds up when read every step)."""
    data = plain(node)
    if isinstance(data, dict):
        return SimpleNamespace(**{k: namespace(v) for k, v in data.items()})
    return data


def import_plugins(names):
    """Import users' modules so their components register themselves; a module that is not found,
    or fails as it is imported, is one line naming it, the error and where it was raised."""
    for name in names or []:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and not name.startswith(f"{exc.name}."):  # the plugin is there; its import failed
                raise ConfigError(f"plugins: '{name}' failed as it was imported: {_raised_at(exc)}") from None
            raise ConfigError(f"plugins: cannot import '{name}' ({exc}). Is it on PYTHONPATH?") from None
        except Exception as exc:  # a plugin is the user's code: any error in it is theirs to fix
            raise ConfigError(f"plugins: '{name}' failed as it was imported: {_raised_at(exc)}") from None


def _raised_at(exc):
    """'RuntimeError: boom (plugin.py:3)': the error's last line and the place in the user's file."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename and not f.filename.startswith("<")]
    where = f" ({own[-1].filename}:{own[-1].lineno})" if own else ""
    return f"{traceback.format_exception_only(exc)[-1].strip()}{where}"


def load_components(cfg):
    import_plugins(cfg.plugins)


def raw_dataset(cfg):
    """What the dataset builder returns, before any split."""
    raw = datasets.DATASETS.build(plain(cfg.dataset))
    if not isinstance(raw, datasets.Data):
        raise ConfigError(f"dataset builder returned {type(raw).__name__}, not dlrun.data.Data.")
    kept = datasets.keep_classes(raw, plain(cfg.dataset.get("classes")))
    data = datasets.one_vs_rest(kept, cfg.dataset.get("positive_class"))
    if data.task not in ("binary", "multilabel") and cfg.dataset.get("threshold", 0.5) != 0.5:
        raise ConfigError(f"dataset.threshold={cfg.dataset.threshold} is the decision threshold of a binary (or "
                          f"multi-label) task, and "
                          f"this dataset's task is {data.task}: remove it, or make the task binary with "
                          f"dataset.positive_class=<class>.")
    return data


def dataset(cfg, raw=None):
    """The split, prepared dataset (of `raw` when the builder's data is at hand already)."""
    raw = raw_dataset(cfg) if raw is None else raw
    cv_fold = (cfg.cv.folds, cfg.cv.fold, cfg.cv.stratified) if cfg.cv.fold is not None else None
    data = datasets.prepare(raw, cfg.split, cv_fold=cv_fold, seed=cfg.seed)
    _resize(data, cfg.dataset.get("resize"))
    return _debug_rows(data, cfg.trainer)


def _resize(data, size):
    """dataset.resize: images are resized to size x size on the device, batch by batch (the stored
    images keep their size); the model is built for the resized shape."""
    if not size:
        return
    if not data.image:
        raise ConfigError(f"dataset.resize={size} resizes images, and this dataset is tabular; remove it.")
    data.extra["raw_shape"] = data.input_shape
    data.input_shape = (data.input_shape[0], size, size)
    data.extra["resize"] = size


def _debug_rows(data, trainer):
    """The debug settings that shrink the data: trainer.overfit_batches trains and validates on
    the same first batches; trainer.fast_dev_run keeps one batch of each split."""
    if trainer.batch_size == "auto" and (trainer.overfit_batches or trainer.fast_dev_run):
        raise ConfigError("trainer.overfit_batches and trainer.fast_dev_run count rows in batches: give "
                          "trainer.batch_size as a number with them, not auto.")
    if trainer.overfit_batches:
        data.train = data.val = datasets.first_rows(data.train, trainer.overfit_batches * trainer.batch_size)
    if trainer.fast_dev_run:
        data.train, data.val, data.test = (datasets.first_rows(part, trainer.batch_size)
                                           for part in (data.train, data.val, data.test))
    return data


def model(cfg, data):
    net = models.build(plain(cfg.model), data.input_shape, data.num_outputs)
    if cfg.regularization.dropout is not None:
        set_dropout(net, cfg.regularization.dropout)
    return net


def _cpu(values):
    return None if values is None else torch.as_tensor(values).float().cpu()


def preprocessing(data, tta=None):
    """What a checkpoint needs to apply the model to new inputs the way it was trained (and
    evaluated: with `tta`, trainer.tta's views)."""
    scale = data.target_scale or (None, None)
    return {"task": data.task, "class_names": list(data.class_names), "input_shape": list(data.input_shape),
            "num_outputs": data.num_outputs, "image": data.image, "image_mean": _cpu(data.mean),
            "image_std": _cpu(data.std), "feature_mean": _cpu(data.extra.get("feature_mean")),
            "feature_std": _cpu(data.extra.get("feature_std")), "target_mean": _cpu(scale[0]),
            "target_std": _cpu(scale[1]), "resize": data.extra.get("resize"),
            "raw_shape": list(data.extra.get("raw_shape", data.input_shape)), "pixel_max": data.extra.get("pixel_max"),
            "input_range": data.extra.get("input_range"), "tta": tta, **data.extra.get("input_spec", {})}


def record(cfg, data, overrides, sources=None):
    """The checkpoint's record of the run: its resolved config, the overrides that composed it,
    where its own code came from (config.code_sources), the preprocessing and the model's build spec."""
    return {"config": plain(cfg), "overrides": list(overrides), "sources": sources or {},
            "preprocessing": preprocessing(data, cfg.trainer.tta),
            "model_spec": {**plain(cfg.model), "input_shape": list(data.input_shape), "num_outputs": data.num_outputs}}


def fit_policy(trainer):
    """The trainer group's stopping and checkpoint policy as plain values."""
    es, ckpt = trainer.early_stopping, trainer.checkpoint
    return FitPolicy(max_epochs=trainer.max_epochs, monitor=trainer.monitor, mode=mode_of(trainer),
                     min_delta=es.min_delta, early_stopping=es.enabled, patience=es.patience,
                     save_best=ckpt.save_best, save_last=ckpt.save_last, skip_nonfinite=trainer.skip_nonfinite,
                     max_time=trainer.max_time, checkpoint_every=ckpt.every_n_steps, last_every=ckpt.every_n_epochs,
                     val_every=trainer.val_every_n_steps, keep_every=ckpt.keep_every_n_epochs, top_k=ckpt.save_top_k)


def augmentation(regularization):
    """regularization.augment with its parameters (None without augmentation)."""
    return Augmentation.of(plain(regularization.augment), regularization.rotate_degrees, regularization.crop_pad,
                           regularization.cutout_size, regularization.augment_ops, regularization.augment_magnitude)


def train_transform(cfg, data, device):
    """The training batches' transform: the data's preparation and regularization.augment, drawing
    from its own generator (seed + 2) so that augmenting leaves the order of rows alone."""
    aug = augmentation(cfg.regularization)
    if aug and not data.image:
        raise ConfigError(f"regularization.augment={cfg.regularization.augment} needs an image dataset.")
    if aug and aug.policies and data.input_shape[0] not in (1, 3):
        raise ConfigError(f"regularization.augment={cfg.regularization.augment}: torchvision's policies take gray "
                          f"or RGB images; these have {data.input_shape[0]} channels.")
    return DeviceTransform.of(data, device, aug, torch.Generator(device=device).manual_seed(cfg.seed + 2))


def _schedule_free_alone(cfg):
    """A schedule-free optimizer replaces the schedule and averages its own iterates."""
    if cfg.scheduler.name != "none" or cfg.scheduler.get("warmup_epochs"):
        given = (f"scheduler={cfg.scheduler.name}" if cfg.scheduler.name != "none"
                 else f"scheduler.warmup_epochs={cfg.scheduler.warmup_epochs}")
        raise ConfigError(f"optimizer={cfg.optimizer.name} needs no learning-rate schedule (it replaces one): drop "
                          f"{given} (its own warmup is optimizer.warmup_steps).")
    if cfg.trainer.averaging.kind is not None:
        raise ConfigError(f"optimizer={cfg.optimizer.name} already evaluates an average of its weights: drop "
                          f"trainer.averaging.kind={cfg.trainer.averaging.kind}.")


def found_batch_size(cfg, data, net, loss_fn, device):
    """trainer.batch_size=auto: the largest batch that fits (batch_size.py), with accumulation up to
    trainer.effective_batch_size; written into the config (so checkpoints, resumes and the record
    hold the numbers) and said in one line. Returns the trainer settings as plain values."""
    tr = cfg.trainer
    if tr.accumulate_grad_batches != 1:
        raise ConfigError("trainer.batch_size=auto sets the accumulation itself, to reach trainer.effective_batch_size: "
                          f"drop trainer.accumulate_grad_batches={tr.accumulate_grad_batches}.")
    effective = min(tr.effective_batch_size, len(data.train))
    example = torch.zeros(1, *data.input_shape, device=device)
    if data.image and cfg.device.channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    target = torch.as_tensor(data.train.y[:1]).to(device)
    autocast = devices.autocast(device, cfg.device.precision) or contextlib.nullcontext()
    size, too_big = batch_size.largest_fitting(batch_size.trial(net, loss_fn, example, target, autocast), effective)
    tr.batch_size, tr.accumulate_grad_batches = size, effective // size
    misses = f" ({', '.join(map(str, too_big))} did not fit)" if too_big else ""
    messages.phase(cfg, f"trainer.batch_size=auto: {size} per batch x {effective // size} accumulated = {effective} "
                        f"samples per optimizer step on {device.type}{misses}")
    return namespace(tr)


def loop(cfg, data, net, device, overrides=(), sources=None):
    """The Loop for `net` on `data`: batches, loss, optimizer and schedule."""
    reg, tr = namespace(cfg.regularization), namespace(cfg.trainer)
    if data.image and cfg.device.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net = net.to(device)
    if tr.sync_batchnorm and distributed.shard()[1] > 1:  # the same parameters, in modules that sync their statistics
        if device.type != "cuda":
            raise ConfigError(f"trainer.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm runs on GPUs "
                              f"only); on {device.type} each process keeps its own batch statistics: drop it.")
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    train_tf = train_transform(cfg, data, device)
    if tr.tta and not data.image:
        raise ConfigError(f"trainer.tta={tr.tta} takes views of images; {cfg.dataset.name} has feature rows.")
    loss_fn = loss.build(plain(cfg.loss), data.task, data.train.y, data.num_classes).to(device)
    if tr.batch_size == "auto":
        tr = found_batch_size(cfg, data, net, loss_fn, device)
    eval_tf = DeviceTransform.of(data, device)
    resident = _resident(data, device)
    train_batches = make_batches(data.train, tr.batch_size, device, train_tf, True, cfg.seed + 1, tr.sampling,
                                 tr.num_workers, shard=distributed.shard(), resident=resident)
    train_batches = limit(train_batches, tr.limit_train_batches)
    val_batches = limit(make_batches(data.val, tr.eval_batch_size, device, eval_tf, False, 0,
                                     num_workers=tr.num_workers, resident=resident), tr.limit_val_batches)
    opt = optimizer.build(plain(cfg.optimizer), net, reg)
    if switches_weights(opt):
        _schedule_free_alone(cfg)
    # Schedulers count optimizer steps: one per accumulation window.
    steps_per_epoch = -(-len(train_batches) // tr.accumulate_grad_batches)
    schedule = scheduler.build(plain(cfg.scheduler), opt, tr.max_epochs, steps_per_epoch, mode_of(tr))
    averaging = None
    if tr.averaging.kind is not None:
        avg = tr.averaging
        averaging = Averaging(net, avg.kind, tr.max_epochs, opt, avg.ema_decay, avg.ema_warmup, avg.swa_start, avg.swa_lr)
    return Loop(
        averaging=averaging, model=net, loss_fn=loss_fn, optimizer=opt, schedule=schedule, train_batches=train_batches,
        val_batches=val_batches, device=device, task=data.task, num_classes=data.num_classes, policy=fit_policy(tr),
        clip_mode=reg.grad_clip.mode, clip_max=reg.grad_clip.max, l1=reg.l1, mixup_alpha=reg.mixup_alpha,
        cutmix_alpha=reg.cutmix_alpha, precision=cfg.device.precision,
        channels_last=bool(cfg.device.channels_last and data.image),
        compile_mode=cfg.device.compile_mode if cfg.device.compile else None,
        threshold=threshold(cfg), target_scale=data.target_scale, tta=cfg.trainer.tta,
        augment_generator=train_tf.generator, record=record(cfg, data, overrides, sources),
        accumulate=tr.accumulate_grad_batches, val_metrics=val_metrics(tr.val_metrics, tr.monitor),
        freezing=Freezing(patterns(cfg.model.get("freeze")), cfg.model.get("unfreeze_epoch")),
    )


def val_metrics(listed, monitor):
    """The probability metrics validated every epoch: those listed in trainer.val_metrics (all:
    every one) and the monitored one; the others come from counts on the device."""
    names = PROBABILITY_METRICS if listed == "all" else (listed,) if isinstance(listed, str) else tuple(listed or ())
    watched = monitor.split("/", 1)[1]
    return tuple(dict.fromkeys([*names, *([watched] if watched in PROBABILITY_METRICS else [])]))


def threshold(cfg):
    """A binary (or multi-label) task's configured decision threshold (0.5 until dataset.threshold=auto
    has chosen one)."""
    value = cfg.dataset.get("threshold", 0.5)
    return 0.5 if value == "auto" else float(value)


def patterns(value):
    """A list of name patterns as a tuple (one pattern may be given without brackets)."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def test_batches(cfg, data, device):
    return make_batches(data.test, cfg.trainer.eval_batch_size, device, DeviceTransform.of(data, device), False, 0,
                        num_workers=cfg.trainer.num_workers, resident=_resident(data, device))


def _resident(data, device):
    """Whether the in-memory splits are held on the training device: yes unless together they
    exceed its budget (batches.device_budget); then they stay in host memory and stream through a
    DataLoader, which data.extra["streamed"] says, with why."""
    if "streamed" in data.extra:
        return not data.extra["streamed"]
    needed, budget = resident_bytes([data.train, data.val, data.test]), device_budget(device)
    data.extra["streamed"] = budget is not None and needed > budget
    if data.extra["streamed"]:
        data.extra["streamed_why"] = (f"the data needs {_size(needed)} on {device} and half of its free memory is "
                                      f"{_size(budget)}: batches stream from host memory through a DataLoader")
    return not data.extra["streamed"]


def keep_path(data, ckpt):
    """A resume holds the data where the run it continues did (the batches are the same on both
    paths, but the memory a path needs may not be there again)."""
    path = (ckpt.get("batches") or {}).get("path")
    if path is not None and "streamed" not in data.extra:
        data.extra["streamed"] = path == "loader"
        if data.extra["streamed"]:
            data.extra["streamed_why"] = ("the run resumed here streamed its batches from host memory through a "
                                          "DataLoader: so does this resume")


def keep_batch_size(cfg, ckpt):
    """With trainer.batch_size=auto, a checkpoint's run found its batch once: a resume (or an
    evaluation) takes those numbers from its config instead of searching again, so its batches
    are the same whatever the device has free now."""
    stored = (ckpt.get("config") or {}).get("trainer") or {}
    if cfg.trainer.batch_size == "auto" and isinstance(stored.get("batch_size"), int):
        cfg.trainer.batch_size = stored["batch_size"]
        cfg.trainer.accumulate_grad_batches = stored.get("accumulate_grad_batches", 1)


def _size(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
