"""The model registry, weight initialisation and the embedding contract."""

import torch
from torch import nn

from dlrun.errors import ConfigError, unknown_choice
from dlrun.registry import Registry

MODELS = Registry("model", builtins=["dlrun.models.mlp", "dlrun.models.cnn", "dlrun.models.resnet"],
                  context=["input_shape", "num_outputs"], handled=["init"])


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


INITS = {
    "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier": nn.init.xavier_uniform_,
    "orthogonal": nn.init.orthogonal_,
}


def initialize(model, scheme):
    """Re-initialise linear and conv weights (biases to zero); `default` keeps PyTorch's."""
    if scheme == "default":
        return model
    if scheme not in INITS:
        raise ConfigError(unknown_choice("model.init", scheme, ["default", *INITS]))
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            INITS[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def build(spec, input_shape, num_outputs):
    """Build the model named by `spec` and apply its `init` scheme."""
    model = MODELS.build(spec, input_shape=tuple(input_shape), num_outputs=num_outputs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model builder returned {type(model).__name__}, not a torch.nn.Module.")
    return initialize(model, spec.get("init", "default"))


def embeddings(model, x):
    """Penultimate activations, when the model exposes them (``embed``)."""
    embed = getattr(model, "embed", None)
    return embed(x) if callable(embed) else None


ACTIVATIONS = {
    "relu": lambda slope: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "tanh": lambda slope: nn.Tanh(),
    "gelu": lambda slope: nn.GELU(),
    "sigmoid": lambda slope: nn.Sigmoid(),
}


def make_activation(name, negative_slope=0.01):
    if name not in ACTIVATIONS:
        raise ConfigError(unknown_choice("model.activation", name, ACTIVATIONS))
    return ACTIVATIONS[name](negative_slope)


def flat_size(module, input_shape):
    """Number of features `module` produces for one input of `input_shape`."""
    with torch.no_grad():
        return module(torch.zeros(1, *input_shape)).flatten(1).shape[1]
