"""task=predict applies a trained run to new raw inputs with its recorded preprocessing, and the
exports (which carry that preprocessing) give the same outputs on the same raw rows."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import datasets as skd

import dlrun
from conftest import summary_of
from dlrun.errors import ConfigError

pytestmark = pytest.mark.slow  # each test trains a run first

QUIET = ["trainer.progress=false", "plots=[]", "report=false", "show_config=none", "trainer.max_epochs=3"]


def _csv(path, rows, header):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _table(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _torchscript(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(run / "checkpoints" / "best.torchscript.pt"))


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A CSV classification run with a text column, exported to TorchScript and ONNX."""
    root = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    a, b, colour = rng.normal(size=300), rng.normal(size=300) * 10 + 50, rng.choice(["red", "green", "blue"], 300)
    label = np.where(a + (b - 50) / 10 + (colour == "red") > 0.5, "yes", "no")
    _csv(root / "train.csv", zip(range(300), a, b, colour, label), ["id", "a", "b", "colour", "label"])
    # new rows: the columns in another order, an extra column, no target
    _csv(root / "new.csv", [(c, bb, aa, "x") for aa, bb, c in zip(a[:20], b[:20], colour[:20])],
         ["colour", "b", "a", "note"])
    args = [*QUIET, "dataset=csv", f"dataset.path={root / 'train.csv'}", "dataset.target=label",
            "dataset.features=[a,b,colour]"]
    dlrun.run([*args, "export=torchscript"], run_dir=root / "run")
    dlrun.run([*args, "export=onnx"], run_dir=root / "onnx")
    return root


def _raw_rows(root):
    """new.csv as the exports' input: the columns' order and one-hot levels from best.json."""
    spec = json.loads((root / "run" / "checkpoints" / "best.json").read_text())["input"]["columns"]
    rows = _table(root / "new.csv")
    blocks = []
    for column in spec:
        cells = [row[column["name"]] for row in rows]
        if column["levels"]:
            blocks.append(np.eye(len(column["levels"]))[[column["levels"].index(c) for c in cells]])
        else:
            blocks.append(np.array(cells, dtype=float)[:, None])
    return torch.tensor(np.concatenate(blocks, 1), dtype=torch.float32)


def test_predict_on_a_csv_equals_the_exports_on_raw_rows(tabular):
    dlrun.run(["task=predict", f"ckpt_path={tabular / 'run'}", f"predict.input={tabular / 'new.csv'}",
               "probabilities=true", "show_config=none"], run_dir=tabular / "predicted")
    rows = _table(tabular / "predicted" / "predictions.csv")
    predicted = torch.tensor([[float(r["prob_no"]), float(r["prob_yes"])] for r in rows])
    assert len(rows) == 20 and {r["predicted_name"] for r in rows} <= {"no", "yes"}
    raw = _raw_rows(tabular)
    assert torch.allclose(_torchscript(tabular / "run")(raw), predicted, atol=1e-6)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tabular / "onnx" / "checkpoints" / "best.onnx"))
    onnx_probs = session.run(None, {session.get_inputs()[0].name: raw.numpy()})[0]
    dlrun.run(["task=predict", f"ckpt_path={tabular / 'onnx'}", f"predict.input={tabular / 'new.csv'}",
               "probabilities=true", "show_config=none"], run_dir=tabular / "predicted_onnx")
    expected = [[float(r["prob_no"]), float(r["prob_yes"])] for r in _table(tabular / "predicted_onnx" / "predictions.csv")]
    assert np.allclose(onnx_probs, expected, atol=1e-5)
    meta = json.loads((tabular / "run" / "checkpoints" / "best.json").read_text())
    assert meta["class_names"] == ["no", "yes"] and meta["positive_class"] == "yes"
    assert [c["name"] for c in meta["input"]["columns"]] == ["a", "b", "colour"]


