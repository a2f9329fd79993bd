"""Time to result: `dlrun experiment=digits_fast` against the plain PyTorch script that does the
same (bench/plain_digits.py), each a fresh process, alternating; then where the default run's
time goes, artifacts (every default plot and the report) included.

    python bench/time_to_result.py              # 3 rounds
    python bench/time_to_result.py --rounds 1

Targets: dlrun / plain <= 1.2 with the preset's two plots and the report, test accuracy >= 98%;
artifacts of the default run < 2 s.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PLAIN = Path(__file__).resolve().parent / "plain_digits.py"
ARTIFACTS = ("first_look", "plots", "report")


def wall(command, cwd):
    """Seconds for `command` as a fresh process, and its standard output."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, "DLRUN_OUTPUTS": str(Path(cwd) / "outputs")})
    return time.perf_counter() - started, proc.stdout


def dlrun(args, cwd, run_dir):
    seconds, _ = wall([str(BIN / "dlrun"), *args, "trainer.progress=false", f"hydra.run.dir={run_dir}"], cwd)
    return seconds, json.loads((Path(run_dir) / "summary.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="fewer epochs for both (a check of this script, not a result)")
    args = parser.parse_args()
    epochs = [] if args.epochs is None else [f"--epochs={args.epochs}"]
    budget = [] if args.epochs is None else [f"trainer.max_epochs={args.epochs}"]
    plain, ours, accuracies, plain_accuracies, artifacts = [], [], [], [], []
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(args.rounds):
            seconds, out = wall([sys.executable, str(PLAIN), *epochs], cwd)
            plain.append(seconds)
            plain_accuracies.append(float(re.search(r"test accuracy ([\d.]+)", out).group(1)))
            seconds, summary = dlrun(["experiment=digits_fast", *budget], cwd, Path(cwd) / f"fast{i}")
            ours.append(seconds)
            accuracies.append(summary["test"]["accuracy"])
            _, summary = dlrun(budget, cwd, Path(cwd) / f"default{i}")
            artifacts.append(summary["timings"])
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"plain PyTorch script (bench/plain_digits.py)  median {statistics.median(plain):6.2f} s  "
          f"(range {min(plain):.2f} - {max(plain):.2f}), test accuracy {statistics.median(plain_accuracies):.4f}")
    print(f"dlrun experiment=digits_fast                  median {statistics.median(ours):6.2f} s  "
          f"(range {min(ours):.2f} - {max(ours):.2f}), test accuracy {min(accuracies):.4f} - {max(accuracies):.4f}")
    print(f"time to result: dlrun / plain = {ratio:.2f}x   (target <= 1.2x, accuracy >= 0.98)")
    totals = [sum(t.get(k, 0.0) for k in ARTIFACTS) for t in artifacts]
    print(f"default run, artifacts (data plots, result plots, report): median {statistics.median(totals):.2f} s "
          f"(target < 2 s)")
    for phase in sorted({k for t in artifacts for k in t}):
        print(f"  {phase:12s} median {statistics.median(t.get(phase, 0.0) for t in artifacts):6.2f} s")


if __name__ == "__main__":
    main()
