"""Datasets: registered builders, splits and batching.

A dataset builder returns a :class:`Data`; :func:`prepare` splits it into
train/val/test and puts the in-memory tensors on the training device.
"""

from dlrun.data.base import DATASETS, Data, Prepared, first_rows, keep_classes, one_vs_rest, prepare, rows_of_classes, split_rows

__all__ = ["DATASETS", "Data", "Prepared", "first_rows", "keep_classes", "one_vs_rest", "prepare", "rows_of_classes",
           "split_rows"]
