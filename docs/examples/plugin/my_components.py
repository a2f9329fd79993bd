"""A worked example of users' own components for dlrun (see the README).

Run it from the repository root:

    PYTHONPATH=docs/examples/plugin dlrun --config-dir docs/examples/plugin/conf \
        plugins=[my_components] dataset=moons model=two_layer
"""

import math

import numpy as np
from sklearn.datasets import make_moons
from torch import nn

from dlrun.data import Data
from dlrun.models import MODELS, Network


def moons(n_samples=600, noise=0.2, seed=0):
    """A dataset builder, named by `_target_` in conf/dataset/moons.yaml."""
    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return Data(x=x.astype(np.float32), y=y, task="multiclass", class_names=["upper", "lower"], standardize=True)


@MODELS.register("two_layer")
def two_layer(input_shape, num_outputs, width=32):
    """A model builder, registered by name when `plugins=[my_components]` imports this module."""
    features = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh())
    return Network(features, nn.Linear(width, num_outputs))
