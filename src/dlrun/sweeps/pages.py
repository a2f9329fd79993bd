"""The leaderboard's files, written from its rows: summary.csv and summary.md (sorted by the
objective, the best row marked), summary_by_configuration.csv, paired_comparison.json,
leaderboard.html, curves.png and a plot of the objective against each swept parameter."""

import html
import os
from pathlib import Path

from dlrun.layout import RunDir, SweepDir
from dlrun.results import artifacts
from dlrun.sweeps import explained
from dlrun.sweeps.rows import (
    COLUMNS,
    differing_config,
    finite,
    job_dirs,
    job_names,
    job_row,
    legend_labels,
    override_values,
    rank,
    shared_overrides,
    swept_parameters,
    value_key,
)
from dlrun.sweeps.stats import by_configuration, paired_comparison


def write(folder, paths=None, pending=()):
    """Write the leaderboard files into `folder`; returns the ranked rows and the paired comparison
    (or None). `pending`: (job name, overrides) of the jobs of an interrupted sweep that did not
    start, listed as such."""
    folder = Path(folder)
    dirs = job_dirs(paths or [folder])
    rows = rank([job_row(d, name) for d, name in zip(dirs, job_names(dirs), strict=True)] + [
        {"job": name, "overrides": " ".join(overrides), "status": "not started", "objective": None,
         "best_epoch": None, "wall_time_s": None, "error": "", "path": folder / name} for name, overrides in pending])
    metric_cols = sorted({k for r in rows for k in r if k.startswith("test/")})
    columns = COLUMNS + metric_cols + ["error"]
    artifacts.write_csv(SweepDir(folder).summary_csv, rows, columns)
    groups = by_configuration(rows)
    if groups:
        artifacts.write_csv(SweepDir(folder).by_configuration, groups)
    paired = paired_comparison(rows)
    if paired:
        artifacts.write_json(SweepDir(folder).paired, paired)
    differ = differing_config(rows)
    plot_files = [*_plot_curves(folder, rows, legend_labels(rows, differ)), *_plot_objective(folder, rows)]
    search = explained.explain(folder)  # an Optuna sweep's own folder: its study
    artifacts.write_text(SweepDir(folder).summary_md, _markdown(rows, columns, groups, paired, search))
    artifacts.write_text(SweepDir(folder).leaderboard, _html(folder, rows, columns, groups, plot_files, paired, differ,
                                                             search))
    return rows, paired


def _fmt(value, key=""):
    """A cell: seconds to a tenth, other numbers with four decimals, or four significant digits
    when they are that small (a training loss of 0.00003 is not 0.0000)."""
    if isinstance(value, float):
        if key.endswith("_s"):
            return f"{value:.1f}"
        return f"{value:.3g}" if value and abs(value) < 0.01 else f"{value:.4f}"
    return "" if value is None else str(value)


def _paired_heading(paired):
    pairs = len(paired["pairs"])
    return ("Is one configuration better than the other?" if pairs == 1 else
            f"Which configurations are better? ({pairs} paired comparisons, Holm-corrected)")


