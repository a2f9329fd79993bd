"""Every option of every group composes with Hydra and passes dlrun's checks."""

import subprocess
import sys

import pytest

from dlrun.api import compose
from dlrun.build import load_components
from dlrun.config import validate
from dlrun.config.listing import groups
from dlrun.config.sources import conf_dir

OPTIONS = [(g, p.stem) for g in groups() for p in sorted((conf_dir() / g).glob("*.yaml"))]
# Options whose required values (???) a user must supply.
REQUIRED = {("dataset", "csv"): ["dataset.path=x.csv", "dataset.target=y"],
            ("dataset", "image_folder"): ["dataset.root=images"], ("dataset", "hdf5"): ["dataset.path=x.h5"]}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group, option):
    cfg = compose([f"{group}={option}", *REQUIRED.get((group, option), [])])
    validate.check_config(cfg)
    load_components(cfg)
    validate.check_components(cfg)


def test_defaults_are_the_documented_ones():
    cfg = compose()
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer.name, cfg.scheduler.name) == ("digits", "mlp", "adam", "none")
    assert cfg.regularization.weight_decay == 0 and cfg.regularization.dropout is None
    assert cfg.device.name == "auto" and cfg.seed == 42


def test_regularization_options_combine_over_none():
    cfg = compose(["regularization=l1", "regularization.weight_decay=0.01"])
    assert cfg.regularization.l1 > 0 and cfg.regularization.weight_decay == 0.01


def _imports_torch(args):
    code = (f"import sys\nfrom dlrun.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('TORCH_LOADED=%s' % ('torch' in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return proc.stdout, proc.stderr.rsplit("TORCH_LOADED=", 1)[1]


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["list"]])
def test_help_cfg_and_list_do_not_import_torch(args):
    out, loaded = _imports_torch(args)
    assert loaded == "False"
    assert out.strip()


def test_help_lists_every_group_and_its_options():
    out, _ = _imports_torch(["--help"])
    for group in groups():
        assert f"{group}:" in out
    assert "cnn" in out and "synthetic_imbalanced" in out and "dlrun list" in out


def _writers():
    from test_torchvision_zoo import write_cifar100, write_emnist, write_stl10, write_svhn
    from test_vision import write_mnist

    return {"cifar100": write_cifar100, "svhn": lambda root: write_svhn(root, train=60),
            "stl10": lambda root: write_stl10(root, train=40),
            "kmnist": lambda root: write_mnist(root, "KMNIST"),
            "emnist": lambda root: write_emnist(root, "balanced", train=120, test=47)}


WRITERS = _writers()


def _needs(group, option, root):
    """Extra overrides (and data on disk) an option needs to run one tiny epoch here."""
    from test_vision import write_cifar10, write_mnist

    images = ["dataset=fake", "dataset.size=40", "dataset.image_size=[3,16,16]", "dataset.num_classes=4",
              "split.val=0.25"]
    if (group, option) == ("dataset", "csv"):
        (root / "d.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(90)))
        return ["dataset.path=" + str(root / "d.csv"), "dataset.target=y"]
    if (group, option) in (("dataset", "mnist"), ("dataset", "fashion_mnist")):
        write_mnist(root, "MNIST" if option == "mnist" else "FashionMNIST")
        return [f"dataset.root={root}", "dataset.download=false", "split.val=0.2"]
    if (group, option) in (("dataset", "cifar10"), ("experiment", "cifar10_tutorial")):
        write_cifar10(root)  # the lesson's preset trains on CIFAR-10's own files
        return [f"dataset.root={root}", "dataset.download=false", "dataset.verify_checksums=false", "split.val=0.2"]
    if group == "dataset" and option in WRITERS:
        WRITERS[option](root)
        unchecked = [] if option in ("kmnist", "emnist") else ["dataset.verify_checksums=false"]
        return [f"dataset.root={root}", "dataset.download=false", *unchecked, "split.val=0.25"]
    if (group, option) == ("dataset", "image_folder"):
        from PIL import Image

        for c in ("a", "b"):
            (root / "img" / c).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (12, 12), "red" if c == "a" else "blue").save(root / "img" / c / f"{i}.png")
        return [f"dataset.root={root / 'img'}", "dataset.image_size=8", "split.val=0.25", "split.test=0.25"]
    if (group, option) == ("dataset", "fake"):
        return images[1:]
    if (group, option) == ("dataset", "hdf5"):
        import numpy as np

        h5py = pytest.importorskip("h5py", reason="the hdf5 extra: pip install 'dlrun[hdf5]'")

        with h5py.File(root / "data.h5", "w") as file:
            file["x"], file["y"] = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
        return [f"dataset.path={root / 'data.h5'}"]
    if (group, option) == ("dataset", "webdataset"):
        import numpy as np

        wds = pytest.importorskip("webdataset", reason="the webdataset extra: pip install 'dlrun[webdataset]'")
        with wds.TarWriter(str(root / "train.tar")) as sink:
            for i in range(40):
                sink.write({"__key__": f"{i:04d}", "npy": np.full(3, i % 2, dtype=np.float32), "cls": i % 2})
        return [f"dataset.urls={root / 'train.tar'}"]
    if option in ("resnet18", "torchvision", "vgg_fast", "cifar10_fast"):
        small = ["model.widths=[8,16,16,16]", "device.compile=false"]
        return images + (small if option not in ("resnet18", "torchvision") else [])
    if group == "loss" and option in ("mse", "l1", "huber"):
        return ["dataset=diabetes"]
    if group == "loss" and option == "bce_with_logits":
        return ["dataset=breast_cancer"]
    return []


