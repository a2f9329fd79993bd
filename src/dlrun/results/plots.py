"""Plots of a run: each function takes plain arguments and returns a matplotlib
Figure (shown inline in a notebook). `result_jobs` and `data_jobs` turn a run
into the configured plots as jobs of plain data (a function of this module and
its arguments), which plot_workers.py draws into PNG files, in worker processes
where there are cores to spare. Figures are built without pyplot, so no display
is needed, and matplotlib is imported only where a figure is made."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.results import artifacts
from dlrun.results.metric_names import positive_class

SIZE = (8, 6)   # inches; saved at DPI, so every PNG is 800x600 pixels
DPI = 100


def _figure(ncols=1, size=SIZE, nrows=1, layout="constrained"):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout=layout)
    return fig, (fig.subplots(nrows, ncols) if nrows * ncols else None)


def _integer_ticks(axis):
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def save(fig, path):
    artifacts.atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI))


# ---------------------------------------------------------------- training
def curves(history, monitor, best_epoch=None):
    """Loss and the main metric, train vs validation, best epoch marked."""
    epochs = [row["epoch"] for row in history]
    metric = next((m for m in ("accuracy", "r2") if f"val/{m}" in history[0]), None)
    fig, axes = _figure(2 if metric else 1, size=(10, 5))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, ["loss"] + ([metric] if metric else [])):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}/{name}"
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], style, marker="o", markersize=3, label=split)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch}, {monitor})")
        label = f"{name} (standardised targets)" if name == "loss" and metric == "r2" else name
        ax.set(title=f"{label} per epoch", xlabel="epoch", ylabel=label)
        _integer_ticks(ax.xaxis)
        ax.legend()
    fig.suptitle("Training curves")
    return fig


def folds(histories, monitor, best_epochs, tested):
    """A cross-validation's folds: the monitored metric per epoch of each fold (its best epoch
    marked), and one held-out metric per fold (`tested`: (name, per-fold values)) with their mean
    and standard deviation."""
    fig, (curve_ax, fold_ax) = _figure(2, size=(11, 5))
    for i, (history, best) in enumerate(zip(histories, best_epochs, strict=True)):
        epochs = [row["epoch"] for row in history]
        values = [row.get(monitor) for row in history]
        (line,) = curve_ax.plot(epochs, values, "-", label=f"fold {i}")
        if best in epochs:
            curve_ax.plot(best, values[epochs.index(best)], "o", color=line.get_color())
    curve_ax.set(title=f"{monitor} per epoch (dot: each fold's best epoch)", xlabel="epoch", ylabel=monitor)
    _integer_ticks(curve_ax.xaxis)
    curve_ax.legend()
    name, values = tested
    mean, std = float(np.mean(values)), float(np.std(values))
    fold_ax.axhspan(mean - std, mean + std, color="tab:blue", alpha=0.12, label=f"mean ± std ({mean:.4f} ± {std:.4f})")
    fold_ax.axhline(mean, color="tab:blue", linewidth=1)
    fold_ax.plot(range(len(values)), values, "o", color="black", label="one fold")
    fold_ax.set(title=f"{name} of each fold", xlabel="fold", ylabel=name, xticks=range(len(values)))
    fold_ax.margins(y=0.3)
    fold_ax.legend(loc="upper center", ncols=2, fontsize="small")
    fig.suptitle(f"Cross-validation: {len(histories)} folds")
    return fig


def learning_rate(history):
    fig, ax = _figure(size=(8, 4))
    ax.plot([row["epoch"] for row in history], [row["lr"] for row in history], marker="o", markersize=3)
    ax.set(title="Learning rate per epoch", xlabel="epoch", ylabel="learning rate")
    _integer_ticks(ax.xaxis)
    if min(row["lr"] for row in history) > 0:
        ax.set_yscale("log")
    return fig


def lr_range(lrs, losses, smoothed, suggestions):
    """The learning-rate range test: loss against learning rate (log axis), raw and smoothed,
    with each suggestion marked."""
    fig, ax = _figure(size=(9, 5.5))
    ax.plot(lrs, losses, color="lightgrey", linewidth=1, label="loss per step")
    ax.plot(lrs, smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    for (name, lr), color in zip(suggestions.items(), ("tab:red", "tab:green", "tab:orange")):
        ax.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.2g}")
    ax.set_xscale("log")
    start = max(smoothed[: max(1, len(smoothed) // 10)])
    low, high = min(min(smoothed), float(np.percentile(losses, 2))), max(start, min(smoothed))
    pad = 0.05 * (high - low) + 1e-12
    ax.set_ylim(low - pad, high + 4 * pad)  # the blow-up at the end goes off the axis
    ax.set(title="Learning-rate range test", xlabel="learning rate (log scale)", ylabel="training loss")
    ax.legend()
    return fig


# ----------------------------------------------------------- classification
def confusion(matrix, class_names):
    """One matrix: each cell's count and its fraction of the true class (the recall of the diagonal),
    coloured by that fraction so that classes of any size compare; an empty cell is none."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    n = len(class_names)
    fig, ax = _figure(size=(min(20, max(7, 0.7 * n + 2)), min(18, max(6, 0.6 * n + 1))))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    ax.set(title="Confusion matrix: count and fraction of the true class per cell", xlabel="predicted",
           ylabel="true", xticks=range(n), yticks=range(n), xticklabels=class_names, yticklabels=class_names)
    ax.tick_params(axis="x", rotation=45)
    if n <= 20:
        for i, j in zip(*np.nonzero(matrix)):
            # inside the cells: kept out of the layout, whose cost grows with every text it measures
            ax.text(j, i, f"{matrix[i, j]}\n{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if normalised[i, j] > 0.5 else "black").set_in_layout(False)
    return fig


def per_class(table):
    """Accuracy per class with its support."""
    fig, ax = _figure()
    names = [row["class"] for row in table]
    values = [row["accuracy"] for row in table]
    bars = ax.bar(names, values, color="tab:blue")
    for bar, row in zip(bars, table):
        ax.annotate(f"n={row['support']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set(title="Accuracy per class", xlabel="class", ylabel="accuracy", ylim=(0, 1.1))
    ax.tick_params(axis="x", rotation=45)
    return fig


def per_label(table):
    """Multi-label: each label's precision, recall and F1 at its threshold, with its positive rows."""
    fig, ax = _figure()
    names = [row["label"] for row in table]
    at = np.arange(len(names))
    for i, (metric, colour) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green"))):
        ax.bar(at + (i - 1) * 0.27, [row[metric] for row in table], width=0.27, color=colour, label=metric)
    for x, row in zip(at, table):
        ax.annotate(f"n={row['support']}", (x, 1.02), ha="center", va="bottom", fontsize=8)
    ax.set(title="Precision, recall and F1 per label (each at its threshold)", xlabel="label", ylim=(0, 1.3))
    ax.set_xticks(at, names, rotation=45)
    ax.legend(loc="upper right", ncol=3, fontsize=8)
    return fig


def confidence(conf, correct):
    """Histogram of the predicted class's probability, correct vs wrong."""
    fig, ax = _figure()
    bins = np.linspace(0, 1, 21)
    ax.hist(conf[correct], bins=bins, alpha=0.7, histtype="stepfilled", label=f"correct ({correct.sum()})", color="tab:green")
    ax.hist(conf[~correct], bins=bins, alpha=0.7, histtype="stepfilled", label=f"wrong ({(~correct).sum()})", color="tab:red")
    ax.set_yscale("log")  # 4 wrong beside 243 right stay visible
    ax.set(title="Confidence of predictions", xlabel="confidence (probability of predicted class)",
           ylabel="count (log scale)")
    ax.legend(loc="upper left")
    return fig


def reliability(accuracy, counts):
    """Accuracy vs confidence per bin (metrics.calibration_bins, those of the ECE) with each bin's
    number of rows above it; the diagonal is perfect calibration. The legend sits in the headroom
    above 1, where no bar reaches."""
    bins = len(accuracy)
    centres = (np.arange(bins) + 0.5) / bins
    fig, ax = _figure()
    bars = ax.bar(centres, np.nan_to_num(accuracy), width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
    for bar, n in zip(bars, counts):
        if n:
            ax.annotate(f"{int(n)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(title="Reliability diagram (rows per bin above each bar)", xlabel="confidence", ylabel="accuracy",
           xlim=(0, 1), ylim=(0, 1.22), yticks=np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=2)
    return fig


def roc(true, probs, class_names):
    """ROC curve (binary), one-vs-rest curves (multiclass) or one curve per label (multi-label:
    `true` is (N, labels)), AUC in the legend."""
    fig, ax = _figure()
    labels = np.ndim(true) == 2
    classes = [1] if probs.shape[1] == 2 and not labels else range(probs.shape[1])
    for c in classes:
        positives = true[:, c] == 1 if labels else true == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr = roc_points(positives, probs[:, c])
        ax.plot(fpr, tpr, label=f"{class_names[c]} (AUC {np.trapezoid(tpr, fpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", label="chance")
    ax.set(title="ROC curve" + (" per label" if labels else " (one-vs-rest)" if len(classes) > 1 else ""),
           xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def roc_points(positives, scores):
    """False and true positive rates at every distinct score, from (0, 0) to (1, 1)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    scores, positives = np.asarray(scores)[order], np.asarray(positives, dtype=bool)[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # ties move together
    tp = np.cumsum(positives)[last_of_each]
    fp = (last_of_each + 1) - tp
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def pr_curve(true, positive_probs, positive_name, threshold, tested):
    """Precision against recall of the positive class, with the average precision and the point
    of the decision threshold: `tested` is the test metrics (precision, recall and
    average_precision at that threshold), so the plot shows the numbers the run reports."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(true, positive_probs)
    fig, ax = _figure(size=(7, 6))
    ax.plot(recall, precision, label=f"{positive_name} (AP {tested['average_precision']:.3f})")
    ax.plot(tested["recall"], tested["precision"], "o", color="tab:red", label=f"threshold {threshold:.2f}")
    ax.axhline(np.mean(true), color="grey", linestyle="--", label="chance (positive rate)")
    ax.set(title=f"Precision-recall curve of '{positive_name}'", xlabel="recall", ylabel="precision",
           xlim=(0, 1.01), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return fig


def pr_curves(true, probs, table):
    """Multi-label: each label's precision-recall curve, its average precision and the point of
    its threshold (`table`: the per-label table of the test metrics, so the plot shows the run's
    numbers)."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure(size=(7, 6))
    for k, row in enumerate(table):
        if not true[:, k].any():
            continue
        precision, recall, _ = precision_recall_curve(true[:, k], probs[:, k])
        line, = ax.plot(recall, precision, label=f"{row['label']} (AP {row['average_precision']:.3f}, "
                                                   f"threshold {row['threshold']:.2f})")
        ax.plot(row["recall"], row["precision"], "o", color=line.get_color())
    ax.set(title="Precision-recall curve per label (dots: each label's threshold)", xlabel="recall",
           ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    return fig


def filters(weight, limit=64, layer="First convolution", unit="filters"):
    """The first 2-D convolution's filters as small images (each scaled to its own range; colour
    filters as RGB, others channel by channel averaged); at most `limit`, and the title says how
    many the layer has. A first linear layer on images gives its units' weights as images
    (`layer`, `unit` name them)."""
    all_filters = np.asarray(weight, dtype=float)
    w = all_filters[:limit]
    w = w.mean(1, keepdims=True) if w.shape[1] not in (1, 3) else w
    low = w.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(w.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    shown = f"{len(w)} {unit}" if len(w) == len(all_filters) else f"the first {len(w)} of its {len(all_filters)} {unit}"
    return image_grid((w - low) / span, [str(i) for i in range(len(w))], f"{layer}: {shown}, {w.shape[2]}x{w.shape[3]}",
                      most_cols=8, inches=1.25)


def image_grid(images, titles, title, most_cols=5, inches=2.0):
    """Images (values in [0, 1], N x C x H x W) in a grid sized to how many there are (at most
    `most_cols` across, `inches` each), each with its title above it: one mosaic in one axes (a
    subplot per image costs seconds to lay out)."""
    images = np.asarray(images, dtype=float)
    n, channels, h, w = images.shape
    cols = min(most_cols, max(1, int(np.ceil(np.sqrt(n)))))
    rows = int(np.ceil(n / cols))
    lines = max(str(t).count("\n") + 1 for t in titles)
    gap, margin = max(1, round(h * 0.2 * lines)), max(1, round(w * 0.1))  # room for the titles, between images
    cell_h, cell_w = h + gap, w + 2 * margin
    canvas = np.ones((rows * cell_h, cols * cell_w, 3))
    # The figure takes the mosaic's own shape (no blank bands), wide enough for the title.
    width = max(inches * cols, 6.0)
    height, head = width * canvas.shape[0] / canvas.shape[1], 0.45
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        pixels = image.transpose(1, 2, 0)
        canvas[r * cell_h + gap:(r + 1) * cell_h, c * cell_w + margin:c * cell_w + margin + w] = (
            np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[..., :3])
    fig, _ = _figure(0, size=(width, height + head), layout=None)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + head)))
    ax.imshow(canvas.clip(0, 1), interpolation="nearest")
    ax.axis("off")
    for k, label in enumerate(titles):
        r, c = divmod(k, cols)
        ax.text(c * cell_w + cell_w / 2 - 0.5, r * cell_h + gap - 0.5, label, ha="center", va="bottom", fontsize=8)
    fig.suptitle(title, y=0.995, va="top")
    return fig


def misclassified(images, true, pred, conf, class_names, total=None, losses=None):
    """The given wrongly classified images with their true and predicted class, confidence (and loss)."""
    losses = [None] * len(images) if losses is None else losses
    titles = [f"true {class_names[t]}\npred {class_names[p]} ({c:.2f})" + ("" if q is None else f"\nloss {q:.2f}")
              for t, p, c, q in zip(true, pred, conf, losses)]
    return image_grid(images, titles, f"Top losses: the most confidently wrong ({len(images)} shown of "
                                      f"{total or len(images)})")


# -------------------------------------------------------------------- data
def probabilities(images, probs, true, pred, class_names, most=10):
    """Each example's predicted probability of every class (the `most` likeliest with many
    classes), the true class's bar in green, next to its image when it has one; `pred` is the
    run's prediction (a binary task's at its decision threshold)."""
    probs, true = np.asarray(probs, dtype=float), np.asarray(true)
    n, k = len(probs), min(most, probs.shape[1])
    fig, axes = _figure(2 if images is not None else 1, size=(8, 1.5 * n + 0.6), nrows=n)
    axes = np.asarray(axes).reshape(n, -1)
    for row, (p, t, guess) in enumerate(zip(probs, true, pred, strict=True)):
        if images is not None:
            pixels = np.asarray(images[row]).transpose(1, 2, 0)
            axes[row, 0].imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
            axes[row, 0].axis("off")
        shown = np.arange(k) if k == probs.shape[1] else np.argsort(-p)[:k]
        ax = axes[row, -1]
        ax.barh(range(k), p[shown], color=["tab:green" if c == t else "tab:blue" for c in shown])
        ax.set_yticks(range(k), [str(class_names[c]) for c in shown], fontsize=7)
        ax.set(xlim=(0, 1))
        ax.invert_yaxis()
        ax.set_title(f"true {class_names[t]}, predicted {class_names[guess]} ({p[guess]:.0%})", fontsize=9)
    fig.suptitle(f"Predicted probabilities of the first {n} test examples (green: the true class)")
    return fig


def class_counts(counts, weights=None):
    """Rows per class in each split (`counts`: split -> class -> count), as grouped bars, and with
    `weights` ({class: weight}, loss.class_weights) each class's weight in the loss on a second axis."""
    splits = [s for s in counts if sum(counts[s].values())]
    names = list(counts["train"])
    fig, ax = _figure(size=(min(14, max(8, 0.25 * len(names) * len(splits))), 5))
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        ax.bar(np.arange(len(names)) + i * width, [counts[split][n] for n in names], width, label=split)
    highest = max(counts[split][n] for split in splits for n in names)
    ax.set(title="Rows per class in each split", xlabel="class", ylabel="rows",
           xticks=np.arange(len(names)) + width * (len(splits) - 1) / 2, ylim=(0, highest * 1.18))
    ax.set_xticklabels(names, rotation=45 if len(names) > 8 else 0)
    handles = ax.get_legend_handles_labels()
    if weights:
        twin = ax.twinx()
        centres = np.arange(len(names)) + width * (len(splits) - 1) / 2
        twin.plot(centres, [weights[n] for n in names], "D", color="black", label="weight in the loss")
        twin.set(ylabel="class weight in the loss", ylim=(0, max(weights.values()) * 1.18))
        handles = [a + b for a, b in zip(handles, twin.get_legend_handles_labels(), strict=True)]
        ax.set_title("Rows per class in each split, and each class's weight in the loss")
    ax.legend(*handles, loc="upper center", ncol=len(splits) + bool(weights))  # in the headroom above the bars
    return fig


def samples(images, labels, augment, per_class=None):
    """Training images as the model sees them (after augmentation), back in [0, 1]; `per_class`:
    how many of each class they are, in class order."""
    how = f"after {augment}" if augment else "no augmentation"
    which = "" if per_class is None else "one of each class, " if per_class == 1 else f"{per_class} of each class, "
    # The title on two lines: a combined augmentation's name is longer than the grid is wide.
    return image_grid(images, labels, f"Training samples as the model sees them\n({which}{how})")


def embedding(points, labels, class_names, method, seed=0, limit=1000):
    """Penultimate-layer embeddings in 2-D by PCA or t-SNE, coloured by class."""
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(points))[:limit]
    points, labels = np.asarray(points, dtype=float)[keep], np.asarray(labels)[keep]
    if method == "pca":
        centred = points - points.mean(0)
        xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T  # the two main directions
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(5, len(points) // 4)))
        xy = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=500,
                  random_state=seed).fit_transform(points)
    fig, ax = _figure()
    for c, name in enumerate(class_names):
        mask = labels == c
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=10, label=name)
    ax.set(title=f"Embeddings of the penultimate layer ({method.upper()})", xlabel="component 1", ylabel="component 2")
    ax.legend(fontsize=8, markerscale=2, loc="best")
    return fig