def _markdown(rows, columns, groups, paired=None, search=((), {}, (), ())):
    lines = [f"# Sweep leaderboard ({len(rows)} jobs, {_objective(rows)}; * marks the best)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c), c).replace("|", "\\|") for c in columns) + " |" for r in rows]
    if groups:
        keys = list(groups[0])
        lines += ["", "## Mean and standard deviation over seeds", "", "| " + " | ".join(keys) + " |",
                  "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(g.get(k), k) for k in keys) + " |" for g in groups]
    if paired:
        lines += ["", f"## {_paired_heading(paired)}", "", *[f"- {line}" for line in paired["verdict"].splitlines()]]
    _, importances, _, pareto = search
    if importances:
        lines += ["", "## Parameter importances (Optuna)", "", *[f"- {k}: {v:.3f}" for k, v in importances.items()]]
    if pareto:
        lines += ["", "## Pareto front (Optuna)", "", *[f"- {', '.join(f'{k} {_fmt(v, k)}' for k, v in row.items())}"
                                                       for row in pareto]]
    return "\n".join(lines) + "\n"


HEADERS = {"best_epoch": "best epoch", "wall_time_s": "wall time (s)"}  # the page's words for the csv's columns


def _html(folder, rows, columns, groups, plot_files, paired=None, differ=(), search=((), {}, (), ())):
    import base64

    def cell(row, key):
        text = html.escape(_fmt(row.get(key), key))
        report = RunDir(row["path"]).report if key == "job" and "path" in row else None
        if report is not None and report.is_file():  # each job's own report, relative to this page
            return f'<td><a href="{html.escape(os.path.relpath(report, folder))}">{text}</a></td>'
        return f'<td class="words">{text}</td>' if key in ("overrides", "error") else f"<td>{text}</td>"

    def table(data, keys):
        head = "".join(f"<th>{HEADERS.get(k) or html.escape(k).replace('/', '/<wbr>')}</th>" for k in keys)
        body = "".join("<tr>" + "".join(cell(r, k) for k in keys) + "</tr>" for r in data)
        return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'

    def images_of(files):
        return "".join(f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
                       f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in files)

    images = images_of(plot_files) + _search_section(search, images_of, table)
    seeds = f"<h2>Over seeds</h2>{table(groups, list(groups[0]))}" if groups else ""
    if paired:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in paired["verdict"].splitlines())
        seeds += f"<h2>{html.escape(_paired_heading(paired))}</h2><ul>{items}</ul>"
    keys = [k for k in (differ[0] if differ else {}) if k != "job"]
    config = (f"<h2>Config keys that differ</h2>{table(differ, ['job', *keys])}" if keys else "")
    own, common = _own_overrides(rows)
    shown = [c for c in columns if any(_fmt(r.get(c), c) for r in own)]  # csv keeps every column
    weights, runs = _weights(rows)
    if weights:
        config += (f"<h2>Weights: each tensor's L2 norm (and std) in each run</h2>{table(weights, ['tensor', *runs])}"
                   if len(runs) <= WEIGHT_RUNS else
                   f"<p>Weights are compared on this page for up to {WEIGHT_RUNS} runs; each report has its own.</p>")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem}th{background:#f3f3f3}"
             "img{max-width:100%}.scroll{overflow-x:auto}.words{min-width:8rem;max-width:28rem;overflow-wrap:break-word}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dlrun: {len(rows)} runs compared</title>"
            f"<style>{style}</style></head><body><h1>{len(rows)} runs compared</h1><p>{html.escape(_objective(rows))}; "
            f"* marks the best. Each job links to its own report.{common}</p>{table(own, shown)}{images}{config}{seeds}"
            f"</body></html>\n")


def _search_section(search, images_of, table_of):
    """The Optuna search explained (sweeps/explained.py): importances or the Pareto front, then its plots."""
    files, importances, notes, pareto = search
    if not (files or notes):
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items())
    table = f"<table><tr><th>parameter</th><th>importance</th></tr>{rows}</table>" if rows else ""
    said = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    front = table_of(pareto, list(pareto[0])) if pareto else ""
    return f"<h2>The search (Optuna)</h2>{said}{table}{front}{images_of(files)}"


def _own_overrides(rows):
    """The rows with only their own overrides, and the sentence naming those every run shares."""
    shared = shared_overrides(rows) if len(rows) > 1 else []
    keys = {o.partition("=")[0] for o in shared}
    own = [{**r, "overrides": " ".join(o for o in r["overrides"].split() if o.partition("=")[0] not in keys)}
           for r in rows]
    return own, f" Every run was given <code>{html.escape(' '.join(shared))}</code>." if shared else ""


WEIGHT_RUNS = 6  # runs side by side in the weights table (a column each)


def _weights(rows):
    """Each weight tensor's L2 norm and std in each run (its record's weight_stats), as rows of a
    table with a column per run, when at least two runs have the same tensors; ([], []) otherwise."""
    stats = {r["job"]: r["weight_stats"] for r in rows if r.get("weight_stats")}
    tensors = [[s["parameter"] for s in found] for found in stats.values()]
    if len(stats) < 2 or any(t != tensors[0] for t in tensors):
        return [], []
    table = [{"tensor": name} for name in tensors[0]]
    for job, found in stats.items():
        for entry, s in zip(table, found, strict=True):
            entry[job] = f"{float(s['l2']):.3g} ({float(s['std']):.3g})"
    return table, list(stats)


