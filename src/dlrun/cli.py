"""The `dlrun` command: a thin Hydra entry point.

Before Hydra composes, `prepare_argv` reserves a fresh run directory, and for
`ckpt_path=` adds the overrides of the run being resumed or evaluated. The
entry point imports torch only inside the task function, so `--help`,
`--cfg job` and `dlrun list` stay fast.
"""

import os
import sys

import hydra

from dlrun import config
from dlrun.errors import DlrunError

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


def prepare_argv(argv):
    """The command line Hydra sees: a reserved output directory and, for
    ckpt_path=, the original run's overrides first (the user's still win)."""
    flags, overrides = split_argv(argv)
    if INFO_FLAGS & set(flags):
        return argv
    multirun = "-m" in flags or "--multirun" in flags
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    user_dir = config.value_of(overrides, key)
    overrides, run_dir = config.plan_run(overrides, multirun)
    if user_dir is None:
        run_dir = run_dir or config.new_run_dir(multirun)
        overrides.append(f"{key}={config.quote(run_dir)}")
    return flags + overrides


@hydra.main(version_base="1.3", config_path=str(config.conf_dir()), config_name="config")
def _hydra_main(cfg):
    from dlrun.run import run_from_hydra

    return run_from_hydra(cfg)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        from dlrun.listing import main as listing

        sys.exit(listing(argv[1:]))
    try:
        argv = prepare_argv(argv)
    except DlrunError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from dlrun.console import error

        error(str(exc))
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    _hydra_main()
