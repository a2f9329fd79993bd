"""New inputs for task=predict, read as the checkpoint's model takes them and checked against
what it was trained on (shape, channels, columns, the pixel scale and the training range): a
difference is one line that names it and says what to do.
"""

import csv
from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import feature_names
from dlrun.data.csv_file import parse_numbers
from dlrun.errors import ConfigError
from dlrun.results.deployment import pixel_scale

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read(path, pre, warn):
    """(raw inputs as a float tensor, one id per row) from `path`: the Deployed model's input,
    checked against what the model was trained on (`warn(text)` says what is doubtful)."""
    x, ids = _read(path, pre)
    _check_finite(x, ids, path)
    (_check_pixels if pre["image"] else _check_features)(x, pre, path, warn)
    return x, ids


def _read(path, pre):
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
    """Every image file under `folder` (sorted by path), as pixels on the model's scale: a file's
    0-255 values become 0-16 for a model of scikit-learn's digits."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"predict.input={folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    load = _loader(pre)
    images = torch.stack([_opened(load, path) for path in files])
    if pixel_scale(pre) != 255:
        images *= pixel_scale(pre) / 255
    return images, [str(p.relative_to(folder)) for p in files]


def _opened(load, path):
    """`load(path)`, or one line naming a file that is not a readable image (empty, cut short or
    another kind of file)."""
    from PIL import UnidentifiedImageError

    try:
        return load(path)
    except (UnidentifiedImageError, OSError) as exc:
        reason = "it is empty" if path.stat().st_size == 0 else f"{type(exc).__name__}: {str(exc)[:120]}"
        raise ConfigError(f"image {path} cannot be read ({reason}); remove or replace it.") from None


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
    """A .npy array of raw inputs: images (N, C, H, W) or (N, H, W) as pixel values on the
    training data's scale, or feature rows (N, features) before standardisation."""
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
                          f"{expected}" + (f" (images as pixel values 0-{pixel_scale(pre):g})." if pre["image"] else
                                           " (feature rows before standardisation)."))
    return torch.from_numpy(np.ascontiguousarray(array)).float(), list(range(len(array)))


def _row(ids, i):
    return f"image {ids[i]}" if isinstance(ids[i], str) else f"row {ids[i]} (counting from 0)"


def _check_finite(x, ids, source):
    """A NaN or infinite input has no prediction: refused, naming the first such row."""
    finite = torch.isfinite(x.reshape(len(x), -1)).all(1)
    if not finite.all():
        bad = int((~finite).nonzero()[0])
        raise ConfigError(f"predict.input={source}: {_row(ids, bad)} holds a missing or infinite value (NaN or inf), "
                          f"and the model needs every value; fill in or drop that row ({int((~finite).sum())} of "
                          f"{len(x)} rows have one).")


def _check_pixels(x, pre, source, warn):
    """Pixels beyond the model's scale are refused (they are on another scale, and every
    prediction would be wrong); pixels that look already scaled to [0, 1] are a warning."""
    scale, low, high = pixel_scale(pre), float(x.min()), float(x.max())
    trained = pre.get("input_range")
    seen = f"; its training pixels were {trained[0]:g}..{trained[1]:g}" if trained else ""
    if low < 0 or high > scale:
        hint = (f" These look like 0-255 pixels: multiply them by {scale:g}/255 first." if high <= 255 and scale < 255
                else " These look normalised already: give the raw pixels." if low < 0 else "")
        raise ConfigError(f"predict.input={source} has pixel values {low:g}..{high:g}, and the model takes pixel values "
                          f"0-{scale:g}{seen}.{hint}")
    if high <= 1 and scale > 1 and (not trained or trained[1] > 1):
        warn(f"predict.input={source} has pixel values {low:g}..{high:g} only, and the model takes pixel values "
             f"0-{scale:g}{seen}: if these were scaled to [0, 1], multiply them by {scale:g} first, or every "
             f"prediction is made on near-black images")


def _check_features(x, pre, source, warn):
    """Values far outside the training rows' range (beyond it by more than the range itself) are
    extrapolations: a warning naming the first such column and how many rows have one."""
    if not pre.get("input_range"):
        return
    low, high = (torch.as_tensor(v, dtype=torch.float32) for v in pre["input_range"])
    span = (high - low).clamp_min(1e-12)
    far = (x < low - span) | (x > high + span)
    if far.any():
        column = int(far.any(0).nonzero()[0])
        name = feature_names({"columns": pre.get("columns")}, x.shape[1])[column]
        values = x[far[:, column], column]
        warn(f"predict.input={source}: {int(far.any(1).sum())} of {len(x)} rows have values far outside what the "
             f"model was trained on (column '{name}': {float(values.min()):g}..{float(values.max()):g}, trained on "
             f"{float(low[column]):g}..{float(high[column]):g}); predictions there are extrapolations")
