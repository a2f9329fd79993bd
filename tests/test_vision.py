"""Image datasets through torchvision's own classes, on small files the tests
write in the real on-disk formats (no download), and ResNet-18."""

import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from conftest import SMOKE, summary_of
from dlrun.data import DATASETS

RNG = np.random.default_rng(0)


def write_idx(path, array):
    """The IDX format of MNIST's raw files: magic, sizes (big-endian int32), uint8 data."""
    magic = 0x0800 + {1: 1, 3: 3}[array.ndim]
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder, train=60, test=20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = np.arange(n) % 10
        images = RNG.integers(0, 50, (n, 28, 28))
        images[np.arange(n), labels * 2 + 4, 4:24] = 255  # a bright row whose height encodes the class
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_cifar10(root, per_batch=12, test=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(n):
        return {"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(np.arange(n) % 10)}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test), protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_readers_load_the_idx_files(tmp_path, name, folder):
    write_mnist(tmp_path, folder)
    data = DATASETS.build({"name": name, "root": str(tmp_path), "download": False})
    assert tuple(data.x.shape) == (60, 1, 28, 28) and str(data.x.dtype) == "torch.uint8"
    assert tuple(data.x_test.shape) == (20, 1, 28, 28) and len(data.class_names) == 10
    assert data.y[:3].tolist() == [0, 1, 2]


def test_cifar10_reader_loads_the_pickled_batches(tmp_path):
    write_cifar10(tmp_path)
    data = DATASETS.build({"name": "cifar10", "root": str(tmp_path), "download": False, "verify_checksums": False})
    assert tuple(data.x.shape) == (60, 3, 32, 32) and tuple(data.x_test.shape) == (20, 3, 32, 32)
    assert data.class_names[0] == "airplane" and len(data.mean) == 3


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    from dlrun.errors import DlrunError

    write_cifar10(tmp_path)
    with pytest.raises(DlrunError, match="cifar-10-batches-py"):
        DATASETS.build({"name": "cifar10", "root": str(tmp_path), "download": False})


@pytest.mark.slow
def test_mnist_cnn_run_through_the_cli(cli):
    write_mnist(cli.cwd / "data", "MNIST")
    cli(*SMOKE, "dataset=mnist", "dataset.root=data", "dataset.download=false", "model=cnn",
        "split.val=0.2", "plots=[misclassified,confusion]", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["sizes"] == {"train": 48, "val": 12, "test": 20}
    assert summary["classes"][0] == "0 - zero"


@pytest.mark.slow
def test_cifar10_with_augmentation_through_the_cli(cli):
    write_cifar10(cli.cwd / "data")
    cli(*SMOKE, "dataset=cifar10", "dataset.root=data", "dataset.download=false", "dataset.verify_checksums=false",
        "model=cnn", "regularization=augment", "split.val=0.2", "plots=[misclassified]", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["status"] == "completed" and summary["sizes"]["test"] == 20


@pytest.mark.slow
def test_image_folder_streams_through_a_dataloader(cli):
    for _c, colour in enumerate(["red", "blue", "green"]):
        folder = cli.cwd / "images" / f"class_{colour}"
        folder.mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20 + i, 24), colour).save(folder / f"{i}.png")
    cli(*SMOKE, "dataset=image_folder", "dataset.root=images", "dataset.image_size=16", "model=cnn",
        "split.val=0.25", "split.test=0.25", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["classes"] == ["class_blue", "class_green", "class_red"]
    assert sum(summary["sizes"].values()) == 24


@pytest.mark.slow
def test_resnet18_on_fake_data(cli):
    cli(*SMOKE, "dataset=fake", "dataset.size=40", "dataset.image_size=[3,16,16]", "dataset.num_classes=4",
        "model=resnet18", "trainer.max_epochs=1", "trainer.batch_size=20", "plots=[]", "hydra.run.dir=run")
    assert summary_of(cli.cwd / "run")["status"] == "completed"


@pytest.mark.slow
def test_pretrained_weights_offline_is_a_clear_error(cli, tmp_path):
    # A proxy on a closed local port makes the download fail here and on any machine that is online.
    offline = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    proc = cli(*SMOKE, "dataset=fake", "dataset.size=40", "dataset.num_classes=2", "model=resnet18", "model.pretrained=true",
               env={"TORCH_HOME": str(tmp_path / "torch_home"), **offline}, check=False)
    assert proc.returncode == 1
    message = " ".join(proc.stderr.split())
    assert "could not download the ResNet-18 ImageNet weights" in message and "model.pretrained=false" in message
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cifar10_fast_recipe_runs_on_cifar_shaped_fake_data(cli):
    """bf16 autocast, channels_last, device augmentation and one-cycle, on CPU (compile is left to GPUs)."""
    cli("experiment=cifar10_fast", "trainer.progress=false", "dataset=fake", "dataset.size=80",
        "model.widths=[8,16,16,16]", "device.compile=false", "trainer.batch_size=16", "trainer.max_epochs=2",
        "split.val=0.2", "plots=[]", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
    assert summary["model"] == "vgg_fast"
