"""Logistic regression and the multi-layer perceptron, on flattened inputs."""

import math

from torch import nn

from dlrun.models.base import MODELS, Network, make_activation


@MODELS.register("logistic")
def logistic(input_shape, num_outputs):
    """One linear layer: multinomial (or binary) logistic regression."""
    return Network(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs))


@MODELS.register("mlp")
def mlp(input_shape, num_outputs, hidden_sizes=(256, 128), activation="relu", negative_slope=0.01,
        dropout=0.2, batchnorm=False):
    layers = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden_sizes:
        layers.append(nn.Linear(width, size))
        if batchnorm:
            layers.append(nn.BatchNorm1d(size))
        layers += [make_activation(activation, negative_slope), nn.Dropout(dropout)]
        width = size
    return Network(nn.Sequential(*layers), nn.Linear(width, num_outputs))
