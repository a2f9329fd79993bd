"""The `dlrun` command: a thin Hydra entry point.

Before Hydra runs, `prepare_argv` composes the command line once (turning
Hydra's errors into one line each), reserves a fresh run directory, and for
`ckpt_path=` adds the overrides of the run being resumed or evaluated. The
entry point imports torch only inside the task function, so `--help`,
`--cfg job` and `dlrun list` stay fast.
"""

import atexit
import contextlib
import importlib
import logging
import os
import platform
import re
import shutil
import sys
import threading
from pathlib import Path

import hydra

from dlrun import __version__, layout
from dlrun.config import sources as config
from dlrun.config.composition import command_line, compose
from dlrun.errors import ConfigError, DlrunError
from dlrun.tasks.job import record_kept_unless_started


def _flags(args):
    """The flags of a parsed command line, in front, as Hydra's parser expects them."""
    flags = [f"--{name.replace('_', '-')}" for name in ("multirun", "hydra_help", "resolve", "shell_completion")
             if getattr(args, name)]
    for name in ("cfg", "package", "info", "config_dir", "config_path", "config_name", "experimental_rerun"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", value]
    return flags


SUBCOMMANDS = {"list": "dlrun.config.listing", "leaderboard": "dlrun.sweeps.leaderboard", "compare": "dlrun.sweeps.compare",
               "runs": "dlrun.results.runs", "reproduce": "dlrun.results.reproduce", "torchrun": "dlrun.tasks.torchrun"}


def versions_line():
    """dlrun's version and those of the parts it runs on, from package metadata (no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    found = [f"dlrun {__version__}"]
    for name in ("torch", "torchvision", "hydra-core", "omegaconf"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join([*found, f"Python {platform.python_version()}"])


def prepare_argv(argv):
    """The command line Hydra sees, and the directory reserved for it (or None).

    The command line is composed once here, so that what Hydra would reject is
    one line with a did-you-mean; a fresh output directory is reserved and,
    for ckpt_path=, the original run's overrides come first (the user's still win)."""
    args = command_line(argv)
    if args.multirun and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a sweep (-m) under torchrun would run every job in every process: run the sweep without "
                          "torchrun (hydra/launcher=slurm with tasks_per_node for multi-process jobs), or one job "
                          "per torchrun.")
    if args.cfg or args.info or args.hydra_help or args.shell_completion:
        if args.multirun and args.cfg == "hydra":  # the launcher and sweeper settings of the sweep
            args.multirun = False
            return _flags(args) + _one_job(args.overrides) + ["hydra.mode=MULTIRUN"], None
        if args.multirun and (args.cfg or args.info):
            raise ConfigError("--cfg and --info show one job's config: drop -m (and give single values) to see it, "
                              "or -m --cfg hydra for the sweep's launcher and sweeper.")
        return _flags(args) + args.overrides + _shown_settings(args), None
    _check_config_dirs([] if args.config_dir is None else [args.config_dir])
    _check_given_once(args.overrides)
    multirun, overrides = args.multirun, list(args.overrides)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    user_dir = config.value_of(overrides, key)
    if _asks_resume(overrides) and (not multirun or user_dir is None):
        raise ConfigError("resume=true continues a sweep: run it with -m and hydra.sweep.dir=<the sweep directory>. "
                          "A single run resumes with ckpt_path=<its run directory>.")
    overrides, run_dir, args.config_dir = config.plan_run(overrides, multirun, args.config_dir)
    if multirun and _asks_resume(overrides):
        from dlrun.sweeps import resume

        resume.check_resumable(user_dir, overrides, args.config_dir)
    if args.config_path is None and args.config_name is None:
        compose(overrides, args.config_dir, multirun)
    flags = _flags(args)
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes the run directory; the others run in a scratch one.
        scratch = layout.rank_scratch()
        return flags + overrides + [f"hydra.run.dir={config.quote(scratch)}"], scratch
    reserved = None
    if user_dir is None:
        if run_dir is None:
            run_dir = reserved = config.new_run_dir(multirun)
        overrides.append(f"{key}={config.quote(run_dir)}")
    try:
        config.check_writable(user_dir or run_dir, key)
    except DlrunError:
        remove_if_empty(reserved)
        raise
    return flags + overrides, reserved


def _shown_settings(args):
    """What `--cfg job` adds so that it shows the settings the run will use (those that follow from
    others, such as the monitor of a run without validation rows)."""
    if args.cfg not in ("job", "all") or args.config_path is not None or args.config_name is not None:
        return []
    from dlrun.config import validate

    return validate.shown_without_validation(compose(args.overrides, args.config_dir))


@hydra.main(version_base="1.3", config_path=str(config.conf_dir()), config_name="config")
def _hydra_main(cfg):
    from dlrun.tasks.job import run_from_hydra

    return run_from_hydra(cfg)


def command():
    """The `dlrun` console script: `main`, then an exit that runs every exit handler (logs closed,
    plot workers and other threads joined, buffers flushed) but skips the interpreter's teardown of
    the loaded modules, which takes about a second once torch is imported and saves nothing
    (measured in bench/RESULTS.md; tests/test_terminal.py checks that a plugin's exit handler
    and thread still finish and that the exit code is the run's)."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # what the interpreter's own exit does first: joins non-daemon threads
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.raiseExceptions = False  # run.log on a full disk: the run's own error says so, once, not per line
    config_dirs, rest = _config_dirs(argv)
    sub = rest[0] if rest[:1] and rest[0] in SUBCOMMANDS else None
    wants_help = bool({"--help", "-h"} & set(rest))
    if sub or wants_help:
        try:
            _check_config_dirs(config_dirs)
        except ConfigError as exc:
            from dlrun.console import error

            error(str(exc))
            sys.exit(exc.exit_code)
    if sub:  # each parses its own arguments, --help included
        module = importlib.import_module(SUBCOMMANDS[sub])
        # `list` shows the user's configs too, `torchrun` passes them on; the runs that leaderboard and
        # compare read carry their own.
        sys.exit(module.main(rest[1:], config_dirs) if sub in ("list", "torchrun") else module.main(rest[1:]))
    if wants_help:
        from dlrun.config.listing import help_text

        print(help_text(config_dirs), end="")
        sys.exit(0)
    if "--version" in argv:
        print(versions_line())
        sys.exit(0)
    try:
        argv, reserved = prepare_argv(argv)
    except DlrunError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from dlrun.console import error

        error(str(exc))
        sys.exit(exc.exit_code)
    sys.argv = [sys.argv[0], *argv]
    run_dir = config.value_of(argv, "hydra.run.dir")
    try:
        with _records_kept(argv, run_dir if reserved is None else None):
            _hydra_main()
    finally:
        remove_if_empty(reserved)


def _asks_resume(overrides):
    return str(config.value_of(overrides, "resume")).lower() == "true"


def _one_job(overrides):
    """A sweep's overrides with each swept value list cut to its first value (an interval dropped):
    the command line of one of its jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    one = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if not override.is_sweep_override():
            one.append(override.input_line)
        elif override.is_discrete_sweep():
            one.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
    return one


def _records_kept(argv, run_dir):
    """Hydra rewrites a run's .hydra/ before dlrun sees it: a resume in place that does not start
    (`run_dir`) and the completed jobs that a resumed sweep skips keep their records as they were."""
    sweep_dir = config.value_of(argv, "hydra.sweep.dir")
    if sweep_dir and _asks_resume(argv) and Path(sweep_dir).is_dir():
        from dlrun.sweeps.rows import job_dirs

        dirs = job_dirs([sweep_dir])
    else:
        dirs = [run_dir] if run_dir else []
    stack = contextlib.ExitStack()
    for folder in dirs:
        stack.enter_context(record_kept_unless_started(folder))
    return stack


def _check_given_once(overrides):
    """A brace pattern (shards) that the shell expanded arrives as one override per file, side by
    side, and Hydra would keep the last file alone: such a run of file names is refused. (A key
    given again elsewhere on the line is an override of the first, as Hydra allows.)"""
    for first, second in zip(overrides, overrides[1:]):
        if "=" not in first or first.startswith("~") or config.key_of(first) != config.key_of(second):
            continue
        values = [o.split("=", 1)[1] for o in (first, second)]
        if values[0] != values[1] and all(_names_a_file(v) for v in values):
            key = config.key_of(first)
            raise ConfigError(f"{key} is given several times in a row ({values[0]}, {values[1]}, ...), as the shell "
                              f"writes a brace pattern out; Hydra would keep the last alone. Quote the pattern: "
                              f"\"{key}='files-{{000..009}}.tar'\", or give a list: {key}=[a,b].")


def _names_a_file(value):
    """Whether an override's value looks like a file name: a path, or a name with an extension."""
    return "/" in value or re.search(r"\.[A-Za-z]\w*$", value) is not None


def _check_config_dirs(dirs):
    missing = next((d for d in dirs if not Path(d).is_dir()), None)
    if missing is not None:
        raise ConfigError(f"--config-dir {missing}: no such directory.")


def _config_dirs(argv):
    """The user's config directories in a command line (--config-dir DIR, --config-dir=DIR, -cd DIR,
    hydra.searchpath=[file://DIR,...]) and the rest of it: what --help and the sub-commands read,
    wherever the flag stands."""
    dirs, rest, args = [], [], iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            dirs.append(next(args, ""))
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg.startswith("hydra.searchpath="):
            entries = (e.strip().strip("'\"") for e in arg.split("=", 1)[1].strip("[]").split(","))
            dirs += [e.removeprefix("file://") for e in entries if e.startswith("file://")]
        else:
            rest.append(arg)
    return dirs, rest


def remove_if_empty(folder):
    """A reserved directory left empty (a composition error, a run that failed before it started)
    is removed, with the day's folder when it was its only run; a torchrun rank's scratch
    directory is removed whole."""
    if folder is None:
        return
    if layout.is_rank_scratch(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in (folder, folder.parent):
        with contextlib.suppress(OSError):  # gone already, or not empty: left as it is
            path.rmdir()
