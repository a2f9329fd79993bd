"""dataset=webdataset on tar shards written by the webdataset package's own TarWriter: images and
arrays, the shards' own test split, the streamed shuffle's order, DataLoader workers, and each
mistake named."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch

import dlrun
from conftest import SMOKE
from dlrun.data import shards
from dlrun.data.sampling import IndexStream, locality_of, streamed_shuffle
from dlrun.errors import ConfigError, DlrunError
from dlrun.results import artifacts
from dlrun.train.trainer import MEASURED

wds = pytest.importorskip("webdataset", reason="the webdataset extra: pip install 'dlrun[webdataset]'")

QUICK = [*SMOKE, "plots=[]", "report=false"]


def write_shards(folder, name="train", shards=3, per_shard=40, kind="png", offset=0):
    """`shards` tar files of digits-like samples: a 12x12 image (.png, or .npy uint8) or 6 floats
    (.npy), and a .cls label (.txt class names with kind="txt")."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(offset)
    for s in range(shards):
        with wds.TarWriter(str(folder / f"{name}-{s:03d}.tar")) as sink:
            for i in range(per_shard):
                label = int(rng.integers(0, 3))
                sample = {"__key__": f"{s:03d}{i:05d}"}
                if kind in ("png", "npy_image"):
                    image = rng.integers(0, 120, (12, 12, 3), dtype=np.uint8) + np.uint8(60 * label)
                    sample["png" if kind == "png" else "npy"] = image if kind == "png" else image.transpose(2, 0, 1)
                    sample["cls"] = label
                else:
                    sample["npy"] = (rng.normal(size=6) + label).astype(np.float32)
                    sample["txt" if kind == "txt" else "cls"] = ["low", "mid", "high"][label] if kind == "txt" else label
                sink.write(sample)
    return f"{folder}/{name}-{{000..{shards - 1:03d}}}.tar"


def train(tmp_path, name, *extra):
    dlrun.run([*QUICK, "dataset=webdataset", *extra], run_dir=tmp_path / name)
    return [{k: v for k, v in row.items() if k not in MEASURED}
            for row in artifacts.read_csv(tmp_path / name / "metrics.csv")]


def test_image_shards_with_their_own_test_split_train_and_test(tmp_path):
    urls = write_shards(tmp_path / "shards")
    test = write_shards(tmp_path / "shards", "test", shards=1, offset=9)
    rows = train(tmp_path, "run", f"dataset.urls='{urls}'", f"dataset.test_urls='{test}'", "model=cnn")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(rows) == 2 and summary["status"] == "completed"
    counts = summary["data_summary"]["class_counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 120 and sum(counts["test"].values()) == 40
    assert summary["data_summary"]["input_shape"] == [3, 12, 12] and summary["data_summary"]["batches"]["path"] == "loader"
    assert summary["test"]["accuracy"] > 0.5  # the classes differ by brightness: the model must see the pixels


def test_arrays_with_text_labels_name_their_classes(tmp_path):
    urls = write_shards(tmp_path / "shards", kind="txt")
    train(tmp_path, "run", f"dataset.urls='{urls}'", "dataset.label=txt", "model=mlp")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(summary["data_summary"]["class_counts"]["train"]) == ["high", "low", "mid"]
    assert summary["data_summary"]["input_shape"] == [6]


def test_workers_read_the_same_batches_as_the_main_process(tmp_path):
    urls = write_shards(tmp_path / "shards", kind="npy_image")
    alone = train(tmp_path, "alone", f"dataset.urls='{urls}'", "model=cnn", "trainer.batch_size=8")
    assert train(tmp_path, "workers", f"dataset.urls='{urls}'", "model=cnn", "trainer.batch_size=8",
                 "trainer.num_workers=2") == alone


def test_the_streamed_shuffle_takes_shards_in_a_fresh_order_through_its_buffer():
    groups = torch.arange(4).repeat_interleave(10)  # 4 shards of 10 rows
    in_order = streamed_shuffle(groups, 1)(None, torch.Generator().manual_seed(0))
    blocks = in_order.view(4, 10)
    assert all(torch.equal(block, torch.arange(10) + block[0]) for block in blocks)  # each shard in order
    assert sorted(blocks[:, 0].tolist()) == [0, 10, 20, 30] and blocks[:, 0].tolist() != [0, 10, 20, 30]
    mixed = streamed_shuffle(groups, 8)(None, torch.Generator().manual_seed(0))
    assert sorted(mixed.tolist()) == list(range(40)) and not torch.equal(mixed, in_order)
    # The same shard order (the buffer draws after it), and the k-th row out is one of the first k + 8 read.
    read_at = {row: k for k, row in enumerate(in_order.tolist())}
    assert all(read_at[row] < k + 8 for k, row in enumerate(mixed.tolist()))


def test_the_index_stream_orders_a_split_of_shards_by_its_shards(tmp_path):
    urls = write_shards(tmp_path / "shards", per_shard=20)
    data = shards.webdataset(urls, shuffle_buffer=1)
    subset = torch.utils.data.Subset(data.x, list(range(0, 60, 2)))  # a split: every other sample
    stream = IndexStream(torch.as_tensor(data.y[::2]), "shuffle", 0, locality=locality_of(subset))
    order = stream.epoch()
    shard_of = (torch.as_tensor(subset.indices)[order] // 20).tolist()
    assert sorted(order.tolist()) == list(range(30))
    assert shard_of == sorted(shard_of, key=shard_of.index)  # one shard after another


def test_mistakes_are_named(tmp_path):
    urls = write_shards(tmp_path / "shards", shards=1)
    with pytest.raises(ConfigError, match="no shard .*train-001.tar"):
        shards.webdataset(str(tmp_path / "shards" / "train-{000..001}.tar"))
    missing = r"sample '00000000' .* has no \.jpg member \(its members: \.cls, \.png\).* Did you mean 'png'"
    with pytest.raises(ConfigError, match=missing):
        shards.webdataset(urls, input="jpg")
    with pytest.raises(ConfigError, match="dataset.label=cl: .* Did you mean 'cls'"):
        shards.webdataset(urls, label="cl")
    packed = tmp_path / "packed.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(tmp_path / "shards" / "train-000.tar", arcname="x.tar")
    with pytest.raises(ConfigError, match="not an uncompressed tar file"):
        shards.webdataset(str(packed))
    with pytest.raises(ConfigError, match="not a local file"):
        shards.webdataset("https://example.org/train-{000..009}.tar")


def test_a_data_file_is_never_unpickled(tmp_path):
    """An .npy member that holds pickled objects is refused: reading data runs no code."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with wds.TarWriter(str(tmp_path / "evil.tar")) as sink:
        sink.write({"__key__": "0", "npy": buffer.getvalue(), "cls": 1})
        sink.write({"__key__": "1", "npy": buffer.getvalue(), "cls": 0})
    with pytest.raises(DlrunError, match="evil.tar: the input of the sample at byte \\d+ cannot be read .*allow_pickle"):
        shards.webdataset(str(tmp_path / "evil.tar"))