# --------------------------------------------------------------- the model
def weights(named):
    """Histogram of each weight tensor's values (`named`: (name, values) pairs, see weight_arrays),
    with its smallest and largest value and L2 norm."""
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(named))
    rows = -(-len(named) // cols)
    fig, axes = _figure(cols, size=(4 * cols, 3 * rows), nrows=rows)
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(named):]:
        ax.axis("off")
    for ax, (name, values) in zip(axes, named):
        ax.hist(values, bins=50, color="tab:purple", histtype="stepfilled")  # one polygon, not 50 bars
        ax.set(title=name, xlabel="weight", ylabel="count")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # tick labels that never run into each other
        ax.text(0.02, 0.97, f"min {values.min():.3g}\nmax {values.max():.3g}\nL2 {np.linalg.norm(values):.3g}",
                transform=ax.transAxes, va="top", fontsize=7)
    fig.suptitle("Weight histograms per layer")
    return fig


# --------------------------------------------------------------- regression
def weight_arrays(model, limit=12):
    """(name, flat values) of the model's first `limit` linear and convolution weights."""
    return [(n, p.detach().float().cpu().numpy().ravel()) for n, p in model.named_parameters() if p.ndim > 1][:limit]


def regression(true, pred):
    """Predicted vs true, and residuals vs predicted."""
    true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
    fig, axes = _figure(2, size=(10, 5))
    axes[0].scatter(true, pred, s=10)
    low, high = min(true.min(), pred.min()), max(true.max(), pred.max())
    axes[0].plot([low, high], [low, high], "k--", label="ideal")
    axes[0].set(title="Predicted vs true", xlabel="true", ylabel="predicted")
    axes[0].legend()
    axes[1].scatter(pred, true - pred, s=10)
    axes[1].axhline(0, color="k", linestyle="--")
    axes[1].set(title="Residuals", xlabel="predicted", ylabel="true - predicted")
    return fig


