"""trainer.sampling: how each epoch's training rows are drawn, seeded and resumable."""

import pytest
import torch

from conftest import NoStop, StopAt, built_loop
from dlrun.api import compose
from dlrun.data.base import Part
from dlrun.data.batches import DeviceTransform, LoaderBatches, TensorBatches
from dlrun.errors import ConfigError
from dlrun.fit_policy import FitState
from dlrun.trainer import Interrupted

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


def test_a_stop_and_resume_with_replacement_equals_a_straight_run():
    options = ["trainer.sampling=replacement", "trainer.max_epochs=2", "trainer.early_stopping.enabled=false",
               "model.dropout=0.0", "plots=[]", "report=false"]
    straight = built_loop(*options)
    straight.fit(FitState(), lambda name, ckpt: None, NoStop())
    stopped, saved = built_loop(*options), {}
    with pytest.raises(Interrupted):
        stopped.fit(FitState(), saved.__setitem__, StopAt(27))  # mid-way through the second epoch
    resumed = built_loop(*options)
    resumed.fit(resumed.load_state_dict(saved["last"], "last"), lambda name, ckpt: None, NoStop())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(straight.model.head.weight, _shuffled_head(options))


def _shuffled_head(options):
    loop = built_loop(*[o for o in options if not o.startswith("trainer.sampling")])
    loop.fit(FitState(), lambda name, ckpt: None, NoStop())
    return loop.model.head.weight


def test_an_unknown_scheme_and_the_old_key_are_one_clear_line():
    from dlrun import validate

    with pytest.raises(ConfigError, match="sampling=bootstrap is not known. Choose one of: oversample, replacement, shuffle"):
        validate.check_config(compose(["trainer.sampling=bootstrap"]))
    with pytest.raises(ConfigError, match="class_balanced_sampler is now trainer.sampling"):
        compose(["regularization.class_balanced_sampler=true"])
