"""report.html: one self-contained page per run (images embedded, no network)."""

import base64
import html
from pathlib import Path

from omegaconf import OmegaConf

from dlrun import artifacts
from dlrun.layout import RunDir

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #d0d7de; padding: .3rem .6rem; }
th { background: #f6f8fa; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; color: white; background: #1a7f37; }
.status.failed, .status.diverged, .status.interrupted { background: #cf222e; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: .9rem; } pre { background: #f6f8fa; padding: 1rem; overflow-x: auto; }
.scroll { overflow-x: auto; }
"""


def _cell(value):
    if isinstance(value, float) and value != value:
        return '<td class="num">–</td>'  # NaN: undefined, e.g. no correct prediction for a class
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows, columns=None):
    if not rows:
        return ""
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _pairs(mapping):
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in mapping.items()) + "</table>"


def _image(path):
    data = base64.b64encode(Path(path).read_bytes()).decode()
    name = Path(path).stem.replace("_", " ")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def render(summary, config, per_class=None, history=None, plot_files=()):
    monitor = summary.get("monitor", {})
    overview = {
        "status": summary["status"], "dataset": summary.get("dataset"), "model": summary.get("model"),
        "problem": summary.get("problem"), "device": summary.get("device"), "epochs run": summary.get("epochs_run"),
        f"best {monitor.get('name')}": monitor.get("best_value"), "best epoch": monitor.get("best_epoch"),
        "wall time (s)": summary.get("wall_time_s"), "run directory": summary.get("run_dir"),
    }
    overview = {k: v for k, v in overview.items() if v is not None}  # e.g. no best epoch in a CV parent
    test = {k: v for k, v in (summary.get("test") or {}).items() if isinstance(v, (int, float))}
    sections = [
        f"<h1>dlrun run <span class=\"status {html.escape(summary['status'])}\">{html.escape(summary['status'])}</span></h1>",
        "<h2>Summary</h2>", _pairs(overview),
        "<h2>Test metrics (mean over folds)</h2>" if summary.get("cv") else "<h2>Test metrics</h2>",
        _pairs(test) if test else "<p>No test metrics (no test split).</p>",
    ]
    if summary.get("cv"):
        label = {"best_value": f"best {monitor.get('name')}"}
        stats = {label.get(k, k): f"{v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary["cv"].items()}
        sections += [f"<h2>Cross-validation: {len(summary['folds'])} folds</h2>", _pairs(stats),
                     "<p>Each fold is a whole run with its own report in <code>fold_&lt;i&gt;/report.html</code>.</p>",
                     _table(summary["folds"])]
    if per_class:
        sections += ["<h2>Per class</h2>", _table(per_class)]
    if history:
        sections += ["<h2>Epochs</h2>", _table(history)]
    if plot_files:
        sections += ["<h2>Plots</h2>", *(_image(p) for p in plot_files)]
    sections += ["<h2>Config</h2>", f"<pre>{html.escape(OmegaConf.to_yaml(config))}</pre>"]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dlrun report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")


def write(run_dir, summary, config, per_class=None, history=None):
    run = RunDir(run_dir)
    plot_files = sorted(run.plots.glob("*.png"))
    artifacts.write_text(run.report, render(summary, config, per_class, history, plot_files))
