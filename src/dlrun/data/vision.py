"""Image datasets through torchvision's own dataset classes and download code.

MNIST, Fashion-MNIST, CIFAR-10 and FakeData are held in memory as uint8
tensors; ImageFolder streams through a DataLoader.
"""

from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import DATASETS, Data
from dlrun.errors import DlrunError

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"]


def _open(cls, name, root, download, folder, files, **kwargs):
    """Both splits of a torchvision dataset, or one clear paragraph saying how to get it."""
    root = Path(root).expanduser()
    try:
        return cls(str(root), train=True, download=download, **kwargs), cls(str(root), train=False, **kwargs)
    except (RuntimeError, OSError) as exc:
        where = root / folder
        how = ("downloading them failed" if download else "dataset.download=false")
        raise DlrunError(
            f"dataset={name}: its files are not in {where} (expected {', '.join(files)}) and {how} "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Run once on a machine with "
            f"internet access and dataset.download=true, or copy those files into {where}, or point "
            f"dataset.root (or the DLRUN_DATA environment variable) at a directory that holds them."
        ) from None


def _mnist_like(cls, name, folder, mean, std, root, download):
    train, test = _open(cls, name, root, download, folder, MNIST_FILES)
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


@DATASETS.register("cifar10")
def cifar10(root="~/.cache/dlrun/data", download=True, verify_checksums=True):
    """CIFAR-10; verify_checksums=false accepts re-packed copies of the batch files."""
    from torchvision.datasets import CIFAR10

    cls = CIFAR10 if verify_checksums else _without_checksums(CIFAR10)
    train, test = _open(cls, "cifar10", root, download, "cifar-10-batches-py", CIFAR10_FILES)

    def images(split):
        return torch.from_numpy(np.ascontiguousarray(split.data)).permute(0, 3, 1, 2).contiguous()

    return Data(
        x=images(train), y=train.targets, x_test=images(test), y_test=test.targets, class_names=list(train.classes),
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), image=True,
    )


def _without_checksums(cifar_class):
    """The CIFAR-10 class with every MD5 sum cleared: torchvision then only checks that the files exist."""

    class UncheckedCIFAR10(cifar_class):
        train_list = [[name, None] for name, _ in cifar_class.train_list]
        test_list = [[name, None] for name, _ in cifar_class.test_list]
        meta = {**cifar_class.meta, "md5": None}

    return UncheckedCIFAR10


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


@DATASETS.register("image_folder")
def image_folder(root, image_size=64, channels=3):
    """A class-per-sub-folder image directory, streamed through a DataLoader."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DlrunError(f"dataset.root={root}: no such directory. It must hold one sub-folder of images per class.")
    steps = [transforms.Resize((image_size, image_size))]
    if channels == 1:
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    try:
        dataset = ImageFolder(str(folder), transform=transforms.Compose(steps), loader=_load_image)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DlrunError(f"dataset.root={root}: {exc}") from None
    _check_images(root, [path for path, _ in dataset.samples])
    return Data(x=dataset, y=dataset.targets, class_names=list(dataset.classes),
                mean=(0.5,) * channels, std=(0.5,) * channels, image=True)
