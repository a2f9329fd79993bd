"""Optuna pruning for the trials of a sweep (`hydra.sweeper.pruner=median|hyperband`).

The sweeper (hydra_plugins/dlrun_optuna) hands its study to the jobs in a file of the sweep
directory (layout.SweepDir.optuna_study), which a job reads in whatever process or node a
launcher runs it; a job, which is the trial of its job number, reports each
epoch's monitored value to the study and stops with status `pruned` when the pruner says so.
The sweeper then tells the study that the trial was pruned. Trials of parallel jobs share the
study's storage (SQLite in the sweep directory).
"""

from dlrun.errors import ConfigError, DlrunError
from dlrun.layout import SweepDir
from dlrun.results import artifacts

PRUNERS = ("median", "hyperband")


class Pruned(DlrunError):
    """The pruner stopped this trial: not a failure, the sweep goes on."""

    status = "pruned"


def hand_to_jobs(sweep_dir, storage, study_name, pruner, warmup_epochs, startup_trials):
    """Written by the sweeper before it launches trials (pruner None: the jobs report nothing)."""
    artifacts.write_json(SweepDir(sweep_dir).optuna_study, {
        "storage": storage, "study": study_name, "pruner": pruner, "warmup_epochs": warmup_epochs,
        "startup_trials": startup_trials})


def _pruner(spec, max_epochs):
    import optuna

    if spec["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=spec["startup_trials"], n_warmup_steps=spec["warmup_epochs"])


class Trial:
    """The Optuna trial that a sweep's job runs, seen from the job."""

    def __init__(self, spec, number, max_epochs):
        import optuna

        storage = optuna.storages.RDBStorage(spec["storage"])
        study_id = storage.get_study_id_from_name(spec["study"])
        self.trial = optuna.trial.Trial(
            optuna.load_study(study_name=spec["study"], storage=storage, pruner=_pruner(spec, max_epochs)),
            storage.get_trial_id_from_study_id_trial_number(study_id, number))
        self.name = spec["pruner"]

    def after_epoch(self, epoch, monitor, value, last):
        """Report the epoch's monitored value; raise Pruned when the pruner stops the trial (never
        after its `last` epoch: a trial that is over keeps its results)."""
        self.trial.report(value, step=epoch)
        if not last and self.trial.should_prune():
            raise Pruned(f"pruned by Optuna's {self.name} pruner after epoch {epoch}: {monitor} {value:.4g} is not "
                         f"promising next to the other trials.")


def trial_of(sweep_dir, job_num, max_epochs, world_size):
    """The trial to report to, for job `job_num` of the sweep in `sweep_dir` when its sweeper
    prunes; None otherwise."""
    file = SweepDir(sweep_dir).optuna_study if sweep_dir is not None else None
    if file is None or job_num is None or not file.is_file():
        return None
    spec = artifacts.read_json(file)
    if not spec["pruner"]:
        return None
    if world_size > 1:  # one process's decision would leave the others waiting for it
        raise ConfigError(f"hydra.sweeper.pruner={spec['pruner']} prunes single-process trials; these jobs run "
                          f"{world_size} processes (tasks_per_node): remove the pruner or run one task per job.")
    return Trial(spec, job_num, max_epochs)
