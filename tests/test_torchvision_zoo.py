"""More torchvision datasets (CIFAR-100, SVHN, KMNIST, EMNIST, STL-10) on small files in
their real on-disk formats, dataset.resize, and every torchvision classifier by name."""

import pickle

import numpy as np
import pytest
import torch

from conftest import SMOKE, summary_of
from dlrun.data import DATASETS
from dlrun.errors import ConfigError, DlrunError
from dlrun.models import build as build_model
from dlrun.models.torchvision_models import architectures, new_head
from test_vision import write_idx

RNG = np.random.default_rng(1)


def write_cifar100(root, train=30, test=10):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        split = {"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(np.arange(n) % 5),
                 "coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(split, protocol=2))
    names = ["apple", "aquarium_fish", "baby", "bear", "beaver"]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names, "coarse_label_names": ["x"]}, protocol=2))


def write_svhn(root, train=30, test=10):
    from scipy.io import savemat

    for name, n in (("train", train), ("test", test)):
        labels = np.arange(n) % 10 + 1  # SVHN writes the digit 0 as class 10
        images = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N) as in the .mat files
        images[0, 0, 0, :] = labels  # a marker pixel that identifies each image
        savemat(root / f"{name}_32x32.mat", {"X": images, "y": labels.reshape(-1, 1).astype(np.uint8)})


def write_emnist(root, split="letters", train=52, test=26):
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    for part, n in (("train", train), ("test", test)):
        labels = np.arange(n) % 26 + 1  # letters: 1..26
        upright = np.zeros((n, 28, 28), dtype=np.uint8)
        upright[:, 2, :] = 255  # a bright top row...
        write_idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", upright.transpose(0, 2, 1))  # ...stored transposed
        write_idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", labels)


