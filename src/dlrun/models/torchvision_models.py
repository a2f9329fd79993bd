"""Every classification model of torchvision by name (model=torchvision model.arch=...),
with its classifier replaced for the task and its first convolution adapted to the
data's channels."""

from torch import nn

from dlrun.errors import ConfigError, DlrunError, first_line, unknown_choice
from dlrun.models.base import MODELS, Network

IMAGENET_CLASSES = 1000
# Models whose training-mode output is a tuple because of auxiliary classifiers: built without
# them, and with PyTorch's default initialisation instead of their slow truncated normal.
AUXILIARY = {"googlenet": {"aux_logits": False, "init_weights": False},
             "inception_v3": {"aux_logits": False, "init_weights": False}}


def architectures():
    """torchvision's classification models (not detection, segmentation, video...)."""
    from torchvision import models

    return models.list_models(module=models)


@MODELS.register("torchvision")
def torchvision_model(input_shape, num_outputs, arch="resnet18", pretrained=False, small_input=False):
    """torchvision's `arch` with a new linear head for `num_outputs`.

    `pretrained` loads its default ImageNet weights through torchvision's download code (then
    a 1-channel input gets the sum of the first convolution's RGB filters); `small_input` swaps a
    ResNet-style 7x7/stride-2 stem and max-pool for a 3x3/stride-1 stem (32x32 images)."""
    from torchvision import models

    if arch not in architectures():
        raise ConfigError(unknown_choice("model.arch", arch, architectures()))
    weights = models.get_model_weights(arch).DEFAULT if pretrained else None
    try:
        net = models.get_model(arch, weights=weights, **AUXILIARY.get(arch, {}))
    except (OSError, RuntimeError) as exc:
        raise DlrunError(download_failed(arch, weights, exc)) from None
    _adapt_input(net, input_shape[0], pretrained)
    if small_input:
        _small_stem(net, arch)
    return new_head(net, num_outputs, arch)


def download_failed(arch, weights, exc):
    """The one paragraph for pretrained weights that could not be downloaded."""
    return (f"model.pretrained=true, but torchvision could not download the {arch} ImageNet weights "
            f"({first_line(exc)}). Run once with internet access (they are cached under $TORCH_HOME, default "
            f"~/.cache/torch), copy {weights.url.rsplit('/', 1)[-1]} into ~/.cache/torch/hub/checkpoints/, or set "
            f"model.pretrained=false.")


def _replace(net, name, module):
    parent, _, attr = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, attr, module)


def _adapt_input(net, channels, pretrained):
    """The first convolution takes `channels` inputs (torchvision's take 3)."""
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == channels:
        return
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None)
    if pretrained and channels == 1:  # grey images: the filters' response to R = G = B
        new.weight.data.copy_(conv.weight.data.sum(1, keepdim=True))
        if conv.bias is not None:
            new.bias.data.copy_(conv.bias.data)
    _replace(net, name, new)


def _small_stem(net, arch):
    if not (isinstance(getattr(net, "conv1", None), nn.Conv2d) and hasattr(net, "maxpool")):
        raise ConfigError(f"model.small_input=true replaces a ResNet-style stem (conv1 and maxpool); {arch} has none. "
                          f"Use dataset.resize=224 instead.")
    net.conv1 = nn.Conv2d(net.conv1.in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()


def new_head(net, num_outputs, arch):
    """The last layer with 1,000 outputs is the ImageNet classifier: a linear one is removed and a
    new head takes its inputs; a convolutional one (SqueezeNet) is replaced in place."""
    name, last = [(n, m) for n, m in net.named_modules()
                  if getattr(m, "out_features", getattr(m, "out_channels", None)) == IMAGENET_CLASSES][-1]
    if isinstance(last, nn.Linear):
        _replace(net, name, nn.Identity())
        return Network(net, nn.Linear(last.in_features, num_outputs))
    if isinstance(last, nn.Conv2d):
        _replace(net, name, nn.Conv2d(last.in_channels, num_outputs, last.kernel_size, last.stride))
        return Network(net, nn.Identity())
    raise ConfigError(f"model.arch={arch}: its classifier ({type(last).__name__}) cannot be replaced.")
