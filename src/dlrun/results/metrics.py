"""Metrics of a set of predictions: one place for every number.

`scalar_metrics` gives every number usable as `trainer.monitor` (prefixed
`val/`), for the test split and the best epoch; `epoch_metrics` gives an
epoch's validation numbers from counts on the training device; `evaluate` adds
the confusion matrix and per-class tables for the test split. Both paths read the
confusion matrix's metrics through `confusion_metrics` and the regression errors
through `_regression_metrics`; scikit-learn computes only what needs every
sample's probabilities (ROC-AUC, log loss, average precision).
"""

import warnings

import numpy as np
import torch
from sklearn import metrics as skm

from dlrun.results import deployment


def decide(task, probs, threshold=0.5):
    """The predicted classes of probabilities (N, C) (NumPy or torch): a binary task's positive
    class where its probability reaches the decision threshold, else the most probable class;
    multi-label: 1 for each label whose probability reaches its threshold (one, or one per label)."""
    if task == "multilabel":
        bound = torch.as_tensor(threshold, device=probs.device) if torch.is_tensor(probs) else np.asarray(threshold)
        return (probs >= bound) * 1
    return (probs[:, 1] >= threshold) * 1 if task == "binary" else probs.argmax(1)


class Predictions:
    """Model outputs turned into what metrics and plots read (NumPy arrays).

    Classification: `probs` (N, C), `pred`, `confidence`; multi-label: `probs`, `pred` and
    `true` (N, labels), `correct` per row; regression: `pred` and `true` in the targets'
    original units.
    """

    def __init__(self, task, outputs, targets, threshold=0.5, target_scale=None):
        self.task = task
        if task == "regression":
            mean, std = (None, None) if target_scale is None else (t.to(outputs.device) for t in target_scale)
            self.pred = deployment.outputs(task, outputs, mean, std).numpy()
            self.true = (targets if mean is None else targets * std + mean).numpy()
            return
        self.probs = deployment.outputs(task, outputs).numpy()
        self.pred = decide(task, self.probs, threshold)
        if task == "multilabel":  # (N, labels) of 0/1; a row is right when every label is
            self.true = (targets > 0.5).long().numpy()
            self.correct = (self.pred == self.true).all(1)
            return
        self.true = targets.view(-1).long().numpy()
        self.confidence = self.probs[np.arange(len(self.pred)), self.pred]
        self.correct = self.pred == self.true


CALIBRATION_BINS = 15  # the equal-width confidence bins of the ECE and of the reliability diagram


def calibration_bins(confidence, correct, bins=CALIBRATION_BINS):
    """Per equal-width confidence bin: its share of the rows, its accuracy and its mean confidence
    (NaN for an empty bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=np.asarray(correct, dtype=float), minlength=bins) / count
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
    return count / max(len(which), 1), accuracy, mean_confidence


def expected_calibration_error(confidence, correct, bins=CALIBRATION_BINS):
    """Weighted mean gap between confidence and accuracy over the calibration bins."""
    share, accuracy, mean_confidence = calibration_bins(confidence, correct, bins)
    filled = share > 0
    return float(np.sum(share[filled] * np.abs(accuracy[filled] - mean_confidence[filled])))


def _roc_auc(true, probs, num_classes):
    present = np.unique(true)
    if len(present) < 2:
        return float("nan")
    if num_classes == 2:
        return float(skm.roc_auc_score(true, probs[:, 1]))
    if len(present) < num_classes:  # each present class against the others present (a class subset's test rows)
        return float(np.mean([skm.roc_auc_score(true == c, probs[:, c]) for c in present]))
    return float(skm.roc_auc_score(true, probs, multi_class="ovr", average="macro"))


def scalar_metrics(p, num_classes, loss=None):
    """The per-epoch numbers for predictions `p`."""
    out = {"loss": float("nan") if loss is None else float(loss)}
    if p.task == "regression":
        return {**out, **_regression_metrics(torch.as_tensor(p.pred), torch.as_tensor(p.true), None)}
    if p.task == "multilabel":
        return {**out, **label_metrics(*label_counts(p.true, p.pred)), **_label_probability_metrics(p)}
    labels = list(range(num_classes))
    out.update(confusion_metrics(confusion(p, num_classes), p.task))  # the counts validation uses too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's notes on classes absent from a split
        if p.task == "binary":  # the area under the positive class's precision-recall curve
            out["average_precision"] = (float(skm.average_precision_score(p.true, p.probs[:, 1])) if p.true.any()
                                        else float("nan"))
        out["roc_auc"] = _roc_auc(p.true, p.probs, num_classes)
        out["log_loss"] = float(skm.log_loss(p.true, np.clip(p.probs, 1e-7, 1), labels=labels))
    out["ece"] = expected_calibration_error(p.confidence, p.correct)
    return out


def epoch_metrics(task, outputs, targets, loss, num_classes, threshold=0.5, target_scale=None, extra=()):
    """An epoch's validation numbers from outputs that stay on the training device: the loss, and
    every metric of the confusion matrix (classification) or of error sums (regression), counted
    there and read as one small array; `extra` names probability metrics to add (through
    scikit-learn, on the host)."""
    if task == "regression":
        return {"loss": loss, **_regression_metrics(outputs.float(), targets.float(), target_scale)}
    if task == "multilabel":
        counts = label_counts(targets > 0.5, decide(task, deployment.outputs(task, outputs), threshold) > 0)
        result = {"loss": loss, **label_metrics(*counts)}
    else:
        result = {"loss": loss, **_confusion_of(task, outputs, targets, num_classes, threshold)}
    if extra:
        full = scalar_metrics(Predictions(task, outputs.cpu(), targets.cpu(), threshold, target_scale), num_classes, loss)
        result.update({name: full[name] for name in extra if name in full})
    return result


def _confusion_of(task, outputs, targets, num_classes, threshold):
    """The confusion matrix's metrics, counted on the device and read as one small array."""
    predicted = decide(task, deployment.outputs(task, outputs), threshold)
    true = targets.view(-1).long()
    matrix = torch.bincount(true * num_classes + predicted, minlength=num_classes ** 2)
    return confusion_metrics(matrix.view(num_classes, num_classes).cpu().numpy(), task)


