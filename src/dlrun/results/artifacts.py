"""Files of a run directory, each written atomically: a temporary file in the
same directory, flushed and fsynced, then renamed into place. A kill during a
write leaves the previous version, never a truncated file, and a failed write
(a full disk) is one line naming the file and the reason."""

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

from dlrun.errors import DlrunError, os_reason

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(DlrunError):
    """A file of the run could not be written (no space left, permissions): the run fails."""


def atomic_write(path, write):
    """Call `write(binary_file)`, then put the bytes at `path` through a temporary file.

    `write` fills a memory buffer first: writers such as torch.save report a full disk
    as an opaque RuntimeError, while a plain write raises the OS's own reason."""
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    try:
        _replace(path, buffer.getbuffer())
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {os_reason(exc)}.") from None


def _replace(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), 0o666 & ~_UMASK)  # mkstemp makes files private; use normal permissions
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder):
    """Remove the temporary files that killed writes left in `folder` (the names
    atomic_write gives them). Only for a folder no live process writes to."""
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def _plain(value):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_json(path, data):
    write_text(path, json.dumps(_plain(data), indent=2) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_csv(path, rows, columns=None):
    """Rows (dicts) as CSV; columns default to every key in order of appearance."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_history(path):
    """metrics.csv as numbers: one row per epoch, its epoch an int, every other column a float
    (NaN where an epoch has no value, e.g. no validation that epoch)."""
    return [{k: int(v) if k == "epoch" else float(v) if v not in (None, "") else float("nan") for k, v in row.items()}
            for row in read_csv(path)]
