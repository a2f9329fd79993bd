"""Any CSV file with a header row, read with explicit column types.

A feature column is numeric when every cell is a number, text (one-hot
encoded) when no cell is, and an error naming the line when it mixes the two:
one blank cell or stray string must not silently turn a numeric column into
dozens of one-hot columns. Columns listed in `categorical` are one-hot encoded
whatever their cells look like (a blank cell is then a category of its own).
"""

import codecs
import collections
import csv as csvlib
from pathlib import Path

import numpy as np

from dlrun.data.base import DATASETS, Data
from dlrun.errors import ConfigError, unknown_choice


@DATASETS.register("csv")
def csv(path, target, features=None, categorical=(), task="auto", encoding="utf-8"):
    """A classification or regression table: `target` is the label column, `features`
    (default: every other column) the inputs. A text target is label-encoded (class
    names kept, sorted); task=auto picks binary for two distinct values, multiclass for
    text or few integer values, regression otherwise. A list of target columns, each 0 or 1 on
    every row, is a multi-label task: the labels are those columns."""
    table = _Table(path, encoding)
    targets = [target] if isinstance(target, str) else list(target)
    for name in targets:
        table.column_name("dataset.target", name)
    chosen = bool(features)
    features = [table.column_name("dataset.features", name) for name in features] if features else \
        [c for c in table.header if c not in targets]
    for name in targets:
        if name in features:
            raise ConfigError(f"dataset.features lists the target column '{name}'; a model must not see its label.")
    categorical = list(categorical or [])
    for name in categorical:
        if name not in features:
            raise ConfigError(unknown_choice("dataset.categorical", name, features))
    columns = table.read([*features, *targets], text=[*targets, *categorical])
    target_values = [columns.pop(name) for name in targets]
    blocks = [table.feature(name, columns.pop(name), name in categorical) for name in features]
    x = np.concatenate([x for x, _ in blocks], axis=1)
    if len(targets) > 1 or task == "multilabel":
        data = _with_labels(table, target_values, targets, task, x)
    else:
        data = _with_target(table, target_values[0], target, task, x)
    data.input_spec = {"columns": [{"name": name, "levels": levels} for name, (_, levels) in zip(features, blocks)]}
    if not chosen:  # every column but the targets trains: say which ones look like row ids
        data.cautions = [_looks_like_an_id(name, x[:, 0]) for name, (x, levels) in zip(features, blocks)
                         if levels is None and _counts_rows(x[:, 0])]
    return data


LABEL_CELLS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1}


