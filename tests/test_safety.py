"""Divergence, interruption, kills during saves, and hostile checkpoint files."""

import csv
import os
import random
import signal
import time

import pytest
import torch

from conftest import PACED_ENV, SMOKE, paced, start, summary_of
from dlrun.train.trainer import MEASURED

# Long enough to interrupt: small batches, many epochs, no early stopping.
LONG = ["trainer.progress=false", "plots=[]", "report=false", "trainer.batch_size=16", "trainer.max_epochs=6",
        "trainer.early_stopping.enabled=false", "model.hidden_sizes=[512,256]"]


def wait_for(path, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_divergence_stops_with_status_and_keeps_last_good_checkpoint(cli):
    args = [*SMOKE, "dataset=diabetes", "optimizer=sgd", "scheduler=exponential", "scheduler.gamma=100",
            "trainer.max_epochs=8", "trainer.early_stopping.enabled=false", "hydra.run.dir=run"]
    proc = cli(*args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "the training loss became" in message and "at step" in message
    assert "learning rate" in message
    summary = summary_of(cli.cwd / "run")
    assert f"checkpoints/last.pt keeps epoch {summary['epochs_run']}, the last good one" in message
    assert summary["status"] == "diverged" and "loss became" in summary["error"]
    last = torch.load(cli.cwd / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["fit"]["epoch"] == summary["epochs_run"] >= 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())


PLUGIN = """
import torch
import torch.nn.functional as F
from dlrun.train.loss import LOSSES


class NanAtFirst(torch.nn.Module):
    \"\"\"Cross-entropy, except that the first `bad` training batches give NaN.\"\"\"

    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    def forward(self, logits, target):
        loss = F.cross_entropy(logits, target)
        if torch.is_grad_enabled() and self.bad > 0:
            self.bad -= 1
            return loss * float("nan")
        return loss


@LOSSES.register("nan_at_first")
def nan_at_first(bad=2):
    return NanAtFirst(bad)
"""


@pytest.mark.slow
def test_skip_nonfinite_skips_bad_batches_before_giving_up(cli):
    (cli.cwd / "nan_plugin.py").write_text(PLUGIN)
    (cli.cwd / "my_conf" / "loss").mkdir(parents=True)
    (cli.cwd / "my_conf" / "loss" / "nan_at_first.yaml").write_text("name: nan_at_first\nbad: 2\n")
    env = {"PYTHONPATH": str(cli.cwd)}
    args = [*SMOKE, "--config-dir", "my_conf", "plugins=[nan_plugin]", "loss=nan_at_first"]
    cli(*args, "trainer.skip_nonfinite=2", "hydra.run.dir=skipping", env=env)
    summary = summary_of(cli.cwd / "skipping")
    assert summary["status"] == "completed" and summary["skipped_batches"] == 2
    proc = cli(*args, "trainer.skip_nonfinite=1", "hydra.run.dir=strict", env=env, check=False)
    assert proc.returncode == 1 and "the training loss became nan at step 1" in " ".join(proc.stderr.split())
    assert "No checkpoint had been written yet." in " ".join(proc.stderr.split())
    assert summary_of(cli.cwd / "strict")["status"] == "diverged"
    assert not (cli.cwd / "strict" / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
def test_csv_with_missing_values_is_refused(cli):
    (cli.cwd / "d.csv").write_text("a,b,y\n1,2,0\nnan,3,1\n4,,0\n")
    proc = cli(*SMOKE, "dataset=csv", "dataset.path=d.csv", "dataset.target=y", check=False)
    assert proc.returncode == 2
    assert "column 'a' has a missing value ('nan') on line 3" in " ".join(proc.stderr.split())


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_exact_position_and_resume_matches(cli):
    cli(*LONG, "hydra.run.dir=straight")
    proc = start(cli, *LONG, "hydra.run.dir=stopped")
    wait_for(cli.cwd / "stopped" / "checkpoints" / "last.pt")
    time.sleep(random.uniform(0.05, 0.3))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # The run takes several seconds more than the signal's delay: exit 0 would mean it was ignored.
    assert proc.returncode == 143, err
    assert "dlrun: stopped by SIGTERM at step" in err and f"Resume with: dlrun ckpt_path={cli.cwd / 'stopped'}" in err
    summary = summary_of(cli.cwd / "stopped")
    assert summary["status"] == "interrupted"
    cli("ckpt_path=stopped", "trainer.progress=false")
    assert summary_of(cli.cwd / "stopped")["status"] == "completed"
    assert same_weights(weights(cli.cwd / "straight"), weights(cli.cwd / "stopped"))


def write_image_folder(root, classes=4, files=60):
    """A folder of PNGs, one sub-folder per class (each class brighter in one channel)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(files):
            pixels = rng.integers(0, 196, (32, 32, 3), dtype=np.uint8)
            pixels[..., c % 3] += np.uint8(20 * c)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")


def stop_group(proc, run_dir, sig, after_rows):
    """`sig` to the whole process group of `proc` (its DataLoader workers too, as Ctrl-C and
    SLURM send it) once metrics.csv has more than `after_rows` lines, a moment into the next epoch."""
    deadline = time.time() + 120
    while not (run_dir / "metrics.csv").exists() or len((run_dir / "metrics.csv").read_text().splitlines()) <= after_rows:
        assert time.time() < deadline and proc.poll() is None, "the run never finished an epoch"
        time.sleep(0.02)
    time.sleep(random.uniform(0.05, 0.3))
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return len((run_dir / "metrics.csv").read_text().splitlines()), proc.returncode, err


def write_shards(root, classes=4, files=60, shards=4):
    """The image folder's kind of samples as WebDataset tar shards (.png + .cls), written by webdataset."""
    import numpy as np

    wds = pytest.importorskip("webdataset", reason="the webdataset extra: pip install 'dlrun[webdataset]'")
    rng = np.random.default_rng(0)
    root.mkdir()
    for s in range(shards):
        with wds.TarWriter(str(root / f"train-{s}.tar")) as sink:
            for i in range(classes * files // shards):
                label = int(rng.integers(0, classes))
                pixels = rng.integers(0, 196, (32, 32, 3), dtype=np.uint8)
                pixels[..., label % 3] += np.uint8(20 * label)
                sink.write({"__key__": f"{s}-{i:04d}", "png": pixels, "cls": label})


# Every path a training's data can take, each stopped twice mid-epoch through its process group.
DATA_PATHS = {
    "folder decoded every epoch": (write_image_folder, ["dataset=image_folder", "dataset.root=images",
                                                        "dataset.cache=false"]),
    "folder's cache held in memory, policy-augmented": (
        write_image_folder, ["dataset=image_folder", "dataset.root=images", "dataset.cache_dir=cache",
                             "regularization.augment=[trivial_augment,random_erasing]"]),
    "folder's cache read from its map": (write_image_folder, ["dataset=image_folder", "dataset.root=images",
                                                              "dataset.cache_dir=cache", "dataset.in_memory=false"]),
    "webdataset shards": (write_shards, ["dataset=webdataset", "dataset.urls='images/train-{0..3}.tar'",
                                         "dataset.shuffle_buffer=16"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("path", DATA_PATHS)
def test_a_run_with_workers_stopped_twice_resumes_bit_identical_on_every_data_path(cli, path):
    write, dataset = DATA_PATHS[path]
    write(cli.cwd / "images")
    folder = [*dataset, "dataset.image_size=32", "model=cnn", "trainer.batch_size=8", "trainer.num_workers=2",
              "trainer.max_epochs=6", "seed=3", *LONG[:3], "trainer.early_stopping.enabled=false"]
    cli(*folder, "hydra.run.dir=straight")
    run = cli.cwd / "stopped"
    rows, code, err = stop_group(start(cli, *folder, "hydra.run.dir=stopped", own_group=True), run, signal.SIGTERM, 1)
    assert code == 143 and "dlrun: stopped by SIGTERM at step" in err and "Traceback" not in err, err
    rows, code, err = stop_group(start(cli, "ckpt_path=stopped", "trainer.progress=false", own_group=True), run,
                                 signal.SIGINT, rows)
    assert code == 130 and "dlrun: stopped by SIGINT at step" in err and "Traceback" not in err, err
    assert summary_of(run)["status"] == "interrupted"
    cli("ckpt_path=stopped", "trainer.progress=false")
    assert summary_of(run)["status"] == "completed"
    assert same_weights(weights(cli.cwd / "straight"), weights(run))
    assert unmeasured(run / "metrics.csv") == unmeasured(cli.cwd / "straight" / "metrics.csv")


@pytest.mark.slow
def test_a_time_budget_ends_with_results_and_resumes_exactly(cli):
    # 330 batches of at least 10 ms each: 1 s is a fraction of the run on any machine
    timed = [*LONG, *paced(0.01)]
    cli(*timed, "hydra.run.dir=straight", env=PACED_ENV)
    cli(*timed, "trainer.max_time=1", "hydra.run.dir=budget", env=PACED_ENV)
    summary = summary_of(cli.cwd / "budget")
    assert summary["status"] == "completed" and summary["stop_reason"].startswith("max_time, at step")
    assert summary["epochs_run"] < 6 and summary["test"]["accuracy"] > 0  # best.pt was evaluated
    ckpt = torch.load(cli.cwd / "budget" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["fit"]["timed_out"] and ckpt["fit"]["step"] == int(summary["stop_reason"].split()[3])
    cli("ckpt_path=budget", "plugins=[paced]", "trainer.max_time=null", "trainer.progress=false", env=PACED_ENV)
    assert summary_of(cli.cwd / "budget")["stop_reason"] == "max_epochs (6)"
    assert same_weights(weights(cli.cwd / "straight"), weights(cli.cwd / "budget"))


@pytest.mark.slow
def test_sigint_exits_130_and_writes_last_checkpoint(cli):
    proc = start(cli, *LONG, "hydra.run.dir=run")
    wait_for(cli.cwd / "run" / "metrics.csv")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # not 0: the run lasts far longer than the first epoch
    ckpt = torch.load(cli.cwd / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["fit"]["partial"] is not None or ckpt["fit"]["epoch"] >= 1


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_leaves_whole_files(cli):
    proc = start(cli, *LONG, "trainer.max_epochs=50", "hydra.run.dir=run")
    wait_for(cli.cwd / "run" / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert summary_of(cli.cwd / "run")["status"] == "interrupted"
    for name in ("last.pt", "best.pt"):
        torch.load(cli.cwd / "run" / "checkpoints" / name, weights_only=True)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_exact(cli):
    cli(*LONG, "hydra.run.dir=straight")
    run = cli.cwd / "killed"
    proc = start(cli, *LONG, "hydra.run.dir=killed")
    for _attempt in range(3):
        wait_for(run / "checkpoints" / "last.pt")
        time.sleep(random.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        for name in ("last.pt", "best.pt"):  # never truncated, whatever the moment
            if (run / "checkpoints" / name).exists():
                torch.load(run / "checkpoints" / name, weights_only=True)
        proc = start(cli, "ckpt_path=killed", "trainer.progress=false")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert summary_of(run)["status"] == "completed"
    assert same_weights(weights(cli.cwd / "straight"), weights(run))
    assert unmeasured(run / "metrics.csv") == unmeasured(cli.cwd / "straight" / "metrics.csv")


def unmeasured(metrics_csv):
    """metrics.csv without the columns that measure the machine (time, speed, memory)."""
    with open(metrics_csv, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in MEASURED} for row in csv.DictReader(handle)]


class Payload:
    """Unpickling this would run `touch` on the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_checkpoint_that_would_run_code_is_refused(cli, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "model": Payload(marker)}, tmp_path / "evil.pt")
    for task in ("train", "eval"):
        proc = cli(*SMOKE, f"task={task}", f"ckpt_path={tmp_path / 'evil.pt'}", check=False)
        assert proc.returncode != 0
        assert "refusing to load" in proc.stderr and "never loaded in unsafe mode" in " ".join(proc.stderr.split())
        assert not marker.exists()


@pytest.mark.slow
def test_truncated_foreign_and_mismatched_checkpoints_say_which(cli, tmp_path):
    cli(*SMOKE, "plots=[]", "hydra.run.dir=good")
    good = (cli.cwd / "good" / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    cases = {"truncated.pt": "is truncated or not a PyTorch checkpoint",
             "text.pt": "is truncated or not a PyTorch checkpoint",
             "foreign.pt": "not a dlrun checkpoint"}
    for name, message in cases.items():
        proc = cli(*SMOKE, "task=eval", f"ckpt_path={tmp_path / name}", check=False)
        assert proc.returncode != 0 and message in " ".join(proc.stderr.split()), proc.stderr
    proc = cli("task=eval", "ckpt_path=good", "model.hidden_sizes=[7]", check=False)
    assert proc.returncode != 0 and "does not fit the configured model" in proc.stderr
    assert "size mismatch" in proc.stderr


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from dlrun.results.artifacts import atomic_write

    target = tmp_path / "file.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def broken(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
