"""Image datasets through torchvision's own dataset classes and download code.

MNIST, Fashion-MNIST, KMNIST, EMNIST, CIFAR-10, CIFAR-100, SVHN, STL-10 and FakeData
are held in memory as uint8 tensors (on the training device when they fit); an image folder
is decoded once into the data cache (decoded.py) and held so too, or read from the cache row by
row when it does not fit.
"""

from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import DATASETS, Data, LazyRows, fits_in_memory
from dlrun.errors import ConfigError, DlrunError, unknown_choice

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"]


def _open(cls, name, root, download, folder, files, splits=({"train": True}, {"train": False}), **kwargs):
    """Both splits of a torchvision dataset (`splits`: the arguments that pick each), or one
    clear paragraph saying how to get it."""
    root = Path(root).expanduser()
    try:
        return cls(str(root), download=download, **splits[0], **kwargs), cls(str(root), **splits[1], **kwargs)
    except (RuntimeError, OSError) as exc:
        where = root / folder
        how = ("downloading them failed" if download else "dataset.download=false")
        raise DlrunError(
            f"dataset={name}: its files are not in {where} (expected {', '.join(files)}) and {how} "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Run once on a machine with "
            f"internet access and dataset.download=true, or copy those files into {where}, or point "
            f"dataset.root (or the DLRUN_DATA environment variable) at a directory that holds them."
        ) from None


def _checked(cls, verify_checksums):
    """`cls`, or (verify_checksums=false) a subclass with every MD5 sum cleared: torchvision then
    only checks that the files exist, which accepts re-packed copies."""
    if verify_checksums:
        return cls
    cleared = {}
    for attr in ("train_list", "test_list"):
        if hasattr(cls, attr):
            cleared[attr] = [[name, None] for name, _ in getattr(cls, attr)]
    if hasattr(cls, "meta"):
        cleared["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        cleared["split_list"] = {split: [url, name, None] for split, (url, name, _) in cls.split_list.items()}
    return type(f"Unchecked{cls.__name__}", (cls,), cleared)


def _hwc(array):
    """(N, H, W, C) uint8 images as an (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()


def _mnist_like(cls, name, folder, mean, std, root, download, files=MNIST_FILES, **kwargs):
    train, test = _open(cls, name, root, download, folder, files, **kwargs)
    return Data(
        x=train.data.unsqueeze(1), y=train.targets, x_test=test.data.unsqueeze(1), y_test=test.targets,
        class_names=list(train.classes), mean=mean, std=std, image=True,
    )


@DATASETS.register("mnist")
def mnist(root="~/.cache/dlrun/data", download=True):
    from torchvision.datasets import MNIST

    return _mnist_like(MNIST, "mnist", "MNIST/raw", (0.1307,), (0.3081,), root, download)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root="~/.cache/dlrun/data", download=True):
    from torchvision.datasets import FashionMNIST

    return _mnist_like(FashionMNIST, "fashion_mnist", "FashionMNIST/raw", (0.2860,), (0.3530,), root, download)


@DATASETS.register("kmnist")
def kmnist(root="~/.cache/dlrun/data", download=True):
    """Kuzushiji-MNIST: ten cursive Japanese characters, in MNIST's format."""
    from torchvision.datasets import KMNIST

    return _mnist_like(KMNIST, "kmnist", "KMNIST/raw", (0.1918,), (0.3483,), root, download)


@DATASETS.register("emnist")
def emnist(root="~/.cache/dlrun/data", download=True, split="balanced"):
    """EMNIST handwritten characters (split: balanced, byclass, bymerge, letters, digits, mnist).
    The files store each image transposed; they are turned upright here. The letters split
    numbers its classes from 1: they become 0..25 (a..z)."""
    from torchvision.datasets import EMNIST

    if split not in EMNIST.splits:
        raise ConfigError(unknown_choice("dataset.split", split, EMNIST.splits))
    files = [f"emnist-{split}-{part}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
             for part in ("train", "test") for kind in ("images", "labels")]
    data = _mnist_like(EMNIST, "emnist", "EMNIST/raw", (0.1751,), (0.3332,), root, download, files, split=split)
    data.x, data.x_test = data.x.transpose(-1, -2).contiguous(), data.x_test.transpose(-1, -2).contiguous()
    if split == "letters":
        data.y, data.y_test, data.class_names = data.y - 1, data.y_test - 1, data.class_names[1:]
    return data


def _cifar(cls, name, folder, files, mean, std, root, download, verify_checksums):
    train, test = _open(_checked(cls, verify_checksums), name, root, download, folder, files)
    return Data(x=_hwc(train.data), y=train.targets, x_test=_hwc(test.data), y_test=test.targets,
                class_names=list(train.classes), mean=mean, std=std, image=True)


@DATASETS.register("cifar10")
def cifar10(root="~/.cache/dlrun/data", download=True, verify_checksums=True):
    """CIFAR-10; verify_checksums=false accepts re-packed copies of the batch files."""
    from torchvision.datasets import CIFAR10

    return _cifar(CIFAR10, "cifar10", "cifar-10-batches-py", CIFAR10_FILES, (0.4914, 0.4822, 0.4465),
                  (0.2470, 0.2435, 0.2616), root, download, verify_checksums)


@DATASETS.register("cifar100")
def cifar100(root="~/.cache/dlrun/data", download=True, verify_checksums=True):
    """CIFAR-100 (its 100 fine classes); verify_checksums=false accepts re-packed copies."""
    from torchvision.datasets import CIFAR100

    return _cifar(CIFAR100, "cifar100", "cifar-100-python", ["train", "test", "meta"], (0.5071, 0.4865, 0.4409),
                  (0.2673, 0.2564, 0.2762), root, download, verify_checksums)


@DATASETS.register("svhn")
def svhn(root="~/.cache/dlrun/data", download=True, verify_checksums=True):
    """Street View House Numbers (32x32 colour digits; the train and test .mat files)."""
    from torchvision.datasets import SVHN

    train, test = _open(_checked(SVHN, verify_checksums), "svhn", root, download, ".",
                        ["train_32x32.mat", "test_32x32.mat"], splits=({"split": "train"}, {"split": "test"}))
    return Data(
        x=torch.from_numpy(train.data), y=train.labels, x_test=torch.from_numpy(test.data), y_test=test.labels,
        class_names=[str(d) for d in range(10)], mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
        image=True,
    )


@DATASETS.register("stl10")
def stl10(root="~/.cache/dlrun/data", download=True, verify_checksums=True):
    """STL-10's labelled 96x96 images (5,000 train, 8,000 test), held in memory."""
    from torchvision.datasets import STL10

    train, test = _open(_checked(STL10, verify_checksums), "stl10", root, download, "stl10_binary",
                        ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"],
                        splits=({"split": "train"}, {"split": "test"}))
    return Data(
        x=torch.from_numpy(train.data), y=train.labels, x_test=torch.from_numpy(test.data), y_test=test.labels,
        class_names=list(train.classes), mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713), image=True,
    )