def test_predicting_the_training_rows_gives_the_runs_own_test_predictions(tmp_path):
    """Regression in the target's units: the rows of the run's test split, given raw, come out
    as the run's own predictions.csv says."""
    dlrun.run([*QUIET, "dataset=diabetes", "export=torchscript"], run_dir=tmp_path / "run")
    bunch = skd.load_diabetes()
    test = _table(tmp_path / "run" / "predictions.csv")
    index = [int(r["index"]) for r in test]
    _csv(tmp_path / "new.csv", [[*bunch.data[i][::-1], 0] for i in index], [*bunch.feature_names[::-1], "target"])
    dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new.csv'}",
               "show_config=none"], run_dir=tmp_path / "predicted")
    ours = np.array([float(r["predicted"]) for r in _table(tmp_path / "predicted" / "predictions.csv")])
    assert np.allclose(ours, [float(r["predicted"]) for r in test], rtol=1e-4, atol=1e-3)
    raw = torch.tensor(bunch.data[index], dtype=torch.float32)
    assert np.allclose(_torchscript(tmp_path / "run")(raw).detach().view(-1).numpy(), ours, rtol=1e-4, atol=1e-3)
    assert ours.std() > 10  # original units (the targets range over hundreds), not standardised


def test_digits_own_pixels_give_the_runs_predictions_and_other_scales_are_named(tmp_path):
    """load_digits().images (values 0..16, what the dataset holds) are what the model takes: its
    test rows come out as the run's own predictions; pixels on another scale or missing are named."""
    dlrun.run([*QUIET, "export=torchscript"], run_dir=tmp_path / "run")
    images = skd.load_digits().images
    test = _table(tmp_path / "run" / "predictions.csv")
    np.save(tmp_path / "digits.npy", images[[int(r["index"]) for r in test]])
    predict = ["task=predict", f"ckpt_path={tmp_path / 'run'}", "show_config=none"]
    summary = dlrun.run([*predict, f"predict.input={tmp_path / 'digits.npy'}"], run_dir=tmp_path / "predicted")
    assert [r["predicted"] for r in _table(tmp_path / "predicted" / "predictions.csv")] == [r["predicted"] for r in test]
    assert "warnings" not in summary["predicted"]
    assert json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())["input"]["kind"] == \
        "image pixel values 0-16 (float)"
    np.save(tmp_path / "bytes.npy", images * 255 / 16)
    with pytest.raises(ConfigError, match="pixel values 0..255, and the model takes pixel values 0-16.*multiply them "
                                          "by 16/255"):
        dlrun.run([*predict, f"predict.input={tmp_path / 'bytes.npy'}"], run_dir=tmp_path / "bytes")
    holed = images.copy()
    holed[7, 3, 3] = np.nan
    np.save(tmp_path / "holed.npy", holed)
    with pytest.raises(ConfigError, match="row 7 .counting from 0. holds a missing or infinite value"):
        dlrun.run([*predict, f"predict.input={tmp_path / 'holed.npy'}"], run_dir=tmp_path / "holed")
    np.save(tmp_path / "unit.npy", images / 16)
    summary = dlrun.run([*predict, f"predict.input={tmp_path / 'unit.npy'}"], run_dir=tmp_path / "unit")
    assert "multiply them by 16 first" in summary["predicted"]["warnings"][0]


def test_table_rows_far_outside_the_training_range_are_a_warning(tabular, tmp_path):
    rows = _table(tabular / "new.csv")
    rows[3]["b"] = "5000"  # trained on values near 50
    _csv(tmp_path / "far.csv", [list(r.values()) for r in rows], list(rows[0]))
    summary = dlrun.run(["task=predict", f"ckpt_path={tabular / 'run'}", f"predict.input={tmp_path / 'far.csv'}",
                         "show_config=none"], run_dir=tmp_path / "run")
    (warning,) = summary["predicted"]["warnings"]
    assert "1 of 20 rows have values far outside" in warning and "column 'b': 5000..5000" in warning


def _digit_images(folder, count=6):
    folder.mkdir()
    images = skd.load_digits().images[:count]
    for i, image in enumerate(images):
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"digit_{i}.png")
    return np.round(images * 255 / 16).astype(np.float32)


