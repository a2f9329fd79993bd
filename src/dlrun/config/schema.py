"""The one schema of dlrun's own keys: every top-level key and every key of the groups that dlrun
reads itself (split, cv, lr_find, predict, mlflow, wandb, trainer, device, regularization), declared once
as Hydra structured configs. Hydra composes the YAML options over them, so OmegaConf enforces
each key's type when the config is composed; ranges and choices are field metadata, and a choice
list that code implements is read from that code's table. Validation (`validate.check_config`),
`dlrun list`, `--help` and the error messages read this module.

The registry groups (dataset, model, optimizer, scheduler, loss) are free here: their builders'
signatures are their schema (see registry.py), and users' `_target_` components take any key.
Nothing here imports torch.
"""

import ast
import importlib.util
import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from hydra.core.config_store import ConfigStore

NAME = "dlrun_schema"  # the primary config's first default (conf/config.yaml)


@dataclass(frozen=True)
class Rule:
    """What a key allows beyond its type: `text` says it, `test` checks a value (None passes)."""

    text: str
    test: Any = None

    def allows(self, value):
        return self.test is None or self.test(value)


def at_least(low):
    return Rule(f">= {low}", lambda v: v >= low)


def above(low):
    return Rule(f"> {low}", lambda v: v > low)


def between(low, high):
    return Rule(f"in [{low}, {high}]", lambda v: low <= v <= high)


def fraction(text="in [0, 1)"):
    return Rule(text, lambda v: 0 <= v < 1)


@dataclass(frozen=True)
class Table:
    """The names of a table that code implements (`module.TABLE`'s keys, or its items for a list),
    read from the module when it is imported, else from its source without importing it (so that
    `dlrun list` and the early checks never import torch). `extra` are names the code handles
    beside the table (null, default...)."""

    module: str
    table: str
    extra: tuple = ()
    light: bool = False  # the module imports nothing heavy: import it

    def names(self):
        loaded = importlib.import_module(self.module) if self.light else sys.modules.get(self.module)
        if loaded is not None and hasattr(loaded, self.table):
            return [*self.extra, *getattr(loaded, self.table)]
        return [*self.extra, *_literal_names(self.module, self.table)]


def _source(module):
    """The file of `module`, found without importing its parent packages (dlrun.data imports torch)."""
    top, *rest = module.split(".")
    folder = Path(importlib.util.find_spec(top).origin).parent
    path = folder.joinpath(*rest)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _literal_names(module, table):
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == table for t in targets):
            value = node.value
            items = value.keys if isinstance(value, ast.Dict) else value.elts
            return [ast.literal_eval(item) for item in items]
    raise LookupError(f"{module}.{table} is not a literal table")


def key(default, doc, rule=None, choices=None):
    """A schema field: its default, what it means (shown by `dlrun list`), a Rule and/or its
    choices (a tuple, or a Table)."""
    meta = {"doc": doc, "rule": rule, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if is_dataclass(default):
        return field(default_factory=lambda: type(default)(), metadata=meta)
    return field(default=default, metadata=meta)


def choices_of(meta):
    """The allowed values of a field's metadata, as a list (None where any value of its type goes)."""
    options = meta.get("choices")
    if options is None:
        return None
    return options.names() if isinstance(options, Table) else list(options)


MONITOR = Table("dlrun.results.metric_names", "MONITORED", light=True)
BATCH_LIMIT = Rule("a count of batches >= 1, a fraction in (0, 1], or null",
                   lambda v: not isinstance(v, bool) and (v >= 1 if isinstance(v, int) else
                                                          isinstance(v, float) and 0 < v <= 1))

BATCH_SIZE = Rule("a count >= 1 or auto", lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool)
                                                                     and v >= 1))
WORKERS = Rule("a count >= 0 or auto", lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0))


@dataclass
class EarlyStopping:
    enabled: bool = key(True, "stop when the monitor has not improved for `patience` epochs")
    patience: int = key(5, "epochs without improvement before stopping", at_least(0))
    min_delta: float = key(0.0, "the least change that counts as an improvement", at_least(0))


