"""The contract between dataset builders and the rest of dlrun."""

import glob
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dlrun.data.split import split_indices
from dlrun.errors import ConfigError
from dlrun.registry import Registry

DATASETS = Registry("dataset", builtins=["dlrun.data.tabular", "dlrun.data.csv_file", "dlrun.data.vision",
                                        "dlrun.data.hdf5_file", "dlrun.data.shards"],
                    handled=["threshold", "threshold_metric", "classes", "resize", "positive_class"])
TASKS = ("multiclass", "binary", "multilabel", "regression")
SINGLE_LABEL = ("multiclass", "binary")  # one class per row: stratified splits, class subsets, one-vs-rest


@dataclass
class Data:
    """What a dataset builder returns.

    `x`: a tensor or array of shape (N, *input_shape): float features, or uint8
    images (N, C, H, W) that are scaled to [0, 1] and normalised with
    `mean`/`std` on the device. Alternatively a torch ``Dataset`` of
    (tensor, label) pairs for data that does not fit in memory; then `y` holds
    its labels (for stratified splits).
    `y`: class indices (multiclass, binary), 0/1 per label (multilabel: (N, labels), the labels
    named by `class_names`) or float targets (regression).
    `x_test`/`y_test`: the dataset's own test split, if it has one.
    `x_val`/`y_val`: the dataset's own validation split, if it has one (then split.val is not
    used: every row of `x` trains).
    `standardize`: z-score features with statistics of the training rows only.
    `input_spec`: what task=predict needs to read new inputs: for tables, `columns`, one
    {"name", "levels"} per source column (levels: its one-hot categories, or None for a
    number); for images loaded from files, `load_size` and `channels`.
    `pixel_max`: for float images, the raw pixel value the builder scaled to 1.0 (digits: 16,
    its values are 0..16), so a trained model takes pixels as the user has them; uint8 images
    are 255, other float images are taken as they are (1.0).
    """

    x: object
    y: object
    task: str = "multiclass"
    class_names: list = None
    x_test: object = None
    y_test: object = None
    x_val: object = None
    y_val: object = None
    mean: tuple = None
    std: tuple = None
    standardize: bool = False
    image: bool = False
    input_spec: dict = None  # how raw inputs become rows of x: {"columns": [...]} or {"load_size", "channels"}
    pixel_max: float = None
    cautions: list = field(default_factory=list)  # what the user should know about the data (a column like an id)


def expanded(pattern):
    """The file names of a brace pattern (`train-{000..009}.tar`, with the braceexpand package the
    webdataset extra brings) and glob pattern (`train-*.tar`, sorted); a name matching no file
    stays as it is, for the caller to name as missing."""
    try:
        from braceexpand import braceexpand
    except ImportError:
        names = [pattern]
    else:
        names = list(braceexpand(pattern))
    return [match for name in names
            for match in (sorted(glob.glob(os.path.expanduser(name))) or [name] if glob.has_magic(name) else [name])]


def file_stamps(paths):
    """(path, size, modification time) of each file: what says that a file's content is unchanged."""
    found = []
    for path in paths:
        stat = os.stat(path)
        found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return found


# Inputs larger than this share of the machine's memory are read row by row instead of at once.
IN_MEMORY_SHARE = 0.25


def fits_in_memory(nbytes):
    return nbytes <= IN_MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class LazyRows(torch.utils.data.Dataset):
    """Rows of a file read when asked for, with their labels: `opener()` gives the rows (an h5py
    dataset, a memory map) in the process that reads, since file handles do not survive a fork
    into DataLoader workers; `as_input(row)` makes a row a tensor. Only the opener is pickled."""

    def __init__(self, opener, labels, as_input):
        self.opener, self.labels, self.as_input, self._rows, self._pid = opener, labels, as_input, None, None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if self._rows is None or self._pid != os.getpid():  # opened here, not in the process it was forked from
            self._rows, self._pid = self.opener(), os.getpid()
        return self.as_input(self._rows[index]), self.labels[index]

    def __getstate__(self):
        return {**self.__dict__, "_rows": None}


@dataclass
class Part:
    """One split: tensors (x, y) or a torch Dataset with its labels `y`."""

    x: object
    y: torch.Tensor
    rows: np.ndarray = None  # row indices into the builder's data (or its test split)

    def __len__(self):
        return len(self.y)


