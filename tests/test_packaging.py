"""A plain `pip install .` ships conf/ inside the package: dlrun works from any directory."""

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

def test_built_wheel_carries_configs_and_the_sweeper(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("dlrun-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": ""}
    code = ("import dlrun.config.sources as c, hydra_plugins.dlrun_optuna as p; print(c.conf_dir()); "
            "from dlrun.cli import main; main(['--cfg', 'job', 'model=cnn', 'hparams_search=random_lr'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    conf_dir, rest = proc.stdout.split("\n", 1)
    assert conf_dir == str(tmp_path / "site" / "dlrun" / "conf")
    assert "name: cnn" in rest
