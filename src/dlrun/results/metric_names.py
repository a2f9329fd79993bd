"""The metrics each task produces, by name (no torch: the config checks read them)."""

CLASSIFICATION_SCALARS = ("loss", "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                          "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc", "log_loss", "ece")
REGRESSION_SCALARS = ("loss", "mse", "rmse", "mae", "r2")
# a binary task's positive class: its precision, recall and F1 at the decision threshold, and the
# area under its precision-recall curve
BINARY_SCALARS = ("precision", "recall", "f1", "average_precision")
# Multi-label: accuracy is the share of rows with every label right (scikit-learn's subset accuracy),
# hamming_loss the share of wrong (row, label) cells; micro averages pool every label's counts.
MULTILABEL_SCALARS = ("loss", "accuracy", "hamming_loss", "precision_micro", "recall_micro", "f1_micro",
                      "precision_macro", "recall_macro", "f1_macro", "mean_average_precision", "roc_auc")
# Metrics that need every sample's probabilities, not only the confusion matrix: validation
# computes them each epoch only when they are monitored or listed in trainer.val_metrics.
PROBABILITY_METRICS = ("roc_auc", "log_loss", "ece", "average_precision", "mean_average_precision")


# Every value trainer.monitor may name (which ones a run produces depends on its task: monitor_names)
MONITORED = sorted({f"val/{m}" for m in CLASSIFICATION_SCALARS + REGRESSION_SCALARS + BINARY_SCALARS
                    + MULTILABEL_SCALARS}
                   | {"train/loss", "train/accuracy"})

LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "log_loss", "ece", "hamming_loss")  # the rest (accuracy, F1, AUC, R²...): higher


def natural_mode(monitor):
    """'min' for a monitored loss or error, 'max' for the rest: what trainer.mode=auto means."""
    return "min" if monitor.rpartition("/")[2] in LOWER_IS_BETTER else "max"


def mode_of(trainer):
    """The direction `trainer` (the config's trainer group) monitors in: trainer.mode, or with
    auto, the monitor's natural one."""
    return natural_mode(trainer.monitor) if trainer.mode == "auto" else trainer.mode


def scalar_names(task):
    if task == "regression":
        return REGRESSION_SCALARS
    if task == "multilabel":
        return MULTILABEL_SCALARS
    return CLASSIFICATION_SCALARS + (BINARY_SCALARS if task == "binary" else ())


def monitor_names(task):
    """Every value `trainer.monitor` may name for `task`."""
    return [f"val/{m}" for m in scalar_names(task)] + ["train/loss"] + (
        [] if task == "regression" else ["train/accuracy"])


def positive_class(task, class_names):
    """A binary task's positive class: class 1, the one its precision, recall, F1, average
    precision and decision threshold are of (None for other tasks)."""
    return str(class_names[1]) if task == "binary" and class_names and len(class_names) > 1 else None


def shown(name, task, positive=None):
    """A metric's name as the terminal and the report show it: a regression loss is computed
    on standardised targets (the other regression metrics are in the target's own units); a
    binary task's positive-class metrics name that class."""
    if task == "regression" and name.endswith("loss"):
        return f"{name} (standardised)"
    if positive is not None and name.rpartition("/")[2] in BINARY_SCALARS:
        return f"{name} of '{positive}'"
    return name


def distinct(metrics, value=lambda v: v):
    """`metrics` ({name: value}) as they are shown: a log loss equal to its loss (plain
    cross-entropy) once, as `loss = log_loss` (`test/loss = log_loss`...); summary.json keeps both.
    `value` reads the number of an entry (e.g. the mean of a cross-validation's {mean, std})."""
    shown = {}
    for name, entry in metrics.items():
        loss = name.removesuffix("log_loss") + "loss"
        if name.endswith("log_loss") and loss in metrics and _equal(value(metrics[loss]), value(entry)):
            continue
        partner = metrics.get(name.removesuffix("loss") + "log_loss") if name.endswith("loss") else None
        merged = partner is not None and not name.endswith("log_loss") and _equal(value(entry), value(partner))
        shown[f"{name} = log_loss" if merged else name] = entry
    return shown


def _equal(a, b):
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 5e-5


def objective_of(monitor, best_value, test):
    """(value, name) of a run's objective, what a sweep ranks and optimises: the monitored value
    at the best epoch; for a run without validation rows (it monitors the training loss or
    accuracy), the same metric on its held-out test split when it has one."""
    split, _, metric = monitor.partition("/")
    if split == "train" and isinstance((test or {}).get(metric), (int, float)):
        return test[metric], f"test/{metric}"
    return best_value, monitor
