"""The learning-rate range test: suggestions where the loss falls (not at an early spike),
every state restored exactly, and the real command's outputs."""

import copy
import csv

import numpy as np
import pytest
import torch

from conftest import summary_of
from dlrun import build
from dlrun.api import compose
from dlrun.tasks import lr_finder
from dlrun.train import device as devices


def _curve(spike=False):
    """A textbook range test: a plateau, a descent between lr 1e-3 and 1e-2, a blow-up."""
    lrs = [lr_finder.lr_at(i, 200, 1e-7, 10) for i in range(200)]
    x = np.log10(lrs)
    loss = 2.3 - 2.0 / (1 + np.exp(-(x + 2.5) * 6)) + np.where(x > -1.3, (x + 1.3) * 8, 0)
    if spike:
        loss[2:6] = 40.0  # a fresh model's first steps
    return lr_finder.RangeTest(lrs, loss.tolist(), "test")


@pytest.mark.parametrize("spike", [False, True])
def test_suggestions_sit_in_the_descent(spike):
    found = _curve(spike).suggestions()
    assert 10**-3 < found["steepest"] < 10**-2 and 10**-3 < found["valley"] < 10**-1.3
    assert 10**-3 < found["minimum/10"] < 10**-2
    assert found["steepest"] == pytest.approx(10**-2.5, rel=0.15)  # the inflection of the descent


def test_the_range_test_restores_every_state_exactly():
    cfg = compose(["optimizer=sgd", "optimizer.momentum=0.9", "scheduler=onecycle", "trainer.max_epochs=2"])
    build.load_components(cfg)
    devices.seed_everything(cfg.seed)
    data = build.dataset(cfg)
    loop = build.loop(cfg, data, build.model(cfg, data), torch.device("cpu"))
    before = {k: v.clone() for k, v in loop.model.state_dict().items()}
    lr, schedule, optimizer = loop.schedule.lr(), loop.schedule.state_dict(), copy.deepcopy(loop.optimizer.state_dict())
    rng, shuffle = torch.get_rng_state(), loop.train_batches.state_dict(False)["shuffle"].clone()
    test = lr_finder.run(loop, 1e-5, 10.0, 60)
    assert len(test.lrs) > 10 and test.lrs[0] == pytest.approx(1e-5)
    after = loop.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    restored = loop.optimizer.state_dict()
    assert restored["param_groups"] == optimizer["param_groups"] and loop.schedule.lr() == lr
    assert all(torch.equal(restored["state"][i]["momentum_buffer"], optimizer["state"][i]["momentum_buffer"])
               for i in optimizer["state"])
    assert loop.schedule.state_dict() == schedule
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(loop.train_batches.state_dict(False)["shuffle"], shuffle)


@pytest.mark.slow
def test_lr_find_through_the_command(cli):
    proc = cli("task=lr_find", "lr_find.steps=60", "lr_find.min_lr=1e-5", "show_config=none",
               "trainer.progress=false", "hydra.run.dir=run")
    summary = summary_of(cli.cwd / "run")
    found = summary["lr_find"]
    assert summary["status"] == "completed" and set(found["suggestions"]) == {"steepest", "minimum/10", "valley"}
    assert f"optimizer.lr={found['suggestions']['valley']:.2g}" in proc.stdout
    with open(cli.cwd / "run" / "lr_find.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == found["steps"] and float(rows[0]["lr"]) == pytest.approx(1e-5)
    from PIL import Image

    with Image.open(cli.cwd / "run" / "plots" / "lr_find.png") as image:
        assert image.size == (900, 550)
    assert not (cli.cwd / "run" / "checkpoints").exists()  # nothing trained is kept
