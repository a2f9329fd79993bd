"""Optimizers. Builders receive parameter groups (weight decay already set per group)."""

import torch

from dlrun.errors import ConfigError
from dlrun.registry import Registry

OPTIMIZERS = Registry("optimizer", context=["params"], handled=["head_lr"])


def fused(cls, params, **kwargs):
    """`cls` with torch's fused kernels where they exist for these parameters: one
    kernel per step, and a non-finite step is skipped on the device (see step.py)."""
    try:
        return cls(params, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device or dtype
        return cls(params, **kwargs)


@OPTIMIZERS.register("sgd")
def sgd(params, lr=0.01, momentum=0.0, nesterov=False):
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


@OPTIMIZERS.register("lbfgs")
def lbfgs(params, lr=1.0, max_iter=20, history_size=100, line_search_fn=None):
    """L-BFGS over one parameter group (torch's takes no other); it calls the loop's closure to
    evaluate the loss again (step.GuardedUpdate.with_closure)."""
    if line_search_fn not in (None, "strong_wolfe"):
        raise ConfigError(f"optimizer.line_search_fn={line_search_fn} is not known; it must be null or strong_wolfe.")
    if len(params) > 1 or any(group["weight_decay"] for group in params):
        raise ConfigError("optimizer=lbfgs takes one parameter group: no regularization.weight_decay and no "
                          "optimizer.head_lr (or choose another optimizer).")
    return torch.optim.LBFGS([p for group in params for p in group["params"]], lr=lr, max_iter=max_iter,
                             history_size=history_size, line_search_fn=line_search_fn)


def needs_closure(optimizer):
    """Optimizers that evaluate the loss themselves within a step (torch's L-BFGS)."""
    return isinstance(optimizer, torch.optim.LBFGS)


def param_groups(model, weight_decay, decay_norm_and_bias=True, head_lr=None):
    """Trainable parameters, split so that biases and normalisation weights (1-D tensors) can be
    exempt from weight decay, and the head (a Network's `head`) can have its own learning rate."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr is not None and not isinstance(getattr(model, "head", None), torch.nn.Module):
        raise ConfigError(f"optimizer.head_lr needs a model with a `head` module (every built-in model has one); "
                          f"{type(model).__name__} has none.")
    groups = {}
    for name, param in trainable:
        head = head_lr is not None and name.startswith("head.")
        exempt = not decay_norm_and_bias and weight_decay > 0 and param.ndim <= 1
        group = groups.setdefault((head, exempt), {"params": [], "weight_decay": 0.0 if exempt else weight_decay})
        if head:
            group["lr"] = head_lr
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def build(spec, model, regularization):
    """The optimizer of `spec` over the model's parameter groups; `head_lr` (null: the same as
    `lr`) is read here, so every optimizer has it."""
    spec = dict(spec)
    head_lr = spec.pop("head_lr", None)
    groups = param_groups(model, regularization.weight_decay, regularization.decay_norm_and_bias, head_lr)
    return OPTIMIZERS.build(spec, params=groups)
