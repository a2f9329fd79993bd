"""Shared helpers: the real `dlrun` command in a subprocess, with its outputs in a temp dir."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DLRUN = Path(sys.executable).parent / "dlrun"
REPO = Path(__file__).resolve().parent.parent


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


def start(cli, *args):
    """`dlrun ARGS` started in the background (for signals), in the cli fixture's directories."""
    env = {**os.environ, "DLRUN_OUTPUTS": str(cli.outputs), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([str(DLRUN), *args], cwd=cli.cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_dirs(outputs):
    """Run directories (those with a summary.json) under `outputs`, oldest first."""
    return sorted((p.parent for p in Path(outputs).rglob("summary.json")), key=lambda p: p.stat().st_mtime)


def summary_of(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


SMOKE = ["experiment=smoke", "trainer.progress=false"]
