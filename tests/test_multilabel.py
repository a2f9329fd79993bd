"""Multi-label classification: a CSV with several 0/1 target columns trains with sigmoid outputs
and BCE, each label's threshold tuned on validation; its metrics are scikit-learn's; the tables,
plots, predict and the export all read the same thresholds."""

import csv
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import dlrun
from conftest import summary_of
from dlrun.errors import ConfigError
from dlrun.results import metrics

LABELS = ["sunny", "windy", "rare"]
QUIET = ["dataset=csv", "dataset.path=tags.csv", f"dataset.target=[{','.join(LABELS)}]", "trainer.progress=false",
         "report=false", "show_config=none"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def tags(tmp_path, monkeypatch):
    """600 rows of six features and three labels that depend on them (one a product, rarer)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6))
    labels = np.stack([x[:, 0] + 0.3 * rng.normal(size=600) > 0, x[:, 1] - x[:, 2] + 0.3 * rng.normal(size=600) > 0.5,
                       x[:, 3] * x[:, 4] > 0.3], 1).astype(int)
    with open(tmp_path / "tags.csv", "w") as f:
        f.write(",".join([f"f{i}" for i in range(6)] + LABELS) + "\n")
        for features, (a, b, c) in zip(x, labels):  # the second label written as true/false
            f.write(",".join(f"{v:.4f}" for v in features) + f",{a},{'true' if b else 'false'},{c}\n")
    with open(tmp_path / "new.csv", "w") as f:
        f.write(",".join(f"f{i}" for i in range(6)) + "\n")
        f.writelines(",".join(f"{v:.4f}" for v in features) + "\n" for features in x[:20])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_metrics_are_scikit_learns_and_the_epoch_counts_agree():
    rng = np.random.default_rng(1)
    true = (rng.random((300, 4)) < 0.3).astype(int)
    probs = np.clip(true * 0.45 + rng.random((300, 4)) * 0.6, 1e-4, 1 - 1e-4)
    logits, targets = torch.logit(torch.tensor(probs, dtype=torch.float32)), torch.tensor(true, dtype=torch.float32)
    thresholds = [0.5, 0.4, 0.6, 0.5]
    p = metrics.Predictions("multilabel", logits, targets, thresholds)
    pred = (probs >= np.array(thresholds)).astype(int)
    assert np.array_equal(p.pred, pred)
    got = metrics.scalar_metrics(p, 4, 0.25)
    expected = {"accuracy": skm.accuracy_score(true, pred), "hamming_loss": skm.hamming_loss(true, pred),
                "mean_average_precision": skm.average_precision_score(true, probs, average="macro"),
                "roc_auc": skm.roc_auc_score(true, probs, average="macro")}
    for average in ("micro", "macro"):
        expected.update({f"precision_{average}": skm.precision_score(true, pred, average=average),
                         f"recall_{average}": skm.recall_score(true, pred, average=average),
                         f"f1_{average}": skm.f1_score(true, pred, average=average)})
    assert got == pytest.approx({"loss": 0.25, **expected}, abs=1e-6)
    epoch = metrics.epoch_metrics("multilabel", logits, targets, 0.25, 4, thresholds)
    assert epoch == pytest.approx({k: got[k] for k in epoch}, abs=1e-9) and "hamming_loss" in epoch
    table = metrics.per_label_table(p, ["a", "b", "c", "d"], thresholds)
    assert [row["f1"] for row in table] == pytest.approx(skm.f1_score(true, pred, average=None).tolist())
    assert [row["threshold"] for row in table] == thresholds


def test_a_multilabel_csv_trains_and_its_thresholds_reach_predict_and_the_export(tags):
    summary = dlrun.run([*QUIET, "dataset.threshold=auto", "trainer.max_epochs=30", "probabilities=true",
                         "export=torchscript", "plots=[per_class,pr_curve,roc,confusion]"], run_dir=tags / "run")
    assert summary["problem"] == "multilabel" and summary["test"]["f1_micro"] > 0.85
    assert summary["data_summary"]["rows"] == {"train": 420, "val": 90, "test": 90}
    thresholds = summary["threshold"]["value"]
    assert len(thresholds) == 3 and summary["threshold"]["chosen_by"] == "validation f1"
    per_label = _rows(tags / "run" / "per_class.csv")
    assert [r["label"] for r in per_label] == LABELS
    assert [float(r["threshold"]) for r in per_label] == pytest.approx(thresholds)
    test = _rows(tags / "run" / "predictions.csv")
    for row in test:  # each label predicted where its probability reaches its own threshold
        chosen = [name for name, t in zip(LABELS, thresholds) if float(row[f"prob_{name}"]) >= t]
        assert row["predicted"] == ";".join(chosen) and row["correct"] == str(row["predicted"] == row["true"])
    assert {p.name for p in (tags / "run" / "plots").iterdir()} == {"per_class.png", "pr_curve.png", "roc.png"}
    assert summary_of(tags / "run")["plots_skipped"] == {"confusion": "drawn for single-label classification only"}
    described = json.loads((tags / "run" / "checkpoints" / "best.json").read_text())
    assert described["task"] == "multilabel" and described["thresholds"] == pytest.approx(thresholds)
    dlrun.run(["task=predict", f"ckpt_path={tags / 'run'}", "predict.input=new.csv", "show_config=none"],
              run_dir=tags / "predicted")
    predicted = _rows(tags / "predicted" / "predictions.csv")
    new = np.loadtxt(tags / "new.csv", delimiter=",", skiprows=1, dtype=np.float32)
    exported = torch.jit.load(tags / "run" / "checkpoints" / "best.torchscript.pt")(torch.from_numpy(new)).detach()
    assert np.allclose([[float(r[f"prob_{name}"]) for name in LABELS] for r in predicted], exported.numpy(), atol=1e-5)
    assert [r["predicted"] for r in predicted] == [
        ";".join(name for name, p, t in zip(LABELS, probs, thresholds) if p >= t) for probs in exported.tolist()]


@pytest.mark.parametrize("overrides, message", [
    (["dataset.target=[sunny,f0]"], "the label column 'f0' has '.*' on line 2; a multi-label target column holds 0 or 1"),
    (["loss=cross_entropy"], "loss=cross_entropy does not fit this dataset's task 'multilabel'"),
    (["trainer.sampling=oversample"], "balances the classes of rows with one class each; these rows have 3 labels"),
    (["dataset.task=regression"], "names several columns: a multi-label task"),
    (["dataset.positive_class=sunny"], "one-vs-rest, and this dataset's task is multilabel"),
])
def test_what_does_not_fit_multiple_labels_is_refused(tags, overrides, message):
    with pytest.raises(ConfigError, match=message):
        dlrun.run([*QUIET, *overrides, "trainer.max_epochs=1"], run_dir=tags / "refused")
    assert not (tags / "refused" / "checkpoints").exists()


def _coloured_images(root, count=120):
    """Images whose top half is red for the label 'red' and bottom half green for 'green', with
    the CSV of their label lists."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    lines = ["file,labels"]
    for i in range(count):
        red, green = rng.random() < 0.5, rng.random() < 0.4
        pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        pixels[:8, :, 0] += 180 * red
        pixels[8:, :, 1] += 180 * green
        Image.fromarray(pixels).save(root / "images" / f"{i:03d}.png")
        lines.append(f"{i:03d}.png," + ";".join(name for name, on in (("red", red), ("green", green)) if on))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("cache", ["dataset.cache=true", "dataset.cache=false"])
def test_an_image_folder_with_label_lists_is_multilabel_on_either_path(tmp_path, cache):
    _coloured_images(tmp_path)
    images = ["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", f"dataset.labels={tmp_path / 'labels.csv'}",
              "dataset.image_size=16", "model=cnn", "trainer.max_epochs=8", "trainer.progress=false", "plots=[]",
              "report=false", "show_config=none", cache, f"dataset.cache_dir={tmp_path / 'cache'}"]
    summary = dlrun.run(images, run_dir=tmp_path / "run")
    assert summary["problem"] == "multilabel" and summary["classes"] == ["green", "red"]
    assert summary["test"]["f1_micro"] > 0.9
    (tmp_path / "new").mkdir()
    for name in ("000.png", "002.png"):  # green; red
        (tmp_path / "new" / name).write_bytes((tmp_path / "images" / name).read_bytes())
    dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new'}",
               "show_config=none"], run_dir=tmp_path / "predicted")
    assert [r["predicted"] for r in _rows(tmp_path / "predicted" / "predictions.csv")] == ["green", "red"]


def test_label_lists_name_files_that_are_there(tmp_path):
    _coloured_images(tmp_path, count=4)
    (tmp_path / "labels.csv").write_text("file,labels\n000.png,red\nmissing.png,green\n")
    with pytest.raises(ConfigError, match="names 1 file.s. not in dataset.root=.* such as .*missing.png"):
        dlrun.run(["dataset=image_folder", f"dataset.root={tmp_path / 'images'}",
                   f"dataset.labels={tmp_path / 'labels.csv'}", "trainer.max_epochs=1"])
