"""Regenerate the result tables of the guide from real runs.

Each table in docs/*.md sits between a spec and an end mark:

    <!-- results
    runs:                                  # dlrun commands; a sweep gives a row per job
      - dlrun -m model=logistic,mlp,cnn
      - {label: "frozen", command: "dlrun model.freeze_backbone=true"}
      - {command: "dlrun -m seed=1,2,3", aggregate: true}   # one row over its jobs (or a CV run's folds)
      - {command: "dlrun cv.folds=5", per_fold: true}        # a row per fold of a CV run
      - dlrun init_from={run0}                 # {runN}: the directory of the spec's run N (0-based)
    columns:                               # header: source [format]
      model: override model                #   the job's value of an override
      run: label                           #   the run's label
      trial: job                           #   the job's number in its sweep
      lynx recall: per_class lynx recall   #   a cell of per_class.csv
      test accuracy: test.accuracy         #   a path in summary.json
      mean: mean test.accuracy             #   mean / std over the row's runs, count of them
      wall time (s): wall_time_s .1f       #   a format spec (default .4f for floats)
    order: objective                       # or: listed
    -->
    ...generated: a provenance line and the table...
    <!-- end results -->

    python docs/results.py [PAGE...]           run everything, rewrite the tables (minutes)
    python docs/results.py --check [PAGE...]   run everything, compare with the pages, write nothing
    python docs/results.py --smoke [PAGE...]   one epoch per run (a single run in this process), print
                                               the tables, write nothing

--check passes when every cell of a fresh run equals the page's, numbers within one unit of
their last printed digit (a rounding boundary), except the columns that measure time.
`make docs-check` checks every page; the full test lane checks the first page (the cheapest)
and runs every other spec on the smoke budget for its table's shape.
"""

import argparse
import csv
import decimal
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent
DLRUN = Path(sys.executable).parent / "dlrun"
BLOCK = re.compile(r"<!-- results\n(?P<spec>.*?)\n-->\n(?P<table>.*?)<!-- end results -->", re.S)
QUIET = ["trainer.progress=false", "plots=[]", "report=false"]
SMOKE = ["trainer.max_epochs=1", "lr_find.steps=20"]
# The CPU threads of every full-budget run: a float sum split over more threads adds in another order, and after
# 30 epochs the fourth decimal moves; the same count on any machine gives the same tables.
THREADS = "2"
# How far a table made with other CPU kernels (cpu_kernels) may differ: their rounding drifts apart.
OTHER_KERNELS_TOLERANCE = 0.05
TIMED = {"wall_time_s"}  # sources that measure the machine, not the result: never compared


def blocks(page):
    """(spec, generated text, match) of every results block of a page."""
    return [(yaml.safe_load(m["spec"]), m["table"], m) for m in BLOCK.finditer(Path(page).read_text())]


def run_spec(spec, workdir, smoke=False):
    """Run the spec's commands in `workdir`; returns the markdown table."""
    rows = []
    for i, item in enumerate(spec["runs"]):
        item = {"command": item} if isinstance(item, str) else item
        rows += _rows(item, Path(workdir) / f"run{i}", smoke)
    if spec.get("order", "objective") == "objective":
        mode = rows[0]["units"][0].get("monitor", {}).get("mode", "min") if rows else "min"
        rows.sort(key=lambda r: r["units"][0].get("objective") or 0.0, reverse=mode == "max")
    columns = spec["columns"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row, source) for source in columns.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _rows(item, folder, smoke):
    """The rows one command gives: one per job (one for a single run), one over all its jobs or
    folds (aggregate), or one per fold (per_fold)."""
    command = re.sub(r"\{run(\d+)\}", lambda m: str(folder.parent / f"run{m[1]}"), item["command"])
    args = shlex.split(command)[1:]
    sweep = "-m" in args
    target = f"hydra.sweep.dir={folder}" if sweep else f"hydra.run.dir={folder}"
    outputs = folder.parent / "outputs"
    if smoke and not sweep:
        _run_here([*args, *QUIET, *SMOKE], folder, outputs)
    else:
        _run_command([*args, *QUIET, *(SMOKE if smoke else []), target], outputs, smoke)
    runs = sorted((p for p in folder.iterdir() if (p / "summary.json").is_file()), key=lambda p: int(p.name)) \
        if sweep else [folder]
    label = item.get("label")
    if item.get("aggregate"):
        units = [_summary(r) for r in runs]
        if len(units) == 1 and units[0].get("cv"):
            units = [_summary(r / f"fold_{i}") for r in runs for i in range(len(units[0]["folds"]))]
        return [{"label": label, "units": units, "run": runs[0], "job": None}]
    if item.get("per_fold"):
        return [{"label": str(i), "units": [_summary(folder / f"fold_{i}")], "run": folder / f"fold_{i}", "job": i}
                for i in range(len(_summary(folder)["folds"]))]
    return [{"label": label, "units": [_summary(r)], "run": r, "job": r.name if sweep else None} for r in runs]


