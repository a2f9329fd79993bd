"""Datasets that ship with scikit-learn or are generated, and any CSV file."""

import csv as csvlib
from pathlib import Path

import numpy as np
from sklearn import datasets as skd

from dlrun.data.base import DATASETS, Data
from dlrun.errors import ConfigError, unknown_choice


@DATASETS.register("digits")
def digits():
    """8x8 grey images (values 0..16) as (N, 1, 8, 8) floats in [0, 1]."""
    bunch = skd.load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    return Data(x=x, y=bunch.target, class_names=[str(c) for c in bunch.target_names], image=True)


def _bundled(loader, task):
    bunch = loader()
    names = None if task == "regression" else [str(n) for n in bunch.target_names]
    return Data(x=bunch.data.astype(np.float32), y=bunch.target, task=task, class_names=names, standardize=True)


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
    return Data(x=x.astype(np.float32), y=y, task=task, class_names=class_names, standardize=True)


@DATASETS.register("csv")
def csv(path, target, features=None, task="auto"):
    """Any CSV file with a header row.

    Numeric feature columns are used as they are, text columns one-hot encoded.
    A text target is label-encoded (class names kept, sorted); task=auto picks
    binary for two distinct values, multiclass for text or few integer values,
    regression otherwise.
    """
    columns = _read_columns(path)
    if target not in columns:
        raise ConfigError(unknown_choice("dataset.target", target, columns))
    features = list(features) if features else [c for c in columns if c != target]
    for name in features:
        if name not in columns:
            raise ConfigError(unknown_choice("dataset.features", name, columns))
    x = np.concatenate([_encode_feature(columns[name]) for name in features], axis=1)
    _check_finite(path, x, [name for name in features for _ in range(_encode_feature(columns[name]).shape[1])])
    values = columns[target]
    task = _infer_task(values) if task == "auto" else task
    if task == "regression":
        return Data(x=x, y=_numeric(values).astype(np.float32), task=task, standardize=True)
    names, codes = np.unique(values if _numeric(values) is None else _numeric(values), return_inverse=True)
    if task == "binary" and len(names) != 2:
        raise ConfigError(f"dataset.task=binary, but column '{target}' has {len(names)} distinct values.")
    return Data(x=x, y=codes, task=task, class_names=[_label(n) for n in names], standardize=True)


def _check_finite(path, x, names):
    bad_rows, bad_cols = np.nonzero(~np.isfinite(x))
    if len(bad_rows):
        columns = sorted({names[c] for c in bad_cols})
        raise ConfigError(
            f"dataset.path={path}: column(s) {', '.join(columns)} have missing or non-finite values "
            f"({len(set(bad_rows))} rows, the first is data row {bad_rows[0] + 1}); fill or drop them first.")


def _read_columns(path):
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"dataset.path={path}: no such file. Point it at a CSV file with a header row.")
    with file.open(newline="") as handle:
        rows = list(csvlib.reader(handle))
    if len(rows) < 2:
        raise ConfigError(f"dataset.path={path} has no data rows below its header.")
    header, body = rows[0], rows[1:]
    return {name: [row[i] for row in body] for i, name in enumerate(header)}


def _numeric(values):
    """The column as floats, or None when any value is not a number."""
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        return None


def _label(value):
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _encode_feature(values):
    """A numeric column as one feature, a text column one-hot."""
    numbers = _numeric(values)
    if numbers is not None:
        return numbers.astype(np.float32)[:, None]
    levels, codes = np.unique(values, return_inverse=True)
    return np.eye(len(levels), dtype=np.float32)[codes]


def _infer_task(values):
    numbers = _numeric(values)
    distinct = len(set(values))
    if numbers is None:
        return "binary" if distinct == 2 else "multiclass"
    integral = np.all(numbers == np.round(numbers))
    if integral and distinct <= max(20, len(values) // 20):
        return "binary" if distinct == 2 else "multiclass"
    return "regression"
