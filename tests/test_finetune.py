"""Fine-tuning: init_from loads exactly the tensors that fit, freezing by name pattern keeps
parameters fixed until the unfreeze epoch, the head gets its own learning rate, and
dataset.classes selects the classes of a transfer task."""

import pytest
import torch

import dlrun
from conftest import summary_of
from dlrun.data import DATASETS, keep_classes
from dlrun.errors import ConfigError
from dlrun.models import build as build_model
from dlrun.results import checkpoint
from dlrun.tasks import finetune
from dlrun.train import optimizer

QUIET = ["experiment=smoke", "trainer.progress=false", "plots=[]", "report=false", "show_config=none"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """Digits 0-4, two epochs: the run whose weights the transfer starts from."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    dlrun.run([*QUIET, "dataset.classes=[0,1,2,3,4]"], run_dir=run_dir)
    return run_dir


def test_init_from_loads_exactly_the_matching_tensors(source_run):
    source = checkpoint.load(source_run / "checkpoints" / "best.pt")["model"]
    net = build_model({"name": "mlp"}, (1, 8, 8), 3)  # same body, a head for three classes
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = finetune.init_from(net, source_run)
    after = net.state_dict()
    assert report["path"].endswith("best.pt") and report["loaded"] == 4 and report["of"] == 6
    assert report["fresh"] == ["head.weight", "head.bias"] == report["shape_differs"]
    for name in ("features.1.weight", "features.1.bias", "features.4.weight", "features.4.bias"):
        assert torch.equal(after[name], source[name]) and not torch.equal(after[name], before[name])
    assert torch.equal(after["head.weight"], before["head.weight"])
    assert report["warning"] is None  # the same architecture: its body fits


def test_init_from_another_architecture_warns_that_little_fits(tmp_path):
    donor = build_model({"name": "cnn", "channels": [4], "hidden": 8}, (1, 8, 8), 3)
    torch.save(donor.state_dict(), tmp_path / "cnn.pt")
    net = build_model({"name": "mlp", "hidden_sizes": [8]}, (1, 8, 8), 3)
    report = finetune.init_from(net, tmp_path / "cnn.pt", model_name="mlp")
    assert report["loaded"] == 2 and torch.equal(net.head.weight, donor.head.weight)
    assert report["warning"].startswith(f"init_from: only 2 of the source's {len(donor.state_dict())} tensors fit "
                                        f"this model (head.weight, head.bias): the source is another architecture")


def test_init_from_can_leave_the_head_fresh(source_run):
    net = build_model({"name": "mlp"}, (1, 8, 8), 5)  # the same shapes as the source
    head = net.head.weight.clone()
    report = finetune.init_from(net, source_run, exclude=("head.*",))
    assert report["loaded"] == 4 and report["excluded"] == ["head.weight", "head.bias"]
    assert torch.equal(net.head.weight, head)
    with pytest.raises(ConfigError, match=r"'heads\.\*' matches no tensor .*features\.\* \(4\), head\.\* \(2\)"):
        finetune.init_from(net, source_run, exclude=("heads.*",))


def test_init_from_a_plain_state_dict_and_refusing_a_source_that_fits_nothing(tmp_path):
    donor = build_model({"name": "mlp", "hidden_sizes": [16]}, (5,), 2)
    torch.save(donor.state_dict(), tmp_path / "weights.pt")
    net = build_model({"name": "mlp", "hidden_sizes": [16]}, (5,), 2)
    assert finetune.init_from(net, tmp_path / "weights.pt")["loaded"] == 4
    assert torch.equal(net.head.weight, donor.head.weight)
    other = build_model({"name": "mlp", "hidden_sizes": [7]}, (9,), 3)
    with pytest.raises(ConfigError, match="none of its 4 tensors matches"):
        finetune.init_from(other, tmp_path / "weights.pt")


def test_freezing_keeps_matched_parameters_until_the_unfreeze_epoch():
    net = build_model({"name": "cnn", "channels": [4], "batchnorm": True, "hidden": 8}, (1, 8, 8), 3)
    freezing = finetune.Freezing(("features.0.*",), unfreeze_epoch=2)
    freezing.check(net)
    opt = optimizer.build({"name": "sgd", "lr": 0.5}, net, _regularization())
    conv = dict(net.named_parameters())["features.0.0.weight"]
    bn = net.features[0][1]
    for epoch, moves in ((0, False), (1, True)):
        net.train()
        freezing.apply(net, epoch)
        before, stats = conv.detach().clone(), bn.running_mean.clone()
        opt.zero_grad()
        net(torch.randn(8, 1, 8, 8)).logsumexp(1).mean().backward()
        opt.step()
        assert (not torch.equal(conv, before)) is moves
        assert (not torch.equal(bn.running_mean, stats)) is moves  # frozen BatchNorm keeps its statistics
        assert not torch.equal(net.head.weight.grad, torch.zeros_like(net.head.weight))


def test_a_freeze_pattern_that_matches_nothing_names_the_parameters():
    net = build_model({"name": "mlp", "hidden_sizes": [4]}, (3,), 2)
    with pytest.raises(ConfigError, match=r"'backbone\.\*' matches no parameter.*features\.\* \(2\), head\.\* \(2\)"):
        finetune.Freezing(("backbone.*",)).check(net)


def test_head_lr_gives_the_head_its_own_group():
    net = build_model({"name": "mlp", "hidden_sizes": [4], "batchnorm": True}, (3,), 2)
    groups = optimizer.param_groups(net, 0.1, decay_norm_and_bias=False, head_lr=0.05)
    heads = [g for g in groups if g.get("lr") == 0.05]
    assert sum(len(g["params"]) for g in heads) == 2
    assert {id(p) for g in heads for p in g["params"]} == {id(net.head.weight), id(net.head.bias)}
    assert [g["weight_decay"] for g in heads] == [0.1, 0.0]


def test_dataset_classes_keeps_and_relabels_in_the_given_order():
    digits = DATASETS.build({"name": "digits"})
    kept = keep_classes(digits, [7, "3"])
    assert kept.class_names == ["7", "3"] and set(kept.y.tolist()) == {0, 1}
    assert len(kept.y) == (digits.y == 7).sum() + (digits.y == 3).sum()
    assert (kept.x[kept.y == 0] == torch.as_tensor(digits.x[digits.y == 7])).all()
    with pytest.raises(ConfigError, match="'eleven' is not a class of this dataset"):
        keep_classes(digits, [1, "eleven"])


@pytest.mark.slow
def test_transfer_through_the_command(cli, source_run):
    cli(*QUIET, "dataset.classes=[5,6,7,8,9]", f"init_from={source_run}", "model.freeze=[features.*]",
        "optimizer.head_lr=0.01", "hydra.run.dir=target")

    summary = summary_of(cli.cwd / "target")
    assert summary["init_from"]["loaded"] == 6 and summary["classes"] == ["5", "6", "7", "8", "9"]
    assert summary["model_summary"]["trainable"] == 5 * 128 + 5
    target = checkpoint.load(cli.cwd / "target" / "checkpoints" / "best.pt")["model"]
    source = checkpoint.load(source_run / "checkpoints" / "best.pt")["model"]
    assert torch.equal(target["features.1.weight"], source["features.1.weight"])  # frozen all along


def _regularization():
    from types import SimpleNamespace

    return SimpleNamespace(weight_decay=0.0, decay_norm_and_bias=True)


def test_the_report_says_where_the_weights_came_from():
    from omegaconf import OmegaConf

    from dlrun.results import report

    summary = {"status": "completed", "task": "train", "overrides": ["init_from=source"],
               "init_from": {"path": "source/checkpoints/best.pt", "loaded": 4, "of": 6}}
    page = report.render(summary, OmegaConf.create({"init_from": "source"}))
    assert "started from" in page and "source/checkpoints/best.pt (4 of 6 tensors loaded)" in page


def test_eval_on_some_classes_tests_those_rows_of_the_trained_model(tmp_path):
    """The mini-challenge's test sets: a 10-class model evaluated on the 4s only, and on all but the 4s."""
    import csv

    dlrun.run([*QUIET, "probabilities=true"], run_dir=tmp_path / "run")
    with open(tmp_path / "run" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    fours = [r for r in rows if r["true"] == "4"]
    only = dlrun.run([*QUIET, "task=eval", f"ckpt_path={tmp_path / 'run'}", "dataset.classes=[4]"],
                     run_dir=tmp_path / "fours")
    assert only["evaluated_classes"] == ["4"] and only["sizes"]["test"] == len(fours)
    assert only["test"]["accuracy"] == pytest.approx(sum(r["correct"] == "True" for r in fours) / len(fours))
    rest = dlrun.run([*QUIET, "task=eval", f"ckpt_path={tmp_path / 'run'}", "dataset.classes=[0,1,2,3,5,6,7,8,9]"],
                     run_dir=tmp_path / "rest")
    assert rest["sizes"]["test"] == len(rows) - len(fours) and "4" not in rest["evaluated_classes"]
    assert rest["classes"] == [str(c) for c in range(10)]  # the model's own classes, not relabelled
    assert 0.5 < rest["test"]["roc_auc"] <= 1  # one-vs-rest over the classes present
