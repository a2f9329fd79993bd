"""`dlrun reproduce RUN [OVERRIDES...]`: say what differs between the present and the code,
environment and host that RUN recorded (results/provenance.py), then run its overrides again in a
fresh run directory and say whether the config and the result came out the same."""

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.config import sources as config
from dlrun.errors import DlrunError
from dlrun.layout import RunDir
from dlrun.results import provenance, record

BEFORE = tuple(k for k in provenance.HOST_KEYS if k not in ("accelerator", "driver"))  # known before the device is chosen


def main(args):
    parser = argparse.ArgumentParser(prog="dlrun reproduce", description="Run a run's overrides again, after saying "
                                     "what differs from the code, environment and host it recorded.")
    parser.add_argument("run", metavar="RUN", help="the run directory (the one with its summary.json)")
    parser.add_argument("overrides", nargs="*", help="overrides that change the run (they come last and win)")
    parser.add_argument("--check", action="store_true", help="only say what differs (exit 1 when anything does)")
    try:
        asked = parser.parse_args(args)
    except SystemExit as exc:
        return exc.code
    try:
        run, recorded = _recorded(asked.run)
        differences = before(recorded, run.root)
        _say(f"Reproducing {run} ({recorded.get('task')}, {recorded.get('status')}, started "
             f"{recorded.get('started_at')}):", *(differences or ["code, environment and host: as the run recorded"]))
        if asked.check:
            return 1 if differences else 0
        argv = command(recorded, run, asked.overrides)
    except DlrunError as exc:
        print(f"dlrun reproduce: {exc}", file=sys.stderr)
        return 2
    return _run_again(argv, recorded)


def _recorded(path):
    run = RunDir(Path(path).expanduser())
    if not run.summary.is_file():
        raise DlrunError(f"{path} has no summary.json: give a run directory (dlrun runs lists them).")
    return run, record.read(run.summary)


def before(recorded, run_dir):
    """What differs already, before anything runs: the code, the packages, the host."""
    return (provenance.code_differences(recorded.get("code"), run_dir, Path.cwd())
            + provenance.environment_differences(recorded.get("environment"), run_dir)
            + provenance.host_differences(recorded.get("host"), provenance.host("cpu"), BEFORE))


def command(recorded, run, extra):
    """The command line that runs the recorded run again: its config directory (as Hydra
    recorded it), its overrides (a resumed training without its ckpt_path: the same training
    from its start) and the user's `extra` ones. Overrides that name code are reused only with
    trust_run_code=true, as for ckpt_path=."""
    overrides = [o for o in recorded.get("overrides", []) if not (recorded.get("task") == "train" and
                                                                  config.key_of(o) == "ckpt_path")]
    code = [o for o in overrides if config.names_code(o)]
    if code and str(config.value_of(extra, "trust_run_code")).lower() != "true":
        raise DlrunError(f"{run} was composed with {', '.join(map(repr, code))}, which makes dlrun import or run code. "
                         f"A run directory is read as data: add trust_run_code=true if you trust where it came from.")
    config_dir = _config_dir(run)
    return [*(["--config-dir", config_dir] if config_dir else []), *overrides, *extra]


def _config_dir(run):
    """The user's --config-dir of the run, from Hydra's own record (its .hydra/hydra.yaml)."""
    from dlrun.tasks.job import user_config_dir

    return user_config_dir(OmegaConf.load(run.hydra_config).hydra) if run.hydra_config.is_file() else None


def _run_again(argv, recorded):
    """Run `argv` through the dlrun command in a fresh directory, then compare the records."""
    from dlrun import cli

    given = config.value_of(argv, "hydra.run.dir")
    fresh = Path(given) if given else config.new_run_dir()
    try:
        cli.main([*argv, *([] if given else [f"hydra.run.dir={config.quote(fresh)}"])])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        cli.remove_if_empty(None if given else fresh)
    if RunDir(fresh).summary.is_file():
        _say(f"Reproduced in {fresh}:", *after(recorded, record.read(RunDir(fresh).summary)))
    return code


def after(recorded, now):
    """How the new run's record compares with the recorded one: config, device, result."""
    lines = ["config: the same (hash " + now["config_hash"][:12] + ")" if now.get("config_hash") == recorded.get(
        "config_hash") else "config: differs from the run's (another hash: an override or a default changed)"]
    lines += provenance.host_differences(recorded.get("host"), now.get("host", {}), ("accelerator", "driver"))
    metric, was, got = now.get("objective_metric"), recorded.get("objective"), now.get("objective")
    if metric and isinstance(was, (int, float)) and isinstance(got, (int, float)):
        same = "identical" if got == was else f"differs by {got - was:+.3g}"
        lines.append(f"result: {metric} {got:.6g}, recorded {was:.6g}: {same}")
    return lines


def _say(title, *lines):
    from rich.markup import escape

    from dlrun import console

    console.say(escape(title))
    for line in lines:
        console.say(f"  {escape(line)}")
