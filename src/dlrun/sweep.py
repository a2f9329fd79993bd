"""The leaderboard of a sweep, written when a multirun ends (a Hydra callback)
or rebuilt on demand with `dlrun leaderboard DIR...`.

Files in the sweep directory: summary.csv and summary.md (one row per job,
sorted by the objective, the best row marked), leaderboard.html, a plot of
the objective against each swept parameter, and, when only seeds differ
between jobs of a configuration, their mean and standard deviation.
"""

import argparse
import html
import json
import math
import statistics
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from dlrun import artifacts
from dlrun.config import run_overrides
from dlrun.layout import RunDir

HEADLINE = ("accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2")


def job_dirs(paths):
    """Run directories under `paths` (a sweep directory, run directories, or both)."""
    found = []
    for path in map(Path, paths):
        if RunDir(path).summary.is_file() or RunDir(path).hydra.is_dir():
            found.append(path)
        else:
            found += sorted((p for p in path.iterdir() if p.is_dir() and RunDir(p).hydra.is_dir()),
                            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return found


def job_row(run_dir):
    """One leaderboard row from a run directory (a job that died early is 'failed')."""
    overrides = run_overrides(run_dir)
    row = {"job": run_dir.name, "overrides": " ".join(overrides), "status": "failed", "objective": None,
           "best_epoch": None, "wall_time_s": None, "error": ""}
    file = RunDir(run_dir).summary
    if not file.is_file():
        row["error"] = "no summary.json (the job did not start)"
        return row
    summary = json.loads(file.read_text())
    test = summary.get("test") or {}
    row.update(status=summary.get("status", "failed"), objective=summary.get("objective"),
               best_epoch=(summary.get("monitor") or {}).get("best_epoch"), wall_time_s=summary.get("wall_time_s"),
               error=summary.get("error", ""), monitor=(summary.get("monitor") or {}).get("name"),
               mode=(summary.get("monitor") or {}).get("mode", "min"))
    row.update({f"test/{k}": test[k] for k in HEADLINE if isinstance(test.get(k), (int, float))})
    return row


def rank(rows):
    """Completed rows by objective (best first, per the monitor's mode), then the others."""
    done = [r for r in rows if r["status"] == "completed" and _finite(r["objective"])]
    mode = done[0].get("mode", "min") if done else "min"
    done.sort(key=lambda r: r["objective"], reverse=mode == "max")
    rest = [r for r in rows if r not in done]
    for i, r in enumerate(done + rest):
        r["rank"] = i + 1 if r in done else None
        r["best"] = "*" if done and r is done[0] else ""
    return done + rest


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def swept_parameters(rows):
    """Override keys whose values differ between jobs."""
    values = {}
    for r in rows:
        for override in r["overrides"].split():
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1]


