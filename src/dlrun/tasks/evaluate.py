"""The results phase of a run: the weights to test, the decision threshold, the test split, the
tables, plots and exports, and the report (summary.json last); a stop while they are written is
recorded with what is done and the command that finishes it."""

from pathlib import Path

from dlrun import build
from dlrun.results import artifacts, checkpoint, report
from dlrun.results.evaluation import evaluate, write_tables
from dlrun.results.metric_names import positive_class
from dlrun.results.metrics import best_threshold
from dlrun.tasks import inspection, messages
from dlrun.train.trainer import Interrupted


def results(cfg, run, loop, data, state, summary, painter):
    """Test the weights to test, then the tables, plots, exports and report (summary.json last)."""
    with summary.timed("evaluation"):
        if cfg.task == "train":
            _weights_to_test(cfg, run, loop, data, state, summary)
        _decision_threshold(cfg, run, loop, data, summary)
        ev = _test(cfg, run, loop, data)
        _interpretation(run, loop, ev, data, summary)
    with summary.timed("plots"):  # the time the run waits for them: drawn in parallel, begun during training
        _plots(cfg, run, loop, data, ev, state, summary.data, painter)
    with summary.timed("export"):
        _export(cfg, run, loop, data)
    result = summary.conclude("completed", state, ev.metrics if ev else None)
    if cfg.report:
        messages.phase(cfg, "writing report.html")
        with summary.timed("report"):
            report.write(run.root, result, cfg, ev.per_class if ev else None, state.history)


def interrupted_in_results(signal, cfg, run, summary, state):
    """Record a stop during evaluation, plots or report truthfully: what is done, what is not,
    and the command that finishes it."""
    again = (f"dlrun task=eval ckpt_path={cfg.ckpt_path}" if cfg.task == "eval"
             else f"dlrun ckpt_path={run.root} (training is done: it only evaluates and writes the results)")
    error = Interrupted(f"interrupted while evaluating and writing the results; the checkpoints are whole, "
                        f"the test metrics, plots or report are incomplete. Finish with: {again}",
                        getattr(signal, "exit_code", 130))
    summary.finish("interrupted", state, error=error)
    return error


def _tested_weights(setting, has_validation):
    """trainer.test_weights: auto is the best epoch's weights with a validation split, the last without."""
    if setting == "auto":
        return "best" if has_validation else "last"
    return setting


def held_by(ckpt, path):
    """Which weights a checkpoint holds, in the words of a training run's tested weights:
    'best.pt (epoch 7, the best val/loss)', 'last.pt (epoch 30; the best val/loss was epoch 25)';
    a mid-epoch stop's checkpoint is part of the way through the next epoch."""
    fit, monitor = ckpt["fit"], ckpt["config"]["trainer"]["monitor"]
    at = f"epoch {fit['epoch']}" + (" and part of the next" if fit.get("partial") else "")
    if fit.get("best_epoch") is None:
        return f"{Path(path).name} ({at})"
    if fit["best_epoch"] == fit["epoch"] and not fit.get("partial"):
        return f"{Path(path).name} ({at}, the best {monitor})"
    return f"{Path(path).name} ({at}; the best {monitor} was epoch {fit['best_epoch']})"


def _weights_to_test(cfg, run, loop, data, state, summary):
    """Put the weights to test in the loop (trainer.test_weights): best.pt's, or the last epoch's,
    which the loop holds after training; with `both`, the last ones are tested first, into test_last."""
    which = _tested_weights(cfg.trainer.test_weights, len(data.val) > 0)
    best = run.checkpoint("best")
    if which == "both" and len(data.test):
        messages.phase(cfg, f"evaluating the last epoch's weights on the test split ({len(data.test)} samples)")
        summary.data["test_last"] = evaluate(loop, build.test_batches(cfg, data, loop.device), data).metrics
    if which == "last" or not best.is_file():  # no best.pt with trainer.checkpoint.save_best=false
        tested = f"the last epoch's (epoch {state.epoch})"
    else:
        loop.use_weights(checkpoint.load(best), best)
        tested = f"best.pt (epoch {state.best_epoch}, the best {cfg.trainer.monitor})"
        # each epoch validated only the metrics it needed; the best one gets them all
        summary.data["best_val"] = {f"val/{k}": v for k, v in loop.validate(full=True).items()} or None
    if "test_last" in summary.data:
        tested += f"; test_last: the last epoch's (epoch {state.epoch})"
    summary.data["tested_weights"] = tested