def test_predict_on_a_folder_of_images_equals_the_export(tmp_path):
    dlrun.run([*QUIET, "model=cnn", "export=torchscript", "trainer.max_epochs=10"], run_dir=tmp_path / "run")
    pixels = _digit_images(tmp_path / "new")
    summary = dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new'}",
                         "probabilities=true", "show_config=none"], run_dir=tmp_path / "predicted")
    rows = _table(tmp_path / "predicted" / "predictions.csv")
    assert summary["predicted"]["rows"] == 6 and rows[0]["file"] == "digit_0.png"
    probs = torch.tensor([[float(r[f"prob_{c}"]) for c in range(10)] for r in rows])
    exported = _torchscript(tmp_path / "run")(torch.tensor(pixels)[:, None] * 16 / 255)  # digits' scale: 0-16
    assert torch.allclose(exported, probs, atol=1e-6)
    assert sum(int(r["predicted"]) == i for i, r in enumerate(rows)) >= 5  # the digits themselves, nearly all
    np.save(tmp_path / "pixels.npy", pixels * 16 / 255)  # (N, H, W): one channel implied
    dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'pixels.npy'}",
               "show_config=none"], run_dir=tmp_path / "from_array")
    assert [r["predicted"] for r in _table(tmp_path / "from_array" / "predictions.csv")] == \
        [r["predicted"] for r in rows]
    Image.new("RGB", (8, 8)).save(tmp_path / "new" / "colour.png")
    with pytest.raises(ConfigError, match="colour.png has 3 channel.* trained on 1 .grey"):
        dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new'}"],
                  run_dir=tmp_path / "bad")
    (tmp_path / "new" / "colour.png").unlink()
    (tmp_path / "new" / "empty.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty.png cannot be read .it is empty"):
        dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new'}"],
                  run_dir=tmp_path / "bad1")
    (tmp_path / "new" / "empty.png").unlink()
    Image.new("L", (10, 8)).save(tmp_path / "new" / "wide.png")
    with pytest.raises(ConfigError, match="wide.png is 10x8 pixels and the model was trained on 8x8"):
        dlrun.run(["task=predict", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'new'}"],
                  run_dir=tmp_path / "bad2")


@pytest.mark.parametrize("cells,message", [
    ({"colour": "purple"}, "column 'colour' has 'purple' on line 2, a category the model never saw"),
    ({"a": "abc"}, "column 'a' was numeric in training, but line 2 has 'abc'"),
    ({"a": "nan"}, "column 'a' has a missing value"),
])
def test_mismatched_rows_are_named(tabular, tmp_path, cells, message):
    rows = _table(tabular / "new.csv")
    rows[0].update(cells)
    _csv(tmp_path / "bad.csv", [list(r.values()) for r in rows], list(rows[0]))
    with pytest.raises(ConfigError, match=message):
        dlrun.run(["task=predict", f"ckpt_path={tabular / 'run'}", f"predict.input={tmp_path / 'bad.csv'}"],
                  run_dir=tmp_path / "run")


def test_missing_columns_and_the_command(cli, tabular):
    _csv(cli.cwd / "partial.csv", [[1.0, 2.0]], ["a", "colour_code"])
    proc = cli("task=predict", f"ckpt_path={tabular / 'run'}", "predict.input=partial.csv", check=False)
    assert proc.returncode == 2 and "lacks the column(s) b, colour" in " ".join(proc.stderr.split())
    proc = cli("task=predict", f"ckpt_path={tabular / 'run'}", f"predict.input={tabular / 'new.csv'}",
               "hydra.run.dir=predicted")
    assert "inputs" in proc.stdout and summary_of(cli.cwd / "predicted")["predicted"]["rows"] == 20
    proc = cli("task=predict", f"ckpt_path={tabular / 'run'}", check=False)
    assert proc.returncode == 2 and "task=predict needs ckpt_path" in proc.stderr
