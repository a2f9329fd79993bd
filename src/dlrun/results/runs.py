"""`dlrun runs [PATH]`: every run under a folder (the outputs root by default), found by its
summary.json alone (nothing else is opened, so thousands of runs list in a moment), filtered by
tag, status and any recorded field or override, sorted, and deleted on confirmation."""

import argparse
import shutil
import sys
from datetime import datetime
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlrun import layout
from dlrun.config.sources import as_written, key_of, outputs_root
from dlrun.errors import DlrunError, unknown_choice
from dlrun.results import record

FIELDS = ("status", "task", "name", "dataset", "model", "problem", "device", "seed")  # what --where reads
SORTS = {"started": lambda r: r.get("started_at") or "", "duration": lambda r: r.get("wall_time_s") or 0,
         "name": lambda r: r.get("name") or "", "status": lambda r: r.get("status") or "",
         "dataset": lambda r: r.get("dataset") or "", "model": lambda r: r.get("model") or "",
         "best": lambda r: _best_key(r)}
NEWEST_FIRST = ("started", "duration")  # sorts that read best from the largest down


def main(args):
    parser = _parser()
    try:
        asked = parser.parse_args(args)
    except SystemExit as exc:  # argparse's usage line and its exit code (2; 0 for --help)
        return exc.code
    root = Path(asked.path) if asked.path else outputs_root()
    if not root.is_dir():
        print(f"dlrun runs: no such directory: {root}", file=sys.stderr)
        return 2
    found = list(find(root))
    try:
        chosen = sorted(select(found, asked.tag, asked.status, asked.where), key=SORTS[asked.sort],
                        reverse=(asked.sort in NEWEST_FIRST) != asked.reverse)
    except DlrunError as exc:
        print(f"dlrun runs: {exc}", file=sys.stderr)
        return 2
    if asked.paths:
        print("\n".join(r["path"] for r in chosen))
    else:
        _show(chosen, len(found), root)
    return _delete(chosen, asked.yes) if asked.delete else 0


def _parser():
    parser = argparse.ArgumentParser(prog="dlrun runs", description="Every run under PATH (default: the outputs "
                                     "root, $DLRUN_OUTPUTS or ./outputs), read from each run's summary.json.")
    parser.add_argument("path", nargs="?", metavar="PATH", help="a folder of runs (searched at any depth)")
    parser.add_argument("--tag", action="append", default=[], help="only runs with this tag (repeat: all of them)")
    parser.add_argument("--status", action="append", default=[], help=f"only runs that ended so (repeat: any of "
                        f"them): running, {', '.join(record.STATUSES)}")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help=f"only runs whose {', '.join(FIELDS)} or override KEY is VALUE (repeat: all of them), "
                             f"e.g. --where dataset=digits --where optimizer.lr=0.01")
    parser.add_argument("--sort", choices=list(SORTS), default="started",
                        help="started (newest first, the default), duration (longest first), best (the best "
                             "monitored value first, per monitor), name, status, dataset or model")
    parser.add_argument("--reverse", action="store_true", help="the other way round")
    parser.add_argument("--paths", action="store_true", help="print only the run directories, one per line")
    parser.add_argument("--delete", action="store_true", help="delete the runs listed, after a confirmation "
                        "(a run still running is never deleted)")
    parser.add_argument("--yes", action="store_true", help="with --delete: do not ask")
    return parser


def find(root):
    """The record of every run under `root`, with its `path`: a folder holding summary.json is a
    run, and is not searched further (a cross-validation's folds belong to their parent)."""
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        run = layout.RunDir(folder)
        if run.summary.is_file():
            yield _read(run)
            continue
        try:
            pending += sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              reverse=True)
        except OSError:
            continue  # a folder that cannot be read holds no run we can list


def _read(run):
    try:
        data = record.read(run.summary)
    except (DlrunError, ValueError, OSError) as exc:
        data = {"status": "unreadable", "error": str(exc).splitlines()[0]}
    return {**data, "path": str(run.root)}


