"""An image folder decoded once into the data cache: reused by the next run, rebuilt when a file
changes, and training the same numbers as decoding every epoch, held in memory or read from the
cache's memory map."""

import numpy as np
import pytest
from PIL import Image

import dlrun
from conftest import SMOKE
from dlrun.data import base
from dlrun.results import artifacts
from dlrun.train.trainer import MEASURED

pytest.importorskip("torchvision", reason="image folders are read with torchvision")


def write_folder(root, files=12):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(files):
            pixels = rng.integers(0, 200, (20, 18, 3), dtype=np.uint8) + np.uint8(40 * c)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def train(tmp_path, name, *extra):
    overrides = [*SMOKE, "plots=[]", "report=false", "dataset=image_folder", f"dataset.root={tmp_path / 'images'}",
                 "dataset.image_size=16", f"dataset.cache_dir={tmp_path / 'cache'}", "model=cnn", *extra]
    dlrun.run(overrides, run_dir=tmp_path / name)
    return [{k: v for k, v in row.items() if k not in MEASURED}
            for row in artifacts.read_csv(tmp_path / name / "metrics.csv")]


def cached(tmp_path):
    return sorted((tmp_path / "cache" / "image_folders").glob("*.npy"))


def test_decoded_once_reused_and_rebuilt_when_a_file_changes(tmp_path, capsys):
    write_folder(tmp_path / "images")
    first = train(tmp_path, "first")
    assert "decoding 24 images once into" in capsys.readouterr().out
    (made,) = cached(tmp_path)
    assert np.load(made, mmap_mode="r").shape == (24, 3, 16, 16)
    assert train(tmp_path, "again") == first and cached(tmp_path) == [made]
    assert "decoding" not in capsys.readouterr().out
    Image.new("RGB", (20, 18), "white").save(tmp_path / "images" / "cat" / "0.png")
    train(tmp_path, "changed")
    assert len(cached(tmp_path)) == 2 and "decoding 24 images" in capsys.readouterr().out
    assert not list((tmp_path / "cache" / "image_folders").glob(".*"))  # no temporary left


def test_the_cache_trains_what_decoding_every_epoch_trains(tmp_path, monkeypatch):
    write_folder(tmp_path / "images")
    every_epoch = train(tmp_path, "plain", "dataset.cache=false")
    assert train(tmp_path, "held", "dataset.cache=true") == every_epoch
    monkeypatch.setattr(base, "IN_MEMORY_SHARE", 0)  # as if the folder did not fit: rows from the memory map
    assert train(tmp_path, "mapped", "dataset.cache=true", "trainer.num_workers=2") == every_epoch
    monkeypatch.setattr(base, "IN_MEMORY_SHARE", 0.25)
    assert train(tmp_path, "told", "dataset.in_memory=false") == every_epoch


def test_num_workers_auto_takes_this_process_share_of_the_cores(monkeypatch):
    from dlrun.data.batches import MAX_AUTO_WORKERS, worker_count

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert worker_count("auto") == 5 and worker_count(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's two processes on this node share the six cores
    assert worker_count("auto") == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "6")
    assert worker_count("auto") == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert worker_count("auto") == MAX_AUTO_WORKERS


def test_a_folder_read_from_the_map_records_its_loader_and_workers(tmp_path, monkeypatch):
    import json

    from dlrun.data.batches import worker_count

    write_folder(tmp_path / "images")
    monkeypatch.setattr(base, "IN_MEMORY_SHARE", 0)
    train(tmp_path, "mapped", "trainer.num_workers=auto")
    summary = json.loads((tmp_path / "mapped" / "summary.json").read_text())
    assert summary["data_summary"]["batches"] == {"path": "loader", "workers": worker_count("auto"), "size": 128,
                                                  "accumulate": 1}
    monkeypatch.setattr(base, "IN_MEMORY_SHARE", 0.25)
    train(tmp_path, "held")
    summary = json.loads((tmp_path / "held" / "summary.json").read_text())
    assert summary["data_summary"]["batches"] == {"path": "tensor", "workers": 0, "size": 128, "accumulate": 1}