@dataclass
class Prepared:
    """A split dataset, ready for training."""

    train: Part
    val: Part
    test: Part
    task: str
    class_names: list
    input_shape: tuple
    num_outputs: int
    image: bool = False
    mean: tuple = None
    std: tuple = None
    target_scale: tuple = None  # (mean, std) of regression targets, for reporting in original units
    extra: dict = field(default_factory=dict)

    @property
    def in_memory(self):
        return torch.is_tensor(self.train.x)

    @property
    def num_classes(self):
        return 0 if self.task == "regression" else len(self.class_names)  # multilabel: the labels


def _as_tensor(a):
    return a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))


def _inputs(x):
    """A builder's inputs as a tensor the model takes: uint8 images stay uint8 until the device
    (where they are scaled); every other dtype (float64 from NumPy, integers, float16) becomes
    float32 once, here, instead of failing in the first forward pass."""
    x = _as_tensor(x)
    return x if x.dtype in (torch.uint8, torch.float32) else x.float()


def _labels(task, y):
    y = _as_tensor(y)
    if task == "multilabel":
        return y.float()
    if task == "regression":
        y = y.float()
        return y.unsqueeze(1) if y.dim() == 1 else y
    return y.long()


def prepare(data, split, cv_fold=None, seed=0):
    """Split `data` into train/val/test parts and standardise where asked.

    `split` holds strategy, val and test fractions; the dataset's own test and
    validation splits are used when it has them, and split.val=0 keeps no
    validation part (every training row trains). `cv_fold=(k, i, stratified)`
    instead makes fold i of k the validation part of a k-fold split of the
    training data.
    """
    if cv_fold is not None and data.x_val is not None:
        raise ConfigError("cross-validation makes its validation folds from the training rows, and this dataset "
                          "has its own validation split; remove cv.folds, or return no x_val from the builder.")
    y_all, (train_rows, val_rows, test_rows) = split_rows(data, split, cv_fold, seed)
    x_all = _features(data.x)
    train = _part(x_all, y_all, train_rows)
    val = _own(data, data.x_val, data.y_val) if data.x_val is not None else _part(x_all, y_all, val_rows)
    test = _own(data, data.x_test, data.y_test) if data.x_test is not None else _part(x_all, y_all, test_rows)
    prepared = Prepared(
        train=train, val=val, test=test, task=data.task,
        class_names=_class_names(data, y_all),
        input_shape=_input_shape(x_all), num_outputs=0,
        image=data.image, mean=data.mean, std=data.std,
    )
    if data.input_spec:
        prepared.extra["input_spec"] = data.input_spec
    prepared.extra["cautions"] = list(data.cautions)
    if not isinstance(data.x, torch.utils.data.Dataset):
        prepared.extra["source_dtype"] = str(getattr(data.x, "dtype", "")).replace("torch.", "")
    _record_input_range(prepared, data.pixel_max)
    if data.standardize:
        _standardize(prepared)
    if data.task == "regression":
        _scale_targets(prepared)
    prepared.num_outputs = _num_outputs(prepared)
    prepared.extra["validation"] = _validation_source(data, split, cv_fold, len(prepared.val))
    if len(prepared.train) == 0 or (len(prepared.val) == 0 and prepared.extra["validation"] != "none"):
        raise ConfigError(
            f"split.val={split.val} and split.test={split.test} leave {len(prepared.train)} training and "
            f"{len(prepared.val)} validation rows; both must be non-empty (split.val=0 trains without validation)."
        )
    return prepared


def _features(x):
    return x if isinstance(x, torch.utils.data.Dataset) else _inputs(x)


def _own(data, x, y):
    """A split the dataset builder gave (its test or validation rows), whole."""
    y = _labels(data.task, y)
    return _part(_features(x), y, np.arange(len(y)))


def _validation_source(data, split, cv_fold, rows):
    """Where the validation rows come from, in words for the summary; "none" without any."""
    if cv_fold is not None:
        return f"fold {cv_fold[1]} of {cv_fold[0]} ({rows} rows)"
    if data.x_val is not None:
        return f"the dataset's own validation split ({rows} rows)"
    if split.val == 0:
        return "none"
    return f"split.val={split.val:g} ({rows} rows)"


def _check_classes(y, names):
    """Classification needs rows of at least two classes (one class trains to a constant and has no metrics)."""
    present = torch.unique(y).tolist()
    if len(present) < 2:
        only = names[present[0]] if names and present and present[0] < len(names) else present[0]
        raise ConfigError(f"the dataset's {len(y)} rows all belong to one class ({only}); classification needs "
                          f"at least two. Check the data (or dataset.target), or use dataset.task=regression.")


