"""Non-finite steps are skipped on the device, on every device there is.

The accelerator code path (bad steps read only at progress refreshes and at
the epoch's end) is forced on the CPU; on a machine with CUDA the same tests
run there too.
"""

import pytest
import torch
import torch.nn.functional as F

from dlrun import build
from dlrun.api import compose
from dlrun.stopping import Stop
from dlrun.train import optimizer as optimizers
from dlrun.train.fit_policy import FitState
from dlrun.train.step import GuardedUpdate
from dlrun.train.trainer import Diverged

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop"]


def _model_and_batches(device, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).to(device)
    x, y = torch.randn(5, 8, 6, device=device), torch.randint(0, 3, (5, 8), device=device)
    return model, x, y


def _optimizer(name, model):
    return optimizers.OPTIMIZERS.build({"name": name, "lr": 0.01}, params=model.parameters())


def _state_tensors(model, opt):
    state = [t.clone() for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    return [p.detach().clone() for p in model.parameters()] + state


def _train(name, device, poisoned):
    """Five steps, the loss of the steps in `poisoned` made NaN; returns the model and optimizer."""
    model, x, y = _model_and_batches(device)
    opt = _optimizer(name, model)
    update = GuardedUpdate(opt, torch.device(device))
    for i in range(5):
        loss = F.cross_entropy(model(x[i]), y[i])
        if i in poisoned:
            loss = loss * float("nan")
        opt.zero_grad(set_to_none=True)
        update(loss, i + 1)
    return model, opt, update


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_nan_step_changes_neither_weights_nor_optimizer_state(name, device):
    model, x, y = _model_and_batches(device)
    opt = _optimizer(name, model)
    update = GuardedUpdate(opt, torch.device(device))
    update(F.cross_entropy(model(x[0]), y[0]), 1)  # a good step first, so the optimizer has state
    before = _state_tensors(model, opt)
    opt.zero_grad(set_to_none=True)
    skipped = update(F.cross_entropy(model(x[1]), y[1]) * float("nan"), 2)
    assert bool(skipped)
    after = _state_tensors(model, opt)
    assert len(after) == len(before) and all(torch.equal(a, b) for a, b in zip(after, before))
    bad = update.read()
    assert (bad.count, bad.first_step) == (1, 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_skipping_a_bad_step_equals_never_having_seen_it(name, device):
    """Bad steps at 1 and 3 (before any state exists, and between good steps)."""
    model, opt, update = _train(name, device, poisoned={0, 2})
    ref_model, x, y = _model_and_batches(device)
    ref_opt = _optimizer(name, ref_model)
    for i in (1, 3, 4):
        ref_opt.zero_grad(set_to_none=True)
        F.cross_entropy(ref_model(x[i]), y[i]).backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert update.read().count == 2


def test_an_infinite_gradient_with_a_finite_loss_is_skipped():
    model, x, y = _model_and_batches("cpu")
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0  # the gradient of sqrt(|w|) at 0 is not finite
    opt = _optimizer("adam", model)
    update = GuardedUpdate(opt, torch.device("cpu"))
    before = _state_tensors(model, opt)
    loss = F.cross_entropy(model(x[0]), y[0]) + 1e-3 * torch.sqrt(model[0].weight.abs()).sum()
    assert torch.isfinite(loss)
    assert bool(update(loss, 1))
    assert all(torch.equal(a, b) for a, b in zip(_state_tensors(model, opt), before))


def _no_save(name, state):
    pass


def _loop(device, skip_nonfinite, bad_batches):
    cfg = compose(["experiment=smoke", "trainer.max_epochs=1", f"trainer.skip_nonfinite={skip_nonfinite}",
                   "optimizer=sgd", "plots=[]", "report=false"])
    build.load_components(cfg)
    data = build.dataset(cfg)
    loop = build.loop(cfg, data, build.model(cfg, data), torch.device(device))
    loop.read_every_step = False  # the accelerator code path, also on the CPU
    assert loop.policy.skip_nonfinite == skip_nonfinite
    inner, calls = loop.loss_fn, {"n": 0}

    def loss_fn(out, y):
        loss = inner(out, y)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] in bad_batches:
                return loss * float("nan")
        return loss

    loop.loss_fn = loss_fn
    return loop


@pytest.mark.parametrize("device", DEVICES)
def test_accelerator_path_stops_at_the_read_with_true_numbers_and_finite_weights(device):
    loop = _loop(device, skip_nonfinite=1, bad_batches={1, 2, 4})
    state = FitState()
    with pytest.raises(Diverged) as raised:
        loop.fit(state, _no_save, Stop())
    message = " ".join(str(raised.value).split())
    assert "the training loss became nan at step 1 (epoch 1)" in message
    steps = len(loop.train_batches)  # the whole epoch ran before the (only) read
    assert f"3 non-finite step(s) by step {steps}" in message
    assert "None of them changed the weights" in message and "trainer." not in message  # the loop names no option
    assert all(torch.isfinite(p).all() for p in loop.model.parameters())
    assert state.skipped == 3 and state.epoch == 0


@pytest.mark.parametrize("device", DEVICES)
def test_skip_nonfinite_allows_that_many_on_every_device(device):
    loop = _loop(device, skip_nonfinite=2, bad_batches={2, 5})
    state = FitState()
    loop.fit(state, _no_save, Stop())
    assert state.skipped == 2 and state.epoch == 1
    row = state.history[0]
    assert row["train/loss"] == row["train/loss"]  # the skipped batches' NaN losses are not in the mean
    assert all(torch.isfinite(p).all() for p in loop.model.parameters())
    assert loop.update.read().first_step == 2


def test_epoch_means_equal_a_plain_computation_over_the_training_set():
    """With the learning rate at 0 the weights stay put, so the epoch's train loss and
    accuracy are the plain mean loss and accuracy of the model over the training split
    (skipped steps excluded)."""
    loop = _loop("cpu", skip_nonfinite=5, bad_batches={3})
    loop.model.eval()  # no dropout: the same outputs in the loop (which sets train mode) and below
    loop.model.train = lambda mode=True: loop.model
    for group in loop.optimizer.param_groups:
        group["lr"] = 0.0
    state = FitState()
    order = loop.train_batches.state_dict(mid_epoch=False)
    row, _ = loop.train_epoch(state, _no_save, Stop())
    loop.train_batches.load_state_dict(order)  # the same batches again
    losses, hits, n = 0.0, 0, 0
    with torch.no_grad():
        for i, (x, y) in enumerate(loop.train_batches.epoch()):
            if i == 2:  # the third batch was the bad one
                continue
            out = loop.model(x)
            losses += F.cross_entropy(out, y).item() * len(y)
            hits += (out.argmax(1) == y).sum().item()
            n += len(y)
    assert row["train/loss"] == pytest.approx(losses / n, rel=1e-5)
    assert row["train/accuracy"] == pytest.approx(hits / n)


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_scaler_path_skips_a_nan_step_and_applies_a_finite_one(device):
    model, x, y = _model_and_batches(device)
    opt = _optimizer("adam", model)
    update = GuardedUpdate(opt, torch.device(device), precision="fp16")
    before = _state_tensors(model, opt)
    assert bool(update(F.cross_entropy(model(x[0]), y[0]) * float("nan"), 1))
    assert all(torch.equal(a, b) for a, b in zip(_state_tensors(model, opt), before))
    opt.zero_grad(set_to_none=True)
    assert not bool(update(F.cross_entropy(model(x[1]), y[1]), 2))
    assert not torch.equal(next(model.parameters()), before[0])
    assert update.read().count == 1 and update.scaler.is_enabled()
