"""The binary workflow (one-vs-rest, the positive class's metrics, the decision threshold,
undersampling) and what interpretation a run writes (top losses, most confused pairs,
first-layer filters, per-layer weight statistics)."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import dlrun
from dlrun.data import DATASETS, one_vs_rest
from dlrun.data.base import Part
from dlrun.data.batches import DeviceTransform, TensorBatches
from dlrun.errors import ConfigError
from dlrun.results import checkpoint, metrics
from dlrun.tasks import inspection

QUIET = ["trainer.progress=false", "show_config=none", "dataset.positive_class=4", "model=logistic",
         "trainer.max_epochs=10"]


def test_one_vs_rest_by_index_or_name():
    digits = DATASETS.build({"name": "digits"})
    fours = one_vs_rest(digits, 4)
    assert fours.task == "binary" and fours.class_names == ["not 4", "4"]
    assert fours.y.sum() == (digits.y == 4).sum() and set(fours.y.tolist()) == {0, 1}
    assert one_vs_rest(digits, "4").y.tolist() == fours.y.tolist()
    with pytest.raises(ConfigError, match="dataset.positive_class: 'four' is not a class"):
        one_vs_rest(digits, "four")


def test_the_positive_class_has_its_own_numbers():
    logits = torch.tensor([3.0, 2.0, -1.0, 0.5, -2.0, -0.2, 1.0, -3.0])
    true = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    p = metrics.Predictions("binary", logits.view(-1, 1), true)
    found = metrics.scalar_metrics(p, 2)
    pred = (torch.sigmoid(logits) >= 0.5).long().numpy()
    assert found["precision"] == skm.precision_score(true, pred) and found["recall"] == skm.recall_score(true, pred)
    assert found["f1"] == pytest.approx(skm.f1_score(true, pred))
    assert found["average_precision"] == pytest.approx(skm.average_precision_score(true, logits))
    assert found["f1"] != found["f1_macro"]


def test_best_threshold_maximises_f1():
    true = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    threshold, f1 = metrics.best_threshold(true, probs)
    assert threshold == 0.35 and f1 == pytest.approx(skm.f1_score(true, probs >= 0.35))
    assert all(skm.f1_score(true, probs >= t) <= f1 + 1e-12 for t in probs)
    for name, score in (("balanced_accuracy", skm.balanced_accuracy_score), ("accuracy", skm.accuracy_score)):
        threshold, value = metrics.best_threshold(true, probs, name)
        assert value == pytest.approx(score(true, probs >= threshold))
        assert all(score(true, probs >= t) <= value + 1e-12 for t in probs)
    tied = np.array([0.5, 0.5, 0.5, 0.9])  # ties: a threshold predicts all of them or none
    assert metrics.best_threshold(np.array([0, 1, 0, 1]), tied)[0] in (0.5, 0.9)


def test_undersampling_draws_every_class_as_often_as_the_rarest():
    y = torch.tensor([0] * 30 + [1] * 6 + [2] * 10)
    cpu = torch.device("cpu")
    batches = TensorBatches(Part(torch.arange(46).float().view(46, 1), y), 4, cpu, DeviceTransform(cpu), True, 1,
                            sampling="undersample")
    assert batches.samples == 18 and len(batches) == 5
    first = torch.cat([b for _, b in batches.epoch()])
    second = torch.cat([x for x, _ in batches.epoch()]).view(-1)
    assert torch.bincount(first).tolist() == [6, 6, 6]
    assert len(set(second.tolist())) == 18  # no row twice in an epoch
    assert set(second.tolist()) != set(torch.cat([x for x, _ in batches.epoch()]).view(-1).tolist())  # fresh draws


def test_top_losses_and_most_confused():
    p = metrics.Predictions("multiclass", torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0.1, 0], [5.0, 0, 0]]),
                            torch.tensor([1, 1, 2, 2]))
    wrong, losses = metrics.top_losses(p)
    assert wrong.tolist() == [3, 0, 2] and list(losses) == sorted(losses, reverse=True)
    pairs = metrics.most_confused([[5, 1, 0], [4, 3, 0], [1, 0, 2]], ["a", "b", "c"])
    assert pairs[0] == {"true": "b", "predicted": "a", "count": 4, "share_of_true": 4 / 7}
    assert [(r["true"], r["predicted"]) for r in pairs] == [("b", "a"), ("a", "b"), ("c", "a")]


def test_weight_statistics_per_layer():
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, -1.0, 0.0]] * 3))
    (row,) = inspection.weight_stats(torch.nn.Sequential(layer))
    assert row["parameter"] == "0.weight" and row["shape"] == "3x4" and row["near_zero"] == 0.5
    assert row["mean"] == 0.0 and row["mean_abs"] == 0.5
    assert (row["min"], row["max"]) == (-1.0, 1.0) and row["l2"] == pytest.approx(6 ** 0.5)


def test_threshold_auto_is_chosen_on_validation_used_on_test_and_kept(tmp_path):
    summary = dlrun.run([*QUIET, "dataset.threshold=auto", "probabilities=true", "plots=[pr_curve,misclassified]",
                         "model=cnn", "model.channels=[4]"], run_dir=tmp_path / "run")
    chosen = summary["threshold"]
    assert chosen["chosen_by"] == "validation f1" and 0 < chosen["value"] < 1
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "best.pt")["preprocessing"]["threshold"] == chosen["value"]
    import csv

    with open(tmp_path / "run" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(int(r["predicted"]) == (float(r["prob_4"]) >= chosen["value"]) for r in rows)
    assert {"precision", "recall", "f1", "average_precision"} <= set(summary["test"])
    assert summary["most_confused"][0]["true"] in ("4", "not 4")
    assert (tmp_path / "run" / "plots" / "pr_curve.png").is_file() and (tmp_path / "run" / "confused_pairs.csv").is_file()
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Most confused pairs" in page and "Decision threshold" in page and "Weights per layer" in page
    assert summary["positive_class"] == "4" and "<th>recall of &#x27;4&#x27;</th>" in page and "<th>positive class</th>" in page


def test_the_terminal_names_the_positive_class_and_shows_an_equal_log_loss_once(cli):
    proc = cli("dataset=breast_cancer", "trainer.max_epochs=2", "plots=[]", "report=false", "hydra.run.dir=run",
               env={"COLUMNS": "80"})
    table = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert any("test/precision of 'benign'" in line for line in table)
    assert any("test/loss = log_loss" in line for line in table) and not any("test/log_loss" in line for line in table)
    assert all(len(line) <= 80 for line in table)


def test_monitoring_the_positive_f1_and_filters(tmp_path):
    summary = dlrun.run([*QUIET, "trainer.monitor=val/f1", "trainer.mode=max", "model=cnn", "model.channels=[6]",
                         "plots=[filters]", "report=false"], run_dir=tmp_path / "run")
    assert summary["monitor"]["name"] == "val/f1" and summary["monitor"]["best_value"] == max(
        row["val/f1"] for row in _history(tmp_path / "run"))
    from PIL import Image

    with Image.open(tmp_path / "run" / "plots" / "filters.png") as image:
        assert image.size[0] >= 400  # a grid of the six 3x3 filters
    assert [r["parameter"] for r in summary["weight_stats"]][0] == "features.0.0.weight"
    with pytest.raises(ConfigError, match="is not produced by this dataset's task 'multiclass'"):
        dlrun.run(["trainer.monitor=val/f1", "trainer.mode=max"], run_dir=tmp_path / "multiclass")


def _history(run):
    import csv

    with open(run / "metrics.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]