def label_counts(true, pred):
    """Multi-label counts (NumPy or torch, on the device), read as one array: each label's true
    positives, false positives and false negatives, the rows with every label right, the rows."""
    true, pred = true.astype(bool) if isinstance(true, np.ndarray) else true.bool(), \
        pred.astype(bool) if isinstance(pred, np.ndarray) else pred.bool()
    tp, fp, fn = (true & pred).sum(0), (~true & pred).sum(0), (true & ~pred).sum(0)
    exact = (true == pred).all(1).sum()
    if torch.is_tensor(tp):
        packed = torch.cat([tp, fp, fn, exact.view(1)]).cpu().numpy()  # host-device sync: once per validation
        k = len(tp)
        tp, fp, fn, exact = packed[:k], packed[k:2 * k], packed[2 * k:3 * k], packed[-1]
    return np.asarray(tp, float), np.asarray(fp, float), np.asarray(fn, float), float(exact), len(true)


def label_metrics(tp, fp, fn, exact, rows):
    """Multi-label metrics of the counts (scikit-learn's, with zero_division=0): subset accuracy,
    Hamming loss, micro- and macro-averaged precision, recall and F1."""
    precision, recall, f1 = label_rates(tp, fp, fn)
    pooled = [np.array([v.sum()]) for v in (tp, fp, fn)]
    micro = [float(v[0]) for v in label_rates(*pooled)]
    return {"accuracy": exact / max(rows, 1), "hamming_loss": float((fp + fn).sum() / max(rows * len(tp), 1)),
            "precision_micro": micro[0], "recall_micro": micro[1], "f1_micro": micro[2],
            "precision_macro": float(precision.mean()), "recall_macro": float(recall.mean()),
            "f1_macro": float(f1.mean())}


def label_rates(tp, fp, fn):
    """Each label's (or class's) precision, recall and F1 from its counts, 0 where undefined."""
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)
    return precision, recall, f1


def _label_average_precision(p):
    """Each label's average precision (NaN for a label without positive rows)."""
    return np.array([float(skm.average_precision_score(p.true[:, k], p.probs[:, k])) if p.true[:, k].any()
                     else float("nan") for k in range(p.true.shape[1])])


def _label_probability_metrics(p):
    """The mean over labels of the average precision (mAP) and of the ROC-AUC, each over the labels
    where it is defined (positive rows for AP; positive and negative rows for AUC)."""
    ap = _label_average_precision(p)
    both = [k for k in range(p.true.shape[1]) if 0 < p.true[:, k].sum() < len(p.true)]
    auc = [float(skm.roc_auc_score(p.true[:, k], p.probs[:, k])) for k in both]
    return {"mean_average_precision": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
            "roc_auc": float(np.mean(auc)) if auc else float("nan")}


def confusion_metrics(matrix, task):
    """accuracy, balanced accuracy, macro and weighted precision, recall and F1 (and a binary task's
    positive-class precision, recall and F1) of a confusion matrix (rows: true), as scikit-learn
    computes them with zero_division=0."""
    matrix = np.asarray(matrix, dtype=float)
    precision, recall, f1, support = class_rates(matrix)
    weights = support / max(support.sum(), 1)
    out = {"accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
           "balanced_accuracy": float(recall[support > 0].mean())}
    for avg, mean in (("macro", np.mean), ("weighted", lambda v: float((v * weights).sum()))):
        out.update({f"precision_{avg}": float(mean(precision)), f"recall_{avg}": float(mean(recall)),
                    f"f1_{avg}": float(mean(f1))})
    if task == "binary":
        out.update(precision=float(precision[1]), recall=float(recall[1]), f1=float(f1[1]))
    return out


def class_rates(matrix):
    """Each class's precision, recall, F1 and support from a confusion matrix (rows: true), 0
    where undefined (scikit-learn's zero_division=0)."""
    matrix = np.asarray(matrix, dtype=float)
    tp, support, predicted = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    return (*label_rates(tp, predicted - tp, support - tp), support)