def keep_classes(data, classes):
    """Only the rows of `classes` (names or indices; dataset.classes), relabelled 0..k-1 in the
    order given: the classic "train on digits 0-4, transfer to 5-9"."""
    if not classes:
        return data
    if data.task not in SINGLE_LABEL:
        raise ConfigError(f"dataset.classes selects classes, and this dataset's task is {data.task}; remove it.")
    names = [str(n) for n in data.class_names] if data.class_names else None
    wanted = [_class_index(c, names) for c in ([classes] if isinstance(classes, (str, int)) else classes)]
    if len(set(wanted)) < 2:
        raise ConfigError(f"dataset.classes={classes} keeps fewer than two distinct classes; classification needs two.")
    remap = {old: new for new, old in enumerate(wanted)}

    def subset(x, y):
        y = np.asarray(_as_tensor(y))
        rows = np.flatnonzero(np.isin(y, wanted))
        new_y = np.array([remap[int(v)] for v in y[rows]], dtype=np.int64)
        if isinstance(x, torch.utils.data.Dataset):
            return torch.utils.data.Subset(x, rows.tolist()), new_y
        return x[torch.from_numpy(rows)] if torch.is_tensor(x) else np.asarray(x)[rows], new_y

    x, y = subset(data.x, data.y)
    x_test, y_test = subset(data.x_test, data.y_test) if data.x_test is not None else (None, None)
    x_val, y_val = subset(data.x_val, data.y_val) if data.x_val is not None else (None, None)
    task = "binary" if len(wanted) == 2 and data.task == "binary" else data.task
    class_names = [names[i] if names else str(i) for i in wanted]
    return replace(data, x=x, y=y, x_test=x_test, y_test=y_test, x_val=x_val, y_val=y_val, task=task,
                   class_names=class_names)


def rows_of_classes(part, classes, names):
    """The rows of `part` whose class is one of `classes` (names or indices), labels unchanged: a
    trained model evaluated on some of its classes (task=eval with dataset.classes=[4])."""
    wanted = [_class_index(c, names) for c in ([classes] if isinstance(classes, (str, int)) else classes)]
    keep = np.flatnonzero(np.isin(part.y.numpy(), wanted))
    if not len(keep):
        raise ConfigError(f"dataset.classes={classes}: the test split has no rows of "
                          f"{'that class' if len(wanted) == 1 else 'those classes'}.")
    index = torch.from_numpy(keep)
    x = torch.utils.data.Subset(part.x, keep.tolist()) if isinstance(part.x, torch.utils.data.Dataset) else part.x[index]
    return Part(x, part.y[index], None if part.rows is None else part.rows[keep])


def one_vs_rest(data, positive):
    """A binary task of `positive` (a class name or index; dataset.positive_class) against every
    other class: the classic "is it a 4?"."""
    if positive is None:
        return data
    if data.task not in SINGLE_LABEL:
        raise ConfigError(f"dataset.positive_class makes a classification one-vs-rest, and this dataset's task is "
                          f"{data.task}; remove it.")
    names = [str(n) for n in data.class_names] if data.class_names else None
    index = _class_index(positive, names, "dataset.positive_class")
    name = names[index] if names else str(index)

    def binary(y):
        return (np.asarray(_as_tensor(y)) == index).astype(np.int64)

    y_test = binary(data.y_test) if data.y_test is not None else None
    y_val = binary(data.y_val) if data.y_val is not None else None
    return replace(data, y=binary(data.y), y_test=y_test, y_val=y_val, task="binary",
                   class_names=[f"not {name}", name])


def first_rows(part, n):
    """The first `n` rows of a split (its order is already random)."""
    rows = np.arange(min(n, len(part)))
    x = torch.utils.data.Subset(part.x, rows.tolist()) if isinstance(part.x, torch.utils.data.Dataset) else part.x[:len(rows)]
    return Part(x, part.y[:len(rows)], None if part.rows is None else part.rows[:len(rows)])


def _class_index(value, names, key="dataset.classes"):
    """A class given by name or by index, as its index."""
    if names and str(value) in names:
        return names.index(str(value))
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names or [value + 1]):
        return value
    allowed = ", ".join(names) if names else "class indices"
    raise ConfigError(f"{key}: {value!r} is not a class of this dataset; its classes: {allowed}.")