@dataclass
class CheckpointPolicy:
    save_best: bool = key(True, "write best.pt when the monitor improves")
    save_last: bool = key(True, "write last.pt (the position to resume from)")
    every_n_epochs: int = key(1, "write last.pt every N epochs (and after the final one)", at_least(1))
    every_n_steps: int | None = key(None, "also write last.pt every N optimizer steps within epochs",
                                       at_least(1))
    keep_every_n_epochs: int | None = key(None, "keep every N-th epoch as checkpoints/epochNNN_<monitor>_<value>.pt, "
                                                "never overwritten", at_least(1))
    save_top_k: int = key(0, "keep the K best epochs by the monitor as named checkpoints (the others are removed)",
                          at_least(0))


@dataclass
class AveragingConfig:
    kind: str | None = key(None, "null | ema (after every optimizer step) | swa (epoch ends from swa_start)",
                              choices=(None, "ema", "swa"))
    ema_decay: float = key(0.999, "the EMA's decay", Rule("in (0, 1)", lambda v: 0 < v < 1))
    ema_warmup: bool = key(True, "decay min(ema_decay, (1 + n) / (10 + n)) after n updates")
    swa_start: float = key(0.75, "the first SWA epoch: a number from 1, or a fraction of max_epochs",
                           Rule("an epoch number >= 1 or a fraction in (0, 1)",
                                lambda v: v > 0 and (v < 1 or float(v).is_integer())))
    swa_lr: float | None = key(None, "SWA epochs train at this constant learning rate (null: the schedule)",
                                  above(0))


@dataclass
class TrainerConfig:
    max_epochs: int = key(30, "epochs to train", at_least(1))
    batch_size: Any = key(64, "training batch size (per process under torchrun): a count, or auto (the largest "
                              "that fits the device, accumulated up to effective_batch_size)", BATCH_SIZE)
    effective_batch_size: int = key(256, "with batch_size=auto: the samples each optimizer step sees (per process)",
                                    at_least(1))
    eval_batch_size: int = key(1024, "validation and test batch size", at_least(1))
    sampling: str = key("shuffle", "how each epoch's training rows are drawn",
                        choices=Table("dlrun.data.sampling", "SAMPLING"))
    accumulate_grad_batches: int = key(1, "K: one optimizer step per K batches", at_least(1))
    monitor: str = key("val/loss", "drives best.pt, early stopping and the plateau scheduler", choices=MONITOR)
    val_metrics: Any = key([], "probability metrics validated every epoch besides the cheap ones, or all",
                           choices=Table("dlrun.results.metric_names", "PROBABILITY_METRICS", ("all",), light=True))
    mode: str = key("auto", "auto (follows the monitor) | min | max", choices=("auto", "min", "max"))
    tta: str | None = key(None, "test-time augmentation after training (tested weights, test, predict, exports): "
                                "null | flip | multicrop (ten shifted and mirrored crops)",
                          choices=Table("dlrun.train.tta", "VIEWS", (None,)))
    test_weights: str = key("auto", "weights tested: best | last | both | auto (best, or last without validation)",
                            choices=("auto", "best", "last", "both"))
    early_stopping: EarlyStopping = key(EarlyStopping(), "")
    checkpoint: CheckpointPolicy = key(CheckpointPolicy(), "")
    val_every_n_steps: int | None = key(None, "also validate every N optimizer steps within epochs", at_least(1))
    averaging: AveragingConfig = key(AveragingConfig(), "")
    skip_nonfinite: int = key(0, "skip up to N batches with a non-finite loss before stopping as diverged",
                              at_least(0))
    max_time: float | None = key(None, "seconds of training; then last.pt keeps the exact position",
                                    Rule("> 0 (seconds) or null", lambda v: v > 0))
    progress: bool = key(True, "the live display and the per-epoch lines")
    sync_batchnorm: bool = key(False, "under torchrun: batch-norm statistics over the batches of all processes "
                                      "(torch's SyncBatchNorm); nothing changes in one process")
    collective_timeout: float = key(300.0, "seconds a process waits for the others in a collective under torchrun "
                                           "before the run fails, naming the one that stopped answering", above(0))
    num_workers: Any = key(0, "DataLoader workers (datasets that are not held in memory): a count, or auto "
                              "(one per core this process has, less one for training, at most 8)", WORKERS)
    overfit_batches: int = key(0, "N > 0: train and validate on the same first N batches", at_least(0))
    limit_train_batches: Any = key(None, "batches per epoch: a count (5) or a fraction (0.1); null: all",
                                   BATCH_LIMIT)
    limit_val_batches: Any = key(None, "validation batches: a count or a fraction; null: all", BATCH_LIMIT)
    fast_dev_run: bool = key(False, "one batch of each split through the whole pipeline")
    profile_steps: int = key(0, "N > 0: torch.profiler over N steps", at_least(0))
    detect_anomaly: bool = key(False, "autograd anomaly detection (slow)")


