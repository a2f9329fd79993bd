"""The benchmark scripts keep working (a smoke run each; their numbers are not asserted)."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.slow

SCRIPTS = {
    "loop_overhead.py": ["--epochs", "1"],
    "startup.py": ["--quick", "--repeats", "1"],
    "memory.py": ["--epochs", "3"],
    "time_to_result.py": ["--rounds", "1", "--epochs", "2"],
    "scaling.py": ["--smoke"],
    "input_pipeline.py": ["--images", "200", "--epochs", "2"],
    "csv_reading.py": ["--rows", "2000", "--columns", "5"],
    "launchers.py": ["--jobs", "2", "--only", "warm, n_jobs=2"],
}


def test_gpu_benchmark_refuses_to_pass_without_a_gpu():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--images", "2048", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    if torch.cuda.is_available():
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("images/s") == 2 * 16  # 4 models x 4 variants, both contenders
    else:
        assert proc.returncode == 2 and "needs a CUDA device" in proc.stderr


def test_gpu_benchmark_code_runs_on_the_cpu_with_a_tiny_model():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--tiny", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.splitlines()[-1]
    assert line.split()[:2] == ["cnn", "fp32"] and "hand-written" in line and "dlrun" in line and line.endswith("x")


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_runs(script):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *SCRIPTS[script]], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    if script == "loop_overhead.py":
        assert "dlrun loop" in proc.stdout and "x plain" in proc.stdout
    if script == "scaling.py":
        assert proc.stdout.count("us/row") == 4 and "held on" in proc.stdout
    if script == "csv_reading.py":
        assert "dlrun / pandas: time" in proc.stdout
    if script == "input_pipeline.py":
        assert "first epoch: dlrun / plain = " in proc.stdout and "later epochs: dlrun" in proc.stdout
    if script == "time_to_result.py":
        assert "dlrun / plain = " in proc.stdout and "artifacts" in proc.stdout
