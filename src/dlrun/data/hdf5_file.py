"""`dataset=hdf5`: arrays in an HDF5 file, read with h5py (the `hdf5` extra).

The file holds inputs (`dataset.x`, default `x`: features (N, F), or uint8 images (N, C, H, W)
or (N, H, W)) and labels (`dataset.y`, default `y`: integer classes, or floats for a
regression); `<x>_test` and `<y>_test` beside them are the file's own test split. Inputs that
fit in a share of the machine's memory are read at once; larger ones are read row by row through
a DataLoader (trainer.num_workers), each worker opening the file itself.
"""

import functools
from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import DATASETS, Data, LazyRows, fits_in_memory
from dlrun.errors import ConfigError, did_you_mean


def _rows(path, key):
    import h5py

    return h5py.File(path, "r")[key]


def _as_input(array, rows=False):
    """One row (`rows`: all of them) as the model's input: uint8 images keep their bytes, with a
    channel axis added to grey ones; anything else becomes float32."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        grey = array.ndim == (3 if rows else 2)
        return torch.from_numpy(np.expand_dims(array, -3) if grey else array)
    return torch.from_numpy(array.astype(np.float32))


def _dataset(file, key, path, role):
    import h5py

    found = file.get(key)
    if not isinstance(found, h5py.Dataset):
        names = sorted(name for name, item in file.items() if isinstance(item, h5py.Dataset))
        raise ConfigError(f"dataset.{role}={key}: {path} has no dataset '{key}'.{did_you_mean(key, names)} "
                          f"It holds: {', '.join(names) or 'no datasets at its top level'}.")
    return found


def _task_and_labels(values, task, key):
    """The task (auto: floats with fractions are a regression, two classes binary, else
    multiclass), the labels as the loss takes them, and the classes (None for a regression)."""
    values = np.asarray(values)
    if task == "auto":
        task = "regression" if values.dtype.kind == "f" and not np.all(values == np.round(values)) else (
            "binary" if len(np.unique(values)) == 2 else "multiclass")
    if task == "regression":
        return task, values.astype(np.float32), None
    classes, codes = np.unique(values, return_inverse=True)
    if task == "binary" and len(classes) != 2:
        raise ConfigError(f"dataset.task=binary, but dataset '{key}' has {len(classes)} distinct labels.")
    return task, codes.astype(np.int64), classes


def _coded_like(values, classes, key):
    """Labels of another split coded as the training labels are (a regression's stay floats)."""
    values = np.asarray(values)
    if classes is None:
        return values.astype(np.float32)
    unknown = np.setdiff1d(values, classes)
    if len(unknown):
        raise ConfigError(f"dataset '{key}' has labels that the training labels do not: {unknown[:5].tolist()}.")
    return np.searchsorted(classes, values).astype(np.int64)


@DATASETS.register("hdf5")
def hdf5(path, x="x", y="y", task="auto", in_memory=None):
    """Inputs and labels from an HDF5 file (see the module); `in_memory` true or false chooses
    instead of the inputs' size."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("dataset=hdf5 needs the h5py package: pip install h5py (or pip install 'dlrun[hdf5]').") from None

    file_path = Path(path).expanduser()
    if not file_path.is_file():
        raise ConfigError(f"dataset.path={path}: no such file. It must be an HDF5 file with the datasets "
                          f"dataset.x ({x}) and dataset.y ({y}).")
    with h5py.File(file_path, "r") as file:
        inputs, labels = _dataset(file, x, path, "x"), _dataset(file, y, path, "y")
        if len(inputs) != len(labels):
            raise ConfigError(f"dataset.path={path}: '{x}' has {len(inputs)} rows and '{y}' {len(labels)}.")
        task, codes, classes = _task_and_labels(labels[()], task, y)
        image = inputs.dtype == np.uint8 and inputs.ndim in (3, 4)
        lazy = not fits_in_memory(inputs.size * inputs.dtype.itemsize) if in_memory is None else not in_memory
        rows = (LazyRows(functools.partial(_rows, str(file_path), x), codes, _as_input) if lazy
                else _as_input(inputs[()], rows=True))
        data = Data(x=rows, y=codes, task=task,
                    class_names=None if classes is None else [str(c) for c in classes.tolist()],
                    image=image, standardize=not image and not lazy)
        if image:
            channels = 1 if inputs.ndim == 3 else inputs.shape[1]
            data.mean, data.std, data.pixel_max = (0.5,) * channels, (0.5,) * channels, 255
        if f"{x}_test" in file and f"{y}_test" in file:
            data.x_test = _as_input(_dataset(file, f"{x}_test", path, "x")[()], rows=True)
            data.y_test = _coded_like(file[f"{y}_test"][()], classes, f"{y}_test")
    if lazy:
        data.cautions.append(f"{path}: '{x}' is read row by row from the file (dataset.in_memory=true reads it at "
                             f"once; trainer.num_workers reads in parallel)")
    return data