@dataclass
class DeviceConfig:
    name: str = key("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | mps",
                    choices=("auto", "cpu", "cuda", "mps"))
    deterministic: bool = key(False, "deterministic algorithms and cuDNN flags")
    precision: str = key("fp32", "autocast precision (a gradient scaler for fp16)",
                         choices=Table("dlrun.train.device", "PRECISIONS"))
    matmul_precision: str = key("highest", "float32 matrix products: highest (exact fp32) | high (TF32 on GPUs "
                                           "that have it) | medium (bf16 inside)", choices=("highest", "high", "medium"))
    channels_last: bool = key(False, "channels-last memory format for image models")
    compile: bool = key(False, "torch.compile the model")
    compile_mode: str = key("default", "torch.compile's mode")


@dataclass
class GradClip:
    mode: str | None = key(None, "null | norm | value", choices=(None, "norm", "value"))
    max: float = key(1.0, "the largest gradient norm (or value)", above(0))


@dataclass
class RegularizationConfig:
    dropout: float | None = key(None, "overrides the model's dropout when set", fraction())
    weight_decay: float = key(0.0, "L2, applied by the optimizer", at_least(0))
    decay_norm_and_bias: bool = key(True, "false: exempt normalisation weights and biases from weight decay")
    l1: float = key(0.0, "adds l1 * sum(|w|) over weights to the loss", at_least(0))
    grad_clip: GradClip = key(GradClip(), "")
    augment: Any = key(None, "image augmentation: a preset or a list of presets and steps ([flip, rotate]); "
                             "trivial_augment, rand_augment and auto_augment are torchvision's policies",
                       choices=Table("dlrun.data.batches", "AUGMENTATIONS", (None,)))
    rotate_degrees: float = key(15.0, "augment's rotation: up to this many degrees either way", at_least(0))
    crop_pad: int | None = key(None, "augment's crop: a shift of up to this many pixels; null: an eighth of the "
                                     "image", at_least(1))
    cutout_size: int | None = key(None, "augment's cutout: a square hole this many pixels wide; null: a quarter "
                                        "of the image", at_least(1))
    augment_ops: int = key(2, "rand_augment: operations per image", at_least(1))
    augment_magnitude: int = key(9, "rand_augment: the magnitude bin of each operation, of 31 (0: none)",
                                 between(0, 30))
    mixup_alpha: float = key(0.0, "mixup's Beta(alpha, alpha); 0: off", at_least(0))
    cutmix_alpha: float = key(0.0, "CutMix's Beta(alpha, alpha); 0: off", at_least(0))


@dataclass
class SplitConfig:
    strategy: str = key("stratified", "stratified | random", choices=("stratified", "random"))
    val: float = key(0.15, "fraction held out for validation (0: none)", fraction("in [0, 1) (0: no validation split)"))
    test: float = key(0.15, "fraction held out for test (unless the dataset has its own)", fraction())


@dataclass
class PredictConfig:
    input: str | None = key(None, "task=predict: a CSV file, a folder of images or a .npy array")


@dataclass
class LrFindConfig:
    min_lr: float = key(1.0e-7, "the first learning rate tried", above(0))
    max_lr: float = key(10.0, "the last learning rate tried", above(0))
    steps: int = key(200, "training steps of the test", at_least(10))


@dataclass
class CvConfig:
    folds: int = key(1, ">1: k-fold cross-validation, one model per fold", at_least(1))
    stratified: bool = key(True, "folds keep the class proportions")
    fold: int | None = key(None, "one fold only (0 .. folds-1)", at_least(0))


