"""A plugin for the tests whose subject is time (a time budget, a live display, waiting for data):
its model is the MLP with every training batch lasting at least `seconds_per_batch`, and its
dataset digits with every row read lasting at least `seconds_per_row`, so that the test, not the
machine's speed, sets how long an epoch takes and what it waits for. The numbers it computes are
the MLP's own."""

import inspect
import time

import torch

from dlrun.data.base import DATASETS, Data
from dlrun.models import MODELS
from dlrun.models.mlp import mlp

MLP_ARGS = inspect.signature(mlp).parameters


@MODELS.register
def paced_mlp(input_shape, num_outputs, seconds_per_batch=0.02, **args):
    net = mlp(input_shape, num_outputs, **{k: v for k, v in args.items() if k in MLP_ARGS})

    def pause(module, _inputs):
        if module.training:
            time.sleep(seconds_per_batch)

    net.register_forward_pre_hook(pause)
    return net


class _SlowRows(torch.utils.data.Dataset):
    def __init__(self, x, y, seconds_per_row):
        self.x, self.y, self.seconds = torch.as_tensor(x, dtype=torch.float32), y, seconds_per_row

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        time.sleep(self.seconds)
        return self.x[index], self.y[index]


@DATASETS.register
def paced_digits(seconds_per_row=0.001):
    """scikit-learn's digits as a Dataset whose every row takes at least `seconds_per_row` to read:
    a data path slower than the training it feeds."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16
    return Data(x=_SlowRows(x, digits.target, seconds_per_row), y=digits.target,
                class_names=[str(c) for c in range(10)])
