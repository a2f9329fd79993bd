"""The `dlrun` command: a thin Hydra entry point.

Before Hydra composes, `prepare_argv` reserves a fresh run directory, and for
`ckpt_path=` adds the overrides of the run being resumed or evaluated. The
entry point imports torch only inside the task function, so `--help`,
`--cfg job` and `dlrun list` stay fast.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra

from dlrun import config
from dlrun.errors import ConfigError, DlrunError, unknown_choice

INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
              "--version", "--resolve"}
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def split_argv(argv):
    """(flags, overrides) of a Hydra command line."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            takes_value = arg in VALUE_FLAGS and i + 1 < len(argv) and "=" not in argv[i + 1] \
                and not argv[i + 1].startswith("-")
            flags += argv[i:i + 2] if takes_value else [arg]
            i += 2 if takes_value else 1
        else:
            overrides.append(arg)
            i += 1
    return flags, overrides


def check_group_options(overrides):
    """`group=option` must name a YAML file of the group (checked before Hydra, for a did-you-mean)."""
    root = config.conf_dir()
    for override in overrides:
        group, sep, value = override.partition("=")
        folder = root / group.lstrip("+")
        if not sep or "." in group or not folder.is_dir() or value in ("null", ""):
            continue
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        for option in value.split(","):  # a sweep lists several
            if option not in known:
                raise DlrunError(unknown_choice(group, option, known))


def prepare_argv(argv):
    """The command line Hydra sees, and the directory reserved for it (or None).

    A fresh output directory is reserved and, for ckpt_path=, the original
    run's overrides come first (the user's still win)."""
    flags, overrides = split_argv(argv)
    multirun = "-m" in flags or "--multirun" in flags
    if INFO_FLAGS & set(flags):
        if multirun and {"--cfg", "-c", "--info", "-i"} & set(flags):
            raise ConfigError("--cfg and --info show one job's config: drop -m (and give single values) to see it.")
        return argv, None
    if not {"--config-dir", "-cd"} & set(flags) and config.value_of(overrides, "hydra.searchpath") is None:
        check_group_options(overrides)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    user_dir = config.value_of(overrides, key)
    if str(config.value_of(overrides, "resume")).lower() == "true" and (not multirun or user_dir is None):
        raise ConfigError("resume=true continues a sweep: run it with -m and hydra.sweep.dir=<the sweep directory>. "
                          "A single run resumes with ckpt_path=<its run directory>.")
    overrides, run_dir = config.plan_run(overrides, multirun)
    reserved = None
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes the run directory; the others run in a scratch one.
        scratch = Path(tempfile.mkdtemp(prefix="dlrun-rank"))
        return flags + overrides + [f"hydra.run.dir={config.quote(scratch)}"], scratch
    if user_dir is None:
        if run_dir is None:
            run_dir = reserved = config.new_run_dir(multirun)
        overrides.append(f"{key}={config.quote(run_dir)}")
    return flags + overrides, reserved


@hydra.main(version_base="1.3", config_path=str(config.conf_dir()), config_name="config")
def _hydra_main(cfg):
    from dlrun.job import run_from_hydra

    return run_from_hydra(cfg)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        from dlrun.listing import main as listing

        sys.exit(listing(argv[1:]))
    if {"--help", "-h"} & set(argv):
        from dlrun.listing import help_text

        print(help_text(), end="")
        sys.exit(0)
    if argv[:1] == ["leaderboard"]:
        from dlrun.sweep import main as leaderboard

        sys.exit(leaderboard(argv[1:]))
    try:
        argv, reserved = prepare_argv(argv)
    except DlrunError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from dlrun.console import error

        error(str(exc))
        sys.exit(exc.exit_code)
    sys.argv = [sys.argv[0], *argv]
    try:
        _hydra_main()
    finally:
        _remove_if_empty(reserved)


def _remove_if_empty(folder):
    """A reserved directory that Hydra never used (e.g. a composition error) is removed,
    and so is a torchrun rank's scratch directory."""
    if folder is None or not folder.is_dir():
        return
    if folder.name.startswith("dlrun-rank"):
        shutil.rmtree(folder, ignore_errors=True)
    elif not any(folder.iterdir()):
        folder.rmdir()
