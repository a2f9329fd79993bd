"""The layout of run and sweep directories: the one module that knows where each file of
a run or a sweep lives. Everything else asks it for paths (torch-free)."""

import os
import shutil
import tempfile
from pathlib import Path

SCRATCH_PREFIX = "dlrun-rank-"


class RunDir:
    """The files of one run:

        .hydra/overrides.yaml  run.log  summary.json  metrics.csv
        predictions.csv  per_class.csv  report.html  plots/*.png
        val_steps.csv (validations within epochs)  profile/ (trainer.profile_steps)
        lr_find.csv  plots/lr_find.png (task=lr_find)
        confused_pairs.csv (classification)  weight_stats.csv
        checkpoints/best.pt  checkpoints/last.pt  (and exports beside them)
        folds.csv  fold_<i>/  (a cross-validation: each fold a RunDir of its own)
        .mlflow_run.json (logger=mlflow: the MLflow run that a resume continues)
        .wandb_run.json  wandb/ (logger=wandb: the W&B run that a resume continues, W&B's files)
        code.patch (uncommitted changes)  environment.txt (the packages)  (results/provenance.py)
    """

    def __init__(self, root):
        self.root = Path(root)

    def __str__(self):
        return str(self.root)

    hydra = property(lambda self: self.root / ".hydra")
    overrides = property(lambda self: self.root / ".hydra" / "overrides.yaml")
    log = property(lambda self: self.root / "run.log")
    summary = property(lambda self: self.root / "summary.json")
    metrics = property(lambda self: self.root / "metrics.csv")
    predictions = property(lambda self: self.root / "predictions.csv")
    per_class = property(lambda self: self.root / "per_class.csv")
    report = property(lambda self: self.root / "report.html")
    plots = property(lambda self: self.root / "plots")
    checkpoints = property(lambda self: self.root / "checkpoints")
    folds = property(lambda self: self.root / "folds.csv")
    val_steps = property(lambda self: self.root / "val_steps.csv")
    profile = property(lambda self: self.root / "profile")
    lr_find = property(lambda self: self.root / "lr_find.csv")
    confused_pairs = property(lambda self: self.root / "confused_pairs.csv")
    weight_stats = property(lambda self: self.root / "weight_stats.csv")
    mlflow_run = property(lambda self: self.root / ".mlflow_run.json")  # logger=mlflow: the run's MLflow id
    wandb_run = property(lambda self: self.root / ".wandb_run.json")  # logger=wandb: the run's W&B id
    wandb = property(lambda self: self.root / "wandb")  # logger=wandb: W&B's own files (offline: the whole run)
    hydra_config = property(lambda self: self.root / ".hydra" / "hydra.yaml")  # Hydra's settings (config sources)
    patch = property(lambda self: self.root / "code.patch")  # the uncommitted changes of the code it ran
    environment = property(lambda self: self.root / "environment.txt")  # every installed package, name==version

    def checkpoint(self, name):
        """checkpoints/<name>.pt: `best` (the best epoch), `last` (the latest position) or a kept
        epoch's (kept_name)."""
        return self.checkpoints / f"{name}.pt"

    def kept(self):
        """The kept epochs' checkpoints, in epoch order."""
        return sorted(self.checkpoints.glob("epoch[0-9][0-9][0-9]*_*.pt"))

    def fold(self, index):
        return RunDir(self.root / f"fold_{index}")


class SweepDir:
    """The files of one sweep, whichever sweeper and launcher ran it:

        multirun.yaml (the sweep's command and config: what a resume is checked against)
        <n>/ (job n, a RunDir)  summary.csv  summary.md  summary_by_configuration.csv
        paired_comparison.json  leaderboard.html  curves.png  objective_vs_*.png
        optuna.db  optuna_best.json (the Optuna sweeper)
        optuna_study.json (the study and pruner each job reports to: dlrun.sweeps.pruning)
        .mlflow_sweep.json (with logger=mlflow, the experiment and parent run of the jobs' runs)
        .wandb_sweep.json  wandb/ (with logger=wandb, the W&B run that holds the leaderboard)
        .stopping (while an interrupted sweep winds down: the signal's exit code; dlrun.stopping)

    These files are how the sweep's process and its jobs, in whatever process a launcher runs
    them, share what they must (nothing goes through the environment).
    """

    def __init__(self, root):
        self.root = Path(root)

    def __str__(self):
        return str(self.root)

    multirun = property(lambda self: self.root / "multirun.yaml")
    stopping = property(lambda self: self.root / ".stopping")
    summary_csv = property(lambda self: self.root / "summary.csv")
    summary_md = property(lambda self: self.root / "summary.md")
    by_configuration = property(lambda self: self.root / "summary_by_configuration.csv")
    paired = property(lambda self: self.root / "paired_comparison.json")
    leaderboard = property(lambda self: self.root / "leaderboard.html")
    curves = property(lambda self: self.root / "curves.png")
    optuna_db = property(lambda self: self.root / "optuna.db")
    optuna_best = property(lambda self: self.root / "optuna_best.json")
    optuna_study = property(lambda self: self.root / "optuna_study.json")
    mlflow_sweep = property(lambda self: self.root / ".mlflow_sweep.json")
    wandb_sweep = property(lambda self: self.root / ".wandb_sweep.json")

    def job(self, number):
        return RunDir(self.root / str(number))


def compile_cache(outputs_root):
    """torch.compile's cache for every run under `outputs_root` (device.compile)."""
    return Path(outputs_root).resolve() / ".cache" / "torch_compile"


def run_of_checkpoint(path):
    """The run directory a checkpoint file belongs to (checkpoints/<name>.pt in it)."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def rank_scratch():
    """A new directory for a DDP process other than rank 0 (which alone writes the run directory),
    named after the process: one left behind by a killed process (kill -9) is removed here, by the
    next one. It never holds checkpoints."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


def is_rank_scratch(folder):
    return Path(folder).name.startswith(SCRATCH_PREFIX)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def kept_name(row, monitor):
    """The name of a kept epoch's checkpoint: its epoch and monitored value, `epoch007_val_loss_0.1234`."""
    return f"epoch{row['epoch']:03d}_{monitor.replace('/', '_')}_{row[monitor]:.4f}"
