"""Data-parallel training under torchrun, on CPU with the gloo backend."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import DLRUN, SMOKE, summary_of
from dlrun.data.base import Part
from dlrun.data.batches import DeviceTransform, TensorBatches

TORCHRUN = Path(sys.executable).parent / "torchrun"


def test_shards_of_an_epoch_are_disjoint_and_equal():
    part = Part(torch.arange(11).float().view(11, 1), torch.arange(11))
    cpu = torch.device("cpu")
    shards = [torch.cat([y for _, y in TensorBatches(part, 2, cpu, DeviceTransform(cpu), True, 5,
                                                     shard=(rank, 2)).epoch()]) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dlrun", *SMOKE,
                           "device=cpu", "hydra.run.dir=run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = summary_of(tmp_path / "run")
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["epochs_run"] == 2
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("summary.json"))
    assert proc.stdout.count("dlrun completed") == 1
    # continued by one process: the global batch halves, and the run says so
    proc = subprocess.run([str(DLRUN), "ckpt_path=run", "trainer.max_epochs=3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("trained by 2 process(es) and continues with 1: the global batch changes from 256 to 128 "
            "(trainer.batch_size=128 per process)") in " ".join(proc.stderr.split())


@pytest.mark.slow
def test_accumulation_under_torchrun_equals_the_larger_batch(tmp_path):
    """Two processes: batches of 16 accumulated 4 times (gradients all-reduced once per window)
    give the weights of batches of 64."""
    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    weights = {}
    for name, args in (("big", ["trainer.batch_size=64"]),
                       ("small", ["trainer.batch_size=16", "trainer.accumulate_grad_batches=4"])):
        proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dlrun", *SMOKE, "device=cpu",
                               "model.dropout=0.0", "trainer.max_epochs=1", "plots=[]", "report=false", *args,
                               f"hydra.run.dir={name}"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        weights[name] = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in weights["big"].items():
        assert torch.allclose(value, weights["small"][key], atol=1e-5), key


def assert_same_epochs(whole, resumed, epochs):
    """The resumed run's per-epoch training and validation metrics are those of the whole one."""
    rows = [(run / "metrics.csv").read_text().splitlines() for run in (whole, resumed)]
    a_rows, b_rows = ([dict(zip(r[0].split(","), line.split(","))) for line in r[1:]] for r in rows)
    assert len(a_rows) == len(b_rows) == epochs
    for a, b in zip(a_rows, b_rows):
        for key in ("train/loss", "train/accuracy", "val/loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key


# The data held as tensors, and read from WebDataset shards by each process's DataLoader worker.
DATA = {"tensors": [], "webdataset shards": ["dataset=webdataset", "dataset.urls='images/train-{0..3}.tar'",
                                            "dataset.shuffle_buffer=16", "model=cnn", "trainer.num_workers=1"]}


@pytest.mark.slow
@pytest.mark.parametrize("data", DATA)
def test_a_run_under_torchrun_stopped_twice_mid_epoch_resumes_counting_every_process_once(tmp_path, data):
    """Stopped mid-epoch by its time budget, then by SIGTERM to torchrun's process group (torchrun
    passes it to its workers), and resumed each time, a 2-process run's metrics equal those of the
    run that was never stopped: the checkpoint carries the running sums of both processes and the
    position of the one index stream they share."""
    import signal
    import time

    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    common = [*SMOKE, "device=cpu", "trainer.batch_size=8", "trainer.max_epochs=8", "plots=[]", "report=false",
              *DATA[data]]
    if data != "tensors":
        from test_safety import write_shards

        write_shards(tmp_path / "images")

    def torchrun(*args):
        proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dlrun", *common, *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    torchrun("hydra.run.dir=whole")
    torchrun("hydra.run.dir=stopped", "trainer.max_time=0.6")  # an epoch takes 0.3 to 1 s on the tensors
    metrics = tmp_path / "stopped" / "metrics.csv"
    rows = len(metrics.read_text().splitlines())
    assert rows - 1 < 8  # the budget ended the training early
    proc = subprocess.Popen([str(DLRUN), "torchrun", "--standalone", "--nproc_per_node", "2", *common,
                             "ckpt_path=stopped"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    while len(metrics.read_text().splitlines()) <= rows:  # a moment into the next epoch
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and summary_of(tmp_path / "stopped")["status"] == "interrupted", err[-3000:]
    assert "Traceback" not in err and f"Resume with: dlrun torchrun --standalone --nproc_per_node=2 " \
                                      f"ckpt_path={tmp_path / 'stopped'}" in " ".join(err.split()), err[-3000:]
    ckpt = torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["fit"]["partial"]["batch"] > 0  # stopped inside an epoch
    torchrun("ckpt_path=stopped", "trainer.max_time=null")
    assert_same_epochs(tmp_path / "whole", tmp_path / "stopped", 8)


@pytest.mark.slow
def test_a_kill_9_of_torchrun_stops_its_workers_and_only_rank_0_speaks(tmp_path):
    """torchrun starts each worker in a session of its own: killing torchrun's process group
    with SIGKILL reaches only torchrun. Its workers stop on their own (SIGTERM at their parent's
    death), rank 0 saving the exact position in last.pt; a resume under torchrun completes."""
    import signal
    import time

    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dlrun", "trainer.progress=false", "plots=[]",
            "report=false", "device=cpu", "trainer.max_epochs=200", "trainer.early_stopping.enabled=false",
            "trainer.batch_size=16"]
    proc = subprocess.Popen([*args, "hydra.run.dir=run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "metrics.csv").is_file():
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived torchrun by 10 s"
    summary = summary_of(tmp_path / "run")
    assert summary["status"] == "interrupted" and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "dlrun-rank-" not in (tmp_path / "run" / "run.log").read_text()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone, only not yet reaped
        return stat.read().split()[2] != "Z"


FLAKY = '''
"""A model whose rank 1 fails at its 5th training forward pass, as FLAKY says."""
import math, os, signal, time

from torch import nn

from dlrun.models import MODELS, Network


class Flaky(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training and os.environ["RANK"] == "1":
            self.calls += 1
            if self.calls == 5:
                how = os.environ["FLAKY"]
                if how == "raise":
                    raise MemoryError("rank 1 ran out of memory")
                if how == "hang":  # stuck as in native code, where torchrun's SIGTERM ends it
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    time.sleep(3600)
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if how == "nan":
                    return self.inner(x) * float("nan")
        return self.inner(x)


@MODELS.register("flaky")
def flaky(input_shape, num_outputs):
    inner = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.ReLU())
    return Network(Flaky(inner), nn.Linear(16, num_outputs))
'''

# What rank 0 says, once, and records when rank 1 fails in each way.
FAILURES = {
    "raise": ("failed", r"rank 1 failed at step \d+: rank 1 ran out of memory"),
    "kill": ("failed", r"rank 1 ended at step \d+ without a word \(killed, or out of memory\)"),
    "hang": ("failed", r"rank 1 stopped answering at step \d+: no reply within 5 s \(trainer.collective_timeout\)"),
    "nan": ("diverged", r"the gradients became non-finite \(loss [\d.]+\) at step \d+"),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", FAILURES)
def test_a_rank_that_fails_stops_every_rank_and_is_named(tmp_path, how):
    """A rank that raises, is killed, hangs or diverges ends the whole run: rank 0 names what
    happened in one line and in the record, and `dlrun torchrun` exits with rank 0's code, without
    torchrun's own report. The hang is bounded by
    trainer.collective_timeout (a hung process that ignored torchrun's SIGTERM would then have
    torchrun's own 30 s before it is killed; this one does not)."""
    import re

    (tmp_path / "flaky.py").write_text(FLAKY)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "flaky.yaml").write_text("name: flaky\n")
    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1", "FLAKY": how,
           "PYTHONPATH": str(tmp_path)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([str(DLRUN), "torchrun", "--standalone", "--nproc_per_node=2", "--config-dir", "conf",
                           "plugins=[flaky]", "model=flaky", *SMOKE, "device=cpu", "trainer.batch_size=8",
                           "trainer.collective_timeout=5", "plots=[]", "report=false", "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    status, said = FAILURES[how]
    assert proc.returncode == 1 and not [word for word in ("Traceback", "ChildFailedError", "exitcode") if word in proc.stderr]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(("dlrun error", "dlrun:"))]  # dlrun's own
    assert len(lines) == 1 and re.fullmatch(f"dlrun error: {said}.*", lines[0]), proc.stderr[-3000:]
    record = summary_of(tmp_path / "run")
    assert record["status"] == status and re.match(said, record["error"])


def _vote(rank, store_file, wait_at, seen):
    """Rank 1 alone has a reason to stop from step 3 on; each rank records what it agreed at each step."""
    import torch.distributed as dist

    from dlrun.train import distributed

    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    votes = distributed.StopVotes()
    seen[rank] = [votes.agree((143 if rank == 1 and step >= 3 else 0, 0), wait=step == wait_at)[0]
                  for step in range(6)]
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("wait_at", [None, 3])
def test_stop_votes_are_agreed_a_step_behind_and_at_once_at_an_epochs_end(tmp_path, wait_at):
    """No process waits for the vote of its own step (no host sync per step), yet every process
    reads the same result at the same step; the last step of an epoch waits for its own."""
    import torch.multiprocessing as mp

    seen = mp.Manager().dict()
    mp.spawn(_vote, args=(str(tmp_path / "store"), wait_at, seen), nprocs=2)
    # A step behind: step 3's vote is read at step 4. Waited for at step 3 (an epoch's end), it is
    # read at once, and the next epoch's first step has no earlier vote to read.
    expected = [0, 0, 0, 143, 0, 143] if wait_at == 3 else [0, 0, 0, 0, 143, 143]
    assert seen[0] == seen[1] == expected


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_one_model_and_resume_it_exactly(tmp_path):
    """Two torchrun agents on this machine stand in for two nodes (a c10d rendezvous on 127.0.0.1,
    one process each): both have local rank 0, and only global rank 0 writes the run directory. A
    run stopped by its time budget and resumed ends with the metrics of one never stopped (a run
    stopped twice: the single-node tests above)."""
    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    common = [*SMOKE, "device=cpu", "trainer.batch_size=8", "trainer.max_epochs=8", "plots=[]", "report=false"]

    def two_nodes(*args):
        port, procs = _free_port(), []
        for _ in range(2):
            procs.append(subprocess.Popen(
                [str(TORCHRUN), "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                 f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id={port}", "-m", "dlrun", *common, *args],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]

    two_nodes("hydra.run.dir=whole")
    assert summary_of(tmp_path / "whole")["world_size"] == 2
    two_nodes("hydra.run.dir=stopped", "trainer.max_time=0.6")
    assert summary_of(tmp_path / "stopped")["epochs_run"] < 8
    two_nodes("ckpt_path=stopped", "trainer.max_time=null")
    assert_same_epochs(tmp_path / "whole", tmp_path / "stopped", 8)
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "summary.json").exists()) == ["stopped", "whole"]


@pytest.mark.slow
def test_sync_batchnorm_on_the_cpu_is_refused_in_one_line_and_leaves_nothing(tmp_path):
    env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "dlrun", *SMOKE, "device=cpu",
                           "model=cnn", "model.batchnorm=true", "trainer.sync_batchnorm=true", "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    # Refused before training, by each process (whichever torchrun lets finish first).
    said = {line for line in proc.stderr.splitlines() if line.startswith("dlrun error")}
    assert said == {"dlrun error: trainer.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm runs on GPUs "
                    "only); on cpu each process keeps its own batch statistics: drop it."}, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_dlrun_torchrun_splits_its_arguments_and_ends_with_the_runs_code():
    from types import SimpleNamespace

    from dlrun.tasks import torchrun

    assert torchrun.split(["--standalone", "--nproc_per_node", "4", "--rdzv_id=x", "model=cnn", "seed=1"]) == (
        ["--standalone", "--nproc_per_node", "4", "--rdzv_id=x"], ["model=cnn", "seed=1"])
    assert torchrun.split(["model=cnn"]) == ([], ["model=cnn"])
    def ended(code, at):
        return SimpleNamespace(exitcode=code, timestamp=at)

    assert torchrun.exit_code({0: ended(143, 5), 1: ended(143, 5)}) == 143  # a stop
    assert torchrun.exit_code({0: ended(143, 6), 1: ended(1, 5)}) == 1  # rank 1 failed; torchrun then stopped rank 0
    assert torchrun.exit_code({0: ended(1, 6), 1: ended(-9, 5)}) == 1  # rank 0 named the killed rank
    assert torchrun.exit_code({1: ended(-9, 5), 0: ended(-15, 6)}) == 137  # killed first, nobody said why
    # torchrun's timestamps are whole seconds: its SIGTERM to rank 0 in the second rank 1 failed
    assert torchrun.exit_code({1: ended(1, 5), 0: ended(-15, 5)}) == 1
    assert torchrun.exit_code({1: ended(-9, 5), 0: ended(143, 5)}) == 137