# ------------------------------------------------------------------ a run
@dataclass
class _Run:
    """What the plots of a run are drawn from (`ev`: the test evaluation, or None)."""

    history: list
    best_epoch: int  # the fit policy's (FitState.best_epoch), never recomputed here
    policy: object
    model: object
    data: object
    ev: object
    seed: int
    threshold: object = 0.5  # a binary task's decision threshold (a multi-label task's: one per label)

    @property
    def p(self):
        return self.ev.predictions

    @property
    def classify(self):
        """Single-label classification: one class a row, a confusion matrix, a confidence."""
        return self.data.task in ("multiclass", "binary")

    @property
    def labels(self):
        return self.data.task == "multilabel"


@dataclass
class Job:
    """One plot to draw: a figure function of this module, its plain arguments (arrays, lists,
    numbers: they travel to a worker process) and the file it is saved to."""

    function: object
    args: tuple
    path: Path = None

    def draw(self):
        save(self.function(*self.args), self.path)


def _job(function, *args):
    return Job(function, args)


# The plot table: `plots=[...]` names its keys; each gives (file stem, Job or None) pairs,
# None where the plot does not apply to the run. The heaviest come first, so that parallel
# workers finish together.
PLOTS = {
    "confusion": lambda r: [("confusion", _job(confusion, r.ev.metrics["confusion_matrix"], r.data.class_names)
                             if r.classify else None)],
    "weights": lambda r: [("weights", _job(weights, weight_arrays(r.model)))],
    "curves": lambda r: [("curves", _job(curves, r.history, r.policy.monitor, r.best_epoch)
                          if r.history else None)],
    "embeddings": lambda r: [("embeddings_pca", _embedding(r.ev, r.p, r.data, "pca", r.seed))],
    "embeddings_tsne": lambda r: [("embeddings_tsne", _embedding(r.ev, r.p, r.data, "tsne", r.seed))],
    "misclassified": lambda r: [("misclassified", _misclassified(r.data, r.p)
                                 if r.classify and r.data.image and r.data.in_memory else None)],
    "roc": lambda r: [("roc", _job(roc, r.p.true, r.p.probs, r.data.class_names) if r.classify or r.labels else None)],
    "confidence": lambda r: [("confidence", _job(confidence, r.p.confidence, r.p.correct) if r.classify else None)],
    "reliability": lambda r: [("reliability", _reliability(r.p) if r.classify else None)],
    "per_class": lambda r: [("per_class", _job(per_class, r.ev.per_class) if r.classify else
                             _job(per_label, r.ev.per_class) if r.labels else None)],
    "probabilities": lambda r: [("probabilities", _probabilities(r.data, r.p) if r.classify else None)],
    "pr_curve": lambda r: [("pr_curve", _job(pr_curve, r.p.true, r.p.probs[:, 1],
                                             positive_class(r.data.task, r.data.class_names), r.threshold,
                                             {k: r.ev.metrics[k] for k in ("precision", "recall", "average_precision")})
                            if r.data.task == "binary" and r.p.true.any() else
                            _job(pr_curves, r.p.true, r.p.probs, r.ev.per_class) if r.labels else None)],
    "filters": lambda r: [("filters", _filters(r.model, r.data))],
    "regression": lambda r: [("regression", _job(regression, r.p.true, r.p.pred) if not r.classify else None)],
    "lr": lambda r: [("lr", _job(learning_rate, r.history) if len({row["lr"] for row in r.history}) > 1 else None)],
}
TRAINING_PLOTS = ("curves", "lr", "weights", "filters")  # the ones drawn without a test split
DATA_PLOTS = {  # drawn before training (a look at the data), from the prepared data and the run's record
    "class_counts": lambda data, record, augment, seed: (
        _job(class_counts, record["data_summary"]["class_counts"], record.get("class_weights"))
        if "class_counts" in record["data_summary"] else None),
    "samples": lambda data, record, augment, seed: (_samples(data, augment, seed)
                                                    if data.image and data.in_memory else None),
}

