"""FLOPs per sample from the model summary's own trial pass (as torch's FlopCounterMode counts
them), model FLOP/s and utilisation in the throughput record, and device.matmul_precision."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import dlrun
from conftest import SMOKE
from dlrun.results.summary import _throughput
from dlrun.tasks.inspection import model_summary
from dlrun.train import device as devices


def test_flops_per_sample_are_torchs_count_of_the_matrix_work():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, groups=4, stride=2),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 3 * 3, 5))
    with FlopCounterMode(display=False) as counted:
        model(torch.zeros(1, 4, 7, 7))
    assert model_summary(model, (4, 7, 7))["flops_per_sample"] == counted.get_total_flops()


def test_model_flops_per_second_and_their_share_of_the_peak():
    history = [{"samples_per_s": 100.0}, {"samples_per_s": 300.0}]
    assert _throughput(history, 1e6) == {"samples_per_s": 200.0, "model_flops_per_s": 6e8}
    assert _throughput(history, 1e6, 1.2e9)["mfu"] == pytest.approx(0.5)
    assert devices.peak_flops("cpu", "bf16", "high") is None


def test_the_peak_of_a_listed_gpu_follows_the_products_it_computes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    assert devices.peak_flops("cuda:0", "bf16", "highest") == pytest.approx(989.4e12)
    assert devices.peak_flops("cuda:0", "fp32", "high") == pytest.approx(494.7e12)  # TF32
    assert devices.peak_flops("cuda:0", "fp32", "highest") == pytest.approx(66.9e12)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 PCIe")
    assert devices.peak_flops("cuda:0", "bf16", "highest") == pytest.approx(756e12)


def test_a_run_records_its_flops_and_sets_the_matmul_precision(tmp_path):
    before = torch.get_float32_matmul_precision()
    try:
        summary = dlrun.run([*SMOKE, "plots=[]", "report=false", "device.matmul_precision=medium"],
                            run_dir=tmp_path / "run")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    flops = summary["model_summary"]["flops_per_sample"]
    assert flops > 0 and summary["throughput"]["model_flops_per_s"] == pytest.approx(
        3 * flops * summary["throughput"]["samples_per_s"])
