"""Optuna pruning for the trials of a sweep (`hydra.sweeper.pruner=median|hyperband`).

The sweeper (hydra_plugins/dlrun_optuna) hands its study to the jobs through the environment,
which every launcher passes on; a job, which is the trial of its job number, reports each
epoch's monitored value to the study and stops with status `pruned` when the pruner says so.
The sweeper then tells the study that the trial was pruned. Trials of parallel jobs share the
study's storage (SQLite in the sweep directory).
"""

import json
import os

from dlrun.errors import ConfigError, DlrunError

STUDY = "DLRUN_OPTUNA_STUDY"  # storage, study name and pruner, as JSON
PRUNERS = ("median", "hyperband")


class Pruned(DlrunError):
    """The pruner stopped this trial: not a failure, the sweep goes on."""

    status = "pruned"


def hand_to_jobs(storage, study_name, pruner, warmup_epochs, startup_trials):
    """Set by the sweeper before it launches trials."""
    os.environ[STUDY] = json.dumps({"storage": storage, "study": study_name, "pruner": pruner,
                                    "warmup_epochs": warmup_epochs, "startup_trials": startup_trials})


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


def trial_of(job_num, max_epochs, world_size):
    """The trial to report to, in a sweep whose sweeper prunes; None otherwise."""
    spec = os.environ.get(STUDY)
    if not spec or job_num is None:
        return None
    spec = json.loads(spec)
    if not spec["pruner"]:
        return None
    if world_size > 1:  # one process's decision would leave the others waiting for it
        raise ConfigError(f"hydra.sweeper.pruner={spec['pruner']} prunes single-process trials; these jobs run "
                          f"{world_size} processes (tasks_per_node): remove the pruner or run one task per job.")
    return Trial(spec, job_num, max_epochs)
