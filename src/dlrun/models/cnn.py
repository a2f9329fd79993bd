"""The classic convolutional network of the tutorials."""

import torch
from torch import nn

from dlrun.errors import ConfigError, unknown_choice
from dlrun.models.base import MODELS, Network, flat_size, make_activation

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
DROPOUT_PLACES = ("blocks", "flatten", "hidden")


@MODELS.register("cnn")
def cnn(input_shape, num_outputs, channels=(32, 64), kernel_size=3, padding="same", pool="max", hidden=128,
        dropout=0.25, dropout_at=("flatten", "hidden"), batchnorm=False, activation="relu", negative_slope=0.01):
    """(conv-activation-pool) per entry of `channels`, fully connected layers of the `hidden`
    widths (one width, a list, or 0 for none), a linear head.

    `kernel_size` is one size for every block or a list with one per block; `padding` is
    "same" (kernel_size // 2: the map keeps its size), "valid" (0) or a number of pixels.
    `dropout_at` says where dropout goes, as lessons differ: after each conv block ("blocks"),
    after the flatten ("flatten"), after each hidden layer ("hidden").
    Works for any number of input channels and any image size: pooling stops halving once
    the feature map is down to 1 pixel, and the flatten size is computed from the input shape.
    """
    places = _dropout_places(dropout_at) if dropout else set()
    if len(input_shape) != 3:
        raise ConfigError(f"model=cnn needs image inputs (channels, height, width); this dataset gives {tuple(input_shape)}.")
    if pool not in POOLS:
        raise ConfigError(unknown_choice("model.pool", pool, POOLS))
    kernels = _per_block(kernel_size, len(channels))
    layers, in_ch, size = [], input_shape[0], min(input_shape[1:])
    for block, (out_ch, kernel) in enumerate(zip(channels, kernels), 1):
        pad = _padding(padding, kernel)
        layers.append(nn.Conv2d(in_ch, out_ch, kernel, padding=pad))
        size = size + 2 * pad - kernel + 1
        if size < 1:
            raise ConfigError(f"model.kernel_size={kernel} with model.padding={padding} leaves no pixels of the "
                              f"{tuple(input_shape[1:])} input after block {block}; use padding=same or "
                              f"smaller kernels.")
        if batchnorm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(make_activation(activation, negative_slope))
        if size >= 2:
            layers.append(POOLS[pool](2))
            size //= 2
        layers += [nn.Dropout(dropout)] if "blocks" in places else []
        in_ch = out_ch
    layers.append(nn.Flatten())
    conv = nn.Sequential(*layers)
    width = flat_size(conv, input_shape)
    tail = [nn.Dropout(dropout)] if "flatten" in places else []
    for size in _widths(hidden):
        tail += [nn.Linear(width, size), make_activation(activation, negative_slope)]
        tail += [nn.Dropout(dropout)] if "hidden" in places else []
        width = size
    return Network(nn.Sequential(conv, *tail), nn.Linear(width, num_outputs))


def _widths(hidden):
    """The fully connected widths: one (0 for none) or a list of them."""
    return ([hidden] if hidden else []) if isinstance(hidden, int) else list(hidden)


def _dropout_places(dropout_at):
    places = {dropout_at} if isinstance(dropout_at, str) else set(dropout_at)
    for place in places:
        if place not in DROPOUT_PLACES:
            raise ConfigError(unknown_choice("model.dropout_at", place, DROPOUT_PLACES))
    return places


def _per_block(kernel_size, blocks):
    """One kernel size per block, from a single size or a list of them."""
    if isinstance(kernel_size, int):
        return [kernel_size] * blocks
    kernels = list(kernel_size)
    if len(kernels) != blocks:
        raise ConfigError(f"model.kernel_size={kernels} has {len(kernels)} entries but model.channels has {blocks} "
                          f"blocks; give one size per block or a single size.")
    return kernels


def _padding(padding, kernel):
    if padding == "same":
        return kernel // 2
    if padding == "valid":
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ConfigError(f"model.padding={padding!r} is not allowed; it must be same, valid or a number of pixels >= 0.")


def _conv_bn(in_ch, out_ch):
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.GELU()]


@MODELS.register("vgg_fast")
def vgg_fast(input_shape, num_outputs, widths=(64, 256, 256, 256), scale=0.125):
    """A small VGG-style net in the manner of the fast CIFAR-10 training recipes:
    a stem, then per width a (conv-pool-bn-gelu, conv-bn-gelu) block, global max
    pooling and a linear head whose logits are scaled down (steadier with large
    learning rates)."""
    layers = _conv_bn(input_shape[0], widths[0])
    for in_ch, out_ch in zip(widths, widths[1:]):
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(out_ch),
                   nn.GELU(), *_conv_bn(out_ch, out_ch)]
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
    head = nn.Linear(widths[-1], num_outputs, bias=False)
    with torch.no_grad():
        head.weight.mul_(scale)
    return Network(nn.Sequential(*layers), head)