def _run_command(args, outputs, smoke):
    """The real `dlrun ARGS` in a process of its own."""
    env = {**os.environ, "DLRUN_OUTPUTS": str(outputs)}
    if not smoke:  # the numbers count; a smoke run only gives the table's shape, on the caller's threads
        env["OMP_NUM_THREADS"] = THREADS
    env.pop("HYDRA_FULL_ERROR", None)
    command = [str(DLRUN), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"docs/results.py: `{shlex.join(command)}` exited {done.returncode}:\n{done.stderr[-2000:]}")


def _run_here(overrides, folder, outputs):
    """One smoke run in this process (`dlrun.run`: the command's composition and run), where a process
    of its own would spend most of its time starting: only the table's shape counts."""
    import dlrun
    from dlrun.errors import DlrunError

    before = os.environ.get("DLRUN_OUTPUTS")
    os.environ["DLRUN_OUTPUTS"] = str(outputs)
    try:
        dlrun.run(overrides, run_dir=folder)
    except DlrunError as exc:
        raise SystemExit(f"docs/results.py: `dlrun {shlex.join(overrides)}` failed: {exc}") from None
    finally:
        os.environ.pop("DLRUN_OUTPUTS") if before is None else os.environ.update(DLRUN_OUTPUTS=before)


def _summary(run):
    return json.loads((Path(run) / "summary.json").read_text())


def _cell(row, source):
    parts = source.split()
    fmt = parts.pop() if len(parts) > 1 and re.fullmatch(r"\.?\d*[efgd]", parts[-1]) else None
    kind, rest = parts[0], parts[1:]
    if kind == "label":
        value = row["label"]
    elif kind == "job":
        value = row["job"]
    elif kind == "count":
        value = len(row["units"])
    elif kind == "override":
        value = next((o.split("=", 1)[1] for o in row["units"][0]["overrides"] if o.split("=", 1)[0] == rest[0]), None)
    elif kind == "per_class":
        with open(Path(row["run"]) / "per_class.csv", newline="") as handle:
            value = float(next(r for r in csv.DictReader(handle) if r["class"] == rest[0])[rest[1]])
    elif kind in ("mean", "std"):
        values = [_path(u, rest[0]) for u in row["units"]]
        value = statistics.fmean(values) if kind == "mean" else statistics.pstdev(values)
    else:
        value = _path(row["units"][0], kind)
    return _format(value, fmt)


def _path(summary, dotted):
    value = summary
    for key in dotted.split("."):
        value = value[key]
    return value


def _format(value, fmt):
    if value is None:
        return "-"
    if fmt:
        number = float(value) if fmt[-1] in "efg" or "." in fmt else int(value)
        return format(number, fmt)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def provenance():
    """The line above each generated table: what produced its numbers."""
    import torch

    import dlrun

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"Results below were produced by `docs/results.py` running these commands with dlrun {dlrun.__version__}, "
            f"torch {torch.__version__}, on {THREADS} CPU threads ({platform.machine()} {cpu_kernels()}, "
            f"{os.cpu_count()} cores), {device}; {date.today().isoformat()}.")


def cpu_kernels():
    """The instruction set of torch's CPU kernels here (AVX2, AVX512...): two machines with
    different ones round differently, and a training of many epochs drifts apart by a few percent."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def kernels_of(generated):
    """The CPU kernels a generated table's provenance names (None on tables older than that)."""
    found = re.search(r"CPU threads \(\S+ (\w+), \d+ cores\)", generated)
    return found[1] if found else None


