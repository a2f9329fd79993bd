"""A full disk, an unusable output directory and stop signals in every phase:
the run ends with one line and a record that never claims more than is on disk.

The disk-full cases fill a real small filesystem (a tmpfs, which mounting needs
root for); the signals are real signals to the real command."""

import os
import signal
import subprocess
import time

import pytest

import dlrun
from conftest import SMOKE, start, summary_of
from dlrun.results.artifacts import WriteError


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs of that size, unmounted after the test."""
    mounted = []

    def mount(size):
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill (it needs root): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder):
    """Write until the filesystem is full."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unusable_run_directory_is_one_line_and_makes_nothing(cli, tmp_path, where):
    (tmp_path / "a_file").write_text("not a directory")
    target = {"file": tmp_path / "a_file" / "run", "proc": "/proc/dlrun_run"}[where]
    proc = cli(*SMOKE, f"hydra.run.dir={target}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"hydra.run.dir={target}: cannot write there" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not cli.outputs.exists()


def test_a_full_disk_before_the_start_is_one_line_and_leaves_no_directory(cli, small_disk):
    disk = small_disk("256k")
    fill(disk)
    proc = cli(*SMOKE, f"hydra.run.dir={disk / 'runs' / 'run'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write there (no space left on device)" in proc.stderr
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_checkpoint_that_does_not_fit_fails_the_run_with_the_os_reason(small_disk):
    run_dir = small_disk("1m") / "run"
    with pytest.raises(WriteError, match=r"cannot write .*/checkpoints/best.pt: no space left on device"):
        dlrun.run([*SMOKE, "model.hidden_sizes=[512,512]"], run_dir=run_dir)
    summary = summary_of(run_dir)
    assert summary["status"] == "failed" and "no space left on device" in summary["error"]
    assert list((run_dir / "checkpoints").iterdir()) == []  # no half-written file, no temporary left


def test_a_report_that_does_not_fit_is_a_failed_run_never_completed(small_disk, monkeypatch):
    from dlrun.results import report

    monkeypatch.setattr(report, "render", lambda *args: "x" * 8_000_000)  # a report larger than the disk
    run_dir = small_disk("4m") / "run"
    with pytest.raises(WriteError, match=r"cannot write .*/report.html: no space left on device"):
        dlrun.run(SMOKE, run_dir=run_dir)
    summary = summary_of(run_dir)
    assert summary["status"] == "failed" and "report.html" in summary["error"]
    assert not (run_dir / "report.html").exists() and (run_dir / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_while_plotting_is_recorded_and_the_resume_finishes_it(cli, signum, code):
    run = cli.cwd / "run"
    proc = start(cli, "dataset=digits", "trainer.max_epochs=1", "trainer.progress=false", "hydra.run.dir=run",
                 "plots=[curves,embeddings,confusion]")
    deadline = time.time() + 120
    while not (run / "plots" / "curves.png").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)  # held mid-phase, so that the signal surely lands while plotting
    assert summary_of(run)["status"] == "running"
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err
    summary = summary_of(run)
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 1
    assert f"Finish with: dlrun ckpt_path={run}" in summary["error"] and not (run / "report.html").exists()
    cli(f"ckpt_path={run}", "trainer.progress=false")
    assert summary_of(run)["status"] == "completed" and (run / "report.html").is_file()
    assert (run / "plots" / "embeddings_pca.png").is_file()


def test_a_stop_before_the_start_keeps_nothing(tmp_path, monkeypatch):
    from dlrun import build

    def stopped(cfg):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the data loads
        time.sleep(5)

    monkeypatch.setattr(build, "raw_dataset", stopped)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        dlrun.run(SMOKE, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
