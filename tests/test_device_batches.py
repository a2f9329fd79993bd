"""Device-resident images are converted and normalised once for the whole tensor where nothing
random happens per batch: the batches are the same numbers, evaluation batches are views."""

import torch

from dlrun.data.base import Part
from dlrun.data.batches import Augmentation, DeviceTransform, TensorBatches

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _images(n=40):
    generator = torch.Generator().manual_seed(0)
    return Part(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator), torch.arange(n) % 4)


def test_evaluation_batches_are_views_of_one_converted_tensor():
    part, transform = _images(), DeviceTransform(CPU, MEAN, STD)
    batches = TensorBatches(part, 16, CPU, transform, train=False)
    assert batches.x.dtype == torch.float32 and batches.transform is None
    expected = [transform(part.x[i:i + 16], False) for i in range(0, 40, 16)]
    for (x, _), want in zip(batches.epoch(), expected, strict=True):
        assert torch.equal(x, want)
        assert x.untyped_storage().data_ptr() == batches.x.untyped_storage().data_ptr()  # a view, no copy


def test_training_batches_match_the_per_batch_path_and_augmentation_stays_per_batch():
    part, transform = _images(), DeviceTransform(CPU, MEAN, STD)
    once = TensorBatches(part, 16, CPU, transform, train=True, seed=5)
    per_batch = TensorBatches(part, 16, CPU, transform, train=True, seed=5)
    per_batch.x, per_batch.transform = part.x, transform  # as before: uint8, converted at each batch
    for (a, ya), (b, yb) in zip(once.epoch(), per_batch.epoch(), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    flipping = DeviceTransform(CPU, MEAN, STD, Augmentation.of("flip"), torch.Generator())
    augmented = TensorBatches(part, 16, CPU, flipping, train=True)
    assert augmented.x.dtype == torch.uint8 and augmented.transform is not None  # random per batch, per epoch


def test_data_larger_than_the_devices_budget_streams_through_a_dataloader(tmp_path, monkeypatch):
    import dlrun
    from dlrun import build
    from dlrun.data.batches import LoaderBatches, resident_bytes

    data_bytes = []
    monkeypatch.setattr(build, "device_budget", lambda device: 100_000)  # as a GPU with little free memory
    monkeypatch.setattr(build, "resident_bytes", lambda parts: data_bytes.append(resident_bytes(parts)) or
                        data_bytes[-1])
    summary = dlrun.run(["trainer.progress=false", "show_config=none", "model=cnn", "trainer.max_epochs=2", "plots=[]",
                         "report=false"], run_dir=tmp_path / "run")
    assert data_bytes[0] == 1797 * 64 * 4 + 1797 * 8  # digits: float32 pixels and int64 labels
    assert summary["data_summary"]["streamed"] == (
        "the data needs 0.5 MiB on cpu and half of its free memory is 0.1 MiB: batches stream from host memory "
        "through a DataLoader")
    assert summary["status"] == "completed" and summary["test"]["accuracy"] > 0.5
    assert "batches stream from host memory" in (tmp_path / "run" / "run.log").read_text()
    from conftest import built_loop

    monkeypatch.setattr(build, "device_budget", lambda device: 100_000)
    assert isinstance(built_loop("plots=[]").train_batches, LoaderBatches)
