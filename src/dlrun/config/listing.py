"""`dlrun list [GROUP...]`: every option of every config group with its
arguments, defaults and allowed values, read from the schema (schema.py) and the
YAML presets over it (fast: no torch import)."""

import argparse
import sys
import textwrap
from dataclasses import is_dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlrun.config import schema
from dlrun.config.sources import as_written, conf_dir, flat_items
from dlrun.errors import unknown_choice

HIDDEN = {"hydra"}  # Hydra's own groups: see dlrun --hydra-help


def _roots(config_dirs=()):
    """Where configs are found, in Hydra's order: the shipped ones, then the user's (--config-dir)."""
    return [conf_dir(), *(Path(d) for d in config_dirs)]


def groups(config_dirs=()):
    return sorted({p.name for root in _roots(config_dirs) for p in root.iterdir()
                   if p.is_dir() and p.name not in HIDDEN})


def options(group, config_dirs=()):
    """{option: its YAML file} of a group; an option found twice is the one Hydra finds first."""
    found = {}
    for root in _roots(config_dirs):
        for path in sorted((root / group).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def _own(found):
    """Of a group's options ({name: file}, see options), those from the user's config directories."""
    return [name for name, path in found.items() if path.parent.parent != conf_dir()]


def option(group, name, config_dirs=()):
    """The option's keys: the schema's for a group that dlrun reads itself, with the option's own
    merged over them and over the sibling options its defaults list names."""
    node = OmegaConf.load(options(group, config_dirs)[name]) or OmegaConf.create()
    declared = schema.spec(group)
    typed = declared is not None and is_dataclass(declared.type)
    merged = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(declared.type)) if typed else {})
    for entry in node.pop("defaults", []) if "defaults" in node else []:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, option(group, entry, config_dirs))
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

== Top-level keys (key=value; dlrun list shows their defaults and allowed values) ==
{keys}

== More ==
  dlrun list [GROUP...]       every option of every group with its arguments and defaults
  dlrun --cfg job [ARGS]      print the composed config without running
  dlrun leaderboard DIR...    rebuild the leaderboard of a sweep or of run directories
  dlrun compare DIR...        compare any runs or sweeps on one page (curves, links, differing keys)
  dlrun runs [PATH]           every run, with status, name and tags: --tag, --status, --where, --sort, --delete
  dlrun reproduce RUN         say what differs from RUN's recorded code, packages and host, then run it again
  dlrun torchrun [OPTS] ...   torchrun's launcher running dlrun, ending with the run's own exit code
  dlrun --hydra-help          Hydra's own flags (-m, --config-dir, -sc for shell completion, ...)
  dlrun --version             the versions of dlrun, torch, torchvision, hydra-core and Python

Override any key with key=value. Set HYDRA_FULL_ERROR=1 for full tracebacks.

Exit codes: 0 done; 1 the run failed (diverged, a write failed, data missing); 2 bad input (an unknown
option or key, a value out of range, unusable data), nothing written; 130 stopped by Ctrl-C; 143 stopped
by SIGTERM. A stopped run records how far it got and resumes with ckpt_path=<its directory>.
"""


def help_text(config_dirs=()):
    """`dlrun --help`: read from the config directories alone (Hydra's help composes once per group);
    the options of the user's own config directories are named as theirs."""
    lines = []
    for group in groups(config_dirs):
        found = options(group, config_dirs)
        own = _own(found)
        shipped = [name for name in found if name not in own]
        lines.append(f"{group}: {', '.join(shipped)}" + (f"{'; ' if shipped else ''}yours: {', '.join(own)}" if own
                                                        else ""))
    keys = sorted({key.split(".")[0] for key, _ in schema.leaves()} - set(groups(config_dirs)))
    return HELP.format(groups="\n".join(lines), keys=textwrap.fill(", ".join(keys), 100, initial_indent="  ",
                                                                    subsequent_indent="  "))


def _allowed(key, own):
    """The range or choices that validation enforces for `key`, from the schema; none is claimed
    for the keys of a user's own option (its builder's, not dlrun's)."""
    text = "" if own and not schema.spec(key) else schema.allowed_text(key)
    return f" ({text})" if text else ""


def _top_level_table():
    """The keys outside the groups (seed, task, split.val...), from the schema."""
    table = Table(title="top-level keys", title_justify="left")
    table.add_column("key", style="bold cyan")
    table.add_column("default (allowed)")
    table.add_column("what it does")
    for key, field in schema.leaves():
        if key.split(".")[0] in ("trainer", "device", "regularization"):
            continue
        table.add_row(key, f"{as_written(schema.default_of(field))}{_allowed(key, False)}", field.metadata.get("doc", ""))
    return table


def _description(path):
    """A preset's first sentence, from the comment block that opens its file."""
    lines = path.read_text().splitlines()
    block = [line.lstrip("# ") for line in lines[:next((i for i, x in enumerate(lines) if not x.startswith("#")),
                                                        len(lines))]]
    text = " ".join(line for line in block if not line.startswith("@package"))
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def main(args, config_dirs=()):
    """`dlrun list [GROUP...]`, with the options of the user's config directories (--config-dir,
    given before or after `list`) marked as theirs."""
    parser = argparse.ArgumentParser(prog="dlrun list", description="Every option of each config group (all "
                                     "groups by default), with its arguments, defaults and allowed values. "
                                     "--config-dir DIR, before or after `list`, adds your own configs.")
    known = groups(config_dirs)
    parser.add_argument("group", nargs="*", help=f"one of: {', '.join(known)}")
    asked = parser.parse_args(args).group
    wanted = asked or known
    console = Console()
    for group in wanted:
        if group not in known:
            print(f"dlrun list: {unknown_choice('group', group, known)}", file=sys.stderr)
            return 2
        table = Table(title=f"{group}=", title_justify="left", show_lines=False)
        table.add_column("option", style="bold cyan")
        table.add_column("arguments (defaults)")
        found = options(group, config_dirs)
        own = _own(found)
        for name, path in found.items():
            if "# @package _global_" in path.read_text():
                args = _description(path)  # a preset changes many groups: show what it is for
            else:
                data = OmegaConf.to_container(option(group, name, config_dirs), resolve=False)
                args = ", ".join(f"{k}={as_written(v)}{_allowed(f'{group}.{k}', name in own)}" for k, v in flat_items(data)
                                 if k != "name")
            table.add_row(f"{name} (yours)" if name in own else name, escape(args) or "-")  # [a, b] is no markup
        console.print(table)
    if not asked:
        console.print(_top_level_table())
    return 0
