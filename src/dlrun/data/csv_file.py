"""Any CSV file with a header row, read with explicit column types.

A feature column is numeric when every cell is a number, text (one-hot
encoded) when no cell is, and an error naming the line when it mixes the two:
one blank cell or stray string must not silently turn a numeric column into
dozens of one-hot columns. Columns listed in `categorical` are one-hot encoded
whatever their cells look like (a blank cell is then a category of its own).
"""

import csv as csvlib
import io
from pathlib import Path

import numpy as np

from dlrun.data.base import DATASETS, Data
from dlrun.errors import ConfigError, unknown_choice


@DATASETS.register("csv")
def csv(path, target, features=None, categorical=(), task="auto", encoding="utf-8"):
    """A classification or regression table: `target` is the label column, `features`
    (default: every other column) the inputs. A text target is label-encoded (class
    names kept, sorted); task=auto picks binary for two distinct values, multiclass for
    text or few integer values, regression otherwise."""
    table = _Table(path, encoding)
    target_column = table.column("dataset.target", target)
    chosen = bool(features)
    features = list(features) if features else [c for c in table.header if c != target]
    if target in features:
        raise ConfigError(f"dataset.features lists the target column '{target}'; a model must not see its label.")
    categorical = list(categorical or [])
    for name in categorical:
        if name not in features:
            raise ConfigError(unknown_choice("dataset.categorical", name, features))
    blocks = [table.feature(name, name in categorical) for name in features]
    data = _with_target(table, target_column, target, task, np.concatenate([x for x, _ in blocks], axis=1))
    data.input_spec = {"columns": [{"name": name, "levels": levels} for name, (_, levels) in zip(features, blocks)]}
    if not chosen:  # every column but the target trains: say which ones look like row ids
        data.cautions = [_looks_like_an_id(name, x[:, 0]) for name, (x, levels) in zip(features, blocks)
                         if levels is None and _counts_rows(x[:, 0])]
    return data


def _counts_rows(values):
    """A column of whole numbers, a different one on every row, only increasing (or decreasing):
    what a row number or an id looks like."""
    steps = np.diff(values)
    return len(values) > 2 and np.all(values == np.round(values)) and (np.all(steps > 0) or np.all(steps < 0))


def _looks_like_an_id(name, values):
    return (f"dataset.path: column '{name}' has a different whole number on every row, in order "
            f"({values[0]:g}, {values[1]:g}, ... {values[-1]:g}): a row number or id, which the model now trains "
            f"on as a feature. If it is not one, name the features with dataset.features=[...].")


def _with_target(table, values, target, task, x):
    missing = [i for i, v in enumerate(values) if v.strip().lower() in ("", "nan")]
    if missing:
        raise ConfigError(f"dataset.path={table.path}: the target column '{target}' is empty on line "
                          f"{table.lines[missing[0]]} ({_count(len(missing), 'row')} without a target); drop or fill them.")
    task = _infer_task(values) if task == "auto" else task
    numbers = parse_numbers(values)
    if task == "regression":
        text = [i for i, v in enumerate(numbers) if v is None or not np.isfinite(v)]
        if text:
            raise ConfigError(f"dataset.task=regression needs a numeric target, but column '{target}' has "
                              f"'{values[text[0]]}' on line {table.lines[text[0]]}.")
        return Data(x=x, y=np.array(numbers, dtype=np.float32), task=task, standardize=True)
    labels = values if None in numbers else numbers
    names, codes = np.unique(labels, return_inverse=True)
    if task == "binary" and len(names) != 2:
        raise ConfigError(f"dataset.task=binary, but column '{target}' has {len(names)} distinct values.")
    return Data(x=x, y=codes, task=task, class_names=[_label(n) for n in names], standardize=True)


