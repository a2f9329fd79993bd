"""Optimizers. Builders receive parameter groups (weight decay already set per group)."""

import torch

from dlrun.errors import ConfigError
from dlrun.registry import Registry

OPTIMIZERS = Registry("optimizer", context=["params", "model"], handled=["head_lr", "layer_decay"])


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


@OPTIMIZERS.register("muon")
def muon(params, model, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, adamw_lr=1e-3, adamw_betas=(0.9, 0.95)):
    """torch's Muon (orthogonalised momentum) on the hidden weight matrices, AdamW on everything
    else (convolution filters, biases, norms and the head), as the record runs split them."""
    head = {id(p) for p in model.head.parameters()} if isinstance(getattr(model, "head", None), torch.nn.Module) \
        else set()
    hidden, rest = [], []
    for group in params:
        matrices = [p for p in group["params"] if p.ndim == 2 and id(p) not in head]
        others = [p for p in group["params"] if not (p.ndim == 2 and id(p) not in head)]
        if matrices:
            hidden.append({**group, "params": matrices, "lr": lr})
        if others:
            rest.append({**group, "params": others, "lr": group.get("lr", adamw_lr)})
    if not hidden:
        raise ConfigError(f"optimizer=muon trains the hidden weight matrices of a model with Muon, and "
                          f"{type(model).__name__} has none outside its head (a logistic model, or only "
                          f"convolutions): choose optimizer=adamw.")
    parts = {"muon": torch.optim.Muon(hidden, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)}
    if rest:
        parts["adamw"] = fused(torch.optim.AdamW, rest, lr=adamw_lr, betas=tuple(adamw_betas))
    return Combined(parts)


class Combined(torch.optim.Optimizer):
    """Optimizers over disjoint parameters, stepped as one: their parameter groups are this one's
    (a schedule sets each group's lr, relative to its own start), and its state_dict holds theirs."""

    def __init__(self, parts):
        self.parts = parts
        super().__init__([p for o in parts.values() for g in o.param_groups for p in g["params"]], {})
        self.param_groups = [g for o in parts.values() for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        for part in self.parts.values():
            part.step()

    def state_dict(self):
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict):
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])


@OPTIMIZERS.register("lion")
def lion(params, lr=1e-4, betas=(0.9, 0.99)):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an
    interpolated momentum, with decoupled weight decay; a learning rate 3-10x smaller than AdamW's."""
    return Lion(params, lr=lr, betas=tuple(betas))


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in (p for p in group["params"] if p.grad is not None):
                momentum = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(momentum * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                momentum.lerp_(p.grad, 1 - beta2)


@OPTIMIZERS.register("schedule_free")
def schedule_free(params, lr=0.0025, betas=(0.9, 0.999), warmup_steps=0):
    """Schedule-free AdamW (Defazio et al., 2024, "The Road Less Scheduled"): no schedule, and the
    weights to evaluate are an average of its iterates that its eval() switches to (the loop keeps
    them apart: schedule_free.py)."""
    try:
        import schedulefree
    except ImportError:
        raise ConfigError("optimizer=schedule_free needs the schedulefree package: pip install "
                          "'dlrun[schedulefree]' (or pip install schedulefree).") from None
    optimizer = schedulefree.AdamWScheduleFree(params, lr=lr, betas=tuple(betas), warmup_steps=warmup_steps)
    optimizer.train()
    return optimizer


def needs_closure(optimizer):
    """Optimizers that evaluate the loss themselves within a step (torch's L-BFGS)."""
    return isinstance(optimizer, torch.optim.LBFGS)


def param_groups(model, weight_decay, decay_norm_and_bias=True, head_lr=None, layer_decay=None, lr=None):
    """Trainable parameters, split so that biases and normalisation weights (1-D tensors) can be
    exempt from weight decay, the head (a Network's `head`) can have its own learning rate, and
    with `layer_decay` each layer learns at lr * layer_decay ** (layers above it): the layers
    are the modules that hold parameters, in the order the model declares them, the head last."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr is not None and not isinstance(getattr(model, "head", None), torch.nn.Module):
        raise ConfigError(f"optimizer.head_lr needs a model with a `head` module (every built-in model has one); "
                          f"{type(model).__name__} has none.")
    depth = _depths(model) if layer_decay is not None else {}
    top = max(depth.values(), default=0)
    groups = {}
    for name, param in trainable:
        head = head_lr is not None and name.startswith("head.")
        exempt = not decay_norm_and_bias and weight_decay > 0 and param.ndim <= 1
        layer = depth.get(name.rpartition(".")[0], top)
        group = groups.setdefault((head, exempt, layer), {"params": [], "weight_decay": 0.0 if exempt else weight_decay})
        if head:
            group["lr"] = head_lr
        elif layer_decay is not None:
            group["lr"] = lr * layer_decay ** (top - layer)
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def _depths(model):
    """The place of each module that holds parameters itself, in declaration order (the head last)."""
    owners = [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))]
    head = [n for n in owners if n == "head" or n.startswith("head.")]
    return {name: i for i, name in enumerate([n for n in owners if n not in head] + head)}


def build(spec, model, regularization):
    """The optimizer of `spec` over the model's parameter groups; `head_lr` (null: the same as
    `lr`) is read here, so every optimizer has it."""
    spec = dict(spec)
    head_lr, layer_decay = spec.pop("head_lr", None), spec.pop("layer_decay", None)
    if layer_decay is not None and spec.get("name") in ("muon", "lbfgs"):
        raise ConfigError(f"optimizer.layer_decay sets a learning rate per layer, and optimizer={spec['name']} "
                          f"{'splits its parameters by shape' if spec['name'] == 'muon' else 'takes one group'}: "
                          f"use it with sgd, adam, adamw, rmsprop or lion.")
    groups = param_groups(model, regularization.weight_decay, regularization.decay_norm_and_bias, head_lr, layer_decay,
                          spec.get("lr"))
    return OPTIMIZERS.build(spec, params=groups, model=model)
