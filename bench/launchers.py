"""Small jobs through each local launcher: what a sweep costs beyond its jobs' own work.

    python bench/launchers.py              # a 30-job grid (experiment=smoke, one epoch, no plots)
    python bench/launchers.py --jobs 10    # a shorter one
    python bench/launchers.py --only warm  # the launchers whose name has `warm`

For each launcher the grid is timed whole through the real `dlrun -m` command, and once with a
single job; the per-job overhead is what each further job adds beyond its own run
((T(grid) - T(one job)) / (jobs - 1) - the mean of the jobs' own wall_time_s from summary.json):
composing its config, Hydra's bookkeeping, and for parallel launchers starting workers. The
plain-PyTorch reference trains the same small jobs (scikit-learn's digits, the MLP of
model=mlp, Adam, one epoch of batches of 128, a test pass) back to back in one fresh process.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DLRUN = Path(sys.executable).parent / "dlrun"
GRID = ["experiment=smoke", "trainer.max_epochs=1", "trainer.progress=false", "plots=[]", "report=false"]
LAUNCHERS = {
    "basic (Hydra's, serial)": [],
    "warm, n_jobs=1": ["hydra/launcher=warm", "hydra.launcher.n_jobs=1"],
    "warm, n_jobs=2": ["hydra/launcher=warm", "hydra.launcher.n_jobs=2"],
    "parallel (joblib), n_jobs=2": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
}


def sweep(cwd, launcher, jobs):
    """Seconds the whole `dlrun -m` took, and the jobs' own wall times."""
    folder = Path(cwd) / f"sweep-{time.monotonic_ns()}"
    start = time.perf_counter()
    subprocess.run([str(DLRUN), "-m", *GRID, f"seed=range(0,{jobs})", *launcher, f"hydra.sweep.dir={folder}"],
                   cwd=cwd, check=True, capture_output=True, env={**os.environ, "DLRUN_OUTPUTS": str(cwd)})
    seconds = time.perf_counter() - start
    walls = [json.loads((folder / str(i) / "summary.json").read_text())["wall_time_s"] for i in range(jobs)]
    return seconds, walls


PLAIN = """
import sys, time
start = time.perf_counter()
import torch
from sklearn.datasets import load_digits
from torch import nn
for seed in range(int(sys.argv[1])):
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data / 16, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y))
    train, test = order[:1257], order[1527:]
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for batch in train[torch.randperm(len(train))].split(128):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net(x[test]).argmax(1) == y[test]).float().mean().item()
print(time.perf_counter() - start)
"""


def plain(jobs):
    """Seconds the plain-PyTorch loop of `jobs` jobs takes, imports included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PLAIN, str(jobs)], check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--only", default="", help="only the launchers whose name has this")
    args = parser.parse_args()
    print(f"{args.jobs}-job grid: {' '.join(GRID)} seed=range(0,{args.jobs}); {os.cpu_count()} cores")
    reference = plain(args.jobs), plain(1)
    print(f"plain PyTorch, one process: {reference[0]:.2f} s for the grid, {reference[1]:.2f} s for one job, "
          f"{(reference[0] - reference[1]) / (args.jobs - 1):.3f} s a further job")
    print(f"{'launcher':30s} {'grid s':>8s} {'1 job s':>8s} {'s/job':>7s} {'own s/job':>10s} {'overhead':>9s} "
          f"{'vs first':>9s} {'vs plain':>9s}")
    with tempfile.TemporaryDirectory() as cwd:
        basic = None
        for name, launcher in ((n, a) for n, a in LAUNCHERS.items() if args.only in n):
            total, walls = sweep(cwd, launcher, args.jobs)
            one, _ = sweep(cwd, launcher, 1)
            per_job = (total - one) / (args.jobs - 1)
            own = sum(walls) / len(walls)
            basic = basic or total  # the first launcher timed is the comparison
            print(f"{name:30s} {total:8.2f} {one:8.2f} {per_job:7.3f} {own:10.3f} {per_job - own:9.3f} "
                  f"{total / basic:8.2f}x {total / reference[0]:8.2f}x")


if __name__ == "__main__":
    main()
