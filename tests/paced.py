"""A plugin for the tests whose subject is time (a time budget, a live display): its model is the
MLP with every training batch lasting at least `seconds_per_batch`, so that the test, not the
machine's speed, sets how long an epoch takes. The numbers it computes are the MLP's own."""

import inspect
import time

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