def write_stl10(root, train=20, test=10):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        (folder / f"{name}_X.bin").write_bytes(RNG.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tobytes())
        (folder / f"{name}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())  # 1..10
    (folder / "unlabeled_X.bin").write_bytes(RNG.integers(0, 256, 3 * 96 * 96, dtype=np.uint8).tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")


def test_cifar100_reads_its_fine_classes(tmp_path):
    write_cifar100(tmp_path)
    data = DATASETS.build({"name": "cifar100", "root": str(tmp_path), "download": False, "verify_checksums": False})
    assert tuple(data.x.shape) == (30, 3, 32, 32) and data.x.dtype == torch.uint8 and len(data.x_test) == 10
    assert data.class_names[:2] == ["apple", "aquarium_fish"] and list(data.y[:6]) == [0, 1, 2, 3, 4, 0]
    with pytest.raises(DlrunError, match="cifar-100-python"):  # checksums are verified by default
        DATASETS.build({"name": "cifar100", "root": str(tmp_path), "download": False})


def test_svhn_reads_the_mat_files_with_the_digit_zero_as_class_zero(tmp_path):
    write_svhn(tmp_path)
    data = DATASETS.build({"name": "svhn", "root": str(tmp_path), "download": False, "verify_checksums": False})
    assert tuple(data.x.shape) == (30, 3, 32, 32) and len(data.x_test) == 10
    labels = np.asarray(data.y)
    assert labels[9] == 0 and labels[0] == 1
    assert data.x[:, 0, 0, 0].tolist() == (np.arange(30) % 10 + 1).tolist()  # image i is the file's image i


def test_kmnist_and_emnist_letters(tmp_path):
    from test_vision import write_mnist

    write_mnist(tmp_path, "KMNIST")
    kmnist = DATASETS.build({"name": "kmnist", "root": str(tmp_path), "download": False})
    assert tuple(kmnist.x.shape) == (60, 1, 28, 28) and len(kmnist.class_names) == 10
    write_emnist(tmp_path)
    letters = DATASETS.build({"name": "emnist", "root": str(tmp_path), "download": False, "split": "letters"})
    assert letters.class_names[0] == "a" and len(letters.class_names) == 26
    assert int(np.asarray(letters.y).min()) == 0 and int(np.asarray(letters.y).max()) == 25
    assert (letters.x[:, 0, 2, :] == 255).all()  # upright again: the bright row is a row
    with pytest.raises(ConfigError, match="dataset.split"):
        DATASETS.build({"name": "emnist", "root": str(tmp_path), "download": False, "split": "letter"})


def test_stl10_reads_the_binary_files(tmp_path):
    write_stl10(tmp_path)
    data = DATASETS.build({"name": "stl10", "root": str(tmp_path), "download": False, "verify_checksums": False})
    assert tuple(data.x.shape) == (20, 3, 96, 96) and len(data.x_test) == 10
    assert data.class_names[2] == "car" and int(np.asarray(data.y)[0]) == 0


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DlrunError, match=r"dataset=svhn: its files are not in .* train_32x32.mat.*DLRUN_DATA"):
        DATASETS.build({"name": "svhn", "root": str(tmp_path), "download": False})


@pytest.mark.parametrize("arch", [a for a in architectures() if not a.startswith("regnet")])
def test_every_classifier_gets_a_new_head(arch):
    """Built on the meta device (no memory, no time): the ImageNet classifier is found and replaced."""
    from torchvision import models

    from dlrun.models.torchvision_models import AUXILIARY

    with torch.device("meta"):
        net = new_head(models.get_model(arch, **AUXILIARY.get(arch, {})), 7, arch)
    final = net.head if isinstance(net.head, torch.nn.Linear) else [m for m in net.modules()
                                                                   if isinstance(m, torch.nn.Conv2d)][-1]
    assert getattr(final, "out_features", getattr(final, "out_channels", None)) == 7
    assert not any(getattr(m, "out_features", None) == 1000 for m in net.modules())


@pytest.mark.parametrize("arch,shape,options", [
    ("regnet_x_400mf", (3, 32, 32), {}), ("resnet18", (1, 28, 28), {"small_input": True}),
    ("mobilenet_v3_small", (3, 32, 32), {}), ("squeezenet1_1", (3, 64, 64), {}), ("googlenet", (3, 64, 64), {})])
def test_torchvision_models_train_on_small_inputs(arch, shape, options):
    net = build_model({"name": "torchvision", "arch": arch, **options}, shape, 5)
    out = net(torch.randn(4, *shape))
    assert out.shape == (4, 5)
    out.sum().backward()
    final = net.head if isinstance(net.head, torch.nn.Linear) else [m for m in net.modules()
                                                                   if isinstance(m, torch.nn.Conv2d)][-1]
    assert final.weight.grad is not None and final.weight.grad.abs().sum() > 0  # the new classifier learns


def test_a_model_that_needs_224_pixels_says_how_to_resize():
    with pytest.raises(ConfigError, match=r"model=torchvision does not fit .*dataset.resize=224"):
        build_model({"name": "torchvision", "arch": "vit_b_16"}, (3, 32, 32), 5)
    with pytest.raises(ConfigError, match="model.arch=resnet500 is not known. Did you mean 'resnet50'"):
        build_model({"name": "torchvision", "arch": "resnet500"}, (3, 32, 32), 5)


def test_pretrained_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    """torchvision's own loader reads a cached file without downloading it: these weights must
    arrive in the model (the first convolution summed over RGB for grey inputs)."""
    from torchvision import models

    weights = models.get_model_weights("resnet18").DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    donor = models.resnet18().state_dict()
    torch.save(donor, cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = build_model({"name": "torchvision", "arch": "resnet18", "pretrained": True}, (1, 32, 32), 3)
    assert torch.equal(net.features.layer4[1].conv2.weight, donor["layer4.1.conv2.weight"])
    assert torch.allclose(net.features.conv1.weight, donor["conv1.weight"].sum(1, keepdim=True))
    assert net.head.out_features == 3


@pytest.mark.slow
def test_resized_stl10_through_a_torchvision_model_on_the_command_line(cli):
    write_stl10(cli.cwd / "data", train=40, test=10)
    cli(*SMOKE, "dataset=stl10", "dataset.root=data", "dataset.download=false", "dataset.verify_checksums=false",
        "dataset.resize=64", "model=torchvision", "model.arch=mobilenet_v3_small", "split.val=0.25",
        "trainer.batch_size=10", "trainer.max_epochs=1", "plots=[samples]", "export=torchscript", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["status"] == "completed" and summary["model_summary"]["input_shape"] == [3, 64, 64]
    record = torch.load(cli.cwd / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert record["preprocessing"]["resize"] == 64
