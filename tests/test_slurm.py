"""`hydra/launcher=slurm` on a real two-node SLURM cluster (both nodes on this machine), started by
scripts/local-slurm (Debian's slurm-wlm and munge; .ci/run installs them)."""

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, SMOKE, start, summary_of
from test_safety import same_weights, wait_for, weights

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SCRIPT = REPO / "scripts" / "local-slurm"
ON_THE_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=cpu", "hydra.launcher.cpus_per_task=1",
                  "hydra.launcher.mem_gb=1"]


@pytest.fixture(scope="session")
def slurm_conf():
    """The local cluster's slurm.conf, the cluster started if it is not running (once, whichever
    test process comes first)."""
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("SLURM is not installed here: scripts/local-slurm install (Debian's slurm-wlm and munge; root)")
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / "dlrun-slurm-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env_line = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    return env_line.strip().split("=", 1)[1]


@pytest.fixture
def on_slurm(slurm_conf, monkeypatch):
    """The environment in which dlrun, and through it sbatch, talk to the local cluster."""
    monkeypatch.setenv("SLURM_CONF", slurm_conf)
    return {"SLURM_CONF": slurm_conf}


def scontrol(*args):
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


def job_ids(sweep):
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())


def test_a_preempted_job_is_requeued_and_ends_as_if_never_stopped(cli, on_slurm, tmp_path):
    """SLURM's preemption signal (the one it also sends before a time limit): the job stops at a
    step boundary with its exact position in last.pt, submitit requeues it, and the requeued job
    ends with the weights and metrics of a run that was never stopped."""
    sweep = tmp_path / "sweep"
    job = [*SMOKE, "trainer.max_epochs=4", "trainer.batch_size=4", "plots=[]", "report=false", "seed=3"]
    sweeping = start(cli, "-m", *ON_THE_CLUSTER, *job, f"hydra.sweep.dir={sweep}")
    wait_for(sweep / "0" / "metrics.csv", timeout=180)  # the first epoch is over: the second is under way
    (job_id,) = job_ids(sweep)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    deadline = time.time() + 120
    while "Restarts=1" not in (record := scontrol("show", "job", job_id)):
        assert time.time() < deadline and sweeping.poll() is None, record
        time.sleep(0.5)
    # SLURM holds a requeued job for two minutes before it may start again; the test starts it
    # sooner, though not within the second of the requeue, whose job credential SLURM has revoked.
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    out, err = sweeping.communicate(timeout=300)
    assert sweeping.returncode == 0, err[-3000:]
    assert "(1 completed, 0 failed)" in out
    run_log = (sweep / "0" / "run.log").read_text()
    assert "stopped by the cluster's scheduler (preemption or time limit) with its exact position" in run_log
    assert "Requeued job" in run_log and "training on cpu from epoch 1" in run_log

    plain = tmp_path / "plain"
    cli(*job, f"hydra.run.dir={plain}")
    assert same_weights(weights(sweep / "0"), weights(plain))
    assert (sweep / "0" / "metrics.csv").read_text().count("\n") == 5
    for ours, theirs in zip(csv_rows(sweep / "0"), csv_rows(plain)):
        assert ours["train/loss"] == theirs["train/loss"] and ours["val/loss"] == theirs["val/loss"]
    assert summary_of(sweep / "0")["objective"] == summary_of(plain)["objective"]


def csv_rows(run_dir):
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def test_a_job_runs_on_a_cpu_partition_without_a_gpu_request_and_two_tasks_are_one_ddp_job(cli, on_slurm, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *ON_THE_CLUSTER, "hydra.launcher.tasks_per_node=2", *SMOKE, "device=cpu", "plots=[]",
               "report=false", f"hydra.sweep.dir={sweep}", env=on_slurm)
    assert "(1 completed, 0 failed)" in proc.stdout
    (job_id,) = job_ids(sweep)
    logs = sweep / ".submitit" / job_id
    script = (logs / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --signal=USR2@120" in script
    assert "#SBATCH --ntasks-per-node=2" in script and "gpu" not in script.lower()
    summary = summary_of(sweep / "0")
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["epochs_run"] == 2
    assert [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")] == ["0"]
    assert "dlrun completed" in (logs / f"{job_id}_0_log.out").read_text()  # rank 0 speaks, rank 1 only warns
    rank1 = (logs / f"{job_id}_1_log.out").read_text() + (logs / f"{job_id}_1_log.err").read_text()
    assert "dlrun" not in rank1 and "global_rank=1(2)" in rank1
    assert torch.load(sweep / "0" / "checkpoints" / "last.pt", weights_only=False)["world_size"] == 2


def test_a_job_on_two_nodes_is_one_ddp_run_with_a_process_on_each(cli, on_slurm, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *ON_THE_CLUSTER, "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=1", *SMOKE,
               "device=cpu", "plots=[]", "report=false", f"hydra.sweep.dir={sweep}", env=on_slurm)
    assert "(1 completed, 0 failed)" in proc.stdout
    (job_id,) = job_ids(sweep)
    logs = sweep / ".submitit" / job_id
    script = (logs / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    nodes = [field.split("=", 1)[1] for field in scontrol("show", "job", job_id).split() if field.startswith("NodeList=")]
    assert len(scontrol("show", "hostnames", nodes[0]).split()) == 2  # the cluster's two nodes
    rank1 = (logs / f"{job_id}_1_log.out").read_text() + (logs / f"{job_id}_1_log.err").read_text()
    assert "local_rank=0(1), node=1(2), global_rank=1(2)" in rank1  # node rank, local rank and global rank apart
    summary = summary_of(sweep / "0")
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")] == ["0"]
