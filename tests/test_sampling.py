"""trainer.sampling: how each epoch's training rows are drawn, seeded and resumable."""

import pytest
import torch

from conftest import StopAt, built_loop
from dlrun.api import compose
from dlrun.data.base import Part
from dlrun.data.batches import DeviceTransform, LoaderBatches, TensorBatches
from dlrun.errors import ConfigError
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState
from dlrun.train.trainer import Interrupted

CPU = torch.device("cpu")


def _rows(batches):
    return torch.cat([x for x, _ in batches.epoch()]).view(-1).long().tolist()


def _part(n=200):
    return Part(torch.arange(n).float().view(n, 1), torch.arange(n) % 4)


def test_replacement_draws_as_many_rows_as_there_are_some_twice_and_reproducibly():
    batches = TensorBatches(_part(), 16, CPU, DeviceTransform(CPU), True, seed=3, sampling="replacement")
    first, second = _rows(batches), _rows(batches)
    assert len(first) == 200 and len(set(first)) < 190  # about 63% distinct rows are expected
    assert first != second  # a fresh draw every epoch
    again = TensorBatches(_part(), 16, CPU, DeviceTransform(CPU), True, seed=3, sampling="replacement")
    assert _rows(again) == first
    shuffled = _rows(TensorBatches(_part(), 16, CPU, DeviceTransform(CPU), True, seed=3))
    assert sorted(shuffled) == list(range(200))  # the default: every row once


def test_replacement_through_a_dataloader():
    dataset = torch.utils.data.TensorDataset(torch.arange(100).float(), torch.arange(100) % 2)
    part = Part(dataset, torch.arange(100) % 2)
    rows = [int(v) for x, _ in LoaderBatches(part, 10, CPU, DeviceTransform(CPU), True, 0, "replacement").epoch()
            for v in x]
    assert len(rows) == 100 and len(set(rows)) < 90


def _batches(path, sampling, shard=(0, 1), batch_size=16, epochs=2):
    """The rows and labels of two epochs' batches, the data held as tensors or streamed."""
    part = _part(203)  # not a multiple of the batch size, nor of two processes
    if path == "loader":
        part = Part(torch.utils.data.TensorDataset(part.x, part.y), part.y)
        batches = LoaderBatches(part, batch_size, CPU, DeviceTransform(CPU), True, 5, sampling, 0, shard)
    else:
        batches = TensorBatches(part, batch_size, CPU, DeviceTransform(CPU), True, 5, sampling, shard)
    return [[(x.view(-1).long().tolist(), y.tolist()) for x, y in batches.epoch()] for _ in range(epochs)]


@pytest.mark.parametrize("sampling", ["shuffle", "replacement", "oversample", "undersample"])
@pytest.mark.parametrize("shard", [(0, 1), (0, 2), (1, 2)])
def test_tensors_and_a_dataloader_draw_the_same_batches(sampling, shard):
    tensors = _batches("tensor", sampling, shard)
    assert _batches("loader", sampling, shard) == tensors
    assert tensors[0] != tensors[1]  # a fresh draw every epoch
    if shard != (0, 1):  # the processes' shares are disjoint where every row is drawn once
        other = _batches("tensor", sampling, (1 - shard[0], 2))
        rows = [r for batch in tensors[0] + other[0] for r in batch[0]]
        assert sampling != "shuffle" or len(set(rows)) == len(rows) == 202


def test_a_mid_epoch_resume_through_a_dataloader_continues_the_same_rows():
    part = _part(100)
    streamed = Part(torch.utils.data.TensorDataset(part.x, part.y), part.y)
    first = LoaderBatches(streamed, 10, CPU, DeviceTransform(CPU), True, 1, "oversample")
    epoch = first.epoch()
    seen = [next(epoch)[0].view(-1).tolist() for _ in range(3)]
    state = first.state_dict(mid_epoch=True)
    rest = [x.view(-1).tolist() for x, _ in epoch]
    again = LoaderBatches(streamed, 10, CPU, DeviceTransform(CPU), True, 1, "oversample")
    again.load_state_dict(state)
    assert [x.view(-1).tolist() for x, _ in again.epoch(start=3)] == rest and len(seen + rest) == 10
    assert state["path"] == "loader"


def test_a_resume_keeps_the_path_its_run_took():
    from dlrun import build

    data = type("Data", (), {"extra": {}})()
    build.keep_path(data, {"batches": {"shuffle": None, "path": "loader"}})
    assert data.extra["streamed"] and "DataLoader" in data.extra["streamed_why"]


def test_a_stop_and_resume_with_replacement_equals_a_straight_run():
    options = ["trainer.sampling=replacement", "trainer.max_epochs=2", "trainer.early_stopping.enabled=false",
               "model.dropout=0.0", "plots=[]", "report=false"]
    straight = built_loop(*options)
    straight.fit(FitState(), lambda name, ckpt: None, Stop())
    stopped, saved = built_loop(*options), {}
    with pytest.raises(Interrupted):
        stopped.fit(FitState(), saved.__setitem__, StopAt(27))  # mid-way through the second epoch
    resumed = built_loop(*options)
    resumed.fit(resumed.load_state_dict(saved["last"], "last"), lambda name, ckpt: None, Stop())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(straight.model.head.weight, _shuffled_head(options))


def _shuffled_head(options):
    loop = built_loop(*[o for o in options if not o.startswith("trainer.sampling")])
    loop.fit(FitState(), lambda name, ckpt: None, Stop())
    return loop.model.head.weight


def test_an_unknown_scheme_and_the_old_key_are_one_clear_line():
    from dlrun.config import validate

    with pytest.raises(ConfigError, match="sampling=bootstrap is not known. Choose one of: oversample, replacement, shuffle"):
        validate.check_config(compose(["trainer.sampling=bootstrap"]))
    with pytest.raises(ConfigError, match="class_balanced_sampler is now trainer.sampling"):
        compose(["regularization.class_balanced_sampler=true"])
