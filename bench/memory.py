"""Peak resident memory of the default run, and its growth across epochs.

Runs the default config (MLP on digits) in this process for N epochs and
reads the resident set size after every epoch; growth is the last epoch's
RSS against the second's (the first includes one-off allocations).
"""

import argparse
import resource

import torch

import dlrun
from dlrun import build
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState


def rss_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    cfg = dlrun.compose(["device=cpu", f"trainer.max_epochs={args.epochs}"])
    build.load_components(cfg)
    torch.manual_seed(0)
    data = build.dataset(cfg)
    loop = build.loop(cfg, data, build.model(cfg, data), torch.device("cpu"))
    state, flag, samples = FitState(), Stop(), []
    for _ in range(args.epochs):
        loop.train_epoch(state, None, flag)
        loop.validate()
        samples.append(rss_mb())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = (samples[-1] - samples[1]) / samples[1] * 100
    print(f"default run, {args.epochs} epochs: peak RSS {peak:.0f} MB; RSS after epoch 2 {samples[1]:.0f} MB, "
          f"after epoch {args.epochs} {samples[-1]:.0f} MB: growth {growth:+.1f}% (target within 5%)")


if __name__ == "__main__":
    main()
