"""task=predict: a trained run applied to new, unlabelled inputs (a CSV file, a folder of
images, or a .npy array), with the preprocessing its checkpoint recorded. The inputs are
checked against what the model was trained on, and a difference is one line that names it.
"""

import csv
from pathlib import Path

import numpy as np
import torch

from dlrun import build, registry
from dlrun.data.csv_file import parse_numbers
from dlrun.errors import ConfigError, DlrunError
from dlrun.results import artifacts, checkpoint
from dlrun.results.summary import Summary
from dlrun.tasks import messages
from dlrun.train.fit_policy import FitState

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read(path, pre):
    """(raw inputs as a float tensor, one id per row) from `path`: the Deployed model's input."""
    source = Path(path).expanduser()
    if source.is_dir():
        if not pre["image"]:
            raise ConfigError(f"predict.input={path} is a folder, and the model was trained on a table: give a CSV file.")
        return _images(source, pre)
    if not source.is_file():
        raise ConfigError(f"predict.input={path}: no such file or folder. Give a CSV file, a folder of images or a "
                          f".npy array.")
    if source.suffix == ".npy":
        return _array(source, pre)
    if source.suffix.lower() == ".csv":
        if pre["image"]:
            raise ConfigError(f"predict.input={path} is a CSV file, and the model was trained on images: give a folder "
                              f"of images or a .npy array.")
        return _table(source, pre)
    raise ConfigError(f"predict.input={path}: a {source.suffix or 'suffix-less'} file; give a .csv file, a .npy array "
                      f"or a folder of images.")