def _decision_threshold(cfg, run, loop, data, summary):
    """A binary task's decision threshold (a multi-label task's, one per label): the configured one,
    or (dataset.threshold=auto) the one that maximises dataset.threshold_metric (F1) on the
    validation split, then used on test and recorded in best.pt (so that task=predict and the
    exports use it too)."""
    if data.task not in ("binary", "multilabel"):
        return
    if cfg.dataset.get("threshold") != "auto":
        summary.data["threshold"] = {"value": loop.threshold, "chosen_by": "dataset.threshold"}
        return
    metric = cfg.dataset.get("threshold_metric", "f1")
    out, y, _, _ = loop.predict(loop.val_batches, tta=loop.tta)
    p = loop.predictions(out, y)
    if data.task == "binary":
        loop.threshold, value = best_threshold(p.true, p.probs[:, 1], metric)
        said = (f"decision threshold {loop.threshold:.4f}: the best {metric} of "
                f"'{positive_class(data.task, data.class_names)}' on the validation split ({value:.4f})")
    else:  # each label's own; a label without positive validation rows keeps 0.5
        chosen = [best_threshold(p.true[:, k], p.probs[:, k], metric) if p.true[:, k].any() else (0.5, float("nan"))
                  for k in range(p.true.shape[1])]
        loop.threshold, value = [t for t, _ in chosen], [v for _, v in chosen]
        said = (f"decision thresholds per label, each the best {metric} on the validation split: "
                + ", ".join(f"{name} {t:.3f}" for name, t in zip(data.class_names, loop.threshold)))
    summary.data["threshold"] = {"value": loop.threshold, "chosen_by": f"validation {metric}", f"val_{metric}": value}
    messages.phase(cfg, said)
    best = run.checkpoint("best")
    if best.is_file() and cfg.task == "train":
        ckpt = checkpoint.load(best)
        ckpt["preprocessing"]["threshold"] = loop.threshold
        checkpoint.save(best, ckpt)


def _interpretation(run, loop, ev, data, summary):
    """What the model gets wrong and what its weights look like: the most confused pairs and the
    per-layer weight statistics, in the summary (and CSV files)."""
    stats = inspection.weight_stats(loop.eval_model)
    artifacts.write_csv(run.weight_stats, stats)
    summary.data["weight_stats"] = stats
    if ev is not None and ev.confused is not None:
        summary.data["most_confused"] = ev.confused[:5]


def _test(cfg, run, loop, data):
    """Evaluate the loop's model on the test split and write predictions.csv and per_class.csv;
    None when there is no test split (split.test=0)."""
    if not len(data.test):
        messages.phase(cfg, "no test split (split.test=0): the best epoch's validation metrics are the result")
        return None
    views = f", outputs averaged over trainer.tta={cfg.trainer.tta}'s views" if cfg.trainer.tta else ""
    messages.phase(cfg, f"evaluating on the test split ({len(data.test)} samples{views})")
    ev = evaluate(loop, build.test_batches(cfg, data, loop.device), data)
    write_tables(run.root, ev, data.class_names, probabilities=cfg.probabilities)
    return ev


def _plots(cfg, run, loop, data, ev, state, record, painter):
    """The plots of the results (without a test split, only those of training), and those of the
    data begun before training, all on disk when this returns."""
    if cfg.plots:
        from dlrun.results import plots

        messages.phase(cfg, f"drawing plots into {run.plots}")
        jobs, skipped = plots.result_jobs(run.plots, cfg.plots, loop, data, ev, state)
        painter.submit(jobs)
        messages.skipped(skipped, record)
    painter.wait()


def _export(cfg, run, loop, data):
    if cfg.export:
        from dlrun.results import export

        messages.phase(cfg, f"exporting the model ({cfg.export})")
        export.write(cfg.export, loop.eval_model, {**build.preprocessing(data, cfg.trainer.tta), "threshold": loop.threshold},
                     run.checkpoints, loop.threshold)