def split_rows(data, split, cv_fold=None, seed=0):
    """The labels and the (train, val, test) row indices of `data`, from its labels alone: what
    `prepare` splits by, and a cheap check that a split (or every fold) can be made at all."""
    if data.task not in TASKS:
        raise ConfigError(f"dataset task '{data.task}' is not known. Choose one of: {', '.join(TASKS)}.")
    y_all = _labels(data.task, data.y)
    single = data.task in SINGLE_LABEL
    if single:
        _check_classes(y_all, data.class_names)
    rows = split_indices(  # rows with several labels (or a value) are split at random
        y_all.numpy() if single else np.zeros(len(y_all)),
        val=0.0 if data.x_val is not None else split.val, test=0.0 if data.x_test is not None else split.test,
        stratified=split.strategy == "stratified" and single,
        seed=seed, cv_fold=cv_fold, names=data.class_names,
    )
    return y_all, rows


def _part(x, y, rows):
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(x, torch.utils.data.Dataset):
        return Part(torch.utils.data.Subset(x, rows.tolist()), y[rows], rows)
    index = torch.from_numpy(rows)
    return Part(x[index], y[index], rows)


def _class_names(data, y):
    if data.task == "regression":
        return []
    if data.task == "multilabel":
        n = y.shape[1]
        names = list(data.class_names) if data.class_names else [str(i) for i in range(n)]
        if len(names) != n:
            raise ConfigError(f"the dataset has {n} labels but {len(names)} label names: {names}.")
        return [str(c) for c in names]
    n = 2 if data.task == "binary" else int(y.max()) + 1
    for own in (data.y_test, data.y_val):
        if own is not None and data.task == "multiclass":
            n = max(n, int(_as_tensor(own).max()) + 1)
    names = list(data.class_names) if data.class_names else [str(i) for i in range(n)]
    if len(names) < n:
        raise ConfigError(f"the dataset has {n} classes but {len(names)} class names: {names}.")
    return [str(c) for c in names]


def _input_shape(x):
    if isinstance(x, torch.utils.data.Dataset):
        return tuple(x[0][0].shape)
    return tuple(x.shape[1:])


def _num_outputs(p):
    if p.task in ("multiclass", "multilabel"):
        return len(p.class_names)
    if p.task == "binary":
        return 1
    return p.train.y.shape[1]


def feature_names(input_spec, width):
    """The name of each of the `width` columns of x, from the dataset's input spec (what task=predict
    reads too): a table's column, or `column=level` for each one-hot level of a categorical one;
    0, 1, 2... for data without named columns."""
    names = []
    for column in (input_spec or {}).get("columns", []):
        levels = column.get("levels")
        names += [f"{column['name']}={level}" for level in levels] if levels else [column["name"]]
    return names if len(names) == width else [str(i) for i in range(width)]


def pixel_max(x, declared=None):
    """The raw pixel value that a model trained on images `x` takes as 1.0 (see Data.pixel_max)."""
    return float(declared or (255.0 if getattr(x, "dtype", None) == torch.uint8 else 1.0))


def _record_input_range(p, declared_pixel_max):
    """What task=predict checks new inputs against, in the user's units: for images the pixel
    scale and the training pixels' smallest and largest values, for tables each feature's range
    before standardisation. Data read from files one row at a time (a torch Dataset) records no
    range: its files give the scale."""
    x = p.train.x
    if p.image:
        p.extra["pixel_max"] = pixel_max(x, declared_pixel_max)
    if not torch.is_tensor(x) or not len(x):
        return
    if p.image:
        scale = 1.0 if x.dtype == torch.uint8 else p.extra["pixel_max"]
        low, high = torch.aminmax(x)
        p.extra["input_range"] = [float(low) * scale, float(high) * scale]
    elif x.dim() == 2:
        low, high = torch.aminmax(x.float(), dim=0)
        p.extra["input_range"] = [low, high]


def _standardize(p):
    """z-score every part with the training rows' statistics (no leakage)."""
    x = p.train.x.float()
    mean, std = x.mean(0), x.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    for part in (p.train, p.val, p.test):
        part.x = (part.x.float() - mean) / std
    p.extra["feature_mean"], p.extra["feature_std"] = mean, std


def _scale_targets(p):
    mean, std = p.train.y.mean(0), p.train.y.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    for part in (p.train, p.val, p.test):
        part.y = (part.y - mean) / std
    p.target_scale = (mean, std)
