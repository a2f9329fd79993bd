"""A trained model with its preprocessing around it: raw inputs in, probabilities (or values
in the target's own units) out. `task=predict` runs it, and the exports are it, so an
exported model and `dlrun task=predict` give the same outputs for the same rows.

Raw inputs are what a user has: images as pixel values (N, C, H, W) on the scale the
training data came in (0-255 for image files, 0-16 for scikit-learn's digits: `pixel_scale`);
tabular rows as the feature vector in the columns' order (one-hot columns expanded), before
standardisation. `describe` writes that contract beside an export.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import ConfigError
from dlrun.results.metric_names import positive_class
from dlrun.train.tta import averaged


def outputs(task, out, target_mean=None, target_std=None):
    """A model's raw outputs as a user reads them: probabilities (N, C) for classification (a
    binary model's one logit as [1 - p, p]; multi-label: each label's probability), values in the
    target's own units for regression.
    Evaluation, task=predict and the exports all read outputs through this one function."""
    out = out.float()
    if task == "regression":
        return out * target_std + target_mean if target_mean is not None else out
    if task == "binary":
        p = torch.sigmoid(out.view(-1))
        return torch.stack([1 - p, p], 1)
    if task == "multilabel":  # each label's own probability
        return torch.sigmoid(out)
    return torch.softmax(out, 1)


def pixel_scale(preprocessing):
    """The raw pixel value an image model takes as 1.0: recorded by the dataset (Data.pixel_max;
    the migration of a checkpoint written before it was recorded fills it in)."""
    return float(preprocessing["pixel_max"])


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
        self.pixel_max = pixel_scale(preprocessing) if self.image else None
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
        self.tta = preprocessing.get("tta")  # trainer.tta's views, as the model was tested
        if self.tta and not self.image:
            raise ConfigError(f"trainer.tta={self.tta} takes views of images; this model's inputs are feature rows.")

    def forward(self, x):
        x = x.float()
        if self.image:
            x = x / self.pixel_max
            if self.resize:
                x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", antialias=True,
                                  align_corners=False)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return outputs(self.task, averaged(self.model, x, self.tta), self.target_mean, self.target_std)


def describe(preprocessing, threshold=0.5):
    """What an export takes and returns, for the JSON written beside it."""
    image = bool(preprocessing["image"])
    task = preprocessing["task"]
    return {
        "task": task,
        "input": {"shape": ["batch", *preprocessing["raw_shape"]],
                  "kind": f"image pixel values 0-{pixel_scale(preprocessing):g} (float)" if image else
                          "feature rows before standardisation",
                  **({} if image else {"columns": preprocessing.get("columns")})},
        "output": ("values in the target's units" if task == "regression" else
                   "probabilities (batch, labels), each label's own: a label is predicted from its threshold"
                   if task == "multilabel" else "probabilities (batch, classes)"),
        "class_names": preprocessing.get("class_names") or [],
        **({"test_time_augmentation": preprocessing["tta"]} if preprocessing.get("tta") else {}),
        **({"threshold": threshold, "positive_class": positive_class(task, preprocessing["class_names"])}
           if task == "binary" else {"thresholds": threshold} if task == "multilabel" else {}),
    }
