"""report.html: one self-contained page per run (images embedded, no network)."""

import base64
import html
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.layout import RunDir
from dlrun.results import artifacts, record
from dlrun.results.metric_names import distinct, shown

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
.scroll { overflow-x: auto; } details { margin: 1rem 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _cell(value):
    if value is None:
        return "<td>–</td>"  # not measured (e.g. no best epoch when a fold is only evaluated)
    if isinstance(value, float) and value != value:
        return '<td class="num">–</td>'  # NaN: undefined, e.g. no correct prediction for a class
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows, columns=None, raw=()):
    """An HTML table of `rows`; the columns in `raw` hold markup the page made (links)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{row[c]}</td>" if c in raw else _cell(row.get(c, "")) for c in columns)
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _pairs(mapping):
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in mapping.items()) + "</table>"


def _image(path):
    data = base64.b64encode(Path(path).read_bytes()).decode()
    name = Path(path).stem.replace("_", " ")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


# The story of a run, in order: what it was trained to do and how training went, the results on
# the test split, what the model learned, then the data and the model; details last, collapsed.
CHAPTERS = (
    ("Training", ("curves", "folds", "lr")),
    ("Results on the test split", ("regression", "confusion", "per_class", "probabilities", "confidence", "reliability", "roc",
                                   "pr_curve", "misclassified")),
    ("What the model learned", ("embeddings_pca", "embeddings_tsne", "weights", "filters")),
    ("Data", ("class_counts", "samples")),
)


def render(summary, config, per_class=None, history=None, plot_files=()):
    plots = {Path(p).stem: p for p in plot_files}
    title = f"{summary.get('dataset')} / {summary.get('model')}"
    sections = [_header(summary, title)]
    for chapter, stems in CHAPTERS:
        body = [_image(plots.pop(stem)) for stem in stems if stem in plots]
        if chapter == "Results on the test split":
            body = _results(summary, per_class) + body
        if chapter == "What the model learned" and summary.get("weight_stats"):
            body.append(_collapsed(f"Weights per layer ({len(summary['weight_stats'])} tensors: mean, std, min, max, "
                                   f"L2 norm, fraction near zero)", _table(summary["weight_stats"])))
        if chapter == "Data":
            body += _data(summary.get("data_summary"), summary.get("class_weights"))
        if body:
            sections += [f"<h2>{chapter}</h2>", *body]
    if summary.get("plots_skipped"):
        sections.append(_collapsed(f"Plots not drawn ({len(summary['plots_skipped'])})",
                                   _table([{"plot": name, "why": why} for name, why in summary["plots_skipped"].items()])))
    if plots:  # a plot a plugin added
        sections += ["<h2>More plots</h2>", *(_image(p) for p in plots.values())]
    sections += _model(summary.get("model_summary"))
    if history:
        sections.append(_collapsed(f"Epochs ({len(history)})", _table(history)))
    sections.append(_collapsed("Config", f"<pre>{html.escape(OmegaConf.to_yaml(config))}</pre>"))
    sections += _reproducibility(summary)
    page_title = f"{title} · {summary['status']} · {summary.get('started_at', '')}"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(page_title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")


def _header(summary, title):
    status = html.escape(summary["status"])
    monitor = summary.get("monitor", {})
    best = monitor.get("name") and shown(monitor["name"], summary.get("problem"), summary.get("positive_class"))
    overview = {
        "name": summary.get("name"), "tags": ", ".join(summary.get("tags") or []) or None,
        "started": summary.get("started_at"), "stopped by": summary.get("stop_reason"),
        "error": summary.get("error"), "evaluated checkpoint": summary.get("evaluated"),
        "problem": summary.get("problem"), "positive class": summary.get("positive_class"),
        "device": summary.get("device"), "epochs run": summary.get("epochs_run"),
        "epochs run per fold": record.epochs_per_fold(summary),
        f"best {best}": monitor.get("best_value"), "best epoch": monitor.get("best_epoch"),
        "wall time": _seconds(summary.get("wall_time_s")), "run directory": summary.get("run_dir"),
        "validation": summary.get("validation"), "tested weights": summary.get("tested_weights"),
        "started from": _started_from(summary.get("init_from")),
        "overfit check": (summary.get("overfit_check") or {}).get("text"),
    }
    overview = {k: v for k, v in overview.items() if v is not None}  # e.g. no best epoch in a CV parent
    command = " ".join(["dlrun", *summary.get("overrides", [])])
    return (f'<h1>{html.escape(title)} <span class="status {status}">{status}</span></h1>'
            f"<pre>{html.escape(command)}</pre>{_pairs(overview)}")


def _seconds(value):
    return None if value is None else f"{value:.1f} s"


def _started_from(loaded):
    """init_from: where the weights came from and how many were loaded."""
    if not loaded:
        return None
    return f"{loaded['path']} ({loaded['loaded']} of {loaded['of']} tensors loaded)"


def _results(summary, per_class):
    problem, positive = summary.get("problem"), summary.get("positive_class")
    if summary.get("cv"):
        body = _cross_validation(summary)
    else:
        test = {shown(k, problem, positive): v for k, v in distinct(summary.get("test") or {}).items()
                if isinstance(v, (int, float))}
        heading = f"Test metrics of {summary['tested_weights'].split(';')[0]}" if summary.get("test_last") else \
            "Test metrics"
        body = [f"<h3>{html.escape(heading)}</h3>", _pairs(test) if test else "<p>No test metrics (no test split).</p>"]
    if summary.get("test_last"):
        last = {shown(k, problem, positive): v for k, v in distinct(summary["test_last"]).items()
                if isinstance(v, (int, float))}
        body += ["<h3>Test metrics of the last epoch's weights</h3>", _pairs(last)]
    if summary.get("threshold"):
        chosen = summary["threshold"]
        value = chosen["value"]  # one per label for a multi-label task: the per-label table lists them
        if isinstance(value, (int, float)):
            body.append(f"<p>Decision threshold {value:.4f} ({html.escape(chosen['chosen_by'])}).</p>")
        else:
            body.append(f"<p>Decision thresholds per label ({html.escape(chosen['chosen_by'])}): see the table.</p>")
    if per_class:
        body += ["<h3>Per label</h3>" if problem == "multilabel" else "<h3>Per class</h3>", _table(per_class)]
    if summary.get("most_confused"):
        body += ["<h3>Most confused pairs</h3>", _table(summary["most_confused"])]
    return body


FOLD_COLUMNS = 3  # metrics per fold on the page; folds.csv has them all


def _cross_validation(summary):
    """A cross-validation's parent: mean ± std over its folds (held-out metrics first, the
    validation ones at each fold's best epoch collapsed), and a row per fold linking its report."""
    problem, positive, monitor = summary.get("problem"), summary.get("positive_class"), summary.get("monitor", {})
    stats = distinct(summary["cv"], lambda stat: stat["mean"])
    named = {f"best {monitor.get('name')}" if k == "best_value" else shown(k, problem, positive):
             f"{v['mean']:.4f} ± {v['std']:.4f}" for k, v in stats.items()}
    held_out = {k: v for k, v in named.items() if not k.startswith("val/")}
    validation = {k: v for k, v in named.items() if k.startswith("val/")}
    folds = summary["folds"]
    metrics = [k for k in distinct(folds[0]) if k.startswith(("test/", "val/"))][:FOLD_COLUMNS]
    rows = [{"fold": f["fold"], "report": f'<a href="fold_{f["fold"]}/report.html">report</a>',
             "epochs run": f["epochs_run"], "best epoch": f["best_epoch"], f"best {monitor.get('name')}": f["best_value"],
             **{k: f.get(k.removesuffix(" = log_loss")) for k in metrics}} for f in folds]
    body = [f"<h3>Cross-validation: {len(folds)} folds (mean ± std over the folds)</h3>", _pairs(held_out)]
    if validation:
        body.append(_collapsed(f"Validation metrics at each fold's best epoch ({len(validation)}, mean ± std)",
                               _pairs(validation)))
    return body + [f"<h3>Each fold</h3><p>Each fold is a whole run with its own report; <code>folds.csv</code> has "
                   f"all {len([k for k in folds[0] if '/' in k])} metrics of each.</p>", _table(rows, raw={"report"})]


