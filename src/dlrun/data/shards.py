"""WebDataset tar shards (dataset=webdataset): samples stored as tar members that share a key
(`000123.png` and `000123.cls`), several shards named by brace patterns (`train-{000..099}.tar`).

One pass over the shards' tar headers indexes them: where each sample's input lies in its shard
(offset and size) and its label (read then, it is a few bytes). Samples are then read by offset,
so the training order still comes from the run's one index stream (sampling.py): each epoch it
takes the shards in a fresh order and passes their samples through a shuffle buffer, as a
streaming reader would (reads stay local to a few shards at a time), and a mid-epoch checkpoint,
DataLoader workers and torchrun ranks split and resume it like any other data. The field's own
conventions and decoders come from the webdataset package: key and extension split at the
first dot of the file name, `.cls` labels, `.npy` arrays (never unpickled), images through PIL.
"""

import functools
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import DATASETS, Data, expanded
from dlrun.errors import ConfigError, DlrunError, did_you_mean

# Label members decoded as the webdataset package decodes them: whole numbers, or text (class names).
LABELS = ("cls", "cls2", "index", "inx", "id", "txt")


def _webdataset():
    try:
        import webdataset
    except ImportError:
        raise ConfigError("dataset=webdataset needs the webdataset package: pip install 'dlrun[webdataset]'.") from None
    return webdataset


def expand(urls, key="dataset.urls"):
    """The shard files of one or several brace or glob patterns (`data/train-{000..009}.tar`,
    `data/train-*.tar`, sorted), each checked to exist and to be an uncompressed local tar file
    (read by offset)."""
    _webdataset()  # braceexpand comes with it
    patterns = [urls] if isinstance(urls, str) else list(urls or [])
    remote = [pattern for pattern in patterns if "://" in pattern or pattern.startswith("pipe:")]
    if remote:
        raise ConfigError(f"{key}: {remote[0]} is not a local file; dlrun reads shards from local disk (copy them first).")
    paths = [Path(name).expanduser() for pattern in patterns for name in expanded(pattern)]
    if not paths:
        raise ConfigError(f"{key} names no shard: give a path or a brace pattern such as data/train-{{000..009}}.tar.")
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{key}: no shard {path} ({len(paths)} named by {', '.join(patterns)}).")
        if not tarfile.is_tarfile(path) or path.suffix in (".gz", ".tgz", ".bz2", ".xz", ".zst"):
            raise ConfigError(f"{key}: {path} is not an uncompressed tar file; dlrun reads each sample at its offset, "
                              f"which compression hides: decompress the shards (gunzip) first.")
    return [str(p) for p in paths]


@dataclass
class Index:
    """Every sample of a list of shards: its shard, the offset and size of its input, its label."""

    paths: list
    shard_of: np.ndarray
    spans: np.ndarray  # (N, 2): offset and size of each sample's input member
    labels: list
    input: str  # the input members' extension


def index(paths, input_ext="auto", label_ext="cls", key="dataset.urls"):
    """One pass over the tar headers of `paths` (see the module)."""
    wds = _webdataset()
    shard_of, spans, labels = [], [], []
    for number, path in enumerate(paths):
        with tarfile.open(path, "r:") as tar:
            for name, members in _samples(tar, wds.tariterators.base_plus_ext):
                if input_ext == "auto":
                    input_ext = _input_of(members, path, name, wds.autodecode.IMAGE_EXTENSIONS)
                for wanted, role in ((input_ext, "input"), (label_ext, "label")):
                    if wanted not in members:
                        raise ConfigError(f"{key}: sample '{name}' in {path} has no .{wanted} member (its members: "
                                          f"{', '.join('.' + e for e in members)}); dataset.{role} names the "
                                          f"extension to read.{did_you_mean(wanted, list(members))}")
                member = members[label_ext]
                labels.append(wds.autodecode.decoders[label_ext](tar.extractfile(member).read()))
                spans.append((members[input_ext].offset_data, members[input_ext].size))
                shard_of.append(number)
    if not labels:
        raise ConfigError(f"{key}: the shards hold no samples.")
    return Index(list(paths), np.asarray(shard_of, dtype=np.int64), np.asarray(spans, dtype=np.int64), labels,
                 input_ext)


def _samples(tar, split_name):
    """(key, {extension: member}) of each sample of a tar file, members of one key side by side
    (as WebDataset writes them); metadata members (`__...__`) are skipped."""
    name, members = None, {}
    for member in tar:
        base, ext = split_name(member.name)
        if not member.isfile() or base is None or Path(base).name.startswith("__"):
            continue
        if base != name and members:
            yield name, members
            members = {}
        name = base
        members[ext.lower()] = member
    if members:
        yield name, members


def _input_of(members, path, name, image_extensions):
    found = [ext for ext in members if ext == "npy" or ext in image_extensions]
    if not found:
        raise ConfigError(f"dataset.input=auto: sample '{name}' in {path} has no .npy or image member (its members: "
                          f"{', '.join('.' + e for e in members)}); name the input's extension with dataset.input.")
    return found[0]


