"""Gradient accumulation: K micro-batches give the update of one batch K times larger,
the last, shorter window of an epoch included; a stop waits for the window's end and a
resume continues exactly."""

import pytest
import torch

from conftest import StopAt, built_loop
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState
from dlrun.train.trainer import Interrupted

# digits: 1,257 training rows, not a multiple of 64; no dropout, no BatchNorm.
BASE = ["trainer.max_epochs=1", "model.dropout=0.0", "trainer.early_stopping.enabled=false", "plots=[]",
        "report=false"]


def _loop(*overrides):
    return built_loop(*BASE, *overrides)


def _trained(*overrides):
    loop = _loop(*overrides)
    state = loop.fit(FitState(), lambda name, ckpt: None, Stop())
    return loop, state


@pytest.mark.parametrize("options", [
    ["optimizer=sgd", "optimizer.momentum=0.9"],
    ["optimizer=adamw", "scheduler=onecycle", "regularization=grad_clip", "regularization.grad_clip.max=0.05"],
])
def test_sixteen_times_four_equals_sixty_four_times_one(options):
    big, big_state = _trained(*options, "trainer.batch_size=64")
    small, small_state = _trained(*options, "trainer.batch_size=16", "trainer.accumulate_grad_batches=4")
    assert len(small.train_batches) == 79 and len(big.train_batches) == 20  # the last window has 3 batches
    assert small_state.step == big_state.step == 20  # optimizer steps, which the schedule counts too
    assert small.schedule.lr() == pytest.approx(big.schedule.lr())
    for (name, a), b in zip(big.model.named_parameters(), small.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
    assert not torch.allclose(_trained(*options, "trainer.batch_size=16")[0].model.head.weight, big.model.head.weight,
                              atol=1e-3)  # without accumulation, batches of 16 train differently


def test_a_stop_waits_for_the_window_and_the_resume_is_exact():
    options = ["optimizer=adam", "trainer.batch_size=16", "trainer.accumulate_grad_batches=3", "trainer.max_epochs=2"]
    straight, _ = _trained(*options)
    stopped, saved = _loop(*options), {}
    with pytest.raises(Interrupted):
        stopped.fit(FitState(), saved.__setitem__, StopAt(5))
    position = saved["last"]["fit"]
    assert position["step"] == 5 and position["partial"]["batch"] == 15  # after whole windows only
    resumed = _loop(*options)
    state = resumed.load_state_dict(saved["last"], "last")
    resumed.fit(state, lambda name, ckpt: None, Stop())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