RUNNABLE = [(g, o) for g, o in OPTIONS if g not in ("hparams_search",) and (g, o) not in
            (("device", "cuda"), ("device", "mps"))]


@pytest.mark.parametrize("group,option", RUNNABLE, ids=[f"{g}={o}" for g, o in RUNNABLE])
def test_every_option_runs_one_tiny_epoch(group, option, tmp_path):
    import dlrun

    overrides = [f"{group}={option}", *_needs(group, option, tmp_path), "trainer.max_epochs=1", "plots=[]",
                 "report=false", "trainer.progress=false"]
    summary = dlrun.run(overrides, run_dir=tmp_path / "run")
    assert summary["status"] == "completed" and summary["epochs_run"] == 1


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_absent_accelerators_are_a_clear_error(name):
    import torch

    from dlrun.errors import ConfigError
    from dlrun.train.device import available, select

    if name in available():
        assert select(name).type == name
        return
    with pytest.raises(ConfigError, match=f"no {name.upper()} device is available"):
        select(name)
    assert torch.device("cpu") == select("cpu")


def test_list_shows_the_ranges_that_validation_enforces():
    out, _ = _imports_torch(["list", "optimizer", "trainer", "regularization", "model"])
    flat = " ".join(out.replace("│", " ").split())  # a cell's text, across its wrapped lines
    assert "lr=0.01 (> 0)" in flat and "momentum=0.0 (in [0, 1))" in flat and "mode=auto (auto | min | max)" in flat
    # every choice key shows its allowed values, read from the code that implements them
    from dlrun.data.batches import AUGMENTATIONS
    from dlrun.data.sampling import SAMPLING
    from dlrun.models.base import INITS

    assert f"augment=standard (null | {' | '.join(AUGMENTATIONS)})" in flat
    assert f"sampling=shuffle ({' | '.join(SAMPLING)})" in flat
    assert f"init=default (default | {' | '.join(INITS)})" in flat
    assert "early_stopping.enabled=true" in flat and "trainer.progress" not in flat
    assert "dropout_at=[flatten, hidden] (blocks | flatten | hidden)" in flat  # a list of words is no markup


def test_the_schema_reads_each_choice_list_from_the_table_that_implements_it():
    """Each table the schema names exists, and its names are the ones the schema allows
    (the listing test above reads the same tables before torch is imported)."""
    import importlib

    from dlrun.config import schema

    tables = [f.metadata["choices"] for _, f in schema.leaves() if isinstance(f.metadata.get("choices"), schema.Table)]
    tables += [a.choices for a in schema.ARGUMENTS.values() if isinstance(a.choices, schema.Table)]
    assert len(tables) >= 7
    for table in tables:
        loaded = getattr(importlib.import_module(table.module), table.table)
        assert table.names() == [*table.extra, *loaded]