@dataclass
class MlflowConfig:
    tracking_uri: str | None = key(None, "default: $MLFLOW_TRACKING_URI, else sqlite:///<outputs>/mlflow.db")
    experiment: str = key("dlrun", "the experiment of single runs")


@dataclass
class WandbConfig:
    project: str = key("dlrun", "the W&B project")
    entity: str | None = key(None, "the W&B team or user; default: your account's")
    mode: str = key("offline", "offline (files in the run directory, uploaded later with wandb sync) | online",
                    choices=("offline", "online"))
    group: str | None = key(None, "default: a sweep's jobs are one group, named after the sweep's directory")


TASKS = ("train", "eval", "inspect", "lr_find", "predict")


@dataclass
class DlrunConfig:
    task: str = key("train", "train | eval | inspect | lr_find | predict", choices=TASKS)
    seed: int = key(42, "seeds Python, NumPy and torch", Rule("in [0, 2**63)", lambda v: 0 <= v < 2**63))
    name: str | None = key(None, "a name for the run, in its record and report: dlrun runs --where name=...")
    tags: list[str] = key([], "labels to find the run by: tags=[baseline,dev], then dlrun runs --tag dev")
    ckpt_path: str | None = key(None, "checkpoint or run directory: resumes (train) or evaluates (eval)")
    init_from: str | None = key(None, "run directory or .pt whose matching weights start this run")
    init_from_exclude: list[str] = key([], "parameter-name patterns not loaded by init_from")
    plugins: list[str] = key([], "modules imported before building, so they can register components")
    resume: bool = key(False, "with -m and an existing hydra.sweep.dir: continue the sweep")
    cache: bool = key(False, "skip a training whose config, code, packages, device and data completed before under "
                             "the outputs root: its files are linked into this run's directory")
    trust_run_code: bool = key(False, "a stored run's own _target_ and plugins may run")
    trust_unverified_ckpt: bool = key(False, "load a checkpoint that carries no checksum")
    split: SplitConfig = key(SplitConfig(), "")
    predict: PredictConfig = key(PredictConfig(), "")
    lr_find: LrFindConfig = key(LrFindConfig(), "")
    cv: CvConfig = key(CvConfig(), "")
    plots: list[str] = key(["class_counts", "samples", "curves", "lr", "confusion", "per_class", "confidence",
                            "reliability", "roc", "pr_curve", "misclassified", "embeddings", "weights", "filters",
                            "regression"], "plots written to plots/ (those that do not apply are skipped); "
                           "embeddings_tsne is drawn when added", choices=Table("dlrun.results.plots", "NAMES", light=True))
    report: bool = key(True, "report.html in the run directory")
    show_config: str = key("short", "short | full | none", choices=("short", "full", "none"))
    probabilities: bool = key(False, "predictions.csv also gets one prob_<class> column per class")
    export: str | None = key(None, "null | torchscript | onnx", choices=(None, "torchscript", "onnx"))
    logger: str = key("csv", "csv | tensorboard | mlflow | wandb", choices=("csv", "tensorboard", "mlflow", "wandb"))
    mlflow: MlflowConfig = key(MlflowConfig(), "")
    wandb: WandbConfig = key(WandbConfig(), "")
    dataset: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    regularization: RegularizationConfig = key(RegularizationConfig(), "")
    loss: Any = None
    device: DeviceConfig = key(DeviceConfig(), "")
    trainer: TrainerConfig = key(TrainerConfig(), "")


# The groups whose keys dlrun reads itself (a key added there with `+` is a typo), and the registry
# groups, whose keys are their builders' arguments (or a user's `_target_` component's).
FIXED_GROUPS = tuple(f.name for f in fields(DlrunConfig) if is_dataclass(f.type))
REGISTRY_GROUPS = tuple(f.name for f in fields(DlrunConfig) if f.type is Any)


def register():
    """Put the schema in Hydra's ConfigStore (idempotent), before any composition."""
    ConfigStore.instance().store(name=NAME, node=DlrunConfig)


