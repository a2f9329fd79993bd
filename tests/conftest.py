"""Shared helpers: the real `dlrun` command in a subprocess, with its outputs in a temp dir."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlrun.stopping import Reason, Stop

# Test processes run side by side (pytest -n): one torch thread each, as the `dlrun` subprocesses
# below get, instead of every process spreading over every core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

DLRUN = Path(sys.executable).parent / "dlrun"
REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """The slow tests first: side by side (pytest -n), the short ones then fill the last minutes,
    instead of one worker waiting for the other's long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def cli(tmp_path):
    """Run `dlrun ARGS` from a temp working directory; outputs land in tmp_path/outputs."""

    def run(*args, env=None, check=True, timeout=300):
        full_env = {**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1",
                    "COLUMNS": "120", **(env or {})}
        full_env.pop("HYDRA_FULL_ERROR", None) if "HYDRA_FULL_ERROR" not in (env or {}) else None
        proc = subprocess.run([str(DLRUN), *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"dlrun {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    run.outputs = tmp_path / "outputs"
    run.cwd = tmp_path
    return run


def start(cli, *args, env=None, own_group=False):
    """`dlrun ARGS` started in the background (for signals), in the cli fixture's directories;
    `own_group`: in a process group of its own, for signals to the whole group (os.killpg)."""
    env = {**os.environ, "DLRUN_OUTPUTS": str(cli.outputs), "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([str(DLRUN), *args], cwd=cli.cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=own_group)


def run_dirs(outputs):
    """Run directories (those with a summary.json) under `outputs`, oldest first."""
    return sorted((p.parent for p in Path(outputs).rglob("summary.json")), key=lambda p: p.stat().st_mtime)


def summary_of(run_dir):
    from dlrun.results import record

    return record.read(Path(run_dir) / "summary.json")


SMOKE = ["experiment=smoke", "trainer.progress=false"]

# The MLP of tests/paced.py: each training batch lasts at least `seconds` whatever the machine's speed.
# The `dlrun` process imports the plugin with env=PACED_ENV.
PACED_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parent)}


def paced(seconds):
    return ["plugins=[paced]", "model.name=paced_mlp", f"+model.seconds_per_batch={seconds}"]


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render_in_chromium(page, tmp_path, height=2400):
    """Open `page` in headless Chromium at 1280 px: returns ("loaded I/N width W/1280 cut C", screenshot
    array). The title is stated by a copy of the page: how many images decoded, how wide the page is
    (wider than the window means the main content overflows sideways), and how many of the tables
    shown (not collapsed) are cut (wider than their scrolling box: part of them is hidden at 1280 px)."""
    from matplotlib.image import imread

    probe = Path(page).read_text().replace(
        "</body>", "<script>window.onload = () => { const imgs = [...document.images];"
        " document.title = 'loaded ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length"
        " + '/' + imgs.length + ' width ' + document.documentElement.scrollWidth + '/' + window.innerWidth"
        " + ' cut ' + [...document.querySelectorAll('.scroll')].filter("
        " e => !e.closest('details:not([open])') && e.scrollWidth > e.clientWidth + 1).length;"
        " };</script></body>")
    copy = Path(page).with_name(".probe.html")
    copy.write_text(probe)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000",
             f"--window-size=1280,{height}", "--hide-scrollbars"]
    try:
        dom = subprocess.run([chromium(), *flags, "--dump-dom", f"file://{copy}"], capture_output=True, text=True,
                             timeout=120).stdout
    finally:
        copy.unlink()
    shot = tmp_path / "page.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", f"file://{page}"], capture_output=True, timeout=120)
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>" in dom else ""
    return title, imread(shot)


def built_loop(*overrides):
    """The Loop a run of these overrides would train, on the CPU, seeded as a run seeds it."""
    import torch

    from dlrun import build
    from dlrun.api import compose
    from dlrun.train import device as devices

    cfg = compose(list(overrides))
    build.load_components(cfg)
    devices.seed_everything(cfg.seed)
    data = build.dataset(cfg)
    return build.loop(cfg, data, build.model(cfg, data), torch.device("cpu"))


class StopAt(Stop):
    """A stop (as on SIGTERM) asked for at its n-th reading; the loop reads it at the end of each
    optimizer step."""

    def __init__(self, n):
        super().__init__()
        self.reads, self.n = 0, n

    def why(self):
        self.reads += 1
        if self.reads >= self.n and self.reason is None:
            self.reason = Reason("SIGTERM", 143)
        return super().why()
