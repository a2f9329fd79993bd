"""Seeded train/val/test and k-fold splits, stratified by class when asked."""

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from dlrun.errors import ConfigError


def split_indices(y, val, test, stratified, seed, cv_fold=None):
    """Row indices (train, val, test) of a dataset with labels `y`.

    The same seed gives the same split on every run. With `cv_fold=(k, i)`,
    the test part is carved first and fold i of a k-fold split of the rest
    becomes the validation part (`cv_fold=(k, i, stratified)`).
    """
    rows = np.arange(len(y))
    for key, frac in (("split.val", val), ("split.test", test)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{key}={frac} must be in [0, 1).")
    if val + test >= 1.0:
        raise ConfigError(f"split.val + split.test = {val + test:g} leaves no training data; keep the sum below 1.")
    rest, test_rows = _carve(rows, y, test, stratified, seed)
    if cv_fold is not None:
        folds, index, cv_stratified = cv_fold
        splitter = (StratifiedKFold if cv_stratified else KFold)(n_splits=folds, shuffle=True, random_state=seed)
        train_pos, val_pos = list(splitter.split(rest, y[rest]))[index]
        return rest[train_pos], rest[val_pos], test_rows
    train_rows, val_rows = _carve(rest, y[rest], val / (1.0 - test), stratified, seed + 1)
    return train_rows, val_rows, test_rows


def _carve(rows, y, frac, stratified, seed):
    """Split `rows` into (kept, carved) with `frac` of them carved."""
    if frac <= 0:
        return rows, rows[:0]
    try:
        kept, carved = train_test_split(
            rows, test_size=frac, random_state=seed, shuffle=True, stratify=y if stratified else None
        )
    except ValueError as exc:
        raise ConfigError(f"cannot split {len(rows)} rows with fraction {frac:g}: {exc}") from None
    return np.sort(kept), np.sort(carved)