def _data(data, weights=None):
    if not data:
        return []
    body = []
    if data.get("class_counts"):
        counts = data["class_counts"]
        rows = [{"label" if data.get("task") == "multilabel" else "class": name,
                 **{split: counts[split][name] for split in counts},
                 **({"weight in the loss": weights[name]} if weights else {})} for name in counts["train"]]
        body += ["<h3>Rows with each label</h3>" if data.get("task") == "multilabel" else "<h3>Rows per class</h3>",
                 _table(rows)]
    if data.get("class_counts_per_fold"):
        rows = [{"fold": fold, "split": split, **counts} for fold, splits in data["class_counts_per_fold"].items()
                for split, counts in splits.items()]
        body += ["<h3>Rows per class in each fold</h3>", _table(rows)]
    if data.get("features"):
        body.append(_collapsed(f"Features ({len(data['features'])}, training rows, original units)",
                               _table(data["features"])))
    return body


def _model(model):
    if not model:
        return []
    totals = {"parameters": model["params"], "trainable": model["trainable"], "frozen": model["frozen"],
              "size (MB)": model["size_mb"], "input shape": str(tuple(model["input_shape"])),
              **({"forward FLOPs per sample": f"{model['flops_per_sample']:,}"} if model.get("flops_per_sample") else {})}
    layers = [{**row, "output_shape": str(tuple(row["output_shape"]))} for row in model["layers"]]
    return ["<h2>Model</h2>", _pairs(totals), _collapsed(f"Layers ({len(layers)})", _table(layers))]


def _reproducibility(summary):
    """Where the run came from (results/provenance.py): code, environment, host, config hash."""
    if "config_hash" not in summary:  # a record written before these were kept
        return []
    code, own, host = summary.get("code"), summary.get("dlrun_checkout"), summary.get("host") or {}
    facts = {"git commit": code and code["commit"], "branch": code and code.get("branch"),
             "uncommitted changes": code and (f"yes: {code['patch']}" if code.get("patch") else
                                              "yes (files too large for the patch)" if code["dirty"] else "none"),
             "repository": code["repository"] if code else "not a git repository: the code is not recorded",
             "dlrun": f"{summary.get('versions', {}).get('dlrun')}" + (
                 f" (checkout {own['commit'][:10]}{', dirty' if own['dirty'] else ''})" if own else ""),
             "environment": f"{summary['environment']['packages']} packages, sha256 {summary['environment']['hash'][:16]}"
                            f" ({summary['environment']['file']})",
             **{key: value for key, value in host.items() if value is not None},
             "config hash": summary["config_hash"][:16]}
    body = _pairs({k: v for k, v in facts.items() if v is not None})
    command = f"dlrun reproduce {summary.get('run_dir')}"
    return [_collapsed("Reproducibility", f"{body}<p>Again, after saying what differs:</p><pre>{html.escape(command)}</pre>")]


def _collapsed(summary, body):
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def write(run_dir, summary, config, per_class=None, history=None):
    run = RunDir(run_dir)
    plot_files = sorted(run.plots.glob("*.png"))
    artifacts.write_text(run.report, render(summary, config, per_class, history, plot_files))
