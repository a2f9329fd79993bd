"""dlrun's Optuna sweeper for Hydra, on current Optuna.

Select it with `hydra/sweeper=dlrun_optuna` (the hparams_search presets do).
The study lives in the sweep directory (SQLite), so re-running the same
command with the same `hydra.sweep.dir` continues an interrupted search.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DlrunOptunaSweeperConf:
    _target_: str = "hydra_plugins.dlrun_optuna.sweeper.OptunaSweeper"
    direction: str = "auto"          # auto (from trainer.mode) | minimize | maximize
    n_trials: int = 20
    n_jobs: int = 1                  # trials launched together (use a parallel launcher for n_jobs > 1)
    sampler: str = "tpe"             # tpe | random | grid
    seed: int = 0
    study_name: str = "dlrun"
    storage: Optional[str] = None    # default: sqlite:///<sweep dir>/optuna.db
    pruner: Optional[str] = None     # null | median | hyperband: trials report each epoch's monitored value
    warmup_epochs: int = 1           # median: epochs a trial runs before it can be pruned
    startup_trials: int = 3          # median: trials that run in full before any is pruned
    params: Dict[str, Any] = field(default_factory=dict)
    # several objectives at once (a Pareto front): names read from each trial's summary.json
    # (val/<metric>, test/<metric>, params, wall_time_s, training_s, samples_per_s)
    objectives: Optional[List[str]] = None
    directions: Optional[List[str]] = None  # one per objective: auto | minimize | maximize


ConfigStore.instance().store(group="hydra/sweeper", name="dlrun_optuna", node=DlrunOptunaSweeperConf,
                             provider="dlrun")
