"""Evaluate a model on a split and write the per-sample and per-class tables."""

from dataclasses import dataclass

import torch

from dlrun.layout import RunDir
from dlrun.results import artifacts, metrics


@dataclass
class Evaluation:
    predictions: metrics.Predictions
    metrics: dict
    per_class: list
    embeddings: torch.Tensor
    rows: object  # indices of the evaluated samples in the dataset (its test split or its rows)
    confused: list = None  # the most frequent (true, predicted) mistakes (classification)


def evaluate(loop, batches, data):
    out, y, loss, emb = loop.predict(batches, with_embeddings=True, tta=loop.tta)
    preds = loop.predictions(out, y)
    result = metrics.evaluate(preds, data.class_names, loss)
    classify = data.task in ("multiclass", "binary")
    per_class = metrics.per_class_table(preds, data.class_names) if classify else None
    if data.task == "multilabel":
        per_class = metrics.per_label_table(preds, data.class_names, loop.threshold)
    confused = metrics.most_confused(result["confusion_matrix"], data.class_names) if classify else None
    return Evaluation(preds, result, per_class, emb, data.test.rows, confused)


def label_list(flags, class_names):
    """A multi-label row's labels as one cell: the names of its 1s, joined by ';' (empty: none)."""
    return ";".join(name for name, flag in zip(class_names, flags) if flag)


def write_tables(run_dir, ev, class_names, probabilities=False):
    """predictions.csv (one row per sample) and per_class.csv."""
    p = ev.predictions
    rows = []
    if p.task == "regression":
        true, pred = p.true.reshape(len(p.true), -1), p.pred.reshape(len(p.pred), -1)
        suffix = [""] if true.shape[1] == 1 else [f"_{j}" for j in range(true.shape[1])]
        for i, index in enumerate(ev.rows):
            row = {"index": int(index)}
            for j, s in enumerate(suffix):
                row.update({f"true{s}": float(true[i, j]), f"predicted{s}": float(pred[i, j]),
                            f"residual{s}": float(true[i, j] - pred[i, j])})
            rows.append(row)
    elif p.task == "multilabel":
        rows = [{"index": int(index), "true": label_list(p.true[i], class_names),
                 "predicted": label_list(p.pred[i], class_names), "correct": bool(p.correct[i]),
                 **({f"prob_{name}": float(p.probs[i, k]) for k, name in enumerate(class_names)} if probabilities
                    else {})} for i, index in enumerate(ev.rows)]
        artifacts.write_csv(RunDir(run_dir).per_class, ev.per_class)
    else:
        for i, index in enumerate(ev.rows):
            row = {"index": int(index), "true": int(p.true[i]), "true_name": class_names[p.true[i]],
                   "predicted": int(p.pred[i]), "predicted_name": class_names[p.pred[i]],
                   "confidence": float(p.confidence[i]), "correct": bool(p.correct[i])}
            if probabilities:
                row.update({f"prob_{name}": float(p.probs[i, c]) for c, name in enumerate(class_names)})
            rows.append(row)
        artifacts.write_csv(RunDir(run_dir).per_class, ev.per_class)
        artifacts.write_csv(RunDir(run_dir).confused_pairs, ev.confused, ["true", "predicted", "count", "share_of_true"])
    artifacts.write_csv(RunDir(run_dir).predictions, rows)
