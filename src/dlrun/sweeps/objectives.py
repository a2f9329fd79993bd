"""What a multi-objective Optuna search (`hydra.sweeper.objectives=[...]`) may optimise, each read
from a trial's summary.json (the record owns every value): the monitored value, a validation or
test metric of the tested weights, the model's size, or the time and speed of training."""

import math

from dlrun.errors import ConfigError, unknown_choice
from dlrun.results.metric_names import BINARY_SCALARS, CLASSIFICATION_SCALARS, REGRESSION_SCALARS, natural_mode

# name: (its value in a record, or None; the direction it is best in)
RECORD_VALUES = {
    "params": (lambda r: (r.get("model_summary") or {}).get("params"), "minimize"),
    "wall_time_s": (lambda r: r.get("wall_time_s"), "minimize"),
    "training_s": (lambda r: (r.get("timings") or {}).get("training"), "minimize"),
    "samples_per_s": (lambda r: (r.get("throughput") or {}).get("samples_per_s"), "maximize"),
}
METRICS = sorted({f"{split}/{m}" for split in ("val", "test")
                  for m in CLASSIFICATION_SCALARS + REGRESSION_SCALARS + BINARY_SCALARS})
COUNTS = ("params",)  # whole numbers: shown without decimals


def check(names, directions):
    """The directions of `names` (auto: each one's natural one), or one line naming what is wrong."""
    names, directions = list(names), list(directions or ["auto"] * len(names))
    if len(names) < 2:
        raise ConfigError(f"hydra.sweeper.objectives={names}: a multi-objective search needs two or more (one "
                          f"objective is trainer.monitor's, with hydra.sweeper.objectives=null).")
    if len(directions) != len(names):
        raise ConfigError(f"hydra.sweeper.directions has {len(directions)} entries for {len(names)} objectives: give "
                          f"one per objective (auto, minimize or maximize).")
    found = []
    for name, direction in zip(names, directions):
        if name not in RECORD_VALUES and name not in METRICS:
            raise ConfigError(unknown_choice("hydra.sweeper.objectives", name, [*RECORD_VALUES, *METRICS]))
        if direction not in ("auto", "minimize", "maximize"):
            raise ConfigError(unknown_choice("hydra.sweeper.directions", direction, ["auto", "minimize", "maximize"]))
        natural = RECORD_VALUES[name][1] if name in RECORD_VALUES else (
            "maximize" if natural_mode(name) == "max" else "minimize")
        found.append(natural if direction == "auto" else direction)
    return found


def values(summary, names):
    """The objectives' values in a trial's record, or None when one is missing or not finite."""
    found = []
    for name in names:
        if name in RECORD_VALUES:
            value = RECORD_VALUES[name][0](summary)
        else:
            split, metric = name.split("/", 1)
            value = (summary.get("best_val") or {}).get(name) if split == "val" else (summary.get("test") or {}).get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return None
        found.append(float(value))
    return found
