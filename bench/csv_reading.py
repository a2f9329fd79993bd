"""Reading a large CSV table: dlrun's `dataset=csv` builder (its columnar reader and checks) against
the plain way, pandas.read_csv and a float32 array of the features, on the same generated file,
each in a fresh process so that its peak memory is its own.

    python bench/csv_reading.py                     # 1,000,000 rows of 100 float columns and a label
    python bench/csv_reading.py --rows 20000        # a check of this script

Target: the million-row table in seconds, in a few times the memory of its values.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READERS = {
    "dlrun dataset=csv": "from dlrun.data.csv_file import csv; x = csv(PATH, target='label').x",
    "pandas.read_csv": "import pandas; t = pandas.read_csv(PATH); x = t.drop(columns='label').to_numpy('float32')",
}


def write(path, rows, columns):
    import pyarrow as pa
    from pyarrow import csv

    rng = np.random.default_rng(0)
    table = {f"f{i}": rng.normal(size=rows).astype(np.float32) for i in range(columns)}
    table["label"] = rng.integers(0, 5, rows)
    csv.write_csv(pa.table(table), path)


def measure(code, path):
    """Seconds and peak RSS (MB) of `code` reading `path` in a fresh process (imports not timed)."""
    probe = (f"import resource, time\nPATH = {str(path)!r}\nimport numpy, pyarrow\n"
             f"started = time.perf_counter()\n{code}\n"
             f"print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, x.shape)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        started = time.perf_counter()
        write(path, args.rows, args.columns)
        size = path.stat().st_size / 2**20
        values = args.rows * args.columns * 4 / 2**20
        print(f"{args.rows:,} rows x {args.columns} columns + label: {size:,.0f} MB of CSV, {values:,.0f} MB as "
              f"float32 (written in {time.perf_counter() - started:.1f} s)")
        results = {name: measure(code, path) for name, code in READERS.items()}
    for name, (seconds, peak) in results.items():
        print(f"{name:<20} {seconds:7.2f} s   peak RSS {peak:7,.0f} MB")
    ours, theirs = results["dlrun dataset=csv"], results["pandas.read_csv"]
    print(f"dlrun / pandas: time {ours[0] / theirs[0]:.2f}x, peak memory {ours[1] / theirs[1]:.2f}x")


if __name__ == "__main__":
    main()
