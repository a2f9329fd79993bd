"""torchvision's ResNet-18 for transfer learning or training from scratch."""

from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.base import MODELS, Network
from dlrun.models.torchvision_models import download_failed


@MODELS.register("resnet18")
def resnet18(input_shape, num_outputs, pretrained=False, freeze_backbone=False, small_input=True):
    """ResNet-18 with a new linear head.

    `pretrained` loads torchvision's ImageNet weights through its own download
    code; `freeze_backbone` leaves only the head trainable; `small_input` swaps
    the 7x7/stride-2 stem and max-pool for a 3x3/stride-1 stem (32x32 images).
    """
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as tv_resnet18

    weights = ResNet18_Weights.DEFAULT if pretrained else None
    try:
        net = tv_resnet18(weights=weights)
    except (OSError, RuntimeError) as exc:
        raise DlrunError(download_failed("ResNet-18", weights, exc)) from None
    channels = input_shape[0]
    if small_input:
        net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    if freeze_backbone:
        net.requires_grad_(False)
    return Network(net, nn.Linear(512, num_outputs))