def _table(path, pre):
    """A CSV file with a header row: the columns the model was trained on, by name, in any
    order (other columns, such as an id or the target, are ignored)."""
    columns = pre.get("columns")
    if not columns:
        raise ConfigError("this checkpoint does not record its input columns (it was written by an older dlrun); "
                          "give the inputs as a .npy array of feature rows instead.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        rows = [(row, reader.line_num) for row in reader if row]  # blank lines skipped, line numbers kept
    if len(rows) < 2:
        raise ConfigError(f"predict.input={path} has no data rows below its header.")
    header, body, lines = rows[0][0], [row for row, _ in rows[1:]], [line for _, line in rows[1:]]
    missing = [c["name"] for c in columns if c["name"] not in header]
    if missing:
        raise ConfigError(f"predict.input={path} lacks the column(s) {', '.join(missing)} that the model was trained "
                          f"on (its columns: {', '.join(c['name'] for c in columns)}).")
    blocks = [_column(path, name, [row[header.index(name)] for row in body], levels, lines)
              for name, levels in ((c["name"], c["levels"]) for c in columns)]
    return torch.from_numpy(np.concatenate(blocks, axis=1)), list(range(len(body)))


def _column(path, name, cells, levels, lines):
    """One column of the new rows as the model's input columns; `lines` are the rows' line numbers."""
    if levels is None:
        parsed = parse_numbers(cells)
        if None in parsed:
            bad = parsed.index(None)
            raise ConfigError(f"predict.input={path}: column '{name}' was numeric in training, but line {lines[bad]} "
                              f"has '{cells[bad]}'.")
        values = np.array(parsed, dtype=np.float32)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ConfigError(f"predict.input={path}: column '{name}' has a missing value ('{cells[bad]}') on line "
                              f"{lines[bad]}; the model needs every value.")
        return values[:, None]
    unknown = [i for i, cell in enumerate(cells) if cell not in levels]
    if unknown:
        raise ConfigError(f"predict.input={path}: column '{name}' has '{cells[unknown[0]]}' on line "
                          f"{lines[unknown[0]]}, a category the model never saw (it knows: {', '.join(levels)}).")
    return np.eye(len(levels), dtype=np.float32)[[levels.index(cell) for cell in cells]]


def _images(folder, pre):
    """Every image file under `folder` (sorted by path), as pixel values 0-255."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"predict.input={folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    load = _loader(pre)
    images = [load(path) for path in files]
    return torch.stack(images), [str(p.relative_to(folder)) for p in files]


def _loader(pre):
    """An image file as the training data held it: through the image folder's own transform
    (resize, grey), or as it is, checked against the trained size and channels."""
    from PIL import Image
    from torchvision import transforms
    from torchvision.transforms.functional import pil_to_tensor

    channels, size = pre["raw_shape"][0], tuple(pre["raw_shape"][1:])
    if pre.get("load_size"):
        from dlrun.data.vision import load_steps

        pipeline = transforms.Compose([*load_steps(pre["load_size"], channels), transforms.PILToTensor()])

        def load(path):
            with Image.open(path) as image:
                return pipeline(image.convert("RGB")).float()

        return load

    def load(path):
        with Image.open(path) as image:
            if image.mode not in ("L", "RGB"):  # grey with alpha or 16 bits stays grey; the rest is colour
                image = image.convert("L" if image.mode in ("LA", "I", "I;16", "1") else "RGB")
            x = pil_to_tensor(image)
        if x.shape[0] != channels:
            raise ConfigError(f"image {path} has {x.shape[0]} channel(s) and the model was trained on {channels} "
                              f"({'grey' if channels == 1 else 'colour'}) images; convert it first.")
        if tuple(x.shape[1:]) != size and not pre.get("resize"):
            raise ConfigError(f"image {path} is {x.shape[2]}x{x.shape[1]} pixels and the model was trained on "
                              f"{size[1]}x{size[0]}; resize it first (or train with dataset.resize=...).")
        return x.float()

    return load


def _array(path, pre):
    """A .npy array of raw inputs: images (N, C, H, W) or (N, H, W) as pixel values 0-255, or
    feature rows (N, features) before standardisation."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"predict.input={path} is not a plain NumPy array ({exc}).") from None
    expected = tuple(pre["raw_shape"])
    if pre["image"] and array.ndim == 3 and expected[0] == 1:
        array = array[:, None]
    if tuple(array.shape[1:]) != expected and not (pre["image"] and pre.get("resize") and array.ndim == 4
                                                   and array.shape[1] == expected[0]):
        raise ConfigError(f"predict.input={path} has rows of shape {tuple(array.shape[1:])}; the model was trained on "
                          f"{expected}" + (" (images as pixel values 0-255)." if pre["image"] else
                                           " (feature rows before standardisation)."))
    return torch.from_numpy(np.ascontiguousarray(array)).float(), list(range(len(array)))


@torch.inference_mode()
def outputs(deployed, x, device, batch_size):
    """The deployed model's outputs for every row, on the CPU."""
    deployed = deployed.to(device).eval()
    return torch.cat([deployed(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def rows(ids, out, pre, threshold=0.5, probabilities=False):
    """predictions.csv: an id, the prediction (class and confidence, or values)."""
    key = "file" if isinstance(ids[0], str) else "row"
    if pre["task"] == "regression":
        suffix = [""] if out.shape[1] == 1 else [f"_{j}" for j in range(out.shape[1])]
        return [{key: i, **{f"predicted{s}": float(v) for s, v in zip(suffix, values)}} for i, values in zip(ids, out)]
    names = pre["class_names"]
    pred = (out[:, 1] >= threshold).long() if pre["task"] == "binary" else out.argmax(1)
    table = []
    for i, c, probs in zip(ids, pred.tolist(), out):
        row = {key: i, "predicted": c, "predicted_name": names[c], "confidence": float(probs[c])}
        if probabilities:
            row.update({f"prob_{name}": float(p) for name, p in zip(names, probs)})
        table.append(row)
    return table


def task(cfg, run, device):
    """task=predict: the checkpoint's model and preprocessing on new inputs, into predictions.csv
    (a run directory's best.pt, else its last.pt)."""
    from dlrun import models
    from dlrun.results import deployment
    from dlrun.tasks import finetune

    summary = Summary(run.root, cfg, device)
    path = checkpoint.resolve(cfg.ckpt_path, "ckpt_path", finetune.WEIGHTS_FIRST)
    ckpt = checkpoint.load(path, unverified=cfg.trust_unverified_ckpt)
    pre, spec = ckpt["preprocessing"], _model_spec(ckpt, path, cfg.trust_run_code)
    net = models.build({k: v for k, v in spec.items() if k not in ("input_shape", "num_outputs")},
                       spec["input_shape"], spec["num_outputs"])
    checkpoint.load_model_state(net, ckpt, path)
    x, ids = read(cfg.predict.input, pre)
    messages.phase(cfg, f"predicting {len(ids)} input(s) from {cfg.predict.input}")
    out = outputs(deployment.Deployed(net, pre), x, device, cfg.trainer.eval_batch_size)
    threshold = pre.get("threshold") or build.threshold(cfg)
    artifacts.write_csv(run.predictions, rows(ids, out, pre, threshold, cfg.probabilities))
    summary.data.update(problem=pre["task"], classes=pre["class_names"], predicted={
        "input": str(cfg.predict.input), "rows": len(ids), "checkpoint": str(path),
        "file": str(run.predictions)})
    return summary.finish("completed", FitState())


def _model_spec(ckpt, path, trusted):
    """The checkpoint's model, to be built by its registered name: a checkpoint is data, so an
    import path in it (`_target_`, at any depth) is followed only with trust_run_code=true."""
    spec = dict(ckpt["model_spec"])
    targets = list(registry.targets(spec))
    if targets and not trusted:
        raise DlrunError(f"{path} names code to build its model ({', '.join(targets)}). A checkpoint is read as "
                         f"data: add trust_run_code=true if you trust where it came from.")
    return spec