def select(runs, tags=(), statuses=(), where=()):
    """The runs that carry every tag, ended in one of `statuses` and match every KEY=VALUE."""
    known = ("running", "unreadable", *record.STATUSES)
    for status in statuses:
        if status not in known:
            raise DlrunError(unknown_choice("--status", status, known))
    tests = [_condition(w, runs) for w in where]
    return [r for r in runs if set(tags) <= set(r.get("tags") or []) and (not statuses or r.get("status") in statuses)
            and all(test(r) for test in tests)]


def _condition(text, runs):
    """A test for `KEY=VALUE`: a recorded field, else an override the runs were given."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DlrunError(f"--where {text}: write KEY=VALUE, e.g. --where dataset=digits.")
    if key in FIELDS:
        return lambda r: as_written(r.get(key)) == value
    keys = {key_of(o) for r in runs for o in r.get("overrides") or []}
    if key not in keys:
        raise DlrunError(unknown_choice("--where", key, sorted({*FIELDS, *keys})).replace(
            "Choose one of", "Fields and overrides of these runs"))
    return lambda r: f"{key}={value}" in (r.get("overrides") or [])


def _best(r):
    """(monitor, best value, mode) of a run; a cross-validation's is the mean over its folds."""
    monitor = r.get("monitor") or {}
    value = ((r.get("cv") or {}).get("best_value") or {}).get("mean", monitor.get("best_value"))
    return monitor.get("name"), value if isinstance(value, (int, float)) else None, monitor.get("mode")


def _best_key(r):
    """Sorts the best first within each monitor; runs without a value last."""
    name, value, mode = _best(r)
    return (1, "", 0.0) if value is None else (0, name or "", value if mode == "min" else -value)


COLUMNS = ("run", "status", "task", "name", "tags", "dataset / model", "best", "started", "took")


def _show(runs, total, root):
    """The runs as a table; a column that no listed run has a value in is left out, and the task
    column when every run trained. Piped, the table keeps its natural width (for grep)."""
    rows = [_cells(r, root) for r in runs]
    blank = {name: ("–", "train") if name == "task" else ("–",) for name in COLUMNS}
    kept = [i for i, name in enumerate(COLUMNS) if any(row[i] not in blank[name] for row in rows)] or range(len(COLUMNS))
    table = Table(title=f"{len(runs)} of {total} runs under {root}", title_justify="left", box=box.SIMPLE_HEAD)
    for i in kept:
        table.add_column(COLUMNS[i], overflow="fold", no_wrap=COLUMNS[i] in ("status", "started", "took"))
    for row in rows:
        table.add_row(*(escape(row[i]) for i in kept))
    console = Console()
    (console if console.is_terminal else Console(width=250)).print(table)


def _cells(r, root):
    name, best, _ = _best(r)
    seconds = r.get("wall_time_s")
    return (_relative(r["path"], root), r.get("status", "?"), r.get("task") or "–", r.get("name") or "–",
            ", ".join(r.get("tags") or []) or "–", f"{r.get('dataset') or '–'} / {r.get('model') or '–'}",
            "–" if best is None else f"{name} {best:.4g}" + (" (mean)" if r.get("cv") else ""),
            _when(r.get("started_at")), f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "–")


def _relative(path, root):
    try:
        return str(Path(path).relative_to(root)) or "."
    except ValueError:
        return path


def _when(text):
    try:
        return datetime.fromisoformat(text).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return "–"


def _delete(runs, yes):
    """Delete the runs listed, after a yes at the terminal (or --yes); running ones are kept."""
    running = [r for r in runs if r.get("status") == "running"]
    doomed = [r for r in runs if r.get("status") != "running"]
    if running:
        print(f"{len(running)} running run(s) kept: a run in progress, or one killed before it could record "
              f"its end (delete that directory by hand once you are sure).")
    if not doomed:
        print("nothing to delete.")
        return 0
    size = sum(f.stat().st_size for r in doomed for f in Path(r["path"]).rglob("*") if f.is_file()) / 1e6
    if not yes:
        if not sys.stdin.isatty():
            print("dlrun runs --delete: confirm with --yes when not at a terminal; nothing was deleted.",
                  file=sys.stderr)
            return 2
        if input(f"Delete these {len(doomed)} runs ({size:.1f} MB)? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing was deleted.")
            return 1
    for r in doomed:
        shutil.rmtree(r["path"])
    print(f"deleted {len(doomed)} runs ({size:.1f} MB).")
    return 0