@DATASETS.register("fake")
def fake(size=600, image_size=(3, 32, 32), num_classes=10, seed=0):
    """torchvision FakeData, materialised as uint8 tensors."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    dataset = FakeData(size=size, image_size=tuple(image_size), num_classes=num_classes, random_offset=seed)
    pairs = [dataset[i] for i in range(size)]
    x = torch.stack([pil_to_tensor(img) for img, _ in pairs])
    y = torch.tensor([int(label) for _, label in pairs])
    channels = x.shape[1]
    return Data(x=x, y=y, class_names=[f"class{i}" for i in range(num_classes)],
                mean=(0.5,) * channels, std=(0.5,) * channels, image=True)


def _check_images(root, paths):
    """Every file must be an image PIL can identify (it reads only the header: fast even
    for large folders), so that a stray file is named now, not as a crash mid-epoch."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for path in paths:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError):
            bad.append(path)
    if bad:
        raise DlrunError(f"dataset.root={root}: {len(bad)} of {len(paths)} files are not readable images, "
                         f"the first is {bad[0]}; remove or replace them.")


def _load_image(path):
    """ImageFolder's loader, naming the file when its data cannot be decoded (a truncated file)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise DlrunError(f"image {path} cannot be decoded ({exc}); remove or replace it.") from None


def load_steps(image_size, channels):
    """What an image folder does to each RGB image before it becomes a tensor: resize, and grey
    for one channel (task=predict loads new images through the same steps)."""
    from torchvision import transforms

    return [transforms.Resize((image_size, image_size))] + ([transforms.Grayscale(1)] if channels == 1 else [])


@DATASETS.register("image_folder")
def image_folder(root, image_size=64, channels=3, cache=True, cache_dir="~/.cache/dlrun/data", in_memory=None,
                 labels=None):
    """A class-per-sub-folder image directory (or, with `labels`, the images a CSV file names with
    their label lists: a multi-label task): decoded once into the data cache (`cache`, see
    decoded.py) and held in memory when it fits (or `in_memory` says so), read from the cache's
    memory map row by row when it does not; without `cache`, decoded again in every epoch
    through a DataLoader."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"dataset.root={root}: no such directory. It must hold one sub-folder of images per class"
                          f"{' (or the images dataset.labels names)' if labels else ''}.")
    steps = load_steps(image_size, channels)
    to_tensor = transforms.Compose([*steps, transforms.ToTensor()])
    if labels is not None:
        paths, targets, names = label_lists(folder, labels)
        dataset = LabelledFiles(paths, targets, to_tensor)
    else:
        try:
            dataset = ImageFolder(str(folder), transform=to_tensor, loader=_load_image)
        except (FileNotFoundError, RuntimeError) as exc:
            raise DlrunError(f"dataset.root={root}: {exc}") from None
        paths, targets, names = [path for path, _ in dataset.samples], dataset.targets, list(dataset.classes)
    _check_images(root, paths)
    x = _decoded_once(paths, transforms.Compose(steps), (image_size, channels), cache_dir, targets,
                      in_memory) if cache else dataset
    return Data(x=x, y=targets, task="multilabel" if labels is not None else "multiclass", class_names=names,
                mean=(0.5,) * channels, std=(0.5,) * channels, image=True, pixel_max=255,
                input_spec={"load_size": image_size, "channels": channels})


