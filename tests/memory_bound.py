"""A plugin for the tests of trainer.batch_size=auto: the MLP, except that a training batch of more
than `max_batch` rows asks the allocator for a petabyte first, which fails as a real
out-of-memory error does (the CPU allocator's "can't allocate memory"); smaller batches are the
MLP's own."""

import inspect

import torch

from dlrun.models import MODELS
from dlrun.models.mlp import mlp

MLP_ARGS = inspect.signature(mlp).parameters


@MODELS.register
def memory_bound_mlp(input_shape, num_outputs, max_batch=16, **args):
    net = mlp(input_shape, num_outputs, **{k: v for k, v in args.items() if k in MLP_ARGS})

    def allocate(module, inputs):
        if module.training and inputs[0].shape[0] > max_batch:
            torch.empty(2**50, dtype=torch.uint8)

    net.register_forward_pre_hook(allocate)
    return net
