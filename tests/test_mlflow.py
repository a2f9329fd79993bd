"""logger=mlflow against a real MLflow tracking server (started here on 127.0.0.1 with a SQLite
backend) and against the default local store, everything read back with MlflowClient."""

import csv
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import SMOKE, summary_of
from dlrun.sweeps.mlflow_tracking import flat_params

MLFLOW = Path(sys.executable).parent / "mlflow"


def test_the_config_becomes_flat_params():
    cfg = OmegaConf.create({"trainer": {"max_epochs": 2, "early_stopping": {"patience": None}}, "plots": ["curves"],
                            "seed": "${trainer.max_epochs}"})
    assert flat_params(cfg) == {"trainer.max_epochs": "2", "trainer.early_stopping.patience": "None",
                                "plots": "['curves']", "seed": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (SQLite backend, artifacts served by it)."""
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'dlrun[tracking]'")
    folder = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=log)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (folder / "server.log").read_text()[-3000:]
            time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def metrics_csv(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_run_is_tracked_on_a_server(cli, server, tmp_path):
    run_dir = tmp_path / "run"
    cli(*SMOKE, "logger=mlflow", f"mlflow.tracking_uri={server}", "mlflow.experiment=lessons",
        f"hydra.run.dir={run_dir}")
    mlflow = client(server)
    (run,) = mlflow.search_runs([mlflow.get_experiment_by_name("lessons").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["trainer.max_epochs"] == "2" and run.data.params["model.name"] == "mlp"
    assert run.data.params["plots"] == "['curves', 'confusion']"
    rows = metrics_csv(run_dir)
    for key in ("train/loss", "val/accuracy", "lr"):
        history = mlflow.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), float(r[key])) for r in rows]
    summary = summary_of(run_dir)
    assert run.data.metrics["test/accuracy"] == summary["test"]["accuracy"]
    assert run.data.metrics["objective"] == summary["objective"]
    assert {a.path for a in mlflow.list_artifacts(run.info.run_id)} >= {"summary.json", "metrics.csv", "report.html",
                                                                        "checkpoints"}
    best = mlflow.download_artifacts(run.info.run_id, "checkpoints/best.pt", str(tmp_path))
    assert Path(best).read_bytes() == (run_dir / "checkpoints" / "best.pt").read_bytes()


@pytest.mark.slow
def test_a_sweep_is_one_experiment_with_a_parent_run(cli, server, tmp_path):
    sweep = tmp_path / "sweep"
    cli("-m", *SMOKE, "plots=[]", "report=false", "logger=mlflow", f"mlflow.tracking_uri={server}", "seed=1,2",
        f"hydra.sweep.dir={sweep}")
    mlflow = client(server)
    experiment = mlflow.get_experiment_by_name(f"dlrun sweep {sweep}")
    runs = mlflow.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r not in [parent]), key=lambda r: r.info.run_name)
    assert parent.info.status == "FINISHED"
    assert {a.path for a in mlflow.list_artifacts(parent.info.run_id)} >= {"summary.csv", "summary.md",
                                                                           "leaderboard.html"}
    assert [(r.info.run_name, r.data.params["seed"], r.data.tags["mlflow.parentRunId"]) for r in children] == [
        ("0", "1", parent.info.run_id), ("1", "2", parent.info.run_id)]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["objective"] == summary_of(sweep / child.info.run_name)["objective"]


@pytest.mark.slow
def test_the_default_store_is_in_the_outputs_and_a_resume_continues_the_same_run(cli, tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'dlrun[tracking]'")
    run_dir = tmp_path / "run"
    cli(*SMOKE, "plots=[]", "report=false", "logger=mlflow", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    cli("ckpt_path=" + str(run_dir), "trainer.max_epochs=3")
    store = cli.outputs / "mlflow.db"
    assert store.is_file() and (cli.outputs / "mlartifacts").is_dir()
    mlflow = client(f"sqlite:///{store}")
    (run,) = mlflow.search_runs([mlflow.get_experiment_by_name("dlrun").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert not (cli.cwd / "mlruns").exists()


def test_a_server_that_does_not_answer_is_one_line_before_the_run_starts(cli, tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'dlrun[tracking]'")
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = cli(*SMOKE, "logger=mlflow", f"mlflow.tracking_uri=http://127.0.0.1:{port}", "hydra.run.dir=run",
               check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"the MLflow tracking server at http://127.0.0.1:{port} does not answer" in proc.stderr
    assert not (tmp_path / "run").exists()
