"""`dlrun list [GROUP...]`: every option of every config group with its
arguments and defaults, read from the YAML files (fast: no torch import)."""

import argparse
import sys

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from dlrun.config import conf_dir, flat_items
from dlrun.errors import unknown_choice

HIDDEN = {"hydra"}  # Hydra's own groups: see dlrun --hydra-help


def groups():
    root = conf_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in HIDDEN)


def option(group, name):
    """The option's own keys, merged over the sibling options its defaults list names."""
    node = OmegaConf.load(conf_dir() / group / f"{name}.yaml")
    merged = OmegaConf.create()
    for entry in node.pop("defaults", []) if "defaults" in node else []:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, option(group, entry))
    return OmegaConf.merge(merged, node)


HELP = """dlrun: train PyTorch models from composable Hydra configs.

Examples:
  dlrun                                          MLP on scikit-learn's digits (no download)
  dlrun model=cnn optimizer=sgd optimizer.lr=0.05 trainer.max_epochs=30
  dlrun -m model=mlp,cnn optimizer.lr=1e-3,1e-2  a sweep with a leaderboard
  dlrun ckpt_path=outputs/DATE/TIME trainer.max_epochs=40    resume a run
  dlrun task=eval ckpt_path=outputs/DATE/TIME    evaluate a checkpoint again
  dlrun task=inspect model=cnn                   model and data summaries and data plots, no training
  dlrun task=lr_find                             the learning-rate range test: which optimizer.lr to use
  dlrun debug=overfit_batch                      can the model memorise one batch? (debug=... presets)
  dlrun init_from=outputs/DATE/TIME              start from another run's weights (fine-tuning)

== Config groups (group=option) ==
{groups}

== More ==
  dlrun list [GROUP...]       every option of every group with its arguments and defaults
  dlrun --cfg job [ARGS]      print the composed config without running
  dlrun leaderboard DIR...    rebuild the leaderboard of a sweep or of run directories
  dlrun compare DIR...        compare any runs or sweeps on one page (curves, links, differing keys)
  dlrun --hydra-help          Hydra's own flags (-m, --config-dir, -sc for shell completion, ...)
  dlrun --version             the versions of dlrun, torch, torchvision, hydra-core and Python

Override any key with key=value. Set HYDRA_FULL_ERROR=1 for full tracebacks.

Exit codes: 0 done; 1 the run failed (diverged, a write failed, data missing); 2 bad input (an unknown
option or key, a value out of range, unusable data), nothing written; 130 stopped by Ctrl-C; 143 stopped
by SIGTERM. A stopped run records how far it got and resumes with ckpt_path=<its directory>.
"""


def help_text():
    """`dlrun --help`: read from the config directory alone (Hydra's help composes once per group)."""
    lines = [f"{group}: {', '.join(sorted(p.stem for p in (conf_dir() / group).glob('*.yaml')))}"
             for group in groups()]
    return HELP.format(groups="\n".join(lines))


def _allowed(key):
    """The range or choices that validation enforces for `key`, from the same table."""
    from dlrun.validate import CHOICES, RANGES

    if key in RANGES:
        return f" ({RANGES[key][2]})"
    if key in CHOICES:
        return f" ({' | '.join('null' if c is None else str(c) for c in CHOICES[key])})"
    return ""


def _description(path):
    comments = [line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#")]
    return next((c for c in comments if not c.startswith("@package")), "")


def main(args):
    """`dlrun list [GROUP...]`."""
    parser = argparse.ArgumentParser(prog="dlrun list", description="Every option of each config group (all "
                                     "groups by default), with its arguments, defaults and allowed values.")
    parser.add_argument("group", nargs="*", help=f"one of: {', '.join(groups())}")
    wanted = parser.parse_args(args).group or groups()
    console = Console()
    for group in wanted:
        if group not in groups():
            print(f"dlrun list: {unknown_choice('group', group, groups())}", file=sys.stderr)
            return 2
        table = Table(title=f"{group}=", title_justify="left", show_lines=False)
        table.add_column("option", style="bold cyan")
        table.add_column("arguments (defaults)")
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            if "# @package _global_" in path.read_text():
                args = _description(path)  # a preset changes many groups: show what it is for
            else:
                data = OmegaConf.to_container(option(group, path.stem), resolve=False)
                args = ", ".join(f"{k}={v}{_allowed(f'{group}.{k}')}" for k, v in flat_items(data) if k != "name")
            table.add_row(path.stem, args or "-")
        console.print(table)
    return 0