def _where(objective):
    if objective.startswith("test/"):
        return "of the tested weights (the runs have no validation rows: the held-out test split ranks them)"
    if objective.startswith("train/"):
        return "at the best epoch (no validation or test rows: the training rows rank the runs)"
    return "at the best epoch"


def _objective(rows):
    """The objective and its direction, in words (each one, when runs monitored different metrics)."""
    monitors = list(dict.fromkeys((r["monitor"], r.get("mode", "min")) for r in rows if r.get("monitor")))
    if not monitors:
        return "no run has an objective yet"
    said = [f"{monitor} {_where(monitor)} ({'lower' if mode == 'min' else 'higher'} is better)"
            for monitor, mode in monitors]
    if len(said) == 1:
        return f"objective: {said[0]}"
    return f"objectives: {'; '.join(said)}; runs are ranked against those of the same objective only"


def _plot_curves(folder, rows, labels):
    """curves.png: every run's monitored metric and losses per epoch, one line per run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from dlrun.results.plots import save

    histories = {str(r["path"]): artifacts.read_history(RunDir(r["path"]).metrics) for r in rows
                 if RunDir(r["path"]).metrics.is_file()}
    histories = {path: h for path, h in histories.items() if h}
    monitor = next((r.get("monitor") for r in rows if r.get("monitor")), None)
    if not histories or monitor is None:
        return []
    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for path, history in histories.items():
        epochs = [row["epoch"] for row in history]
        nan = float("nan")
        line, = axes[0].plot(epochs, [row.get(monitor, nan) for row in history], marker="o", markersize=3,
                             label=labels[path])
        axes[1].plot(epochs, [row.get("train/loss", nan) for row in history], "-", color=line.get_color())
        axes[1].plot(epochs, [row.get("val/loss", nan) for row in history], "--", color=line.get_color())
    axes[0].set(title=f"{monitor} per epoch", xlabel="epoch", ylabel=monitor)
    axes[1].set(title="loss per epoch (train solid, val dashed)", xlabel="epoch", ylabel="loss")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    path = SweepDir(folder).curves
    save(fig, path)
    return [path]


def _plot_objective(folder, rows):
    """objective_vs_<param>.png for each swept parameter."""
    from dlrun.results.plots import save

    done = [r for r in rows if r["status"] == "completed" and finite(r["objective"])]
    files = []
    for key in swept_parameters(rows):
        points = []
        for r in done:
            value = override_values(r).get(key)
            if value is not None:
                points.append((value, r["objective"], r is done[0]))
        if points:
            path = folder / f"objective_vs_{key.replace('/', '_')}.png"
            save(objective_figure(key, points, done[0].get("monitor") or "objective", _objective(done)), path)
            files.append(path)
    return files


def objective_figure(key, points, monitor, objective):
    """The objective against one parameter: `points` are (value as text, objective, is best).
    Numbers spanning a factor of 10 or more get a log axis; categories are in order of value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.subplots()
    numeric = all(value_key(v)[0] == 0 for v, _, _ in points)
    points = sorted(points, key=lambda p: value_key(p[0]))  # [8] < [64] < [512], not as text
    xs = [float(v) if numeric else v for v, _, _ in points]
    ax.scatter(xs, [o for _, o, _ in points], s=40)
    for x, (_, value, best) in zip(xs, points):
        if best:
            ax.scatter([x], [value], s=200, marker="*", color="tab:red", label="best", zorder=3)
            ax.legend()
    positive = [x for x in xs if x > 0] if numeric else []
    if positive and min(xs) >= 0 and max(positive) / min(positive) >= 10:  # log-spaced, e.g. learning rates
        if min(xs) == 0:  # weight_decay=0,1e-5,1e-4: log beyond the smallest positive value, linear to 0
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")
    ax.set(title=f"Objective vs {key} ({objective.rpartition('(')[2].rstrip(')')})", xlabel=key, ylabel=monitor)
    return fig
