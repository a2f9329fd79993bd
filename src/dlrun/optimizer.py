"""Optimizers. Builders receive parameter groups (weight decay already set per group)."""

import torch

from dlrun.registry import Registry

OPTIMIZERS = Registry("optimizer", context=["params"])


def fused(cls, params, **kwargs):
    """`cls` with torch's fused kernels where they exist for these parameters: one
    kernel per step, and a non-finite step is skipped on the device (see step.py)."""
    try:
        return cls(params, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device or dtype
        return cls(params, **kwargs)


@OPTIMIZERS.register("sgd")
def sgd(params, lr=0.01, momentum=0.9, nesterov=False):
    return fused(torch.optim.SGD, params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


@OPTIMIZERS.register("adam")
def adam(params, lr=1e-3, betas=(0.9, 0.999)):
    return fused(torch.optim.Adam, params, lr=lr, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def adamw(params, lr=1e-3, betas=(0.9, 0.999)):
    """Adam with decoupled weight decay (regularization.weight_decay)."""
    return fused(torch.optim.AdamW, params, lr=lr, betas=tuple(betas))


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, lr=1e-3, alpha=0.99, momentum=0.0):
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, momentum=momentum)


def param_groups(model, weight_decay, decay_norm_and_bias=True):
    """Trainable parameters, split so that biases and normalisation weights
    (1-D tensors) can be exempt from weight decay."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": [p for _, p in trainable], "weight_decay": weight_decay}]
    decay = [p for _, p in trainable if p.ndim > 1]
    exempt = [p for _, p in trainable if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def build(spec, model, regularization):
    groups = param_groups(model, regularization.weight_decay, regularization.decay_norm_and_bias)
    return OPTIMIZERS.build(spec, params=groups)
