"""optimizer=muon (torch's Muon on the hidden weight matrices, AdamW on the rest), optimizer=lion and
optimizer=schedule_free: each converges where it must, splits, decays or averages its parameters as
documented, and resumes exactly."""

import json

import pytest
import torch

import dlrun
from conftest import SMOKE, built_loop
from dlrun.errors import ConfigError
from dlrun.results import artifacts
from dlrun.train.fit_policy import FitState
from dlrun.train.optimizer import Lion
from dlrun.train.trainer import MEASURED

QUICK = ["trainer.progress=false", "plots=[]", "report=false"]


@pytest.mark.parametrize("optimizer", [["optimizer=muon"], ["optimizer=lion", "optimizer.lr=0.0005"],
                                       ["optimizer=schedule_free"]])
def test_each_optimizer_learns_the_digits(tmp_path, optimizer):
    dlrun.run([*QUICK, *optimizer, "trainer.max_epochs=8"], run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test"]["accuracy"] > 0.9


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    loop = built_loop(*SMOKE, "model=cnn", "model.hidden=[32]", "optimizer=muon", "optimizer.head_lr=0.003")
    muon, adamw = loop.optimizer.parts["muon"], loop.optimizer.parts["adamw"]
    by_id = {id(p): name for name, p in loop.model.named_parameters()}
    in_muon = {by_id[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {by_id[id(p)] for g in adamw.param_groups for p in g["params"]}
    matrices = {n for n, p in loop.model.named_parameters() if p.ndim == 2 and not n.startswith("head.")}
    assert in_muon == matrices and in_adamw == set(by_id.values()) - matrices
    assert any(p.ndim == 4 for g in adamw.param_groups for p in g["params"])  # convolution filters: AdamW
    assert {g["lr"] for g in adamw.param_groups if any(by_id[id(p)].startswith("head.") for p in g["params"])} == {0.003}
    assert [g["lr"] for g in loop.optimizer.param_groups] == [g["lr"] for g in muon.param_groups + adamw.param_groups]


def test_muon_needs_hidden_matrices():
    with pytest.raises(ConfigError, match="optimizer=muon trains the hidden weight matrices .* choose optimizer=adamw"):
        built_loop(*SMOKE, "model=logistic", "optimizer=muon")


def test_lion_steps_by_the_sign_with_decoupled_decay():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = Lion([{"params": [weight], "weight_decay": 0.5}], lr=0.1, betas=(0.9, 0.99))
    weight.grad = torch.tensor([0.3, 0.0])
    optimizer.step()  # decayed by (1 - 0.1 * 0.5), then moved by -0.1 * sign(0.1 * grad)
    assert torch.allclose(weight.detach(), torch.tensor([0.95 - 0.1, -1.9]))
    assert torch.allclose(optimizer.state[weight]["exp_avg"], torch.tensor([0.003, 0.0]))


@pytest.mark.parametrize("optimizer", ["muon", "lion", "schedule_free"])
def test_a_resumed_run_continues_exactly(tmp_path, optimizer):
    common = [*QUICK, *SMOKE, f"optimizer={optimizer}", "trainer.early_stopping.enabled=false"]
    dlrun.run([*common, "trainer.max_epochs=3"], run_dir=tmp_path / "straight")
    dlrun.run([*common, "trainer.max_epochs=2"], run_dir=tmp_path / "resumed")
    dlrun.run([*common, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'resumed'}"], run_dir=tmp_path / "resumed")
    rows = [[{k: v for k, v in r.items() if k not in MEASURED} for r in artifacts.read_csv(tmp_path / name / "metrics.csv")]
            for name in ("straight", "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_layer_decay_gives_each_layer_its_learning_rate_the_head_the_full_one():
    loop = built_loop(*SMOKE, "model=mlp", "model.hidden_sizes=[16,16]", "optimizer=adamw", "optimizer.lr=0.01",
                      "optimizer.layer_decay=0.5")
    by_id = {id(p): name for name, p in loop.model.named_parameters()}
    lrs = {by_id[id(p)]: group["lr"] for group in loop.optimizer.param_groups for p in group["params"]}
    layers = sorted({name.rpartition(".")[0] for name in lrs if not name.startswith("head.")},
                    key=lambda n: int(n.split(".")[1]))
    assert [lrs[f"{layer}.weight"] for layer in layers] == pytest.approx([0.0025, 0.005])
    assert lrs["head.weight"] == lrs["head.bias"] == pytest.approx(0.01)
    assert all(lrs[f"{layer}.bias"] == lrs[f"{layer}.weight"] for layer in layers)


def test_layer_decay_is_refused_where_groups_are_not_the_optimizers_to_set():
    with pytest.raises(ConfigError, match="optimizer.layer_decay sets a learning rate per layer, and optimizer=muon"):
        built_loop(*SMOKE, "optimizer=muon", "optimizer.layer_decay=0.8")


def test_schedule_free_evaluates_its_average_and_trains_on_untouched():
    loop = built_loop(*SMOKE, "optimizer=schedule_free", "optimizer.lr=0.01")
    x, y = next(iter(loop.train_batches.epoch()))
    for _ in range(3):
        loop.step(x, y, FitState())
    trained = [p.detach().clone() for p in loop.model.parameters()]
    loop.validate()
    assert all(torch.equal(a, b) for a, b in zip(trained, loop.model.parameters()))  # bit for bit
    evaluated = list(loop.eval_model.parameters())
    assert loop.eval_model is not loop.model and not all(torch.equal(a, b) for a, b in zip(trained, evaluated))
    loop.optimizer.eval()  # the optimizer's own switch gives the weights validated
    assert all(torch.allclose(a, b) for a, b in zip(loop.model.parameters(), evaluated))
    loop.optimizer.train()
    ckpt = loop.state_dict(FitState())
    assert all(torch.equal(ckpt["model"][name], p) for name, p in loop.eval_model.state_dict().items())
    assert all(torch.equal(ckpt["trained_model"][name], p) for name, p in loop.model.state_dict().items())


@pytest.mark.parametrize("setting", ["scheduler=cosine", "scheduler.warmup_epochs=1", "trainer.averaging.kind=ema"])
def test_schedule_free_is_refused_with_a_schedule_or_averaging(setting):
    with pytest.raises(ConfigError, match="optimizer=schedule_free (needs no learning-rate schedule|already evaluates)"):
        built_loop(*SMOKE, "optimizer=schedule_free", setting)
