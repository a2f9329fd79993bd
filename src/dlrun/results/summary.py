"""summary.json: the contract that sweeps, reports and tests read.

It is written when the run starts (status "running") and rewritten when it
ends: completed, failed, diverged or interrupted. "completed" is written last,
after every other artifact, so that it never claims more than is on disk.
"""

import contextlib
import math
import platform
import time
from datetime import datetime

from dlrun import __version__
from dlrun.config.sources import run_overrides
from dlrun.errors import first_line
from dlrun.layout import RunDir
from dlrun.results import provenance, record
from dlrun.results.metric_names import mode_of, objective_of, positive_class


def versions():
    """Library versions, read from package metadata (importing torchvision alone takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    found = {"dlrun": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchvision", "hydra-core", "numpy", "scikit-learn"):
        try:
            found[name.replace("-core", "")] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


class Summary:
    def __init__(self, run_dir, cfg, device):
        self.path = RunDir(run_dir).summary
        self.started = time.perf_counter()
        from dlrun.train.device import peak_flops

        provenance_fields, self.unwritten = provenance.gather(run_dir, cfg, device)
        self.peak_flops = peak_flops(device, cfg.device.precision, cfg.device.matmul_precision)
        self.data = {
            "status": "running",
            "run_dir": str(run_dir),
            "task": cfg.task,
            "name": cfg.get("name"),
            "tags": list(cfg.get("tags") or []),
            "started_at": datetime.now().isoformat(timespec="seconds"),
            "dataset": cfg.dataset.get("name") or cfg.dataset.get("_target_"),
            "model": cfg.model.get("name") or cfg.model.get("_target_"),
            "device": str(device),
            "seed": cfg.seed,
            "world_size": _world_size(),
            "monitor": {"name": cfg.trainer.monitor, "mode": mode_of(cfg.trainer)},
            "overrides": run_overrides(run_dir),
            "versions": versions(),
            **provenance_fields,
        }

    def start(self, data, about=None):
        """The run starts: what the data is (and `about`: the model and data summaries)."""
        self.data.update(problem=data.task, classes=data.class_names,
                         positive_class=positive_class(data.task, data.class_names), sizes={
            "train": len(data.train), "val": len(data.val), "test": len(data.test)}, **(about or {}))
        self.write()

    def start_cv(self):
        self.data.update(problem=None, folds=[])
        self.write()

    def finish(self, status, state, test=None, error=None):
        self.conclude(status, state, test, error)
        return self.write()

    def conclude(self, status, state, test=None, error=None):
        """The final record, not yet written (see write)."""
        if error:
            self.data["error"] = first_line(error)
        best = next((row for row in state.history if row["epoch"] == state.best_epoch), {})
        objective, objective_metric = objective_of(self.data["monitor"]["name"], state.best_value, test)
        self.data.update(
            status=status,
            epochs_run=state.epoch,
            stopped_early=state.stopped_early,
            stop_reason=_stop_reason(status, state, self.data["task"]),
            steps=state.step,
            skipped_batches=state.skipped,
            monitor={**self.data["monitor"], "best_value": state.best_value, "best_epoch": state.best_epoch},
            objective=objective,
            objective_metric=objective_metric,
            # measured again with every metric where the flow could (see tasks/evaluate.py)
            best_val=self.data.get("best_val") or {k: v for k, v in best.items() if k.startswith("val/")} or None,
            test=test,
            throughput=_throughput(state.history, (self.data.get("model_summary") or {}).get("flops_per_sample"),
                                   self.peak_flops),
            change_per_epoch=change_per_epoch(state.history),
        )
        kept = [path.name for path in RunDir(self.data["run_dir"]).kept()]
        if kept:
            self.data["kept_checkpoints"] = kept
        self._stamp()  # the report, written before summary.json, shows the same times
        return self.data

    def conclude_cv(self, folds, stats, results):
        """The parent record of a cross-validation: one row per fold, mean/std of every metric,
        and the class counts of every fold's splits; what the data is comes from the first fold."""
        first = results[0]
        self.data.update({k: first.get(k) for k in ("problem", "classes", "positive_class")})
        counts = {str(i): (r.get("data_summary") or {}).get("class_counts") for i, r in enumerate(results)}
        if all(counts.values()):
            self.data["data_summary"] = {"class_counts_per_fold": counts}
        self.data.update(status="completed", folds=folds, cv=stats,
                         objective=stats.get("best_value", {}).get("mean"),
                         test={k.split("/", 1)[1]: v["mean"] for k, v in stats.items() if k.startswith("test/")} or None,
                         epochs_run=None)  # each fold's own is in folds: a sum would count no model's epochs
        self._stamp()
        return self.data

    @contextlib.contextmanager
    def timed(self, phase):
        """Add the seconds spent in the block to `timings[phase]` (start-up, training, evaluation,
        plots, report...: where a run's time went)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            timings = self.data.setdefault("timings", {})
            timings[phase] = round(timings.get(phase, 0.0) + time.perf_counter() - started, 3)

    def write(self):
        provenance.write_files(self.unwritten)  # code.patch and environment.txt, with the first record
        self.unwritten = {}
        self._stamp()
        self.data = record.write(self.path, self.data)
        return self.data

    def _stamp(self):
        self.data["finished_at"] = datetime.now().isoformat(timespec="seconds")
        self.data["wall_time_s"] = round(time.perf_counter() - self.started, 3)


TRENDS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/r2")


def change_per_epoch(history):
    """The average change per epoch of the losses and accuracies, (last - first) / (epochs apart),
    over the epochs that measured them: how fast training was still moving (None before two)."""
    found = {}
    for key in TRENDS:
        points = [(row["epoch"], row[key]) for row in history
                  if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
        if len(points) > 1 and points[-1][0] > points[0][0]:
            found[key] = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
    return found or None


def _throughput(history, flops_per_sample=None, peak_flops=None):
    """Training samples per second and the share of training spent waiting for data (means over
    epochs), the model FLOP/s they make (a training sample costs about three forward passes:
    the backward pass two) and their share of the GPU's peak (model FLOPs utilisation), and the
    peak memory of the run, in MiB."""
    speeds = [r["samples_per_s"] for r in history if "samples_per_s" in r]  # not in rows of older checkpoints
    if not speeds:
        return None
    found = {"samples_per_s": sum(speeds) / len(speeds)}
    if flops_per_sample:
        found["model_flops_per_s"] = 3 * flops_per_sample * found["samples_per_s"]
        if peak_flops:
            found["mfu"] = found["model_flops_per_s"] / peak_flops
    waits = [r["data_wait"] for r in history if "data_wait" in r]
    if waits:
        found["data_wait"] = sum(waits) / len(waits)
    for key in ("peak_rss_mb", "cuda_peak_mb"):
        if key in history[-1]:
            found[key] = max(r.get(key, 0.0) for r in history)
    return found


def _stop_reason(status, state, task):
    """Why training ended, in words."""
    if task != "train":
        return None
    if status in ("diverged", "interrupted", "failed"):
        return f"{status} at epoch {state.epoch + (state.partial is not None)}"
    if status == "pruned":
        return f"pruned by the sweep's Optuna pruner after epoch {state.epoch}"
    if state.stopped_early:
        return f"early stopping at epoch {state.epoch} (best epoch {state.best_epoch})"
    if state.timed_out:
        return f"max_time, at step {state.step} in epoch {state.epoch + 1} (last.pt holds the exact position)"
    return f"max_epochs ({state.epoch})"


def _world_size():
    from dlrun.train.distributed import shard

    return shard()[1]