class ShardSamples(torch.utils.data.Dataset):
    """The samples of indexed shards, each read at its offset when asked for (each process opens
    the shards itself: file handles are not pickled into DataLoader workers)."""

    def __init__(self, found, labels, as_input, buffer):
        self.paths, self.shard_of, self.spans = found.paths, found.shard_of, found.spans
        self.labels, self.as_input, self.buffer, self._files, self._pid = labels, as_input, buffer, {}, os.getpid()

    def __len__(self):
        return len(self.spans)

    def __getitem__(self, i):
        if self._pid != os.getpid():  # a forked worker: a handle shared with its parent shares its position too
            self._files, self._pid = {}, os.getpid()
        shard = int(self.shard_of[i])
        if shard not in self._files:
            self._files[shard] = open(self.paths[shard], "rb")  # noqa: SIM115 (kept open for the next samples)
        file = self._files[shard]
        offset, size = self.spans[i]
        file.seek(offset)
        try:
            return self.as_input(file.read(size)), self.labels[i]
        except (ValueError, OSError) as exc:  # a member that is not what its extension says (or pickled objects)
            raise DlrunError(f"{self.paths[shard]}: the input of the sample at byte {offset} cannot be read ({exc}); "
                             f"replace or remove that sample.") from None

    def locality(self):
        """The shard of each sample and the shuffle buffer: how the index stream orders them."""
        return self.shard_of, self.buffer

    def __getstate__(self):
        return {**self.__dict__, "_files": {}}


def _array_input(data):
    """An .npy member: uint8 arrays are images (a channel axis added to grey ones), others float32."""
    from webdataset.autodecode import npy_loads

    array = npy_loads(data)
    if array.dtype == np.uint8:
        return torch.from_numpy(array[None] if array.ndim == 2 else array)
    return torch.from_numpy(array.astype(np.float32))


def _image_input(data, steps):
    """An image member decoded with PIL, through the image folder's load steps: (C, S, S) uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(steps(image.convert("RGB")), dtype=np.uint8)
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy())


def _codes(labels, classes, key):
    """Label codes 0..k-1 (whole-number labels are their own codes) and the class names (text
    labels are class names, sorted unless dataset.class_names orders them)."""
    if all(isinstance(v, int) for v in labels):
        codes = np.asarray(labels, dtype=np.int64)
        names = classes or [str(i) for i in range(int(codes.max()) + 1)]
        if codes.min() < 0 or codes.max() >= len(names):
            raise ConfigError(f"{key}: labels run from {codes.min()} to {codes.max()}, and there are {len(names)} "
                              f"classes ({', '.join(names)}); whole-number labels are class indices from 0.")
        return codes, names
    names = classes or sorted({str(v).strip() for v in labels})
    unknown = sorted({str(v).strip() for v in labels} - set(names))
    if unknown:
        raise ConfigError(f"{key}: labels {unknown[:5]} are not among the classes {', '.join(names)}.")
    return np.asarray([names.index(str(v).strip()) for v in labels], dtype=np.int64), names


@DATASETS.register("webdataset")
def webdataset(urls, test_urls=None, val_urls=None, input="auto", label="cls", image_size=None, channels=3,
               shuffle_buffer=1000, class_names=None):
    """Classification samples from WebDataset tar shards (see the module): `input` is the
    extension of each sample's input (auto: .npy or the first image), `label` that of its label;
    `test_urls`/`val_urls` are shards of the dataset's own splits (else split.test/split.val
    split the training shards' samples); images are resized to `image_size` when it is given."""
    if label not in LABELS:
        raise ConfigError(f"dataset.label={label}: labels are read from one of {', '.join(LABELS)}."
                          f"{did_you_mean(label, list(LABELS))}")
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels={channels}: images are read as 1 (grey) or 3 (RGB) channels.")
    if shuffle_buffer < 1:
        raise ConfigError(f"dataset.shuffle_buffer={shuffle_buffer}: it must be >= 1 (1: each shard's samples in order).")
    train = index(expand(urls), input, label)
    y, names = _codes(train.labels, list(class_names) if class_names else None, "dataset.urls")
    if train.input != "npy":
        image_size = image_size or _square_size(train)
    as_input = _as_input(train.input, image_size, channels)
    data = Data(x=ShardSamples(train, y, as_input, shuffle_buffer), y=y, class_names=names)
    if train.input != "npy":
        data.input_spec = {"load_size": image_size, "channels": channels}
    for key, pattern in (("test_urls", test_urls), ("val_urls", val_urls)):
        if pattern:
            own = index(expand(pattern, f"dataset.{key}"), train.input, label, f"dataset.{key}")
            codes, _ = _codes(own.labels, names, f"dataset.{key}")
            setattr(data, f"x_{key[:-5]}", ShardSamples(own, codes, as_input, shuffle_buffer))
            setattr(data, f"y_{key[:-5]}", codes)
    first = data.x[0][0]
    if first.dtype == torch.uint8:  # images: scaled to [0, 1] and normalised on the device
        data.image, data.pixel_max = True, 255
        data.mean = data.std = (0.5,) * first.shape[0]
    return data


def _square_size(found):
    """The first image's size, which every image is resized to where dataset.image_size is not given."""
    from PIL import Image

    offset, size = found.spans[0]
    with open(found.paths[found.shard_of[0]], "rb") as file:
        file.seek(offset)
        with Image.open(io.BytesIO(file.read(size))) as image:
            width, height = image.size
    if width != height:
        raise ConfigError(f"dataset.image_size: the first image of {found.paths[0]} is {width}x{height}; give the "
                          f"square size every image is resized to (dataset.image_size=64).")
    return width


def _as_input(ext, image_size, channels):
    if ext == "npy":
        return _array_input
    from torchvision import transforms

    from dlrun.data.vision import load_steps

    return functools.partial(_image_input, steps=transforms.Compose(load_steps(image_size, channels)))
