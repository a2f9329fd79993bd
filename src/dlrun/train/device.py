"""Device selection, seeding, determinism and the RNG state that checkpoints carry."""

import contextlib
import os
import random
import resource
import sys

import numpy as np
import torch

from dlrun.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def available():
    """Device kinds usable on this machine, in order of preference."""
    kinds = []
    if torch.cuda.is_available():
        kinds.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        kinds.append("mps")
    return kinds + ["cpu"]


def select(name):
    """`auto` picks cuda, then mps, then cpu; an absent device is a clear error."""
    kinds = available()
    if name == "auto":
        return torch.device(kinds[0])
    base = str(name).split(":")[0]
    if base not in ("cuda", "mps", "cpu"):
        raise ConfigError(f"device.name={name} is not known. Choose one of: auto, cpu, cuda, mps.")
    if base not in kinds:
        raise ConfigError(
            f"device.name={name}, but no {base.upper()} device is available on this machine "
            f"(available: {', '.join(kinds)}). Use device=auto or device=cpu."
        )
    return torch.device(name)


def gpu_for_job(job_num, gpu_count):
    """Round-robin GPU index for job `job_num` of a parallel sweep (None: leave the default)."""
    return job_num % gpu_count if gpu_count > 1 else None


def for_job(device, job_num):
    """A parallel sweep's job `job_num` on its own GPU, when there are several."""
    if device.type != "cuda" or device.index is not None or job_num is None:
        return device
    index = gpu_for_job(job_num, torch.cuda.device_count())
    return device if index is None else torch.device("cuda", index)


def seed_everything(seed):
    """One seed for Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure(deterministic, matmul_precision="highest"):
    """Deterministic algorithms and cuDNN flags, or cuDNN autotuning when not deterministic; the
    precision of float32 matrix products (device.matmul_precision: high is TF32 on GPUs)."""
    torch.set_float32_matmul_precision(matmul_precision)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matrix products.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only when it changes: this call imports torch's compiler stack (about 2 s).
    if torch.are_deterministic_algorithms_enabled() != bool(deterministic):
        torch.use_deterministic_algorithms(bool(deterministic))
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def rng_state():
    """Every RNG state as tensors and plain containers (loadable with weights_only=True)."""
    version, keys, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(keys), gauss],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
         np_state["has_gauss"], np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def untouched(model):
    """Around trial passes through `model` (a batch size tried, the compiler warmed): its buffers
    (batch-norm statistics), gradients, train/eval mode and every random state are as they were
    afterwards, so the run trains as if they had not happened."""
    buffers = [b.detach().clone() for b in model.buffers()]
    rng, was_training = rng_state(), model.training
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        with torch.no_grad():
            for b, kept in zip(model.buffers(), buffers):
                b.copy_(kept)
        set_rng_state(rng)


# Dense peak TFLOP/s of GPUs by name (NVIDIA's data sheets) for each kind of matrix product: what
# model FLOPs utilisation is measured against. A GPU not listed gets no utilisation figure.
PEAK_TFLOPS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
}


def peak_flops(device, precision, matmul_precision):
    """The GPU's peak FLOP/s for the products a run computes (None: not a listed GPU)."""
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    kind = precision if precision != "fp32" else ("fp32" if matmul_precision == "highest" else "tf32")
    return next((peaks[kind] * 1e12 for gpu, peaks in PEAK_TFLOPS.items() if gpu in name), None)


def autocast(device, precision):
    """The autocast context for `precision`, or None for full precision."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_memory_mb(device):
    """The process's peak resident memory so far, and on CUDA the most memory tensors held on
    the device since the last reset (once per epoch), in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak = {"peak_rss_mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}
    if device.type == "cuda":
        peak["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak
