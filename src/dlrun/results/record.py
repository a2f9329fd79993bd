"""summary.json, the record of what a run did: its fields, their types and its format version,
declared once. Every writer (the run's Summary, a failure recorded by the job, a SLURM job out
of requeues) goes through `write` or `update`, which refuse an undeclared field or a value of
another type; every reader (sweeps, leaderboards, compare, tracking, the Optuna sweeper) goes
through `read`, which refuses a record of a newer format with one line.
"""

from dlrun.errors import DlrunError
from dlrun.results import artifacts

FORMAT = 1

TEXT, NUMBER, FLAG, TABLE, ROWS, NONE = (str,), (int, float), (bool,), (dict,), (list,), (type(None),)

# How a run ended; superseded: an interrupted Optuna trial whose point a continued sweep asked again.
STATUSES = ("completed", "failed", "diverged", "interrupted", "pruned", "superseded")

# field: (the types its value may have, what it says)
FIELDS = {
    "format": ((int,), "the format of this record"),
    "status": (TEXT, "running, then one of STATUSES"),
    "error": (TEXT, "the first line of the error, when not completed"),
    "task": (TEXT, "train, eval, inspect, lr_find or predict"),
    "name": (TEXT + NONE, "the run's name (name=...)"),
    "tags": (ROWS, "the run's labels (tags=[...])"),
    "run_dir": (TEXT, "where the run is"),
    "started_at": (TEXT, "when it started"),
    "finished_at": (TEXT, "when it was last written"),
    "wall_time_s": (NUMBER, "seconds since it started"),
    "dataset": (TEXT + NONE, "the dataset's registered name or _target_"),
    "model": (TEXT + NONE, "the model's registered name or _target_"),
    "problem": (TEXT + NONE, "multiclass, binary or regression"),
    "classes": (ROWS + NONE, "the class names"),
    "positive_class": (TEXT + NONE, "binary tasks: the class that precision, recall, F1 and the threshold are of"),
    "sizes": (TABLE, "train, val and test sizes"),
    "device": (TEXT, "the device it trained on"),
    "seed": ((int,), "the seed"),
    "world_size": ((int,), "processes training together"),
    "overrides": (ROWS, "the command-line overrides"),
    "versions": (TABLE, "library versions"),
    "code": (TABLE + NONE, "the git repository the run started in: repository, commit, branch, dirty, patch (the "
                           "uncommitted changes' file), untracked, not_in_patch; null outside one"),
    "dlrun_checkout": (TABLE + NONE, "dlrun's own path, commit, dirty flag and diff (sha256 of its uncommitted "
                                     "changes) when it runs from a git checkout"),
    "environment": (TABLE, "hash (sha256 of environment.txt), packages (how many), file"),
    "host": (TABLE, "python, os, hostname, cpu, cpus, accelerator, driver, cuda, cudnn"),
    "config_hash": (TEXT, "sha256 of the resolved config, keys sorted"),
    "cache_key": (TEXT, "sha256 of what the results depend on: the config without names and display keys, the "
                        "code and its changes, dlrun's own, the packages, the device type and the data files"),
    "cached_from": (TEXT + NONE, "with cache=true: the earlier run whose files this run's directory links"),
    "monitor": (TABLE, "name, mode, best_value, best_epoch"),
    "objective": (NUMBER + NONE, "what sweeps rank and optimise: the best monitored value (without validation "
                                 "rows, the test split's value of the monitored metric)"),
    "objective_metric": (TEXT + NONE, "the metric the objective is: the monitor, or test/<metric> without validation"),
    "epochs_run": ((int,) + NONE, "epochs trained (a cross-validation's parent: null, each fold's is in folds)"),
    "stopped_early": (FLAG, "whether early stopping ended training"),
    "steps": ((int,), "optimizer steps (skipped non-finite ones too)"),
    "skipped_batches": ((int,), "non-finite steps skipped"),
    "throughput": (TABLE + NONE, "samples_per_s, data_wait, model_flops_per_s (3 x the model's forward FLOPs "
                                 "per sample x samples_per_s), mfu (its share of a listed GPU's peak), peak_rss_mb, "
                                 "cuda_peak_mb"),
    "stop_reason": (TEXT + NONE, "why training ended"),
    "change_per_epoch": (TABLE + NONE, "the losses' and accuracies' average change per epoch, (last - first) / "
                                       "(epochs - 1)"),
    "model_summary": (TABLE, "parameters, size, forward FLOPs per sample (linear and convolution layers) and layers"),
    "data_summary": (TABLE, "rows and class counts per split (multi-label: rows with each label), features of a "
                            "table, source dtype, batches (path, workers, size, accumulate: as trained, "
                            "trainer.batch_size=auto's as found)"),
    "class_weights": (TABLE + NONE, "with loss.class_weights: each class's weight in the loss"),
    "plots_skipped": (TABLE, "each plot asked for that does not apply, with why"),
    "validation": (TEXT, "where the validation rows came from"),
    "warnings": (ROWS, "what the run warned of that did not stop it (a CSV column that looks like a row id)"),
    "best_val": (TABLE + NONE, "every validation metric of the best epoch"),
    "timings": (TABLE, "seconds spent in each phase"),
    "tested_weights": (TEXT, "which weights the test metrics measure"),
    "kept_checkpoints": (ROWS, "with keep_every_n_epochs or save_top_k: the kept epochs' checkpoint files"),
    "test": (TABLE + NONE, "the test metrics of those weights"),
    "test_last": (TABLE, "with trainer.test_weights=both: the last epoch's test metrics"),
    "evaluated": (TEXT, "with task=eval: the checkpoint evaluated"),
    "evaluated_classes": (ROWS, "with task=eval and dataset.classes: the classes whose test rows were evaluated"),
    "init_from": (TABLE + NONE, "with init_from: what was loaded"),
    "overfit_check": (TABLE, "with trainer.overfit_batches: whether the batch was memorised"),
    "threshold": (TABLE, "binary tasks: the decision threshold and how it was chosen"),
    "most_confused": (ROWS, "the most frequent mistakes"),
    "weight_stats": (ROWS, "per-layer weight statistics"),
    "predicted": (TABLE, "with task=predict: input, rows, checkpoint, file"),
    "lr_find": (TABLE, "with task=lr_find: the suggestions"),
    "folds": (ROWS, "with cv.folds > 1: one row per fold"),
    "cv": (TABLE, "with cv.folds > 1: mean and std of every metric"),
}


