"""Checks of the composed config that run before any data is loaded.

Each failure is one ConfigError naming the key, the bad value and what is
allowed. Registry names and builder arguments are checked by
:func:`check_components` once plugins are imported.
"""

import importlib.util
import math
from typing import Any, get_args, get_origin

from omegaconf import OmegaConf

from dlrun.config import schema
from dlrun.errors import ConfigError, unknown_choice
from dlrun.results.metric_names import monitor_names, natural_mode

ONNX_PACKAGES = ("onnx", "onnxscript")


def _is_number(value, kind):
    """An int (for kind int) or an int or float (for kind float); never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind is float or isinstance(value, int)


def _select(cfg, key):
    return OmegaConf.select(cfg, key, default="__absent__", throw_on_missing=False)


def check_config(cfg):
    """Ranges and choices of the keys dlrun itself reads, from the schema (OmegaConf enforced their
    types when the config was composed), then what the keys allow together."""
    for key, field in schema.leaves():
        value = _select(cfg, key)
        if value is not None and value != "__absent__":
            _check_value(key, value, field.type, field.metadata.get("rule"), schema.choices_of(field.metadata))
    for key, argument in schema.ARGUMENTS.items():
        group = key.split(".")[0]
        value = _select(cfg, key)
        if value is None or value == "__absent__" or OmegaConf.select(cfg, f"{group}._target_"):
            continue  # absent, unset, or a user's own component (its keys are its own)
        choices = argument.choices
        _check_value(key, value, argument.kind, argument.rule,
                     choices.names() if isinstance(choices, schema.Table) else choices)
    _check_packages(cfg)
    _check_together(cfg)


def _check_packages(cfg):
    """The optional packages that an export or a logger needs (and what a tracker tracks to)."""
    if cfg.export == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(f"export=onnx needs the {' and '.join(missing)} package(s): "
                              f"pip install {' '.join(ONNX_PACKAGES)} (or use export=torchscript).")
    if cfg.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install 'dlrun[tensorboard]'). CSV metrics are written either way.")
    from dlrun.sweeps import tracking

    tracking.check(cfg)


def _check_together(cfg):
    """What keys allow together: splits that leave training data, a fold of the folds, the keys
    each task needs, a mode that agrees with the monitor."""
    if cfg.split.val + cfg.split.test >= 1:
        raise ConfigError(
            f"split.val={cfg.split.val} + split.test={cfg.split.test} leaves no training data; keep the sum below 1.")
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
    _check_mode(cfg.trainer)
    _check_closure_optimizer(cfg)


def _check_closure_optimizer(cfg):
    """L-BFGS evaluates the loss again within its step, on the same batch: what changes a batch
    between evaluations, or splits one update over several, does not go with it."""
    if cfg.optimizer.get("name") != "lbfgs":
        return
    reg, trainer = cfg.regularization, cfg.trainer
    clashes = {"regularization.mixup_alpha": reg.mixup_alpha, "regularization.cutmix_alpha": reg.cutmix_alpha,
               "regularization.grad_clip.mode": reg.grad_clip.mode,
               "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches > 1,
               "device.precision=fp16": cfg.device.precision == "fp16"}
    given = [key for key, value in clashes.items() if value]
    if given:
        raise ConfigError(f"optimizer=lbfgs evaluates the loss several times per step on one batch, and {given[0]} "
                          f"does not go with that; remove it or choose another optimizer.")


def _check_value(key, value, kind, rule, choices):
    """One value against its type (where OmegaConf does not know it), range and choices; the items
    of a list each."""
    values = list(value) if OmegaConf.is_list(value) else [value]
    if kind == "sizes" or get_origin(kind) is list or (kind is Any and choices is not None):
        for item in values:
            _check_value(key, item, int if kind == "sizes" else None, None, choices)
        if rule is not None:
            _check_items(key, value, values, rule)
        return
    number = _number_kind(kind)
    if number is not None and not (_is_number(value, number) and math.isfinite(value)):
        what = "an integer" if number is int else "a finite number"
        raise ConfigError(f"{key}={_shown(value)}: expected {what}.")
    if choices is not None and value not in choices:
        if all(isinstance(o, int) for o in choices):
            raise ConfigError(f"{key}={value} is not allowed; it must be one of {', '.join(map(str, choices))}.")
        raise ConfigError(unknown_choice(key, value, ["null" if o is None else o for o in choices]))
    if rule is not None and not rule.allows(value):
        raise ConfigError(f"{key}={value} is out of range; it must be {rule.text}.")


def _check_items(key, value, values, rule):
    for item in values:
        if not _is_number(item, int) or not rule.allows(item):
            raise ConfigError(f"{key}={_shown(value)} is out of range: {_shown(item)} is not allowed; "
                              f"it must be {rule.text}.")


def _number_kind(kind):
    """int or float for a numeric field (Optional too), else None."""
    if get_origin(kind) is not None:
        kind = next((a for a in get_args(kind) if a is not type(None)), None)
    return kind if kind in (int, float) else None


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


def check_monitor(monitor, task):
    """The monitored metric must be one that `task` produces."""
    allowed = monitor_names(task)
    if monitor not in allowed:
        raise ConfigError(
            f"trainer.monitor={monitor} is not produced by this dataset's task '{task}'. "
            f"Choose one of: {', '.join(allowed)}.")


def without_validation(cfg):
    """The settings a training run without validation rows (split.val=0) runs with, {key: value}:
    it monitors the training loss and keeps no best.pt, since a "best" epoch by the training loss
    would be chosen on the rows it trained on. What needs validation rows is refused."""
    monitor = cfg.trainer.monitor
    if monitor.startswith("val/") and monitor != "val/loss":
        raise ConfigError(f"trainer.monitor={monitor} needs validation rows, and split.val=0 keeps none; monitor "
                          f"train/loss or train/accuracy, or keep a validation split.")
    needs = {"dataset.threshold=auto": cfg.dataset.get("threshold") == "auto",
             f"trainer.val_every_n_steps={cfg.trainer.val_every_n_steps}": cfg.trainer.val_every_n_steps,
             f"trainer.test_weights={cfg.trainer.test_weights}": cfg.trainer.test_weights in ("best", "both")}
    for setting, given in needs.items():
        if given:
            raise ConfigError(f"{setting} needs validation rows, and split.val=0 keeps none; remove it or keep a "
                              f"validation split.")
    return {"trainer.monitor": "train/loss", "trainer.mode": "min", "trainer.checkpoint.save_best": False}


def shown_without_validation(cfg):
    """The overrides that make `--cfg job` show what a composed config runs with when it keeps no
    validation rows (its split.val=0 and no cross-validation folds), [] otherwise. Only a shipped
    dataset is known to have no validation rows of its own before it is loaded: a plugin's or a
    _target_'s builder may hand over its own (then the run decides when it has the data)."""
    own_builder = cfg.plugins or "_target_" in cfg.dataset
    if cfg.task != "train" or cfg.split.val != 0 or cfg.cv.folds > 1 or own_builder:
        return []
    return [f"{key}={value}" for key, value in without_validation(cfg).items()]


def check_components(cfg):
    """Every group names a registered builder (or a _target_) with known arguments."""
    from dlrun.build import plain
    from dlrun.data import DATASETS
    from dlrun.models import MODELS
    from dlrun.train import loss, optimizer, scheduler

    registries = {"dataset": DATASETS, "model": MODELS, "optimizer": optimizer.OPTIMIZERS,
                  "scheduler": scheduler.SCHEDULERS, "loss": loss.LOSSES}
    for group, registry in registries.items():
        spec = plain(cfg[group])
        if group == "loss" and spec.get("name") == "auto":
            continue  # resolved once the task is known (loss.build)
        registry.check(spec)
