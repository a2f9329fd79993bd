"""A researcher's own data and models for dlrun: 1-D signals, a 1-D CNN and a GRU.

Importing this module (plugins=[signals]) registers the dataset `signals` and the models
`cnn1d` and `gru`; the YAML files in conf/ select them. See "Bring your own data and model"
in the README; plain_pytorch.py trains the same models on the same rows without dlrun.
"""

import numpy as np
from torch import nn

from dlrun.data import DATASETS, Data
from dlrun.models import MODELS, Network


@DATASETS.register
def signals(n_train=3000, n_test=1000, length=40, classes=10, noise=0.5, seed=0):
    """Noisy waves of `length` samples; the class is the wave's frequency. Float64 arrays, as
    NumPy makes them, and the dataset's own test split."""
    rng = np.random.default_rng(seed)

    def draw(n):
        y = rng.integers(0, classes, size=n)
        t = np.arange(length) / length
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        cycles = 1.0 + 0.5 * y[:, None]
        x = np.sin(2 * np.pi * cycles * t + phase) + noise * rng.normal(size=(n, length))
        return x, y

    x, y = draw(n_train)
    x_test, y_test = draw(n_test)
    return Data(x=x, y=y, x_test=x_test, y_test=y_test, task="multiclass",
                class_names=[f"{1 + 0.5 * c:g} cycles" for c in range(classes)], standardize=True)


@MODELS.register
def cnn1d(input_shape, num_outputs, channels=32, kernel_size=5):
    """Two 1-D convolutions over the row seen as a one-channel sequence, then global pooling."""
    features = nn.Sequential(
        nn.Unflatten(1, (1, input_shape[0])),
        nn.Conv1d(1, channels, kernel_size, padding="same"), nn.ReLU(),
        nn.Conv1d(channels, channels, kernel_size, padding="same"), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(),
    )
    return Network(features, nn.Linear(channels, num_outputs))


class LastHidden(nn.Module):
    """A GRU over the row seen as a sequence of scalars; its last hidden state is the embedding."""

    def __init__(self, hidden_size):
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True)

    def forward(self, x):
        _, hidden = self.gru(x.unsqueeze(-1))
        return hidden[-1]


@MODELS.register
def gru(input_shape, num_outputs, hidden_size=64):
    return Network(LastHidden(hidden_size), nn.Linear(hidden_size, num_outputs))
