"""Regularization applied around the model: dropout override, L1 penalty,
mixup and cutmix. (L2 weight decay is the optimizer's; gradient clipping is in step.py.)"""

import random

import torch
from torch import nn


def set_dropout(model, p):
    """Set the probability of every dropout layer of `model` to `p`."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = p


def penalized_weights(model):
    """The weights of linear and conv layers (not biases, not normalisation)."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


def l1_penalty(weights):
    """Sum of absolute values of `weights`."""
    return sum(w.abs().sum() for w in weights)


def mix(x, y, mixup_alpha, cutmix_alpha, generator):
    """Mixup or CutMix of a batch with a shuffled copy of itself.

    Returns the mixed inputs, the partner labels and the weight `lam` of the
    original labels; the loss is lam * loss(y) + (1 - lam) * loss(y_partner).
    Lambda comes from Python's seeded RNG, so no host-device transfer is needed.
    """
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or random.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = random.betavariate(alpha, alpha)
    perm = torch.randperm(x.shape[0], device=x.device, generator=generator)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[perm], y[perm], lam
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    top, left = random.randint(0, h - cut_h), random.randint(0, w - cut_w)
    x = x.clone()
    x[..., top:top + cut_h, left:left + cut_w] = x[perm][..., top:top + cut_h, left:left + cut_w]
    return x, y[perm], 1 - (cut_h * cut_w) / (h * w)
