"""Losses. Builders receive the task, the class weights and the number of classes."""

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import ConfigError
from dlrun.registry import Registry

LOSSES = Registry("loss", context=["task", "weights"], handled=["class_weights"])
CLASSIFICATION = ("multiclass", "binary")
TASK_OF_LOSS = {
    "cross_entropy": ("multiclass",),
    "focal": CLASSIFICATION,
    "bce_with_logits": ("binary", "multilabel"),
    "mse": ("regression", *CLASSIFICATION),
    "kl_div": CLASSIFICATION,
    "l1": ("regression",),
    "huber": ("regression",),
}
DEFAULT_LOSS = {"multiclass": "cross_entropy", "binary": "bce_with_logits", "multilabel": "bce_with_logits",
                "regression": "mse"}


def balanced_class_weights(targets, num_classes):
    """n_samples / (n_classes * count(c)): scikit-learn's 'balanced' weights."""
    counts = torch.bincount(targets.view(-1).long(), minlength=num_classes).float()
    return len(targets) / (num_classes * counts.clamp(min=1))


def label_pos_weights(targets):
    """Multi-label 'balanced' weights: each label's negatives over its positives, BCE's pos_weight."""
    positives = targets.float().sum(0)
    return (len(targets) - positives) / positives.clamp(min=1)


def class_weights(setting, targets, num_classes):
    """None, 'balanced' (inverse frequency) or an explicit list, as a tensor; for multi-label
    targets (N, labels), each label's positive weight."""
    if setting is None or setting == "none":
        return None
    if setting == "balanced" and targets.dim() == 2 and targets.is_floating_point():
        return label_pos_weights(targets)
    if setting == "balanced":
        return balanced_class_weights(targets, num_classes)
    weights = torch.tensor([float(w) for w in setting])
    if len(weights) != num_classes:
        raise ConfigError(f"loss.class_weights has {len(weights)} entries but the dataset has {num_classes} classes.")
    return weights


class BinaryLoss(nn.Module):
    """BCE with logits on (N, 1) outputs and (N,) labels, or (multi-label) on (N, labels) outputs
    and 0/1 targets, with a positive weight per label."""

    def __init__(self, pos_weight=None):
        super().__init__()
        weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32).view(-1)
        self.register_buffer("pos_weight", weight)

    def forward(self, logits, target):
        if target.dim() == 1:
            logits = logits.squeeze(1)
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=self.pos_weight)


class FocalLoss(nn.Module):
    """Focal loss: cross-entropy scaled by (1 - p_t)^gamma, optionally weighted by alpha.

    Multiclass takes (N, C) logits, binary (N, 1); with gamma=0 and no alpha it
    is exactly cross-entropy (binary: BCE).
    """

    def __init__(self, gamma=2.0, alpha=None, binary=False):
        super().__init__()
        self.gamma = gamma
        self.binary = binary
        alpha = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).view(-1)
        self.register_buffer("alpha", alpha)

    def forward(self, logits, target):
        if self.binary:
            logits, target = logits.squeeze(1), target.float()
            log_p = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            log_p = -F.cross_entropy(logits, target, reduction="none")
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            if self.binary:
                a = self.alpha[0]
                loss = loss * torch.where(target > 0.5, a, 1 - a)
            else:
                loss = loss * self.alpha[target]
        return loss.mean()


@LOSSES.register("cross_entropy")
def cross_entropy(weights=None, label_smoothing=0.0):
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


@LOSSES.register("focal")
def focal(task, gamma=2.0, alpha=None, weights=None):
    """Class weights (loss.class_weights) serve as alpha when alpha is not given."""
    if alpha is None and weights is not None:
        alpha = float(weights[1] / weights.sum()) if task == "binary" else weights
    return FocalLoss(gamma=gamma, alpha=alpha, binary=task == "binary")


@LOSSES.register("bce_with_logits")
def bce_with_logits(pos_weight=None):
    return BinaryLoss(pos_weight)


class ProbabilityLoss(nn.Module):
    """A classification loss on the predicted probabilities against one-hot targets, as the
    classic MNIST lesson compares them with cross-entropy: `mse` (the squared error of the
    probabilities) or `kl_div` (KL divergence of the log-probabilities; for one-hot targets it
    equals cross-entropy). Binary tasks take (N, 1) logits, as [1 - p, p]."""

    def __init__(self, kind, binary):
        super().__init__()
        self.kind, self.binary = kind, binary

    def forward(self, logits, target):
        if self.binary:
            logits = torch.cat([torch.zeros_like(logits), logits], 1)  # softmax of [0, z] is [1 - p, p]
        log_p = F.log_softmax(logits.float(), 1)
        one_hot = F.one_hot(target.long(), log_p.shape[1]).float()
        if self.kind == "mse":
            return F.mse_loss(log_p.exp(), one_hot)
        return F.kl_div(log_p, one_hot, reduction="batchmean")


@LOSSES.register("mse")
def mse(task):
    """Regression's squared error; for classification, that of the probabilities against one-hot targets."""
    return nn.MSELoss() if task == "regression" else ProbabilityLoss("mse", task == "binary")


@LOSSES.register("kl_div")
def kl_div(task):
    return ProbabilityLoss("kl_div", task == "binary")


@LOSSES.register("l1")
def l1():
    return nn.L1Loss()


@LOSSES.register("huber")
def huber(delta=1.0):
    return nn.HuberLoss(delta=delta)


def build(spec, task, train_targets, num_classes):
    """The loss module for `task`; `name: auto` picks the task's usual loss."""
    args = dict(spec)
    name = args.get("name")
    if name == "auto":
        name = args["name"] = DEFAULT_LOSS[task]
        if task != "multiclass":
            args.pop("label_smoothing", None)
        if task == "regression":
            args.pop("class_weights", None)
    if name in TASK_OF_LOSS and task not in TASK_OF_LOSS[name]:
        raise ConfigError(
            f"loss={name} does not fit this dataset's task '{task}'. "
            f"Losses for {task}: {', '.join(n for n, t in TASK_OF_LOSS.items() if task in t)} (or loss=auto)."
        )
    weights = class_weights(args.get("class_weights"), train_targets, num_classes)
    given = None if weights is None else [float(w) for w in weights]
    if weights is not None and task == "multilabel":  # already each label's positive weight
        args["pos_weight"] = given if args.get("pos_weight") is None else args["pos_weight"]
        weights = None
    elif weights is not None and name == "bce_with_logits":
        # BCE takes one weight for the positive class relative to the negative one.
        if args.get("pos_weight") is None:
            args["pos_weight"] = float(weights[1] / weights[0])
        weights = None
    module = LOSSES.build(args, task=task, weights=weights)
    module.class_weights = given  # each class's weight, as the run records it (a plain list, no state)
    return module