def _with_labels(table, columns, targets, task, x):
    """The Data of features `x` and several 0/1 target columns: a multi-label task."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if task not in ("auto", "multilabel"):
        raise ConfigError(f"dataset.target={targets} names several columns: a multi-label task (each column 0 or 1), "
                          f"not dataset.task={task}.")
    labels = np.empty((len(x), len(targets)), dtype=np.float32)
    words, values = pa.array(list(LABEL_CELLS)), np.array(list(LABEL_CELLS.values()), dtype=np.float32)
    for j, (name, column) in enumerate(zip(targets, columns)):
        found = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(column)), value_set=words)
        index = found.to_numpy(zero_copy_only=False)  # NaN where a cell is none of them
        bad = np.flatnonzero(np.isnan(index)) if index.dtype.kind == "f" else []
        if len(bad):
            raise ConfigError(f"dataset.path={table.path}: the label column '{name}' has '{column[int(bad[0])].as_py()}' "
                              f"on line {table.row(int(bad[0]))[0]}; a multi-label target column holds 0 or 1 (or "
                              f"true/false, yes/no) on every row.")
        labels[:, j] = values[index.astype(np.int64)]
    return Data(x=x, y=labels, task="multilabel", class_names=list(targets), standardize=True)


def _counts_rows(values):
    """A column of whole numbers, a different one on every row, only increasing (or decreasing):
    what a row number or an id looks like."""
    steps = np.diff(values)
    return len(values) > 2 and np.all(values == np.round(values)) and (np.all(steps > 0) or np.all(steps < 0))


def _looks_like_an_id(name, values):
    return (f"dataset.path: column '{name}' has a different whole number on every row, in order "
            f"({values[0]:g}, {values[1]:g}, ... {values[-1]:g}): a row number or id, which the model now trains "
            f"on as a feature. If it is not one, name the features with dataset.features=[...].")


def _with_target(table, column, target, task, x):
    """The Data of features `x` and the target column (its cells as written, an Arrow array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    missing = np.flatnonzero(pc.is_in(cells, value_set=pa.array(["", "nan"])).to_numpy(zero_copy_only=False))
    if len(missing):
        raise ConfigError(f"dataset.path={table.path}: the target column '{target}' is empty on line "
                          f"{table.row(missing[0])[0]} ({_count(len(missing), 'row')} without a target); drop or fill them.")
    numbers = _numbers(column)  # None where a cell is not a number
    task = _infer_task(numbers, pc.count_distinct(column).as_py(), len(column)) if task == "auto" else task
    if task == "regression":
        bad = np.flatnonzero(~np.isfinite(numbers)) if numbers is not None else \
            [i for i, v in enumerate(parse_numbers(column.to_pylist())) if v is None or not np.isfinite(v)]
        if len(bad):
            raise ConfigError(f"dataset.task=regression needs a numeric target, but column '{target}' has "
                              f"'{column[int(bad[0])].as_py()}' on line {table.row(int(bad[0]))[0]}.")
        return Data(x=x, y=numbers.astype(np.float32), task=task, standardize=True)
    names, codes = np.unique(numbers if numbers is not None else column.to_numpy(zero_copy_only=False),
                             return_inverse=True)
    if task == "binary" and len(names) != 2:
        raise ConfigError(f"dataset.task=binary, but column '{target}' has {len(names)} distinct values.")
    return Data(x=x, y=codes, task=task, class_names=[_label(n) for n in names], standardize=True)


def _numbers(column):
    """The cells of a text column as float64, or None when one of them is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


# More columns than this are not a table of features (a file written transposed, say): refused
# before the columnar reader spends minutes and gigabytes on it.
MAX_COLUMNS = 100_000


class _Table:
    """The header and columns of a CSV file. pyarrow's columnar reader parses it (in parallel, in
    blocks: a million rows of a hundred columns in seconds, in about the memory of the values):
    columns it reads as whole numbers or floats stay numbers; the others, and the target and
    categorical columns, are read again as the text written in the file. Line numbers, and the
    text of a cell it read as missing, are looked up only for an error message (`row`)."""

    def __init__(self, path, encoding):
        self.path, self.file, self.codec = path, _file(path), _codec(encoding)
        self.header = _header(self.file, self.codec, path)
        self._check_header()

    def read(self, names, text):
        """Columns `names` (numbers where every cell of one is a number) and `text` (as written)."""
        if len(names) > MAX_COLUMNS:
            raise ConfigError(f"dataset.path={self.path} has {len(self.header):,} columns: a table of features has "
                              f"one column per feature and one row per example; transpose it, or name the columns "
                              f"to read with dataset.features=[...].")
        found = self._read(names, text)
        again = [n for n in names if n not in text and not _numeric(found[n])]
        if again:  # text, dates, flags, empty columns: their cells as written
            found.update(self._read(again, again))
        return found

    def _read(self, names, text):
        import pyarrow as pa
        from pyarrow import csv as pacsv

        # The header line (a byte-order mark too) is skipped: Arrow reads UTF-8 natively, other
        # encodings through Python's codecs.
        arrow_codec = "utf8" if self.codec == "utf-8-sig" else self.codec
        options = pacsv.ReadOptions(column_names=self.header, skip_rows=1, encoding=arrow_codec)
        convert = pacsv.ConvertOptions(include_columns=list(names), column_types={n: pa.string() for n in text},
                                       strings_can_be_null=False)
        try:
            table = pacsv.read_csv(self.file, read_options=options, convert_options=convert)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            self._diagnose()
            raise ConfigError(f"dataset.path={self.path} cannot be read: {str(exc).splitlines()[0]}") from None
        if table.num_rows == 0:
            raise ConfigError(f"dataset.path={self.path} has no data rows below its header.")
        return {name: table.column(name) for name in names}

    def _diagnose(self):
        """The first row without one value per column, or the first byte that is not text in the
        file's encoding, named with its line (the reader says neither so plainly)."""
        _decoded(self.file, self.codec, self.path)
        for line, row in _rows(self.file, self.codec):
            if len(row) != len(self.header):
                raise ConfigError(f"dataset.path={self.path}: line {line} has {len(row)} values and the header has "
                                  f"{len(self.header)}; every row needs one value per column.")

    def row(self, index):
        """(line number, cells) of data row `index`, for messages."""
        for i, found in enumerate(_rows(self.file, self.codec)):
            if i == index:
                return found
        raise IndexError(index)

    def _check_header(self):
        for name, count in collections.Counter(self.header).items():
            if count > 1:
                where = [i + 1 for i, n in enumerate(self.header) if n == name]
                raise ConfigError(f"dataset.path={self.path}: the column name '{name}' appears {len(where)} times "
                                  f"in the header (columns {', '.join(map(str, where))}); give each column its own name.")

    def column_name(self, key, name):
        if name not in self.header:
            raise ConfigError(unknown_choice(key, name, self.header))
        return name

    def feature(self, name, column, categorical):
        """Column `name` as features and its levels: (N, 1) numbers and None, or (N, levels) one-hot
        and the levels."""
        if categorical:
            return _one_hot(column.to_numpy(zero_copy_only=False))
        if _numeric(column):
            numbers = column.to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(~np.isfinite(numbers))  # a missing cell is NaN here
            if not len(bad):
                return numbers.astype(np.float32)[:, None], None
            line, cells = self.row(int(bad[0]))
            return self._refuse(name, cells[self.header.index(name)], line, len(bad))
        values = column.to_pylist()
        numbers = parse_numbers(values)  # Python's reading of a number: " 2" and "1_000" are numbers too
        bad = [i for i, v in enumerate(numbers) if v is None or not np.isfinite(v)]
        if not bad:
            return np.array(numbers, dtype=np.float32)[:, None], None
        blank = [i for i in bad if _blank(values[i])]
        if len(bad) == len(values) and not blank:
            return _one_hot(np.asarray(values))  # a text column
        line, _ = self.row(bad[0])
        return self._refuse(name, values[bad[0]], line, len(bad))

    def _refuse(self, name, cell, line, count):
        if _blank(cell) or _is_number(cell):
            raise ConfigError(f"dataset.path={self.path}: column '{name}' has a missing value ('{cell}') "
                              f"on line {line} ({_count(count, 'cell')} in all); fill or drop those rows, or "
                              f"declare the column with dataset.categorical=[{name}].")
        raise ConfigError(f"dataset.path={self.path}: column '{name}' is numeric but line {line} has "
                          f"'{cell}' ({_count(count, 'non-numeric cell')} in all); fix those cells, or declare "
                          f"the column as text with dataset.categorical=[{name}].")


