"""A trained model with its preprocessing around it: raw inputs in, probabilities (or values
in the target's own units) out. `task=predict` runs it, and the exports are it, so an
exported model and `dlrun task=predict` give the same outputs for the same rows.

Raw inputs are what a user has: images as pixel values 0-255 (N, C, H, W); tabular rows as
the feature vector in the columns' order (one-hot columns expanded), before
standardisation. `describe` writes that contract beside an export.
"""

import torch
import torch.nn.functional as F
from torch import nn


def outputs(task, out, target_mean=None, target_std=None):
    """A model's raw outputs as a user reads them: probabilities (N, C) for classification (a
    binary model's one logit as [1 - p, p]), values in the target's own units for regression.
    Evaluation, task=predict and the exports all read outputs through this one function."""
    out = out.float()
    if task == "regression":
        return out * target_std + target_mean if target_mean is not None else out
    if task == "binary":
        p = torch.sigmoid(out.view(-1))
        return torch.stack([1 - p, p], 1)
    return torch.softmax(out, 1)


def _buffer(values, shape):
    return None if values is None else torch.as_tensor(values, dtype=torch.float32).view(shape)


class Deployed(nn.Module):
    """`model` between the preprocessing of the checkpoint's record and the output transform."""

    def __init__(self, model, preprocessing):
        super().__init__()
        self.model = model
        self.task = preprocessing["task"]
        self.image = bool(preprocessing["image"])
        self.resize = preprocessing.get("resize")
        if self.image:
            mean, std = preprocessing.get("image_mean"), preprocessing.get("image_std")
            shape = (1, -1, 1, 1)
        else:
            mean, std = preprocessing.get("feature_mean"), preprocessing.get("feature_std")
            shape = (1, -1)
        self.register_buffer("mean", _buffer(mean, shape))
        self.register_buffer("std", _buffer(std, shape))
        self.register_buffer("target_mean", _buffer(preprocessing.get("target_mean"), (1, -1)))
        self.register_buffer("target_std", _buffer(preprocessing.get("target_std"), (1, -1)))

    def forward(self, x):
        x = x.float()
        if self.image:
            x = x / 255.0
            if self.resize:
                x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", antialias=True,
                                  align_corners=False)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return outputs(self.task, self.model(x), self.target_mean, self.target_std)


def describe(preprocessing, threshold=0.5):
    """What an export takes and returns, for the JSON written beside it."""
    image = bool(preprocessing["image"])
    task = preprocessing["task"]
    return {
        "task": task,
        "input": {"shape": ["batch", *preprocessing["raw_shape"]],
                  "kind": "image pixel values 0-255 (float)" if image else "feature rows before standardisation",
                  **({} if image else {"columns": preprocessing.get("columns")})},
        "output": ("values in the target's units" if task == "regression" else
                   "probabilities (batch, classes)"),
        "class_names": preprocessing.get("class_names") or [],
        **({"threshold": threshold, "positive_class": preprocessing["class_names"][1]} if task == "binary" else {}),
    }