NAMES = [*DATA_PLOTS, *PLOTS]  # what plots=[...] may name
# When a plot applies: said, with the plot's name, in run.log and the report when it is skipped.
APPLIES_TO = {
    "class_counts": "classification", "samples": "image datasets held in memory",
    "curves": "runs that trained", "lr": "runs whose learning rate changed during training",
    "confusion": "single-label classification", "per_class": "classification",
    "confidence": "single-label classification", "reliability": "single-label classification",
    "probabilities": "single-label classification", "roc": "classification", "pr_curve": "binary and multi-label tasks",
    "misclassified": "single-label image classification held in memory, with at least one mistake",
    "embeddings": "single-label classification with a model that has embed() (dlrun.models.Network) and 10 or more "
                  "test rows",
    "embeddings_tsne": "single-label classification with a model that has embed() (dlrun.models.Network) and 10 or "
                       "more test rows",
    "weights": "every model",
    "filters": "models with a 2-D convolution (Conv2d), or a first linear layer, on images", "regression": "regression",
}


def data_jobs(folder, wanted, data, record, augment=None, seed=0):
    """The wanted plots of the data (before training; `record`: the run's summary.json so far, with
    its data_summary and class_weights) as jobs, and the skipped ones, {name: why}."""
    jobs, skipped = [], {}
    for name, plan in DATA_PLOTS.items():
        job = plan(data, record, augment, seed) if name in wanted else None
        if job is not None:
            jobs.append(_to(job, folder, name))
        elif name in wanted:
            skipped[name] = f"drawn for {APPLIES_TO[name]} only"
    return jobs, skipped


