"""What the terminal shows: the config tree, a progress bar, the summary table, errors."""

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

console = Console()
errors = Console(stderr=True)


def error(message, title="error"):
    errors.print(f"[bold red]dlrun {title}:[/] {escape(message)}", highlight=False, soft_wrap=True)


def config_tree(cfg):
    tree = Tree("[bold]config[/]")
    _add(tree, OmegaConf.to_container(cfg, resolve=True))
    console.print(tree)


def _add(node, data):
    for key, value in data.items():
        if isinstance(value, dict):
            _add(node.add(f"[bold cyan]{key}[/]"), value)
        else:
            node.add(f"{key}: [green]{value}[/]")


class EpochProgress:
    """A bar over the epochs of a run, with the batch position inside the epoch.

    The loop calls `step` at most every few hundred milliseconds and `epoch`
    once per epoch, so the display costs nothing measurable.
    """

    def __init__(self, max_epochs, start_epoch=0, enabled=True):
        self.enabled = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
            disable=not self.enabled)
        self.task = self.progress.add_task("train", total=max_epochs, completed=start_epoch, info="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def step(self, batch, total):
        self.progress.update(self.task, info=f"batch {batch}/{total}")

    def epoch(self, state, row, monitor):
        self.progress.update(
            self.task, completed=state.epoch,
            info=f"train/loss {row['train/loss']:.4f}  {monitor} {row[monitor]:.4f}")
        if not self.enabled:
            console.print(f"epoch {state.epoch}: train/loss {row['train/loss']:.4f}  {monitor} {row[monitor]:.4f}",
                          highlight=False)


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
    rows = [("dataset / model", f"{summary.get('dataset')} / {summary.get('model')}"),
            ("device", summary.get("device"))]
    if summary.get("evaluated"):
        rows.append(("evaluated", summary["evaluated"]))
    if summary.get("cv"):
        rows.append(("folds", len(summary["folds"])))
        shown = "test/" if summary.get("test") else "val/"  # the full table is in summary.json and the report
        for key, stat in summary["cv"].items():
            if key != "best_value" and not key.startswith(shown):
                continue
            name = f"best {monitor.get('name')}" if key == "best_value" else key
            rows.append((f"{name} (mean ± std)", f"{_fmt(stat['mean'])} ± {_fmt(stat['std'])}"))
    else:
        if summary.get("task") == "train":
            rows.append(("epochs run", summary.get("epochs_run")))
            if monitor.get("best_epoch") is not None:
                rows.append((f"best {monitor.get('name')}",
                             f"{_fmt(monitor.get('best_value'))} (epoch {monitor.get('best_epoch')})"))
        test = {k: v for k, v in (summary.get("test") or {}).items() if isinstance(v, float)}
        rows += [(f"test/{k}", _fmt(v)) for k, v in test.items()]
        if not test:
            rows.append(("test", "no test split (split.test=0)"))
    rows.append(("wall time", f"{summary.get('wall_time_s', 0):.1f} s"))
    return rows


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)

