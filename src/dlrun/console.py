"""What the terminal shows: the config, the summary table, errors (the live training display is progress.py)."""

import math

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from dlrun.results import record
from dlrun.results.metric_names import distinct, shown

console = Console()
errors = Console(stderr=True)


def say(text, target=None):
    """One message (rich markup): in a terminal it wraps between words at the terminal's width;
    piped (a log, a test, CI) it stays one whole line, for grep."""
    target = target or console
    target.print(text, highlight=False, soft_wrap=not target.is_terminal)


def error(message, title="error"):
    """One message on stderr: 'dlrun error: ...' (red), 'dlrun warning: ...', or with title None a
    stop the user asked for, 'dlrun: stopped by SIGINT ...' (yellow)."""
    colour = "red" if title == "error" else "yellow"
    say(f"[bold {colour}]dlrun{f' {title}' if title else ''}:[/] {escape(message)}", errors)


def show_config(cfg, overrides, device, stored=()):
    """The config at the start of a run: `show_config=short` names the components and the
    overrides given, `full` prints the whole tree, `none` nothing. `stored`: the overrides that
    composed the checkpoint's run (plan_run puts them first), shown apart from those typed."""
    if cfg.show_config == "full":
        tree = Tree("[bold]config[/]")
        _add(tree, OmegaConf.to_container(cfg, resolve=True))
        console.print(tree)
    elif cfg.show_config == "short":
        parts = [f"{group}={cfg[group].get('name') or cfg[group].get('_target_')}"
                 for group in ("dataset", "model", "optimizer", "scheduler", "loss")]
        parts[2] += f" (lr {cfg.optimizer.lr:g})"
        say(f"[bold]dlrun {cfg.task}[/]  {'  '.join(parts)}  device={cfg.device.name} -> {device}  seed={cfg.seed}")
        stored = list(stored) if list(overrides[:len(stored)]) == list(stored) else []
        typed = overrides[len(stored):]
        given = " ".join(typed) if typed else "none (the defaults)"
        kept = f"; the checkpoint's run: {' '.join(stored)}" if stored else ""
        say(f"[dim]overrides: {escape(given + kept)}   (show_config=full prints the whole config)[/]")


def _add(node, data):
    for key, value in data.items():
        if isinstance(value, dict):
            _add(node.add(f"[bold cyan]{key}[/]"), value)
        else:
            node.add(f"{key}: [green]{value}[/]")


def summary_table(summary):
    """The end-of-run table: what ran, its best epoch and its test metrics (for a
    cross-validation, the mean ± std over folds); never a 'None'."""
    table = Table(title=f"dlrun {summary['status']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in _summary_rows(summary):
        table.add_row(key, str(value))
    console.print(table)
    # Whole, on one line, whatever the terminal width: made to be copied.
    console.print(f"run directory: {summary['run_dir']}", soft_wrap=True, highlight=False)


def _summary_rows(summary):
    monitor = summary.get("monitor", {})
    rows = [("name", summary.get("name")), ("tags", ", ".join(summary.get("tags") or []))]
    rows = [row for row in rows if row[1]] + [("dataset / model", f"{summary.get('dataset')} / {summary.get('model')}"),
                                              ("device", summary.get("device"))]
    if summary.get("task") == "inspect":
        model = summary.get("model_summary", {})
        rows += [("parameters", f"{model.get('params', 0):,} ({model.get('trainable', 0):,} trainable)"),
                 ("split sizes", ", ".join(f"{k} {v:,}" for k, v in summary.get("sizes", {}).items())),
                 ("wall time", f"{summary.get('wall_time_s', 0):.1f} s")]
        return rows
    if summary.get("predicted"):
        done = summary["predicted"]
        return rows + [("checkpoint", done["checkpoint"]), ("inputs", f"{done['rows']:,} from {done['input']}"),
                       ("predictions", done["file"]), ("wall time", f"{summary.get('wall_time_s', 0):.1f} s")]
    if summary.get("lr_find"):
        found = summary["lr_find"]
        rows += [(f"suggested lr ({name})", f"{lr:.3g}") for name, lr in found["suggestions"].items()]
        rows += [("range test", f"{found['steps']} steps, ended by {found['stop_reason']}"),
                 ("use", f"optimizer.lr={found['suggestions'][found['recommended']]:.2g}"),
                 ("wall time", f"{summary.get('wall_time_s', 0):.1f} s")]
        return rows
    if summary.get("evaluated"):
        rows.append(("evaluated", summary["evaluated"]))
    rows += _cv_rows(summary, monitor) if summary.get("cv") else _run_rows(summary, monitor)
    rows.append(("wall time", f"{summary.get('wall_time_s', 0):.1f} s"))
    return rows


def _cv_rows(summary, monitor):
    """A cross-validation: mean and std over the folds (the full table is in summary.json and the report)."""
    rows = [("folds", len(summary["folds"]))]
    epochs = record.epochs_per_fold(summary)
    if epochs:
        rows.append(("epochs run per fold", epochs))
    prefix = "test/" if summary.get("test") else "val/"
    stats = {k: v for k, v in summary["cv"].items() if k == "best_value" or k.startswith(prefix)}
    for key, stat in distinct(stats, lambda stat: stat["mean"]).items():
        name = f"best {monitor.get('name')}" if key == "best_value" else key
        rows.append((f"{name} (mean ± std)", f"{_fmt(stat['mean'])} ± {_fmt(stat['std'])}"))
    return rows


def _run_rows(summary, monitor):
    """One run: how training went and what the tested weights scored."""
    rows = []
    if summary.get("task") == "train":
        rows.append(("epochs run", summary.get("epochs_run")))
        if summary.get("stop_reason"):
            rows.append(("stopped by", summary["stop_reason"]))
        if summary.get("overfit_check"):
            check = summary["overfit_check"]
            rows.append(("overfit check", f"{'passed' if check['passed'] else 'FAILED'}: loss "
                         f"{check['first_loss']:.4f} -> {check['best_loss']:.4f}"))
        if summary.get("change_per_epoch"):
            rows.append(("change per epoch", _changes(summary["change_per_epoch"])))
        if monitor.get("best_epoch") is not None:
            rows.append((f"best {_shown(monitor.get('name', ''), summary)}",
                         f"{_fmt(monitor.get('best_value'))} (epoch {monitor.get('best_epoch')})"))
    if summary.get("tested_weights"):
        rows.append(("tested weights", summary["tested_weights"]))
    test = {k: v for k, v in (summary.get("test") or {}).items() if isinstance(v, float)}
    rows += [(_shown(f"test/{k}", summary), _fmt(v)) for k, v in distinct(test).items()]
    last = {k: v for k, v in (summary.get("test_last") or {}).items() if isinstance(v, float)}
    rows += [(_shown(f"test/{k}", summary) + " (last)", _fmt(v)) for k, v in distinct(last).items()]
    if not test:
        rows.append(("test", "no test split (split.test=0)"))
    return rows


def _shown(name, summary):
    return shown(name, summary.get("problem"), summary.get("positive_class"))


def _changes(changes):
    """The average change per epoch of the validation loss and accuracy (the training ones
    without validation), signed."""
    split = "val/" if any(k.startswith("val/") for k in changes) else "train/"
    return ", ".join(f"{k} {v:+.4f}" for k, v in changes.items() if k.startswith(split))


def _fmt(value):
    if isinstance(value, float) and math.isnan(value):
        return "n/a (undefined on these rows)"
    return f"{value:.4f}" if isinstance(value, float) else str(value)