def _to(job, folder, stem):
    job.path = Path(folder) / f"{stem}.png"
    return job


def _samples(data, augment, seed, count=16):
    """Training images through the training transform, with its own generator (the run's
    generators are left untouched, so training is the same with or without it): for
    classification the first of each class, as many per class as `count` allows."""
    import torch

    from dlrun.data.batches import DeviceTransform

    y, classes = data.train.y, data.class_names if data.task in ("multiclass", "binary") else None
    per = max(1, count // len(classes)) if classes else None
    rows = [i for c in range(len(classes)) for i in torch.nonzero(y == c).flatten()[:per].tolist()][:count] \
        if classes else list(range(min(count, len(y))))
    generator = torch.Generator().manual_seed(seed + 3)
    transform = DeviceTransform.of(data, torch.device("cpu"), augment, generator)
    images = transform.denormalize(transform(data.train.x[torch.tensor(rows)], train=True)).numpy()
    labels = [str(classes[y[i]]) if classes else _shown_target(y[i], data) for i in rows]
    return _job(samples, images, labels, augment, per)


def _shown_target(y, data):
    """A sample's title: a multi-label row's labels (';'-joined; '-' for none), or a value."""
    if data.task == "multilabel":
        return ";".join(name for name, flag in zip(data.class_names, y.tolist()) if flag) or "-"
    return f"{float(y):.3g}"


def result_jobs(folder, wanted, loop, data, ev, state, seed=0):
    """The wanted plots of this run as jobs, and the skipped ones, {name: why}; `state` is the fit
    policy's state (history, best epoch). Without a test split (`ev` None) only the plots of
    training apply."""
    run = _Run(state.history, state.best_epoch, loop.policy, loop.eval_model, data, ev, seed, loop.threshold)
    jobs, skipped = [], {}
    for name, plan in PLOTS.items():
        if name not in wanted:
            continue
        if ev is None and name not in TRAINING_PLOTS:
            skipped[name] = "needs a test split (split.test=0 leaves none)"
            continue
        planned = [_to(job, folder, stem) for stem, job in plan(run) if job is not None]
        jobs += planned
        if not planned:
            skipped[name] = f"drawn for {APPLIES_TO[name]} only"
    return jobs, skipped


def _reliability(p):
    from dlrun.results.metrics import calibration_bins

    share, accuracy, _ = calibration_bins(p.confidence, p.correct)
    return _job(reliability, accuracy, np.rint(share * len(p.confidence)))


def _misclassified(data, p, limit=25):
    import torch

    from dlrun.data.batches import DeviceTransform
    from dlrun.results.metrics import top_losses

    shown, losses = top_losses(p, limit)
    if not len(shown):
        return None
    transform = DeviceTransform.of(data, torch.device("cpu"))
    images = transform.denormalize(transform(data.test.x[torch.from_numpy(shown)], train=False)).numpy()
    return _job(misclassified, images, p.true[shown], p.pred[shown], p.confidence[shown], data.class_names,
                int((~p.correct).sum()), losses)


def _probabilities(data, p, count=8):
    """The first test rows' probabilities, with their images as the model saw them (held in memory)."""
    import torch

    from dlrun.data.batches import DeviceTransform

    rows = min(count, len(p.true))
    images = None
    if data.image and data.in_memory:
        transform = DeviceTransform.of(data, torch.device("cpu"))
        images = transform.denormalize(transform(data.test.x[:rows], train=False)).numpy()
    return _job(probabilities, images, p.probs[:rows], p.true[:rows], p.pred[:rows], data.class_names)


def _filters(model, data):
    """The first 2-D convolution's filters; for a model without one, on images, the weights of its
    first linear layer's units as images of the input's shape (a model of Conv1d layers, or of
    a table's columns, has none to draw as images)."""
    import torch

    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None:
        return _job(filters, conv.weight.detach().cpu().numpy())
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    shape = tuple(data.input_shape)
    if first is None or not data.image or len(shape) != 3 or first.in_features != int(np.prod(shape)):
        return None
    weight = first.weight.detach().cpu().numpy().reshape(-1, *shape)  # Flatten keeps (C, H, W) order
    return _job(filters, weight, 64, "First linear layer", "units' weights")


def _embedding(ev, p, data, method, seed):
    if ev.embeddings is None or data.task not in ("multiclass", "binary") or len(ev.embeddings) < 10:
        return None
    return _job(embedding, ev.embeddings.numpy(), p.true, data.class_names, method, seed)
