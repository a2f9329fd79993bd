"""Weight averaging: EMA after every step (with warm-up of its decay) and SWA of epoch ends
(BatchNorm statistics re-estimated); the averaged weights are validated, kept in best.pt,
evaluated and exported, and a resume continues bit for bit."""

import pytest
import torch

from conftest import StopAt, built_loop, summary_of
from dlrun.results import checkpoint
from dlrun.stopping import Stop
from dlrun.train.averaging import ema_update
from dlrun.train.fit_policy import FitState
from dlrun.train.trainer import Interrupted

QUIET = ["trainer.progress=false", "plots=[]", "report=false", "show_config=none"]


def test_ema_update_with_warmup_matches_the_formula():
    averaged, current = [torch.zeros(3), torch.tensor(5)], [torch.ones(3), torch.tensor(7)]
    ema_update(0.999, True)(averaged, current, torch.tensor(4))  # decay min(0.999, 5/14)
    assert torch.allclose(averaged[0], torch.full((3,), 1 - 5 / 14)) and averaged[1] == 7  # integers copied
    ema_update(0.9, False)(averaged, current, torch.tensor(100))
    assert torch.allclose(averaged[0], torch.full((3,), 0.9 * (1 - 5 / 14) + 0.1))


@pytest.mark.parametrize("options", [["trainer.averaging.kind=ema", "trainer.averaging.ema_decay=0.99"],
                                     ["trainer.averaging.kind=swa", "trainer.averaging.swa_start=2",
                                      "trainer.averaging.swa_lr=0.01", "model=cnn", "model.batchnorm=true"]])
def test_a_resume_continues_both_weights_bit_for_bit(options):
    args = [*QUIET, "trainer.max_epochs=3", *options]
    straight = built_loop(*args)
    straight.fit(FitState(), lambda name, ckpt: None, Stop())
    stopped, saved = built_loop(*args), {}
    with pytest.raises(Interrupted):
        stopped.fit(FitState(), saved.__setitem__, StopAt(47))  # in epoch 3
    resumed = built_loop(*args)
    resumed.fit(resumed.load_state_dict(saved["last"], "last"), lambda name, ckpt: None, Stop())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.eval_model.state_dict().values(), resumed.eval_model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.eval_model is straight.averaging.model.module


def test_swa_averages_the_epoch_ends_from_its_start_and_re_estimates_batchnorm():
    loop = built_loop(*QUIET, "trainer.max_epochs=4", "trainer.averaging.kind=swa", "trainer.averaging.swa_start=3",
                      "trainer.averaging.swa_lr=0.005", "model=cnn", "model.batchnorm=true", "model.channels=[8]")
    ends = []
    state = loop.fit(FitState(), lambda name, ckpt: None, Stop(),
                     on_epoch=lambda state, row: ends.append({k: v.clone() for k, v in loop.model.named_parameters()}))
    averaged = dict(loop.averaging.model.module.named_parameters())
    assert int(loop.averaging.model.n_averaged) == 2
    for name, value in averaged.items():
        assert torch.allclose(value, (ends[2][name] + ends[3][name]) / 2, atol=1e-6), name
    assert [row["lr"] for row in state.history][2:] == [0.005, 0.005]  # SWALR from the first SWA epoch
    raw_bn, avg_bn = loop.model.features[0][1], loop.averaging.model.module.features[0][1]
    assert not torch.allclose(raw_bn.running_mean, avg_bn.running_mean)  # recomputed for the averaged weights


@pytest.mark.slow
def test_ema_weights_are_validated_kept_and_exported(cli):
    cli(*QUIET, "trainer.max_epochs=3", "trainer.averaging.kind=ema", "trainer.averaging.ema_decay=0.9",
        "export=torchscript", "hydra.run.dir=run")
    best = checkpoint.load(cli.cwd / "run" / "checkpoints" / "best.pt")
    assert not torch.equal(best["model"]["head.weight"], best["trained_model"]["head.weight"])
    exported = torch.jit.load(cli.cwd / "run" / "checkpoints" / "best.torchscript.pt")
    assert torch.equal(dict(exported.named_parameters())["model.head.weight"], best["model"]["head.weight"])
    summary = summary_of(cli.cwd / "run")
    cli("task=eval", "ckpt_path=run/checkpoints/best.pt", "trainer.progress=false", "hydra.run.dir=eval")
    assert summary_of(cli.cwd / "eval")["test"]["accuracy"] == summary["test"]["accuracy"]
