"""Datasets that ship with scikit-learn or are generated."""

import numpy as np
from sklearn import datasets as skd

from dlrun.data.base import DATASETS, Data
from dlrun.errors import ConfigError

DIGITS_PIXEL_MAX = 16  # load_digits() gives pixel values 0..16


@DATASETS.register("digits")
def digits():
    """8x8 grey images (values 0..16) as (N, 1, 8, 8) floats in [0, 1]; a trained model takes
    the 0..16 values, as load_digits() gives them."""
    bunch = skd.load_digits()
    x = (bunch.images / DIGITS_PIXEL_MAX).astype(np.float32)[:, None]
    return Data(x=x, y=bunch.target, class_names=[str(c) for c in bunch.target_names], image=True,
                pixel_max=DIGITS_PIXEL_MAX)


def _bundled(loader, task):
    bunch = loader()
    names = None if task == "regression" else [str(n) for n in bunch.target_names]
    return Data(x=bunch.data.astype(np.float32), y=bunch.target, task=task, class_names=names, standardize=True,
                input_spec=numeric_columns(bunch.feature_names))


def numeric_columns(names):
    """The input spec of a table whose columns are all numbers."""
    return {"columns": [{"name": str(name), "levels": None} for name in names]}


@DATASETS.register("iris")
def iris():
    return _bundled(skd.load_iris, "multiclass")


@DATASETS.register("wine")
def wine():
    return _bundled(skd.load_wine, "multiclass")


@DATASETS.register("breast_cancer")
def breast_cancer():
    return _bundled(skd.load_breast_cancer, "binary")


@DATASETS.register("diabetes")
def diabetes():
    return _bundled(skd.load_diabetes, "regression")


@DATASETS.register("synthetic_imbalanced")  # the same builder: its option's own name is what runs say
@DATASETS.register("synthetic")
def synthetic(n_samples=2000, n_features=20, n_informative=10, n_redundant=2, n_classes=3,
              n_clusters_per_class=1, weights=None, class_sep=1.0, seed=0, class_names=None):
    """scikit-learn's make_classification; the same seed gives the same data."""
    try:
        x, y = skd.make_classification(
            n_samples=n_samples, n_features=n_features, n_informative=n_informative,
            n_redundant=n_redundant, n_classes=n_classes, n_clusters_per_class=n_clusters_per_class,
            weights=list(weights) if weights is not None else None, class_sep=class_sep,
            random_state=seed,
        )
    except ValueError as exc:
        raise ConfigError(f"dataset=synthetic: {exc}") from None
    task = "binary" if n_classes == 2 else "multiclass"
    return Data(x=x.astype(np.float32), y=y, task=task, class_names=class_names, standardize=True,
                input_spec=numeric_columns(f"x{i}" for i in range(n_features)))