def by_configuration(rows):
    """Mean and std of the objective over seeds, per configuration (the other overrides)."""
    groups = {}
    for r in rows:
        if r["status"] != "completed" or not _finite(r["objective"]):
            continue
        config = " ".join(o for o in r["overrides"].split() if not o.startswith("seed="))
        groups.setdefault(config, []).append(r)
    if all(len(g) == 1 for g in groups.values()):
        return []
    out = []
    for config, members in groups.items():
        entry = {"configuration": config or "(defaults)", "runs": len(members)}
        for key in ["objective", *[k for k in members[0] if k.startswith("test/")]]:
            values = [m[key] for m in members if _finite(m.get(key))]
            if values:
                entry[f"{key} mean"] = statistics.fmean(values)
                entry[f"{key} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


COLUMNS = ["rank", "best", "job", "overrides", "status", "objective", "best_epoch", "wall_time_s"]


def write(folder, paths=None):
    """Write the leaderboard files into `folder`; returns the ranked rows."""
    folder = Path(folder)
    rows = rank([job_row(d) for d in job_dirs(paths or [folder])])
    metric_cols = sorted({k for r in rows for k in r if k.startswith("test/")})
    columns = COLUMNS + metric_cols + ["error"]
    artifacts.write_csv(folder / "summary.csv", rows, columns)
    groups = by_configuration(rows)
    if groups:
        artifacts.write_csv(folder / "summary_by_configuration.csv", groups)
    plot_files = _plot_objective(folder, rows)
    artifacts.write_text(folder / "summary.md", _markdown(rows, columns, groups))
    artifacts.write_text(folder / "leaderboard.html", _html(rows, columns, groups, plot_files))
    return rows


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _markdown(rows, columns, groups):
    monitor = next((r.get("monitor") for r in rows if r.get("monitor")), "objective")
    lines = [f"# Sweep leaderboard ({len(rows)} jobs, objective: {monitor}; * marks the best)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    if groups:
        keys = list(groups[0])
        lines += ["", "## Mean and standard deviation over seeds", "", "| " + " | ".join(keys) + " |",
                  "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(g.get(k)) for k in keys) + " |" for g in groups]
    return "\n".join(lines) + "\n"


def _html(rows, columns, groups, plot_files):
    import base64

    def table(data, keys):
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
                       for r in data)
        return f"<table><tr>{head}</tr>{body}</table>"

    images = "".join(f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in plot_files)
    seeds = f"<h2>Over seeds</h2>{table(groups, list(groups[0]))}" if groups else ""
    style = ("body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.25rem .5rem}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dlrun sweep</title><style>{style}</style>"
            f"</head><body><h1>Sweep leaderboard</h1>{table(rows, columns)}{seeds}{images}</body></html>\n")


def _plot_objective(folder, rows):
    """objective_vs_<param>.png for each swept parameter."""
    from matplotlib.figure import Figure

    from dlrun.plots import save

    done = [r for r in rows if r["status"] == "completed" and _finite(r["objective"])]
    files = []
    for key in swept_parameters(rows):
        points = []
        for r in done:
            value = dict(o.partition("=")[::2] for o in r["overrides"].split()).get(key)
            if value is not None:
                points.append((value, r["objective"]))
        if not points:
            continue
        fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
        ax = fig.subplots()
        numeric = all(_is_number(v) for v, _ in points)
        xs = [float(v) if numeric else v for v, _ in points]
        ax.scatter(xs, [o for _, o in points], s=40)
        if numeric and min(xs) > 0 and max(xs) / min(xs) > 50:
            ax.set_xscale("log")
        ax.set(title=f"Objective vs {key}", xlabel=key, ylabel=done[0].get("monitor") or "objective")
        path = folder / f"objective_vs_{key.replace('/', '_')}.png"
        save(fig, path)
        files.append(path)
    return files


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


class Leaderboard(Callback):
    """Writes the leaderboard when a multirun ends; exits non-zero if any job failed."""

    def on_multirun_end(self, config, **kwargs):
        folder = Path(config.hydra.sweep.dir)
        if not folder.is_dir():
            return
        rows = write(folder)
        failed = [r for r in rows if r["status"] in ("failed", "diverged")]
        done = sum(r["status"] == "completed" for r in rows)
        print(f"leaderboard: {folder / 'summary.md'} ({done} completed, {len(failed)} failed)")
        if failed:
            sys.exit(1)


def main(args):
    """`dlrun leaderboard DIR...`: rebuild the leaderboard of a sweep or of a set of run directories."""
    parser = argparse.ArgumentParser(prog="dlrun leaderboard", description="Rebuild the leaderboard (summary.csv, "
                                     "summary.md, leaderboard.html) of a sweep directory or of any run directories.")
    parser.add_argument("paths", nargs="+", metavar="DIR", help="a sweep directory, or run directories")
    parser.add_argument("--out", type=Path, help="where to write it (default: the first DIR)")
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exc:  # argparse's usage line and its exit code (2; 0 for --help)
        return exc.code
    out, paths = parsed.out, parsed.paths
    missing = [p for p in paths if not Path(p).is_dir()]
    if missing:
        print(f"dlrun leaderboard: no such directory: {missing[0]}", file=sys.stderr)
        return 2
    folder = out or Path(paths[0])
    folder.mkdir(parents=True, exist_ok=True)
    rows = write(folder, paths)
    print(f"{len(rows)} runs -> {folder / 'summary.md'}")
    return 0