def _regression_metrics(pred, true, target_scale):
    """mse, rmse, mae and r2 (averaged over targets) in the targets' own units, from sums on the device."""
    if target_scale is not None:
        mean, std = (t.to(pred.device) for t in target_scale)
        pred, true = pred * std + mean, true * std + mean
    error = pred - true
    spread, squared = ((true - true.mean(0)) ** 2).sum(0), (error ** 2).sum(0)
    # a constant target scores 1 when predicted exactly, else 0 (as scikit-learn's r2_score)
    r2 = torch.where(spread > 0, 1 - squared / spread.clamp(min=1e-30), (squared == 0).float())
    sums = torch.stack([(error ** 2).mean(), error.abs().mean(), r2.mean()]).tolist()  # one read
    mse = sums[0]
    return {"mse": mse, "rmse": mse ** 0.5, "mae": sums[1], "r2": sums[2] if len(true) > 1 else float("nan")}


def per_label_table(p, class_names, thresholds):
    """Multi-label: each label's decision threshold, precision, recall, F1, positive rows and
    average precision."""
    tp, fp, fn, _, _ = label_counts(p.true, p.pred)
    precision, recall, f1 = label_rates(tp, fp, fn)
    ap = _label_average_precision(p)
    bounds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(class_names),))
    return [{"label": name, "threshold": float(bounds[k]), "precision": float(precision[k]),
             "recall": float(recall[k]), "f1": float(f1[k]), "support": int(p.true[:, k].sum()),
             "average_precision": float(ap[k])} for k, name in enumerate(class_names)]


def per_class_table(p, class_names):
    """The tutorials' per-class table, plus precision, recall and F1."""
    pr, rc, f1, support = class_rates(confusion(p, len(class_names)))
    rows = []
    for c, name in enumerate(class_names):
        mask = p.true == c
        hits = mask & p.correct
        rows.append({
            "class": name,
            "accuracy": float(p.correct[mask].mean()) if mask.any() else float("nan"),
            "mean_confidence_correct": float(p.confidence[hits].mean()) if hits.any() else float("nan"),
            "precision": float(pr[c]), "recall": float(rc[c]), "f1": float(f1[c]), "support": int(support[c]),
        })
    return rows


def confusion(p, num_classes):
    return skm.confusion_matrix(p.true, p.pred, labels=list(range(num_classes)))


def evaluate(p, class_names, loss=None):
    """Everything the test section of summary.json holds."""
    result = scalar_metrics(p, len(class_names), loss)
    if p.task in ("multiclass", "binary"):
        result["confusion_matrix"] = confusion(p, len(class_names)).tolist()
    return result


# dataset.threshold_metric: what a tuned threshold maximises, from the counts at every candidate
THRESHOLD_METRICS = {
    "f1": lambda tp, fp, fn, tn: 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12),
    "balanced_accuracy": lambda tp, fp, fn, tn: (tp / np.maximum(tp + fn, 1) + tn / np.maximum(tn + fp, 1)) / 2,
    "accuracy": lambda tp, fp, fn, tn: (tp + tn) / (tp + fp + fn + tn),
}


def best_threshold(true, positive_probs, metric="f1"):
    """The decision threshold (one of the probabilities) that maximises `metric` of the positive
    class's predictions (f1, balanced_accuracy or accuracy), and that value. Every candidate is
    scored at once from cumulative counts, so large validation splits cost one sort."""
    order = np.argsort(-positive_probs, kind="stable")
    probs, hits = positive_probs[order], np.asarray(true)[order].astype(float)
    last = np.r_[probs[1:] != probs[:-1], True]  # predicting p >= probs[i] takes every tie of probs[i]
    tp, fp = np.cumsum(hits)[last], np.cumsum(1 - hits)[last]
    positives, negatives = hits.sum(), len(hits) - hits.sum()
    fn, tn = positives - tp, negatives - fp
    score = THRESHOLD_METRICS[metric](tp, fp, fn, tn)
    best = int(np.argmax(score))
    return float(probs[last][best]), float(score[best])


def top_losses(p, limit=25):
    """Indices of the wrong predictions, highest cross-entropy first (the most confidently wrong),
    and those losses."""
    wrong = np.flatnonzero(~p.correct)
    losses = -np.log(np.clip(p.probs[wrong, p.true[wrong]], 1e-12, 1))
    order = np.argsort(-losses, kind="stable")[:limit]
    return wrong[order], losses[order]


def most_confused(matrix, class_names, limit=10):
    """The most frequent (true, predicted) pairs of mistakes, with their share of the true class."""
    matrix = np.asarray(matrix)
    pairs = [(matrix[t, q], t, q) for t in range(len(matrix)) for q in range(len(matrix)) if t != q and matrix[t, q]]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    return [{"true": class_names[t], "predicted": class_names[q], "count": int(n),
             "share_of_true": float(n / matrix[t].sum())} for n, t, q in pairs[:limit]]


def is_better(value, best, mode, min_delta=0.0):
    if best is None:
        return np.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta
