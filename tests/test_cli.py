"""The real `dlrun` command in a subprocess: artifacts, resume, eval, export."""

import csv
import json

import pytest
import torch

from conftest import SMOKE, run_dirs, summary_of
from dlrun.train.trainer import MEASURED


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_run_writes_a_complete_run_directory(cli):
    proc = cli(*SMOKE, "export=torchscript")
    (run_dir,) = run_dirs(cli.outputs)
    assert f"run directory: {run_dir}" in proc.stdout.splitlines()
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "run.log", "metrics.csv",
                 "summary.json", "predictions.csv", "per_class.csv", "checkpoints/best.pt", "checkpoints/last.pt",
                 "checkpoints/best.torchscript.pt", "report.html", "plots/curves.png", "plots/confusion.png"):
        assert (run_dir / name).is_file(), name
    summary = summary_of(run_dir)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
    assert summary["monitor"]["name"] == "val/loss" and summary["objective"] == summary["monitor"]["best_value"]
    assert 0 <= summary["test"]["accuracy"] <= 1 and summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert {"torch", "torchvision", "hydra", "python"} <= set(summary["versions"])
    rows = read_rows(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", *MEASURED[:3]} <= set(rows[0])
    assert float(rows[0]["samples_per_s"]) > 0 and float(rows[0]["peak_rss_mb"]) > 50  # torch alone takes more
    speeds = [float(r["samples_per_s"]) for r in rows]
    assert summary["throughput"]["samples_per_s"] == pytest.approx(sum(speeds) / len(speeds), rel=1e-6)
    assert summary["throughput"]["peak_rss_mb"] == pytest.approx(max(float(r["peak_rss_mb"]) for r in rows))
    change = float(rows[1]["val/loss"]) - float(rows[0]["val/loss"])  # two epochs: one apart
    assert summary["change_per_epoch"]["val/loss"] == pytest.approx(change)
    assert f"val/loss {change:+.4f}" in proc.stdout
    predictions = read_rows(run_dir / "predictions.csv")
    assert len(predictions) == summary["sizes"]["test"]
    assert {"index", "true", "true_name", "predicted", "predicted_name", "confidence", "correct"} <= set(predictions[0])
    accuracy = sum(r["correct"] == "True" for r in predictions) / len(predictions)
    assert accuracy == pytest.approx(summary["test"]["accuracy"])
    assert len(read_rows(run_dir / "per_class.csv")) == 10
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["fit"]["epoch"] == 2 and ckpt["config"]["model"]["name"] == "mlp"
    assert ckpt["overrides"] == [*SMOKE, "export=torchscript"]


@pytest.mark.slow
def test_export_round_trip_matches_the_model(cli):
    cli(*SMOKE, "export=torchscript")
    (run_dir,) = run_dirs(cli.outputs)
    from dlrun.models import build
    from dlrun.results.checkpoint import load

    state = load(run_dir / "checkpoints" / "best.pt")
    model = build(state["config"]["model"], (1, 8, 8), 10).eval()
    model.load_state_dict(state["model"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still loads
        scripted = torch.jit.load(str(run_dir / "checkpoints" / "best.torchscript.pt"))
    x = torch.rand(5, 1, 8, 8)
    # the export takes digits' own pixel values (0-16) and returns probabilities (its preprocessing is inside)
    assert torch.allclose(scripted(x * 16), torch.softmax(model(x), 1), atol=1e-6)
    assert "pixel values 0-16" in (run_dir / "checkpoints" / "best.json").read_text()


@pytest.mark.slow
def test_onnx_export_round_trip(cli):
    ort = pytest.importorskip("onnxruntime")  # an optional extra: pip install 'dlrun[onnx]'
    cli(*SMOKE, "export=onnx", "plots=[]", "hydra.run.dir=run")
    from dlrun.models import build
    from dlrun.results.checkpoint import load

    state = load(cli.cwd / "run" / "checkpoints" / "best.pt")
    model = build(state["config"]["model"], (1, 8, 8), 10).eval()
    model.load_state_dict(state["model"])
    session = ort.InferenceSession(str(cli.cwd / "run" / "checkpoints" / "best.onnx"))
    x = torch.rand(7, 1, 8, 8)  # a batch size other than the export's: the batch dimension is dynamic
    (out,) = session.run(None, {session.get_inputs()[0].name: (x * 16).numpy()})
    assert torch.allclose(torch.from_numpy(out), torch.softmax(model(x), 1).detach(), atol=1e-5)


@pytest.mark.slow
def test_resumed_run_equals_a_straight_run(cli):
    # deterministic: exact on CUDA too (cuDNN picks its algorithms by timing otherwise)
    common = [*SMOKE, "model=cnn", "trainer.batch_size=64", "plots=[]", "report=false", "device.deterministic=true"]
    cli(*common, "trainer.max_epochs=4", "hydra.run.dir=straight")
    cli(*common, "trainer.max_epochs=2", "hydra.run.dir=resumed")
    cli("ckpt_path=resumed/checkpoints/last.pt", "trainer.max_epochs=4", "trainer.progress=false")
    straight, resumed = cli.cwd / "straight", cli.cwd / "resumed"
    assert "resuming from resumed/checkpoints/last.pt: 2 epoch(s) done, step " in (resumed / "run.log").read_text()
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.pt", weights_only=True)
    assert b["fit"]["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    drop = lambda rows: [{k: v for k, v in r.items() if k not in MEASURED} for r in rows]  # noqa: E731
    assert drop(read_rows(straight / "metrics.csv")) == drop(read_rows(resumed / "metrics.csv"))
    assert summary_of(straight)["test"] == summary_of(resumed)["test"]


@pytest.mark.slow
def test_eval_of_best_checkpoint_reproduces_test_metrics(cli):
    cli(*SMOKE, "hydra.run.dir=trained")
    proc = cli("task=eval", "ckpt_path=trained", "trainer.progress=false")  # a run directory: its best.pt
    trained = summary_of(cli.cwd / "trained")
    (evaluated,) = [d for d in run_dirs(cli.outputs)]
    result = summary_of(evaluated)
    assert result["task"] == "eval" and result["status"] == "completed"
    assert result["test"] == trained["test"] and result["evaluated"] == "trained/checkpoints/best.pt"
    best = trained["monitor"]["best_epoch"]
    assert result["tested_weights"].startswith(f"best.pt (epoch {best}")
    assert result["epochs_run"] == best and result["monitor"]["best_epoch"] == best  # what the weights went through
    # the overrides typed, apart from those the checkpoint's run was composed with
    assert "overrides: task=eval ckpt_path=trained trainer.progress=false; the checkpoint's run: experiment=smoke" in \
        " ".join(proc.stdout.split())
    assert (evaluated / "predictions.csv").read_text() == (cli.cwd / "trained" / "predictions.csv").read_text()


@pytest.mark.slow
def test_two_runs_in_the_same_second_get_their_own_directories(cli):
    from dlrun.config.sources import reserve_dir

    base = cli.cwd / "outputs" / "same"
    assert [reserve_dir(base).name for _ in range(3)] == ["same", "same_1", "same_2"]


@pytest.mark.slow
def test_default_dataset_variants_run(cli):
    cli(*SMOKE, "dataset=breast_cancer", "model=logistic", "plots=[roc,confidence]", "probabilities=true",
        "hydra.run.dir=binary")
    rows = read_rows(cli.cwd / "binary" / "predictions.csv")
    assert float(rows[0]["prob_malignant"]) + float(rows[0]["prob_benign"]) == pytest.approx(1.0, abs=1e-5)
    cli(*SMOKE, "dataset=diabetes", "plots=[regression,curves]", "trainer.monitor=val/mae", "hydra.run.dir=reg")
    binary, reg = summary_of(cli.cwd / "binary"), summary_of(cli.cwd / "reg")
    assert binary["problem"] == "binary" and "roc_auc" in binary["test"]
    assert reg["problem"] == "regression" and {"mse", "rmse", "mae", "r2"} <= set(reg["test"])
    assert (cli.cwd / "reg" / "plots" / "regression.png").is_file()
    assert not (cli.cwd / "reg" / "plots" / "confusion.png").exists()


@pytest.mark.slow
def test_cross_validation_reports_every_fold_and_mean_std(cli):
    proc = cli(*SMOKE, "trainer.progress=true", "dataset=iris", "cv.folds=3", "plots=[]", "hydra.run.dir=cv")
    summary = summary_of(cli.cwd / "cv")
    assert len(summary["folds"]) == 3 and summary["status"] == "completed"
    assert set(summary["cv"]["test/accuracy"]) == {"mean", "std"}
    assert all((cli.cwd / "cv" / f"fold_{i}" / "report.html").is_file() for i in range(3))
    assert "(mean ± std)" in proc.stdout and "None" not in proc.stdout
    assert "> fold 2 of 3 (cv.fold=1) in" in proc.stdout
    per_fold = summary["data_summary"]["class_counts_per_fold"]
    for i in range(3):  # each fold's validation part is its own third of the same rows
        assert per_fold[str(i)] == summary_of(cli.cwd / "cv" / f"fold_{i}")["data_summary"]["class_counts"]
    assert sum(per_fold[str(i)]["val"]["setosa"] for i in range(3)) == sum(per_fold["0"][s]["setosa"]
                                                                          for s in ("train", "val"))
    assert "Rows per class in each fold" in (cli.cwd / "cv" / "report.html").read_text()


def test_python_api_runs_and_composes(tmp_path, monkeypatch):
    import dlrun

    monkeypatch.setenv("DLRUN_OUTPUTS", str(tmp_path))
    cfg = dlrun.compose(["model=cnn"])
    assert cfg.model.name == "cnn"
    summary = dlrun.run(["experiment=smoke", "trainer.progress=false", "plots=[]"], run_dir=tmp_path / "api")
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "api" / "summary.json").read_text())["test"] == summary["test"]


@pytest.mark.slow
def test_users_own_components_worked_example(cli):
    example = cli.cwd.parent / "example"
    import shutil

    from conftest import REPO

    shutil.copytree(REPO / "docs" / "examples" / "plugin", example)
    cli(*SMOKE, "--config-dir", str(example / "conf"), "plugins=[my_components]", "dataset=moons",
        "model=two_layer", "model.width=16", "hydra.run.dir=run", env={"PYTHONPATH": str(example)})
    summary = summary_of(cli.cwd / "run")
    assert summary["dataset"] == "my_components.moons" and summary["model"] == "two_layer"
    assert summary["classes"] == ["upper", "lower"] and summary["status"] == "completed"
    # Without the plugin (and with a built-in dataset) nothing registers the model.
    proc = cli(*SMOKE, "--config-dir", str(example / "conf"), "model=two_layer",
               env={"PYTHONPATH": str(example)}, check=False)
    assert proc.returncode == 2 and "model.name=two_layer is not known" in proc.stderr


@pytest.mark.slow
def test_tensorboard_logger_writes_event_files(cli):
    pytest.importorskip("tensorboard")  # an optional extra: pip install 'dlrun[tensorboard]'
    cli(*SMOKE, "logger=tensorboard", "plots=[]", "hydra.run.dir=run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (cli.cwd / "run" / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val/loss")] == [1, 2]
    assert (cli.cwd / "run" / "metrics.csv").is_file()  # CSV metrics are always written
