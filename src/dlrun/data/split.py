"""Seeded train/val/test and k-fold splits, stratified by class when asked."""

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from dlrun.errors import ConfigError


def split_indices(y, val, test, stratified, seed, cv_fold=None, names=None):
    """Row indices (train, val, test) of a dataset with labels `y`.

    The same seed gives the same split on every run. With `cv_fold=(k, i)`,
    the test part is carved first and fold i of a k-fold split of the rest
    becomes the validation part (`cv_fold=(k, i, stratified)`). `names` are the
    class names, for messages.
    """
    rows = np.arange(len(y))
    for key, frac in (("split.val", val), ("split.test", test)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{key}={frac} must be in [0, 1).")
    if val + test >= 1.0:
        raise ConfigError(f"split.val + split.test = {val + test:g} leaves no training data; keep the sum below 1.")
    rest, test_rows = _carve(rows, y, test, stratified, seed, ("split.test", test), names)
    if cv_fold is not None:
        folds, index, cv_stratified = cv_fold
        _check_folds(y[rest], folds, cv_stratified, names)
        splitter = (StratifiedKFold if cv_stratified else KFold)(n_splits=folds, shuffle=True, random_state=seed)
        train_pos, val_pos = list(splitter.split(rest, y[rest]))[index]
        return rest[train_pos], rest[val_pos], test_rows
    train_rows, val_rows = _carve(rest, y[rest], val / (1.0 - test), stratified, seed + 1, ("split.val", val), names)
    return train_rows, val_rows, test_rows


def _rarest(y, names):
    """(name, count) of the least frequent class in `y`."""
    values, counts = np.unique(y, return_counts=True)
    i = int(np.argmin(counts))
    value = int(values[i])
    return (names[value] if names and value < len(names) else str(value)), int(counts[i])


def _check_folds(y, folds, stratified, names):
    if folds > len(y):
        raise ConfigError(f"cv.folds={folds} is more than the {len(y)} rows left to split into folds "
                          f"(after the test split); lower cv.folds.")
    if stratified:
        name, count = _rarest(y, names)
        if count < folds:
            raise ConfigError(f"cv.folds={folds} with stratified folds needs at least {folds} rows of every class, "
                              f"and class '{name}' has {count} (after the test split); lower cv.folds or set "
                              f"cv.stratified=false.")


def _carve(rows, y, frac, stratified, seed, setting, names):
    """Split `rows` into (kept, carved) with `frac` of them carved; `setting` is the
    (key, value) asked for, for messages."""
    if frac <= 0:
        return rows, rows[:0]
    key, value = setting
    if stratified:
        name, count = _rarest(y, names)
        if count < 2:
            raise ConfigError(f"{key}={value:g} with a stratified split needs at least 2 rows of every class, and "
                              f"class '{name}' has {count}; use split.strategy=random or add rows of that class.")
    try:
        kept, carved = train_test_split(
            rows, test_size=frac, random_state=seed, shuffle=True, stratify=y if stratified else None
        )
    except ValueError as exc:
        raise ConfigError(f"{key}={value:g} cannot split {len(rows)} rows: {exc}") from None
    return np.sort(kept), np.sort(carved)