def _numeric(column):
    import pyarrow as pa

    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


def _blank(cell):
    return cell.strip().lower() in ("", "nan", "na", "n/a", "null", "none")


def _is_number(cell):
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _file(path):
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"dataset.path={path}: no such file. Point it at a CSV file with a header row.")
    return file


def _codec(encoding):
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"dataset.encoding={encoding} is not a text encoding Python knows "
                          f"(e.g. utf-8, latin-1, cp1252).") from None
    return "utf-8-sig" if name == "utf-8" else name  # a byte-order mark is fine


def _header(file, codec, path):
    try:
        with open(file, encoding=codec, newline="") as text:
            header = next(csvlib.reader(text), None)
    except UnicodeDecodeError:
        _decoded(file, codec, path)
        raise
    if not header:
        raise ConfigError(f"dataset.path={path} has no data rows below its header.")
    return header


def _rows(file, codec):
    """(line number, cells) of each data row, blank lines skipped, read as a stream."""
    with open(file, encoding=codec, newline="") as text:
        reader = csvlib.reader(text)
        next(reader, None)
        for row in reader:
            if row:
                yield reader.line_num, row


def _decoded(file, codec, path):
    """Nothing, or the error naming the line of the first byte that is not `codec` text."""
    data = file.read_bytes()
    try:
        data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"dataset.path={path} is not {codec.removesuffix('-sig')} text: byte 0x{data[exc.start]:02x} "
                          f"on line {line} cannot be decoded. Set dataset.encoding to the file's encoding, e.g. "
                          f"dataset.encoding=latin-1 or dataset.encoding=cp1252.") from None


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


def _infer_task(numbers, distinct, rows):
    """binary for two distinct values, multiclass for text or few whole numbers, else regression."""
    if numbers is None:
        return "binary" if distinct == 2 else "multiclass"
    finite = numbers[np.isfinite(numbers)]
    if np.all(finite == np.round(finite)) and distinct <= max(20, rows // 20):
        return "binary" if distinct == 2 else "multiclass"
    return "regression"
