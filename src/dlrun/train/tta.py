"""Test-time augmentation (trainer.tta): a model's outputs averaged over views of each image.

The views are the training augmentations that keep an image's class: its mirror image and small
shifts. They are applied after training only, where the result is read: the tested weights'
validation (and a tuned threshold), the test split, task=predict and the exports (deployment.py
applies them, from the checkpoint's record); each epoch's validation stays one forward pass.
The outputs averaged are the model's own (logits), as airbench's evaluation averages them.
"""

import torch
import torch.nn.functional as F


def _flips(x):
    return [x, x.flip(-1)]


def _multicrop(x):
    """Ten crops at the image's own size: the centre and four diagonal shifts of the image padded
    by reflection (a pixel per 32 of its side), each also mirrored."""
    h, w = int(x.shape[-2]), int(x.shape[-1])  # plain ints also while an export traces the model
    s = max(1, (min(h, w) + 16) // 32)
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    crops = [padded[..., s + dy:s + dy + h, s + dx:s + dx + w] for dy, dx in ((0, 0), (-s, -s), (-s, s), (s, -s), (s, s))]
    return [view for crop in crops for view in _flips(crop)]


VIEWS = {
    "flip": _flips,
    "multicrop": _multicrop,
}


def averaged(model, x, kind=None):
    """`model`'s outputs for the batch `x`, averaged over `kind`'s views (one forward pass of all
    of them); without `kind`, its plain outputs."""
    if not kind:
        return model(x)
    views = VIEWS[kind](x)
    out = model(torch.cat(views))
    return out.view(len(views), x.shape[0], *out.shape[1:]).mean(0)
