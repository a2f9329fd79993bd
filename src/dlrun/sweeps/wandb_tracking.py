"""`logger=wandb`: each run a Weights & Biases run, a sweep's runs one group.

A run logs its resolved config, every epoch's metrics (against the step metric `epoch`), the test
metrics and objective in its summary, and summary.json, metrics.csv, report.html and best.pt as
one artifact; its exit code is the run's (0, 1 for a failure, 130 or 143 for an interruption). A
resume in the same directory continues the same W&B run (its id is kept in the run directory).

The jobs of a sweep are grouped under the sweep's directory (`wandb.group` to choose another);
at the sweep's end a run of the group, of job type `sweep`, holds the leaderboard.

`wandb.mode=offline` (the default) writes everything under the run directory's wandb/ folder and
needs no account or network; `wandb sync RUN/wandb/offline-run-*` uploads it later.
"""

import secrets
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.errors import DlrunError, first_line
from dlrun.layout import RunDir, SweepDir
from dlrun.results import artifacts
from dlrun.sweeps import tracking

MAX_GROUP_CHARS = 128  # W&B's limit on a group's name
MAX_TAG_CHARS = 64     # and on a tag's


def new_id():
    """A W&B run id: lowercase letters and digits, as W&B makes them."""
    return secrets.token_hex(6)


def group_of(cfg, sweep_dir):
    """The group of a run: `wandb.group`, else its sweep's directory, else none."""
    if cfg.wandb.group:
        return cfg.wandb.group
    return f"sweep {Path(sweep_dir).resolve()}"[-MAX_GROUP_CHARS:] if sweep_dir is not None else None


def _start(cfg, folder, run_id, **fields):
    """A W&B run that writes under `folder` (continued when `run_id` has run there before); W&B's
    own terminal output and console capture are off, so dlrun's terminal and run.log stay its own."""
    import wandb

    try:
        return wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode, dir=str(folder),
                          id=run_id, resume="allow", reinit="finish_previous",
                          settings=wandb.Settings(console="off", silent=True), **fields)
    except Exception as exc:  # no account for online mode, no network, a project refused
        raise DlrunError(f"logger=wandb: W&B could not start a run ({first_line(exc)}); wandb.mode=offline needs "
                         f"no account or network.") from None


def _exit_code(outcome, error):
    if outcome in ("finished", "pruned"):
        return 0
    return getattr(error, "exit_code", 130) if outcome == "interrupted" else 1


class TrackedRun:
    """One dlrun run as a W&B run (rank 0 only), begun by `start` once the run has started."""

    def __init__(self, cfg, run_dir, sweep_dir=None):
        self.cfg, self.run, self.sweep_dir = cfg, RunDir(run_dir), sweep_dir
        self.wandb = None

    def start(self):

        known = artifacts.read_json(self.run.wandb_run) if self.run.wandb_run.is_file() else None
        run_id = known["run_id"] if known else new_id()
        self.wandb = _start(self.cfg, self.run.root, run_id, name=self.cfg.name or self.run.root.name,
                            group=group_of(self.cfg, self.sweep_dir), job_type=self.cfg.task,
                            tags=[tag[:MAX_TAG_CHARS] for tag in self.cfg.tags],
                            config=OmegaConf.to_container(self.cfg, resolve=True))
        self.wandb.define_metric("*", step_metric="epoch")
        if known is None:
            artifacts.write_json(self.run.wandb_run, {"run_id": run_id, "project": self.cfg.wandb.project})

    def log_metrics(self, values, step):
        self.wandb.log({**{k: float(v) for k, v in values.items() if tracking.is_number(v)}, "epoch": step})

    def finish(self, outcome, error=None):
        """The results of the run (those written) into its summary and an artifact, and its exit
        code; nothing before `start`."""
        if self.wandb is None:
            return
        import wandb

        final, epochs = tracking.final_metrics(self.run)
        self.wandb.summary.update({**final, "epochs_run": epochs, "status": outcome})
        if error is not None:
            self.wandb.summary["error"] = first_line(error)
        files = tracking.files_of(self.run)
        if files:
            kept = wandb.Artifact(f"run-{self.wandb.id}", type="dlrun-run",
                                  metadata={"run_dir": str(self.run.root.resolve())})
            for path, name in files:  # referenced where they lie: a checkpoint is not copied
                kept.add_file(str(path.resolve()), name=name, policy="immutable")
            self.wandb.log_artifact(kept)
        folder = self.wandb.settings.sync_dir
        self.wandb.finish(exit_code=_exit_code(outcome, error))
        if self.cfg.wandb.mode == "offline":
            from rich.markup import escape

            from dlrun import console

            console.say(escape(f"W&B offline run {self.wandb.id}; upload it with: wandb sync {folder}"))


def start_sweep(cfg, sweep_dir):
    """Nothing to create: a job finds its group from the sweep's directory."""


def end_sweep(cfg, sweep_dir, failed):
    """The leaderboard as a run of the sweep's group (the same run when a resumed sweep ends again)."""
    import wandb

    sweep = SweepDir(sweep_dir)
    files = tracking.sweep_files(sweep_dir)
    if not files:
        return
    known = artifacts.read_json(sweep.wandb_sweep) if sweep.wandb_sweep.is_file() else None
    run_id = known["run_id"] if known else new_id()
    run = _start(cfg, sweep.root, run_id, name=f"sweep {sweep.root.name}", group=group_of(cfg, sweep_dir),
                 job_type="sweep")
    if known is None:
        artifacts.write_json(sweep.wandb_sweep, {"run_id": run_id, "project": cfg.wandb.project})
    if sweep.summary_csv.is_file():
        rows = artifacts.read_csv(sweep.summary_csv)
        columns = list(rows[0]) if rows else []
        run.log({"leaderboard": wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])})
    kept = wandb.Artifact(f"sweep-{run_id}", type="dlrun-sweep", metadata={"sweep_dir": str(sweep.root.resolve())})
    for path in files:
        kept.add_file(str(path.resolve()), name=path.name, policy="immutable")
    run.log_artifact(kept)
    run.finish(exit_code=1 if failed else 0)


def check(cfg):
    """Nothing to reach before the run: offline needs nothing, and online is tried when it starts."""