def spec(path):
    """The dataclass Field of a dotted key (`trainer.early_stopping.patience`), or None where the
    schema does not declare it (a registry group's key, an unknown one)."""
    node, found = DlrunConfig, None
    for part in path.split("."):
        if not is_dataclass(node):
            return None
        found = next((f for f in fields(node) if f.name == part), None)
        if found is None:
            return None
        node = found.type
    return found


def leaves(node=DlrunConfig, prefix=""):
    """(dotted key, Field) of every declared key that holds a value (not a nested group)."""
    for f in fields(node):
        if is_dataclass(f.type):
            yield from leaves(f.type, f"{prefix}{f.name}.")
        elif f.metadata:
            yield f"{prefix}{f.name}", f


def default_of(f):
    return f.default_factory() if f.default is MISSING else f.default


def type_text(f):
    """A field's type in words, as errors and `dlrun list` say it."""
    kind, nullable = f.type, False
    if get_origin(kind) is not None and type(None) in get_args(kind):
        kind, nullable = next(a for a in get_args(kind) if a is not type(None)), True
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if get_origin(kind) is list:
        text = f"a list of {words[get_args(kind)[0]].removeprefix('a ')}s"
    else:
        text = words.get(kind, "a value")
    return text + (" or null" if nullable else "")


@dataclass(frozen=True)
class Argument:
    """An argument of dlrun's own builders in a registry group: `kind` is int, float or "sizes"
    (an integer or a list of them, each tested), `rule` its range or `choices` its values."""

    kind: Any
    rule: Rule = None
    choices: Any = None


SIZES = Rule("an integer >= 1 or a list of them", lambda v: v >= 1)

# Checked where the group names a registered builder (not a user's `_target_`) that takes the key;
# `dlrun list` shows them for the shipped options. The builders' own signatures name the keys.
ARGUMENTS = {
    "optimizer.lr": Argument(float, above(0)),
    "optimizer.head_lr": Argument(float, above(0)),
    "optimizer.layer_decay": Argument(float, Rule("in (0, 1]", lambda v: 0 < v <= 1)),
    "optimizer.momentum": Argument(float, fraction()),
    "model.init": Argument(str, choices=Table("dlrun.models.base", "INITS", ("default",))),
    "model.init_scale": Argument(float, above(0)),
    "model.unfreeze_epoch": Argument(int, Rule(">= 1 (counted from 1)", lambda v: v >= 1)),
    "model.dropout": Argument(float, fraction()),
    "model.hidden_sizes": Argument("sizes", SIZES),
    "model.channels": Argument("sizes", SIZES),
    "model.widths": Argument("sizes", SIZES),
    "model.hidden": Argument("sizes", at_least(0)),
    "model.dropout_at": Argument(list[str], choices=Table("dlrun.models.cnn", "DROPOUT_PLACES")),
    "model.kernel_size": Argument("sizes", SIZES),
    "model.negative_slope": Argument(float, at_least(0)),
    "dataset.image_size": Argument("sizes", SIZES),
    "dataset.resize": Argument(int, Rule(">= 1 (pixels)", lambda v: v >= 1)),
    "dataset.size": Argument(int, at_least(1)),
    "dataset.n_samples": Argument(int, at_least(1)),
    "dataset.channels": Argument(int, choices=(1, 3)),
    "dataset.threshold_metric": Argument(str, choices=Table("dlrun.results.metrics", "THRESHOLD_METRICS")),
    "scheduler.warmup_epochs": Argument(int, at_least(0)),
    "scheduler.gamma": Argument(float, above(0)),
    "scheduler.step_size": Argument(int, at_least(1)),
    "loss.label_smoothing": Argument(float, fraction()),
    "loss.gamma": Argument(float, at_least(0)),
}


def allowed_text(path):
    """What `path` allows, in words ("" when any value of its type goes): for `dlrun list`."""
    found = spec(path)
    if found is not None:
        rule, options = found.metadata.get("rule"), choices_of(found.metadata)
    elif path in ARGUMENTS:
        rule, options = ARGUMENTS[path].rule, ARGUMENTS[path].choices
        options = options.names() if isinstance(options, Table) else options
    else:
        return ""
    if options is not None:
        return " | ".join("null" if o is None else str(o) for o in options)
    return rule.text if rule is not None else ""
