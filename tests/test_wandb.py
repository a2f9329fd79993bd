"""logger=wandb with the real library in its offline mode, everything read back from the
transaction log W&B writes (RUN/wandb/offline-run-*/run-<id>.wandb), the file `wandb sync`
uploads: config, per-epoch history, summary, artifacts and exit code."""

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest

from conftest import SMOKE, summary_of
from dlrun.api import compose
from dlrun.errors import DlrunError
from dlrun.results import artifacts
from dlrun.sweeps import tracking
from dlrun.train.trainer import Interrupted

pytest.importorskip("wandb", reason="the wandb extra: pip install 'dlrun[wandb]'")

BLOCK = 32 * 1024  # the log is LevelDB's format: records in 32 KiB blocks, never crossing a block's end
FULL, FIRST, LAST = 1, 2, 4


def records(path):
    """The records of one W&B transaction log, as W&B's own protobuf messages."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, parts = 7, b""  # after the file's header: ':W&B', a magic number, the version
    while pos + 7 <= len(data):
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if BLOCK - pos % BLOCK < 7 or (kind, length) == (0, 0):  # the zero padding of a block's end
            pos += BLOCK - pos % BLOCK
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (FULL, FIRST) else parts + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _key(item):
    return "/".join(item.nested_key) or item.key


def read_run(folder):
    """What W&B recorded of the run(s) in `folder`/wandb, oldest first: one dict per offline run."""
    runs = []
    for log in sorted(Path(folder, "wandb").glob("offline-run-*/run-*.wandb")):
        found = {"history": [], "summary": {}, "artifacts": {}}
        for record in records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                found["run"] = record.run
                found["config"] = {_key(i): json.loads(i.value_json) for i in record.run.config.update}
            elif kind == "history":
                found["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                found["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
            elif kind == "artifact":
                found["artifacts"][record.artifact.type] = {e.path: (e.digest, e.local_path)
                                                            for e in record.artifact.manifest.contents}
            elif kind == "exit":
                found["exit_code"] = record.exit.exit_code
        runs.append(found)
    return runs


def md5(path):
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


def epochs(run):
    return [row for row in run["history"] if "epoch" in row]


@pytest.mark.slow
def test_a_run_is_one_offline_wandb_run_read_back_from_its_files(cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(*SMOKE, "logger=wandb", "wandb.project=lessons", "name=first", "tags=[baseline,dev]",
               f"hydra.run.dir={run_dir}")
    (run,) = read_run(run_dir)
    run_id = artifacts.read_json(run_dir / ".wandb_run.json")["run_id"]
    assert f"W&B offline run {run_id}; upload it with: wandb sync {run_dir}/wandb/offline-run-" in proc.stdout
    assert (run["run"].run_id, run["run"].project, run["run"].display_name) == (run_id, "lessons", "first")
    assert list(run["run"].tags) == ["baseline", "dev"] and run["run"].job_type == "train"
    assert run["config"]["trainer"]["max_epochs"] == 2 and run["config"]["model"]["name"] == "mlp"
    rows = artifacts.read_csv(run_dir / "metrics.csv")
    for key in ("train/loss", "val/accuracy", "lr"):
        assert [(r["epoch"], r[key]) for r in epochs(run)] == [(int(r["epoch"]), float(r[key])) for r in rows]
    summary = summary_of(run_dir)
    assert run["summary"]["test/accuracy"] == summary["test"]["accuracy"]
    assert run["summary"]["objective"] == summary["objective"]
    assert (run["summary"]["status"], run["summary"]["epochs_run"], run["exit_code"]) == ("finished", 2, 0)
    kept = run["artifacts"]["dlrun-run"]
    assert set(kept) == {"summary.json", "metrics.csv", "report.html", "checkpoints/best.pt"}
    for name, (digest, local_path) in kept.items():  # the run's own files, referenced, byte for byte
        assert Path(local_path) == run_dir / name and digest == md5(run_dir / name)


@pytest.mark.slow
def test_a_resume_continues_the_same_wandb_run(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli(*SMOKE, "plots=[]", "report=false", "logger=wandb", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    cli(f"ckpt_path={run_dir}", "trainer.max_epochs=3")
    first, resumed = read_run(run_dir)
    assert first["run"].run_id == resumed["run"].run_id
    assert [r["epoch"] for r in epochs(first)] == [1] and [r["epoch"] for r in epochs(resumed)] == [2, 3]
    assert resumed["summary"]["epochs_run"] == 3 and resumed["exit_code"] == 0


@pytest.mark.slow
def test_a_sweeps_jobs_are_one_group_with_the_leaderboard_beside_them(cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *SMOKE, "plots=[]", "report=false", "logger=wandb", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert "(2 completed, 0 failed)" in proc.stdout  # W&B's folder in the sweep is not a job
    jobs = [read_run(sweep / name)[0] for name in ("0", "1")]
    (board,) = read_run(sweep)
    group = f"sweep {sweep}"
    assert [(j["run"].run_group, j["config"]["seed"], j["run"].display_name) for j in jobs] == [
        (group, 1, "0"), (group, 2, "1")]
    assert [j["summary"]["objective"] for j in jobs] == [summary_of(sweep / n)["objective"] for n in ("0", "1")]
    assert (board["run"].run_group, board["run"].job_type, board["exit_code"]) == (group, "sweep", 0)
    assert set(board["artifacts"]["dlrun-sweep"]) == {"summary.csv", "summary.md", "leaderboard.html"}
    assert board["artifacts"]["dlrun-sweep"]["summary.csv"][0] == md5(sweep / "summary.csv")
    assert board["summary"]["leaderboard/nrows"] == 2 and board["summary"]["leaderboard/_type"] == "table-file"


@pytest.mark.parametrize("error, outcome, exit_code", [
    (Interrupted("stopped by SIGTERM at step 3", 143), "interrupted", 143),
    (DlrunError("the loss is NaN"), "failed", 1)])
def test_a_run_that_ends_early_ends_its_wandb_run_with_its_exit_code(tmp_path, error, outcome, exit_code):
    cfg = compose(["logger=wandb", "wandb.project=stops"])
    with pytest.raises(type(error)), tracking.tracked(cfg, tmp_path, enabled=True) as tracked:
        tracked.start()
        tracked.log_metrics({"train/loss": 0.5, "note": "text is not a metric"}, 1)
        raise error
    # W&B's service process writes the run's file after finish() returns; the `dlrun` command waits
    # for it at exit (W&B's exit handler), a test in this process must ask for the same wait.
    import wandb

    wandb.teardown()
    (run,) = read_run(tmp_path)
    assert epochs(run)[0]["train/loss"] == 0.5 and "note" not in epochs(run)[0]
    assert (run["summary"]["status"], run["summary"]["error"], run["exit_code"]) == (outcome, str(error), exit_code)
    assert "artifacts" not in run or not run["artifacts"]  # nothing written, nothing kept