def label_lists(folder, labels):
    """The images a CSV file names (column `file`, relative to the folder) and their labels (column
    `labels`, names separated by ';', empty for none): paths, 0/1 targets (N, labels), label names."""
    import csv

    path = Path(labels).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset.labels={labels}: no such file. It must be a CSV file with the columns file and "
                          f"labels (names separated by ';').")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "labels"} <= set(rows[0]):
        raise ConfigError(f"dataset.labels={labels}: the file needs the columns file and labels (names separated by "
                          f"';'); it has {', '.join(rows[0]) if rows else 'no rows'}.")
    lists = [[name.strip() for name in (row["labels"] or "").split(";") if name.strip()] for row in rows]
    names = sorted({name for names in lists for name in names})
    targets = np.zeros((len(rows), len(names)), dtype=np.float32)
    for i, found in enumerate(lists):
        targets[i, [names.index(name) for name in found]] = 1
    paths = [str(folder / row["file"]) for row in rows]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"dataset.labels={labels} names {len(missing)} file(s) not in dataset.root={folder}, such "
                          f"as {missing[0]}.")
    return paths, targets, names


class LabelledFiles(torch.utils.data.Dataset):
    """Image files and their label rows, decoded when read."""

    def __init__(self, paths, targets, transform):
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(_load_image(self.paths[index])), self.targets[index]


def _decoded_once(paths, steps, settings, cache_dir, labels, in_memory):
    """The folder's uint8 images from the data cache: a tensor when they fit in memory (or
    `in_memory`), else rows read from the cache's memory map."""
    import functools

    from dlrun import console
    from dlrun.data import decoded

    load = functools.partial(_decoded_image, steps=steps)
    mapped = decoded.decoded(paths, load, {"image_size": settings[0], "channels": settings[1]}, cache_dir,
                             say=lambda text: console.say(f"[dim]>[/] {text}"))
    if fits_in_memory(mapped.nbytes) if in_memory is None else in_memory:
        return torch.from_numpy(np.array(mapped))
    return LazyRows(functools.partial(np.load, mapped.filename, mmap_mode="r"), np.asarray(labels), _row_tensor)


def _decoded_image(path, steps):
    """What ToTensor would scale to [0, 1], kept as bytes: (C, S, S) uint8."""
    pixels = np.asarray(steps(_load_image(path)), dtype=np.uint8)
    return np.ascontiguousarray(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))


def _row_tensor(row):
    return torch.from_numpy(np.array(row))  # a copy: the map is read-only