class _Table:
    """The header, the cells and each data row's line number of a CSV file."""

    def __init__(self, path, encoding):
        self.path = path
        text = self._decode(path, encoding)
        reader = csvlib.reader(io.StringIO(text, newline=""))
        rows, self.lines = [], []
        for row in reader:
            if row:  # blank lines are skipped
                rows.append(row)
                self.lines.append(reader.line_num)
        if len(rows) < 2:
            raise ConfigError(f"dataset.path={path} has no data rows below its header.")
        self.header, body, self.lines = rows[0], rows[1:], self.lines[1:]
        self._check_header()
        for row, line in zip(body, self.lines):
            if len(row) != len(self.header):
                raise ConfigError(f"dataset.path={path}: line {line} has {len(row)} values and the header has "
                                  f"{len(self.header)}; every row needs one value per column.")
        self.cells = {name: [row[i] for row in body] for i, name in enumerate(self.header)}

    @staticmethod
    def _decode(path, encoding):
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"dataset.path={path}: no such file. Point it at a CSV file with a header row.")
        data = file.read_bytes()
        codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding  # a BOM is fine
        try:
            return data.decode(codec)
        except LookupError:
            raise ConfigError(f"dataset.encoding={encoding} is not a text encoding Python knows "
                              f"(e.g. utf-8, latin-1, cp1252).") from None
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise ConfigError(f"dataset.path={path} is not {encoding} text: byte 0x{data[exc.start]:02x} on line "
                              f"{line} cannot be decoded. Set dataset.encoding to the file's encoding, e.g. "
                              f"dataset.encoding=latin-1 or dataset.encoding=cp1252.") from None

    def _check_header(self):
        for name in dict.fromkeys(self.header):
            where = [i + 1 for i, n in enumerate(self.header) if n == name]
            if len(where) > 1:
                raise ConfigError(f"dataset.path={self.path}: the column name '{name}' appears {len(where)} times "
                                  f"in the header (columns {', '.join(map(str, where))}); give each column its own name.")

    def column(self, key, name):
        if name not in self.cells:
            raise ConfigError(unknown_choice(key, name, self.header))
        return self.cells[name]

    def feature(self, name, categorical):
        """Column `name` as features and its levels: (N, 1) numbers and None, or (N, levels) one-hot
        and the levels."""
        values = self.column("dataset.features", name)
        if categorical:
            return _one_hot(values)
        numbers = parse_numbers(values)
        bad = [i for i, v in enumerate(numbers) if v is None or not np.isfinite(v)]
        if not bad:
            return np.array(numbers, dtype=np.float32)[:, None], None
        blank = [i for i in bad if values[i].strip().lower() in ("", "nan", "na", "n/a", "null", "none")]
        if len(bad) == len(values) and not blank:
            return _one_hot(values)  # a text column
        first = bad[0]
        if first in blank or numbers[first] is not None:
            raise ConfigError(f"dataset.path={self.path}: column '{name}' has a missing value ('{values[first]}') "
                              f"on line {self.lines[first]} ({_count(len(bad), 'cell')} in all); fill or drop those rows, or "
                              f"declare the column with dataset.categorical=[{name}].")
        raise ConfigError(f"dataset.path={self.path}: column '{name}' is numeric but line {self.lines[first]} has "
                          f"'{values[first]}' ({_count(len(bad), 'non-numeric cell')} in all); fix those cells, or declare "
                          f"the column as text with dataset.categorical=[{name}].")


def _count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def parse_numbers(values):
    """Each value as a float, or None where it is not a number (task=predict reads new rows with it too)."""
    found = []
    for value in values:
        try:
            found.append(float(value))
        except ValueError:
            found.append(None)
    return found


def _one_hot(values):
    """One-hot columns of text values, and their levels (sorted)."""
    levels, codes = np.unique(values, return_inverse=True)
    return np.eye(len(levels), dtype=np.float32)[codes], [str(level) for level in levels]


def _label(value):
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _infer_task(values):
    numbers = parse_numbers(values)
    distinct = len(set(values))
    if None in numbers:
        return "binary" if distinct == 2 else "multiclass"
    integral = all(n == round(n) for n in numbers if np.isfinite(n))
    if integral and distinct <= max(20, len(values) // 20):
        return "binary" if distinct == 2 else "multiclass"
    return "regression"