def check(data):
    """Every field declared, every value of its declared type (a bool is no number)."""
    for name, value in data.items():
        if name not in FIELDS:
            raise ValueError(f"summary.json has no field '{name}' (record.FIELDS declares them)")
        types = FIELDS[name][0]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"summary.json's {name} is a {type(value).__name__}, not one of "
                            f"{', '.join(t.__name__ for t in types)}")


def write(path, data):
    """Write the record `data` to `path` (atomically), with its format."""
    record = {"format": FORMAT, **{k: v for k, v in data.items() if k != "format"}}
    check(record)
    artifacts.write_json(path, record)
    return record


def read(path):
    """The record at `path`. One written before records had a format is read as it is."""
    data = artifacts.read_json(path)
    found = data.get("format", FORMAT)
    if not isinstance(found, int) or found > FORMAT:
        raise DlrunError(f"{path} is a record of format {found!r}; this dlrun reads format {FORMAT} and earlier. "
                         f"Use the dlrun version that wrote it.")
    return data


def update(path, **changes):
    """Read the record at `path`, change some fields, write it back."""
    return write(path, {**read(path), **changes})


def epochs_per_fold(data):
    """A cross-validated training's epochs, fold by fold ("30, 12, 30"), as the terminal and the
    page say them; None for any other record. The parent's own epochs_run is null: a sum would
    count no model's epochs."""
    folds = data.get("folds")
    if data.get("task") != "train" or not folds:
        return None
    return ", ".join(str(fold["epochs_run"]) for fold in folds)
