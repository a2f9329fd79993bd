"""A look at the model and the data before training: the model's layers with
their output shapes for the real input shape, its parameters and size; the
class counts of each split and, for tables, what each feature looks like.
Both go to summary.json, run.log, the report and (briefly) the terminal."""

import logging

import numpy as np
import torch
from rich.table import Table

from dlrun.console import console, say
from dlrun.data.base import feature_names
from dlrun.models.base import trial_forward

log = logging.getLogger("dlrun")
SHOWN_LAYERS = 25  # the terminal's table; summary.json and the report have every layer


NEAR_ZERO = 1e-3  # |w| below this counts as near zero (what L1 drives weights to)


def weight_stats(model):
    """Per weight tensor (biases and normalisation scales left out): mean, std, min, max, mean |w|,
    L2 norm and the fraction near zero, so that L1, L2 and dropout runs can be compared layer by layer."""
    rows = []
    for name, param in model.named_parameters():
        if param.ndim < 2:
            continue
        w = param.detach().float()
        rows.append({"parameter": name, "shape": "x".join(map(str, w.shape)), "count": w.numel(),
                     "mean": float(w.mean()), "std": float(w.std()) if w.numel() > 1 else 0.0,
                     "min": float(w.min()), "max": float(w.max()), "mean_abs": float(w.abs().mean()),
                     "l2": float(w.norm()), "near_zero": float((w.abs() < NEAR_ZERO).float().mean())})
    return rows


def model_summary(model, input_shape):
    """Every leaf layer in call order with its output shape (without the batch) and own
    parameters, and the totals: parameters (trainable and frozen) and size in MB."""
    layers, hooks = [], []

    def record(name):
        def hook(module, inputs, output):
            shape = list(output.shape[1:]) if torch.is_tensor(output) else type(output).__name__
            layers.append({"layer": name, "type": type(module).__name__, "output_shape": shape,
                           "params": sum(p.numel() for p in module.parameters(recurse=False)),
                           "flops": matrix_flops(module, output)})
        return hook

    for name, module in model.named_modules():
        if name and not any(module.children()):
            hooks.append(module.register_forward_hook(record(name)))
    try:
        trial_forward(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    params = list(model.parameters())
    total, trainable = sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
    size = sum(t.numel() * t.element_size() for t in [*params, *model.buffers()])
    return {"params": total, "trainable": trainable, "frozen": total - trainable, "size_mb": round(size / 2**20, 3),
            "input_shape": list(input_shape), "flops_per_sample": sum(layer.pop("flops") for layer in layers),
            "layers": layers}


def matrix_flops(module, output):
    """Floating-point operations of one sample's forward pass through a linear or convolution
    layer (two per multiply-add), from the trial batch's output; 0 for every other layer, whose
    work is small beside theirs in the models dlrun builds."""
    if not torch.is_tensor(output) or not isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
        return 0
    positions = output[0].numel() // module.weight.shape[0]  # output positions per sample (1 for a linear layer)
    per_output = module.weight[0].numel()  # multiply-adds for one output value
    return 2 * per_output * module.weight.shape[0] * positions


def data_summary(data, train_batches=None):
    """Sizes and class counts of each split; per-feature statistics of the training rows of a table;
    where the training batches come from (held in memory, or a DataLoader with its workers)."""
    summary = {"input_shape": list(data.input_shape), "task": data.task}
    if train_batches is not None:
        summary["batches"] = {"path": train_batches.path, "workers": train_batches.workers}
    if data.extra.get("source_dtype"):  # what the dataset builder gave (float64 and integers become float32)
        summary["source_dtype"] = data.extra["source_dtype"]
    if data.extra.get("streamed"):  # too large for the device: streamed from host memory
        summary["streamed"] = data.extra["streamed_why"]
    summary["rows"] = {split: len(getattr(data, split)) for split in ("train", "val", "test")}
    if data.task != "regression":  # multi-label: the rows with each label
        summary["class_counts"] = {split: _counts(getattr(data, split).y, data.class_names)
                                   for split in ("train", "val", "test")}
    if not data.image and data.in_memory and data.train.x.dim() == 2:
        summary["features"] = _features(data)
    return summary


def _counts(y, names):
    """Rows of each class (multi-label: rows with each label)."""
    if y.dim() == 2 and y.is_floating_point():
        return {name: int(c) for name, c in zip(names, y.sum(0).tolist())}
    counts = np.bincount(y.view(-1).long().numpy(), minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts)}


def _features(data):
    """Mean, std, min and max of each feature over the training rows, in the data's own units."""
    x = data.train.x.float()
    mean, std = data.extra.get("feature_mean"), data.extra.get("feature_std")
    if mean is not None:
        x = x * std + mean
    stats = zip(feature_names(data.extra.get("input_spec"), x.shape[1]), x.mean(0).tolist(), x.std(0).tolist(),
                x.min(0).values.tolist(), x.max(0).values.tolist())
    return [{"feature": name, "mean": m, "std": s, "min": lo, "max": hi} for name, m, s, lo, hi in stats]


def totals_line(model):
    flops = f", {_flops(model['flops_per_sample'])} per sample" if model.get("flops_per_sample") else ""
    return (f"model: {model['params']:,} parameters ({model['trainable']:,} trainable, {model['frozen']:,} frozen), "
            f"{model['size_mb']:.2f} MB, {len(model['layers'])} layers{flops}")


def _flops(n):
    for unit, size in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} FLOPs"


def counts_line(data):
    counts = data.get("class_counts")
    if not counts:
        return None
    rows = data.get("rows") or {split: sum(c.values()) for split, c in counts.items()}  # before rows were recorded
    sizes = ", ".join(f"{split} {n:,}" for split, n in rows.items())
    smallest = min(counts["train"].items(), key=lambda item: item[1])
    kind = "labels" if data.get("task") == "multilabel" else "classes"
    return f"data: {sizes}; {len(counts['train'])} {kind}, the rarest in train is '{smallest[0]}' ({smallest[1]})"


def loader_line(data):
    """How the training batches are read, where a DataLoader reads them."""
    batches = data.get("batches") or {}
    if batches.get("path") != "loader":
        return None
    workers = batches["workers"]
    return f"batches: read by a DataLoader with {workers or 'no'} worker process{'es' if workers != 1 else ''}"


def show(model, data, full=False, enabled=True):
    """The model and data at a glance in the terminal (the layer table with `full`), and in run.log."""
    lines = [totals_line(model), counts_line(data), loader_line(data)]
    for line in filter(None, lines):
        log.info("%s", line)
    log.info("layers: %s", "; ".join(f"{r['layer']} {r['type']} -> {r['output_shape']} ({r['params']})"
                                     for r in model["layers"]))
    if not enabled:
        return
    if full:
        console.print(layer_table(model))
    for line in filter(None, lines):
        say(f"[dim]>[/] {line}")


def layer_table(model, limit=SHOWN_LAYERS):
    table = Table(title=f"model (input {tuple(model['input_shape'])})", title_justify="left")
    for column in ("layer", "type", "output shape", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in model["layers"][:limit]:
        table.add_row(row["layer"], row["type"], str(tuple(row["output_shape"])), f"{row['params']:,}")
    if len(model["layers"]) > limit:
        table.add_row(f"... {len(model['layers']) - limit} more (all in summary.json and the report)", "", "", "")
    return table
