"""Checks of the composed config that run before any data is loaded.

Each failure is one ConfigError naming the key, the bad value and what is
allowed. Registry names and builder arguments are checked by
:func:`check_components` once plugins are imported.
"""

import importlib.util
import math

from omegaconf import OmegaConf

from dlrun.errors import ConfigError, unknown_choice
from dlrun.metric_names import (
    BINARY_SCALARS,
    CLASSIFICATION_SCALARS,
    PROBABILITY_METRICS,
    REGRESSION_SCALARS,
    monitor_names,
    natural_mode,
)

ONNX_PACKAGES = ("onnx", "onnxscript")


def _is_number(value, kind):
    """An int (for kind int) or an int or float (for kind float); never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind is float or isinstance(value, int)


def _is_batch_limit(value):
    return value >= 1 if isinstance(value, int) else 0 < value <= 1


# key: (kind, test, allowed) - kind is int, float or "sizes" (an integer or a list of them, each tested);
# a key that the composed config does not have (another model's, another dataset's) is skipped.
RANGES = {
    "seed": (int, lambda v: 0 <= v < 2**63, "in [0, 2**63)"),
    "trainer.max_epochs": (int, lambda v: v >= 1, ">= 1"),
    "trainer.batch_size": (int, lambda v: v >= 1, ">= 1"),
    "trainer.eval_batch_size": (int, lambda v: v >= 1, ">= 1"),
    "trainer.early_stopping.patience": (int, lambda v: v >= 0, ">= 0"),
    "trainer.early_stopping.min_delta": (float, lambda v: v >= 0, ">= 0"),
    "trainer.accumulate_grad_batches": (int, lambda v: v >= 1, ">= 1"),
    "trainer.val_every_n_steps": (int, lambda v: v >= 1, ">= 1 or null"),
    "trainer.checkpoint.every_n_epochs": (int, lambda v: v >= 1, ">= 1"),
    "trainer.checkpoint.every_n_steps": (int, lambda v: v >= 1, ">= 1 or null"),
    "trainer.overfit_batches": (int, lambda v: v >= 0, ">= 0"),
    "trainer.profile_steps": (int, lambda v: v >= 0, ">= 0"),
    "trainer.limit_train_batches": (float, _is_batch_limit, "a count of batches >= 1, a fraction in (0, 1], or null"),
    "trainer.limit_val_batches": (float, _is_batch_limit, "a count of batches >= 1, a fraction in (0, 1], or null"),
    "trainer.averaging.ema_decay": (float, lambda v: 0 < v < 1, "in (0, 1)"),
    "trainer.averaging.swa_start": (float, lambda v: v > 0 and (v < 1 or float(v).is_integer()),
                                    "an epoch number >= 1 or a fraction in (0, 1)"),
    "trainer.averaging.swa_lr": (float, lambda v: v > 0, "> 0 or null"),
    "trainer.skip_nonfinite": (int, lambda v: v >= 0, ">= 0"),
    "trainer.num_workers": (int, lambda v: v >= 0, ">= 0"),
    "trainer.max_time": (float, lambda v: v > 0, "> 0 (seconds) or null"),
    "optimizer.lr": (float, lambda v: v > 0, "> 0"),
    "optimizer.head_lr": (float, lambda v: v > 0, "> 0 or null"),
    "model.unfreeze_epoch": (int, lambda v: v >= 1, ">= 1 (counted from 1) or null"),
    "optimizer.momentum": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.dropout": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "regularization.dropout": (float, lambda v: 0 <= v < 1, "in [0, 1) or null"),
    "regularization.weight_decay": (float, lambda v: v >= 0, ">= 0"),
    "regularization.l1": (float, lambda v: v >= 0, ">= 0"),
    "regularization.mixup_alpha": (float, lambda v: v >= 0, ">= 0"),
    "regularization.cutmix_alpha": (float, lambda v: v >= 0, ">= 0"),
    "regularization.grad_clip.max": (float, lambda v: v > 0, "> 0"),
    "split.val": (float, lambda v: 0 <= v < 1, "in [0, 1) (0: no validation split)"),
    "split.test": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "lr_find.min_lr": (float, lambda v: v > 0, "> 0"),
    "lr_find.max_lr": (float, lambda v: v > 0, "> 0"),
    "lr_find.steps": (int, lambda v: v >= 10, ">= 10"),
    "cv.folds": (int, lambda v: v >= 1, ">= 1"),
    "cv.fold": (int, lambda v: v >= 0, ">= 0 or null"),
    "scheduler.warmup_epochs": (int, lambda v: v >= 0, ">= 0"),
    "loss.label_smoothing": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "loss.gamma": (float, lambda v: v >= 0, ">= 0"),
    "scheduler.gamma": (float, lambda v: v > 0, "> 0"),
    "scheduler.step_size": (int, lambda v: v >= 1, ">= 1"),
    "model.hidden_sizes": ("sizes", lambda v: v >= 1, "a list of integers >= 1"),
    "model.channels": ("sizes", lambda v: v >= 1, "a list of integers >= 1"),
    "model.widths": ("sizes", lambda v: v >= 1, "a list of integers >= 1"),
    "model.hidden": (int, lambda v: v >= 0, ">= 0"),
    "model.kernel_size": ("sizes", lambda v: v >= 1, "an integer >= 1 or a list of them, one per block"),
    "model.negative_slope": (float, lambda v: v >= 0, ">= 0"),
    "model.init_scale": (float, lambda v: v > 0, "> 0 or null"),
    "dataset.image_size": ("sizes", lambda v: v >= 1, "integers >= 1"),
    "dataset.resize": (int, lambda v: v >= 1, ">= 1 (pixels) or null"),
    "dataset.size": (int, lambda v: v >= 1, ">= 1"),
    "dataset.n_samples": (int, lambda v: v >= 1, ">= 1"),
}

CHOICES = {
    "task": ("train", "eval", "inspect", "lr_find", "predict"),
    "trainer.mode": ("auto", "min", "max"),
    "trainer.fast_dev_run": (True, False),
    "trainer.averaging.kind": (None, "ema", "swa"),
    "trainer.test_weights": ("auto", "best", "last", "both"),
    "trainer.sampling": ("shuffle", "replacement", "oversample", "undersample"),
    "dataset.threshold_metric": ("f1", "balanced_accuracy", "accuracy"),
    "trainer.detect_anomaly": (True, False),
    "split.strategy": ("stratified", "random"),
    "device.precision": ("fp32", "bf16", "fp16"),
    "regularization.grad_clip.mode": (None, "norm", "value"),
    "export": (None, "torchscript", "onnx"),
    "logger": ("csv", "tensorboard", "mlflow"),
    "show_config": ("short", "full", "none"),
    "dataset.channels": (1, 3),
}


def _select(cfg, key):
    return OmegaConf.select(cfg, key, default="__absent__", throw_on_missing=False)


def check_config(cfg):
    """Types, ranges and choices of the keys dlrun itself reads."""
    for key, (kind, test, allowed) in RANGES.items():
        value = _select(cfg, key)
        if value == "__absent__" or (value is None and "null" in allowed):
            continue
        if kind == "sizes":
            _check_sizes(key, value, test, allowed)
            continue
        if not _is_number(value, kind) or not math.isfinite(value):
            what = "an integer" if kind is int else "a finite number"
            raise ConfigError(f"{key}={value!r} is not {what}; it must be {what} {allowed}.")
        if not test(value):
            raise ConfigError(f"{key}={value} is out of range; it must be {allowed}.")
    for key, options in CHOICES.items():
        value = _select(cfg, key)
        if value != "__absent__" and value not in options:
            if all(isinstance(o, int) for o in options):
                raise ConfigError(f"{key}={value} is not allowed; it must be one of {', '.join(map(str, options))}.")
            raise ConfigError(unknown_choice(key, value, ["null" if o is None else o for o in options]))
    for key in ("plots", "plugins"):
        if isinstance(cfg[key], str):
            raise ConfigError(f"{key}={cfg[key]} must be a list: {key}=[{cfg[key]}].")
    if cfg.split.val + cfg.split.test >= 1:
        raise ConfigError(
            f"split.val={cfg.split.val} + split.test={cfg.split.test} leaves no training data; keep the sum below 1.")
    if cfg.export == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(f"export=onnx needs the {' and '.join(missing)} package(s): "
                              f"pip install {' '.join(ONNX_PACKAGES)} (or use export=torchscript).")
    if cfg.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install 'dlrun[tensorboard]'). CSV metrics are written either way.")
    if cfg.logger == "mlflow":
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("logger=mlflow needs the mlflow package: pip install mlflow "
                              "(or pip install 'dlrun[tracking]'). CSV metrics are written either way.")
        from dlrun import tracking

        tracking.check_server(tracking.tracking_uri(cfg))
    if cfg.cv.fold is not None and cfg.cv.fold >= cfg.cv.folds:
        raise ConfigError(f"cv.fold={cfg.cv.fold} is out of range; with cv.folds={cfg.cv.folds} it must be in "
                          f"0..{cfg.cv.folds - 1}.")
    threshold = _select(cfg, "dataset.threshold")
    if threshold not in ("__absent__", "auto") and not (_is_number(threshold, float) and 0 < threshold < 1):
        raise ConfigError(f"dataset.threshold={threshold} is not allowed; it must be a probability in (0, 1) or auto "
                          f"(the one that maximises the validation F1).")
    if cfg.lr_find.min_lr >= cfg.lr_find.max_lr:
        raise ConfigError(f"lr_find.min_lr={cfg.lr_find.min_lr} must be below lr_find.max_lr={cfg.lr_find.max_lr}.")
    if cfg.task == "lr_find" and (cfg.ckpt_path or cfg.cv.folds > 1):
        raise ConfigError("task=lr_find tests learning rates on fresh weights (or those of init_from=...) and one "
                          "split; remove " + ("ckpt_path" if cfg.ckpt_path else f"cv.folds={cfg.cv.folds}") + ".")
    if cfg.task == "predict" and not (cfg.ckpt_path and cfg.predict.input):
        raise ConfigError("task=predict needs ckpt_path=<run directory or .pt> and predict.input=<CSV file, folder of "
                          "images or .npy array>.")
    if cfg.task == "eval" and not cfg.ckpt_path:
        raise ConfigError("task=eval needs ckpt_path=<checkpoint file or run directory>.")
    _check_monitor_syntax(cfg.trainer.monitor)
    _check_mode(cfg.trainer)
    listed = cfg.trainer.val_metrics
    for name in ([] if listed == "all" else listed if OmegaConf.is_list(listed) else [listed]):
        if name not in PROBABILITY_METRICS:
            raise ConfigError(unknown_choice("trainer.val_metrics", name, [*PROBABILITY_METRICS, "all"]).rstrip(".") +
                              "; the loss and the confusion matrix's metrics are always validated.")


def _check_sizes(key, value, test, allowed):
    """An integer or a list of integers (widths, sizes), each passing `test`."""
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    for item in values:
        if not _is_number(item, int) or not test(item):
            raise ConfigError(f"{key}={_shown(value)} is out of range: {_shown(item)} is not allowed; "
                              f"it must be {allowed}.")


def _shown(value):
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _check_mode(trainer):
    """trainer.mode set against the monitor's direction (min for val/accuracy) would keep the worst
    epoch as best.pt and have a search optimise the wrong way."""
    natural = natural_mode(trainer.monitor)
    if trainer.mode not in ("auto", natural):
        better = "lower" if natural == "min" else "higher"
        raise ConfigError(f"trainer.mode={trainer.mode} contradicts trainer.monitor={trainer.monitor}, where {better} "
                          f"is better: drop trainer.mode (auto follows the monitor) or set trainer.mode={natural}.")


def _check_monitor_syntax(monitor):
    known = sorted({f"val/{m}" for m in CLASSIFICATION_SCALARS + REGRESSION_SCALARS + BINARY_SCALARS}
                   | {"train/loss", "train/accuracy"})
    if monitor not in known:
        raise ConfigError(unknown_choice("trainer.monitor", monitor, known))


def check_monitor(monitor, task):
    """The monitored metric must be one that `task` produces."""
    allowed = monitor_names(task)
    if monitor not in allowed:
        raise ConfigError(
            f"trainer.monitor={monitor} is not produced by this dataset's task '{task}'. "
            f"Choose one of: {', '.join(allowed)}.")


def check_components(cfg):
    """Every group names a registered builder (or a _target_) with known arguments."""
    from dlrun import loss, optimizer, scheduler
    from dlrun.build import plain
    from dlrun.data import DATASETS
    from dlrun.models import MODELS

    _check_tables(cfg)
    registries = {"dataset": DATASETS, "model": MODELS, "optimizer": optimizer.OPTIMIZERS,
                  "scheduler": scheduler.SCHEDULERS, "loss": loss.LOSSES}
    for group, registry in registries.items():
        spec = plain(cfg[group])
        if group == "loss" and spec.get("name") == "auto":
            continue  # resolved once the task is known (loss.build)
        registry.check(spec)


def _check_tables(cfg):
    """Plot and augmentation names, against the tables that implement them."""
    from dlrun.data.batches import AUGMENTATIONS

    augment = cfg.regularization.augment
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(unknown_choice("regularization.augment", augment, ["null", *AUGMENTATIONS]))
    if cfg.plots:
        from dlrun.plots import NAMES

        for plot in cfg.plots:
            if plot not in NAMES:
                raise ConfigError(unknown_choice("plots", plot, NAMES))
