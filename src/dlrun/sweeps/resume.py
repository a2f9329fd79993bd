"""A sweep's own record (multirun.yaml) read back: the command that continues it, the jobs it
planned, and the check that a `resume=true` continues the same sweep."""

import shlex
from pathlib import Path

from dlrun.config.sources import flat_items, run_overrides
from dlrun.errors import ConfigError
from dlrun.layout import RunDir, SweepDir
from dlrun.sweeps.rows import job_dirs


def sweep_command(folder):
    """The sweep in `folder` as its multirun.yaml records it: (task overrides, Hydra overrides,
    its Hydra config), the overrides without `resume=` and what dlrun adds (mode, directory)."""
    from omegaconf import OmegaConf

    saved = OmegaConf.load(SweepDir(folder).multirun).hydra
    task = [str(o) for o in saved.overrides.task if not str(o).startswith("resume=")]
    hydra = [str(o) for o in saved.overrides.hydra if not str(o).startswith(("hydra.mode=", "hydra.sweep.dir="))]
    return task, hydra, saved


def resume_command(folder):
    """The command line that continues the sweep in `folder`."""
    task, hydra, _ = sweep_command(folder)
    return shlex.join(["dlrun", "-m", *task, *hydra, f"hydra.sweep.dir={Path(folder).resolve()}", "resume=true"])


def planned_jobs(folder):
    """Every job's overrides, in the order of their numbers, for a sweep of Hydra's basic sweeper
    (the grid of its command and of its preset's params, expanded by the sweeper's own code);
    None for a sweeper that chooses its jobs as it goes (Optuna)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task, _, saved = sweep_command(folder)
    if not str(saved.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (saved.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + task)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_resumable(folder, overrides, config_dir=None):
    """Refuse, with one line, `resume=true` with another command than the one that started the
    sweep in `folder`, or when a started job's config composes differently now (a config file was
    edited): its results would be labelled with a config they were not run with. Runs before Hydra
    touches the sweep directory."""
    from omegaconf import OmegaConf

    from dlrun.config.composition import compose

    folder = Path(folder)
    if not SweepDir(folder).multirun.is_file():
        return
    before, _, _ = sweep_command(folder)
    now = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/", "resume="))]
    if sorted(before) != sorted(now):
        gone, new = [o for o in before if o not in now], [o for o in now if o not in before]
        raise ConfigError(
            f"resume=true continues the sweep in {folder}, started with: {' '.join(before) or '(no overrides)'}; "
            f"this command differs ({', '.join([*(f'{o} dropped' for o in gone), *(f'{o} added' for o in new)])}). "
            f"Give the same overrides to continue it, or another hydra.sweep.dir for a new sweep.")
    for run_dir in job_dirs([folder]):
        saved = RunDir(run_dir).hydra / "config.yaml"
        if not saved.is_file():
            continue
        job = [o for o in run_overrides(run_dir) if not o.startswith("resume=")]
        then = dict(flat_items(OmegaConf.to_container(OmegaConf.load(saved))))
        current = dict(flat_items(OmegaConf.to_container(compose(job, config_dir))))
        changed = [k for k in sorted(set(then) | set(current)) if k not in ("resume", "ckpt_path")
                   and then.get(k, "(absent)") != current.get(k, "(absent)")]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"resume=true: job {run_dir.name} of the sweep in {folder} ran with {key}={then.get(key, '(absent)')}, "
                f"which now composes to {current.get(key, '(absent)')}" + (f" ({len(changed) - 1} more keys differ)"
                                                                           if len(changed) > 1 else "")
                + "; a config file changed since. Put it back to continue the sweep, or start a new one "
                  "(another hydra.sweep.dir).")
