"""Start-up and end-to-end times of the real `dlrun` command.

    python bench/startup.py            # --help, --cfg job, list, the smoke run, experiment=digits_fast
    python bench/startup.py --quick    # skip digits_fast
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


def timed(args, cwd, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(DLRUN), *args], cwd=cwd, check=True, capture_output=True,
                       env={**os.environ, "DLRUN_OUTPUTS": str(Path(cwd) / "outputs")})
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the time-to-accuracy run")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the fast commands")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        rows = [("dlrun --help", timed(["--help"], cwd, args.repeats), "target < 1 s"),
                ("dlrun --cfg job", timed(["--cfg", "job"], cwd, args.repeats), "target < 1 s"),
                ("dlrun list", timed(["list"], cwd, args.repeats), "")]
        rows.append(("dlrun experiment=smoke (end to end)",
                     timed(["experiment=smoke", "trainer.progress=false"], cwd, repeats=1), ""))
        if not args.quick:
            run = Path(cwd) / "fast"
            seconds = timed(["experiment=digits_fast", "trainer.progress=false", f"hydra.run.dir={run}"], cwd, 1)
            accuracy = json.loads((run / "summary.json").read_text())["test"]["accuracy"]
            rows.append((f"experiment=digits_fast, test accuracy {accuracy:.4f}", seconds, "target >= 0.98 in < 10 s"))
    for name, seconds, note in rows:
        print(f"{name:50s} {seconds:7.2f} s   {note}")


if __name__ == "__main__":
    main()
