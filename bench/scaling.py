"""How cost grows with the data: seconds per epoch (training and validation) and peak memory of
dlrun's loop on synthetic tables (10k to 1M rows) and images (1k to 100k), each size in its own
process; and where the data is held (on the device while it fits, else streamed from host memory).

    python bench/scaling.py              # tables 10k, 100k, 1M rows; images 1k, 10k, 100k
    python bench/scaling.py --quick      # the two smaller sizes of each
    python bench/scaling.py --smoke      # a tenth of those: that the script works, in seconds
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIZES = {"table": [10_000, 100_000, 1_000_000], "images": [1_000, 10_000, 100_000]}


def measure(kind, rows, device_name, epochs=3):
    """One size, in this process: {seconds per epoch, peak RSS, where the data is held}."""
    import numpy as np
    import torch

    import dlrun
    from dlrun import build
    from dlrun.data import DATASETS, Data
    from dlrun.stopping import Stop
    from dlrun.train.fit_policy import FitState

    @DATASETS.register("bench_rows")
    def bench_rows(n, kind):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, n)
        if kind == "table":
            x = rng.normal(size=(n, 20)).astype(np.float32) + y[:, None] * 0.1
            return Data(x=x, y=y, standardize=True)
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        return Data(x=x, y=y, image=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    cfg = dlrun.compose(["dataset.name=bench_rows", f"+dataset.n={rows}", f"+dataset.kind={kind}", "model=mlp",
                         "model.hidden_sizes=[64]", "trainer.batch_size=512", f"device={device_name}",
                         "split.test=0.1", "split.val=0.1"])
    torch.manual_seed(0)
    data = build.dataset(cfg)
    loop = build.loop(cfg, data, build.model(cfg, data), torch.device(dlrun_device(device_name)))
    state, flag, times = FitState(), Stop(), []
    for _ in range(epochs):
        start = time.perf_counter()
        loop.train_epoch(state, None, flag)
        loop.validate()
        times.append(time.perf_counter() - start)
    held = "streamed from host memory" if data.extra.get("streamed") else f"held on {loop.device}"
    return {"kind": kind, "rows": rows, "seconds": statistics.median(times[1:] or times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "held": held,
            "why": data.extra.get("streamed_why", "")}


def dlrun_device(name):
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "ROWS"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.device)))
        return
    for kind, sizes in SIZES.items():
        base = None
        for rows in [size // 10 for size in sizes[:2]] if args.smoke else sizes[:2] if args.quick else sizes:
            out = subprocess.run([sys.executable, __file__, "--one", kind, str(rows), "--device", args.device],
                                 capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            per_row = result["seconds"] / rows
            base = base or per_row
            print(f"{kind:7s} {rows:>9,} rows   {result['seconds']:7.3f} s/epoch   {per_row * 1e6:7.2f} us/row "
                  f"({per_row / base:4.2f}x the smallest)   peak {result['peak_rss_mb']:7.0f} MB   {result['held']}"
                  + (f": {result['why']}" if result["why"] else ""), flush=True)


if __name__ == "__main__":
    main()