def table_of(generated):
    """The markdown table inside a generated block (without the provenance line)."""
    return "\n".join(line for line in generated.splitlines() if line.startswith("|")) + "\n"


def shape(table):
    """A table's header and its rows' first cells (in any order): what a smoke run must reproduce."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return lines[0], sorted(line.split("|")[1].strip() for line in lines[2:])


def differences(spec, page_table, fresh_table, tolerance=None):
    """What a fresh table says differently from the page's: one line per differing cell (numbers
    within `tolerance`, a relative difference, count as the same: see check)."""
    page_rows, fresh_rows = (_cells(t) for t in (page_table, fresh_table))
    if page_rows[0] != fresh_rows[0] or len(page_rows) != len(fresh_rows):
        return [f"the table changed shape: the page has {len(page_rows) - 1} rows under {page_rows[0]}, "
                f"a fresh run gives {len(fresh_rows) - 1} under {fresh_rows[0]}"]
    timed = [source.split()[0] in TIMED for source in spec["columns"].values()]
    found = []
    for page_row, fresh_row in zip(page_rows[1:], fresh_rows[1:], strict=True):
        for header, skip, old, new in zip(page_rows[0], timed, page_row, fresh_row, strict=True):
            if not skip and not _same(old, new, tolerance):
                found.append(f"row '{page_row[0]}', {header}: the page says {old}, a fresh run gives {new}"
                             + (f" (row '{fresh_row[0]}')" if fresh_row[0] != page_row[0] else ""))
    return found


def _cells(table):
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


def _same(old, new, tolerance=None):
    """Equal cells; printed decimals may differ by one unit of their last digit (a value on a
    rounding boundary), integers and words not at all; with `tolerance`, numbers by that share."""
    try:
        a, b = decimal.Decimal(old), decimal.Decimal(new)
    except decimal.InvalidOperation:
        return old == new
    if tolerance is not None and abs(a - b) <= decimal.Decimal(str(tolerance)) * abs(a):
        return True
    if "." not in old.lower().split("e")[0] or a.as_tuple().exponent != b.as_tuple().exponent:
        return old == new
    return abs(a - b) <= decimal.Decimal(1).scaleb(a.as_tuple().exponent)


def check(page):
    """Run a page's specs at full budget; the differences from its tables, one line each."""
    found = []
    for index, (spec, generated, _) in enumerate(blocks(page)):
        with tempfile.TemporaryDirectory() as workdir:
            fresh = run_spec(spec, workdir)
        kernels = kernels_of(generated)
        tolerance = OTHER_KERNELS_TOLERANCE if kernels not in (None, cpu_kernels()) else None
        found += [f"{Path(page).name} table {index + 1}: {line}" + (f" (made with {kernels} kernels, this machine has "
                                                                      f"{cpu_kernels()}: compared within "
                                                                      f"{tolerance:.0%})" if tolerance else "")
                  for line in differences(spec, table_of(generated), fresh, tolerance)]
    return found


def regenerate(page, smoke=False):
    text = Path(page).read_text()
    for spec, _, match in reversed(blocks(page)):
        with tempfile.TemporaryDirectory() as workdir:
            table = run_spec(spec, workdir, smoke)
        if smoke:
            print(f"{Path(page).name}:\n{table}")
            continue
        generated = f"{provenance()}\n\n{table}"
        text = text[:match.start("table")] + generated + text[match.end("table"):]
    if not smoke:
        Path(page).write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="docs/results.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", type=Path, help="pages to regenerate (default: every page of docs/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="one epoch per run; print, write nothing")
    mode.add_argument("--check", action="store_true", help="full runs compared with the pages; write nothing")
    args = parser.parse_args(argv)
    pages = [page for page in args.pages or sorted(DOCS.glob("*.md")) if blocks(page)]
    if not args.check:
        for page in pages:
            regenerate(page, args.smoke)
        return 0
    found = [line for page in pages for line in check(page)]
    print("\n".join(found) if found else f"every table of {len(pages)} page(s) reproduces")
    if found:
        print("regenerate the pages with: python docs/results.py " + " ".join(str(p) for p in args.pages))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
