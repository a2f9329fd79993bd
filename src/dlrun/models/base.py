"""The model registry, weight initialisation and the embedding contract."""

import math

import torch
from torch import nn

from dlrun.errors import ConfigError, first_line, unknown_choice
from dlrun.registry import Registry

MODELS = Registry("model", builtins=["dlrun.models.mlp", "dlrun.models.cnn", "dlrun.models.resnet",
                            "dlrun.models.torchvision_models", "dlrun.models.timm_models"],
                  context=["input_shape", "num_outputs"], handled=["init", "init_scale", "freeze", "unfreeze_epoch"])


class Network(nn.Module):
    """A feature extractor followed by a linear head."""

    def __init__(self, features, head):
        super().__init__()
        self.features = features
        self.head = head

    def embed(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.features(x))


def _fan_in_bound(weight, scale):
    """`scale`, or 1/sqrt(fan_in) (the classic rule of the tutorials) when it is None."""
    fan_in = weight[0].numel()
    return scale if scale is not None else 1 / math.sqrt(fan_in)


# scheme -> initialiser(weight, scale); `scale` is model.init_scale (None: the scheme's default)
INITS = {
    "kaiming": lambda w, scale: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier": lambda w, scale: nn.init.xavier_uniform_(w, gain=1.0 if scale is None else scale),
    "orthogonal": lambda w, scale: nn.init.orthogonal_(w, gain=1.0 if scale is None else scale),
    "uniform": lambda w, scale: nn.init.uniform_(w, -_fan_in_bound(w, scale), _fan_in_bound(w, scale)),
    "normal": lambda w, scale: nn.init.normal_(w, 0.0, _fan_in_bound(w, scale)),
    "zeros": lambda w, scale: nn.init.zeros_(w),
}


def initialize(model, scheme, scale=None):
    """Re-initialise linear and convolution weights (biases to zero), of any model; other layers
    (recurrent, normalisation) keep theirs; `default` keeps PyTorch's.
    `scale` is the bound of uniform (U(-scale, scale)), the std of normal, the gain of xavier
    and orthogonal; None gives 1/sqrt(fan_in) for uniform and normal, gain 1 otherwise."""
    if scheme == "default":
        return model
    if scheme not in INITS:
        raise ConfigError(unknown_choice("model.init", scheme, ["default", *INITS]))
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            INITS[scheme](module.weight, scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def build(spec, input_shape, num_outputs):
    """Build the model named by `spec`, check that it takes the data's inputs, and apply its `init` scheme."""
    input_shape, name = tuple(input_shape), spec.get("name") or spec.get("_target_")
    try:
        model = MODELS.build(spec, input_shape=input_shape, num_outputs=num_outputs)
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:  # e.g. a layer size the input makes <= 0
        raise ConfigError(_misfit(name, input_shape, exc)) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model builder returned {type(model).__name__}, not a torch.nn.Module.")
    check_fits(model, name, input_shape, num_outputs)
    return initialize(model, spec.get("init", "default"), spec.get("init_scale"))


def check_fits(model, name, input_shape, num_outputs):
    """One forward pass of a batch of two zero inputs, before anything is written: an image
    model on tabular data, or a model whose output is not (batch, num_outputs), is refused
    now rather than after the run started. Eval mode, no gradients: no state changes (lazy
    layers are materialised, as the first batch would)."""
    try:
        out = trial_forward(model, input_shape)
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as exc:
        raise ConfigError(_misfit(name, input_shape, exc)) from None
    shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    if shape != (2, num_outputs):
        raise ConfigError(f"model={name} returns {shape} for a batch of 2 inputs of shape {input_shape}; "
                          f"dlrun needs a tensor of shape (2, {num_outputs}) (batch, outputs) for this dataset.")


def trial_forward(model, input_shape):
    """The output for a batch of two zero inputs, in eval mode without gradients (the
    model's mode is restored; no state changes, except that lazy layers are materialised)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros(2, *input_shape))
    finally:
        model.train(was_training)


def _misfit(name, input_shape, exc):
    if len(input_shape) == 1:
        hint = (" An image model needs image data (channels, height, width); for tabular data use model=mlp or "
                "model=logistic.")
    else:
        hint = (" If the model needs larger images, resize them: dataset.resize=224 (or the size it was made for)."
                if min(input_shape[1:]) < 224 else "")
    return f"model={name} does not fit this dataset's inputs of shape {input_shape}: {first_line(exc).rstrip('.!')}.{hint}"


def embeddings(model, x):
    """Penultimate activations, when the model exposes them (``embed``)."""
    embed = getattr(model, "embed", None)
    return embed(x) if callable(embed) else None


ACTIVATIONS = {
    "relu": lambda slope: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "prelu": lambda slope: nn.PReLU(init=slope),
    "elu": lambda slope: nn.ELU(),
    "gelu": lambda slope: nn.GELU(),
    "silu": lambda slope: nn.SiLU(),
    "tanh": lambda slope: nn.Tanh(),
    "sigmoid": lambda slope: nn.Sigmoid(),
    "identity": lambda slope: nn.Identity(),  # a linear stack: the lesson on why depth needs non-linearity
}


def make_activation(name, negative_slope=0.01):
    """The activation module `name`; `negative_slope` is leaky_relu's slope and prelu's initial one."""
    if name not in ACTIVATIONS:
        raise ConfigError(unknown_choice("model.activation", name, ACTIVATIONS))
    return ACTIVATIONS[name](negative_slope)


def flat_size(module, input_shape):
    """Number of features `module` produces for one input of `input_shape`."""
    with torch.no_grad():
        return module(torch.zeros(1, *input_shape)).flatten(1).shape[1]
