"""Every model of timm (PyTorch Image Models) by name (model=timm model.arch=...), built by timm's
own create_model without its classifier, for the data's channels, under a new head."""

from torch import nn

from dlrun.errors import ConfigError, DlrunError, did_you_mean, first_line
from dlrun.models.base import MODELS, Network


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("model=timm needs the timm package: pip install 'dlrun[timm]'.") from None
    return timm


@MODELS.register("timm")
def timm_model(input_shape, num_outputs, arch="resnet18", pretrained=False, drop_rate=0.0, drop_path_rate=0.0):
    """timm's `arch` (`timm.list_models()`), its classifier removed (`num_classes=0`: timm's own
    way) and its first layer made for the data's channels (timm adapts pretrained filters), with
    a new linear head for `num_outputs`; `pretrained` fetches its weights through timm's loader."""
    timm = _timm()
    if not timm.is_model(arch):
        names = timm.list_models()
        raise ConfigError(f"model.arch={arch} is not a timm model.{did_you_mean(arch, names)} timm has {len(names):,}: "
                          f"list them with python -c \"import timm; print(timm.list_models('*{arch[:4]}*'))\".")
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # its retries are not the user's business: the outcome is
    options = {"pretrained": pretrained, "num_classes": 0, "in_chans": input_shape[0], "drop_rate": drop_rate,
               "drop_path_rate": drop_path_rate}
    try:
        net = _create(timm, arch, options, input_shape)
    except Exception as exc:  # noqa: BLE001 (the hub's network errors have no common base)
        if not pretrained:
            raise
        raise DlrunError(f"model.pretrained=true, but timm could not fetch the {arch} weights from the Hugging Face "
                         f"Hub ({first_line(exc)}). Run once with internet access (they are cached under $HF_HOME, "
                         f"default ~/.cache/huggingface; HF_HUB_OFFLINE=1 then reads the cache alone), or set "
                         f"model.pretrained=false.") from None
    finally:
        hub_logging.set_verbosity(verbosity)
    return Network(net, nn.Linear(net.num_features, num_outputs))


def _create(timm, arch, options, input_shape):
    """timm's model for images of this size where it is built for one (a vision transformer's
    position embeddings); convolutional models take any size, and no img_size argument."""
    if len(input_shape) == 3:
        try:
            return timm.create_model(arch, img_size=input_shape[-2:], **options)
        except TypeError:
            pass
    return timm.create_model(arch, **options)
