"""`dlrun leaderboard DIR...` (and `dlrun compare`): rebuild the leaderboard of a sweep, in it,
or of any set of run directories, in a fresh directory under outputs/compare."""

import argparse
import sys
from pathlib import Path

from dlrun.layout import SweepDir
from dlrun.sweeps.pages import write
from dlrun.sweeps.rows import job_dirs


def fresh_compare_dir():
    """A new outputs/compare/DATE/TIME directory (reserved: two at once get _1, _2...)."""
    from datetime import datetime

    from dlrun.config.sources import outputs_root, reserve_dir

    now = datetime.now()
    return reserve_dir(outputs_root() / "compare" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"))


def main(args, prog="dlrun leaderboard", always_fresh=False):
    """`dlrun leaderboard DIR...`: rebuild the leaderboard of a sweep (in it) or of a set of run
    directories (in a fresh directory under outputs/compare, where `dlrun compare` always writes)."""
    parser = argparse.ArgumentParser(prog=prog, description="The leaderboard (summary.csv, summary.md, "
                                     "leaderboard.html with every run's curves, links to each report and the config "
                                     "keys that differ) of a sweep directory or of any run directories.")
    parser.add_argument("paths", nargs="+", metavar="DIR", help="a sweep directory, or run directories")
    parser.add_argument("--out", type=Path, help="where to write it (default: a fresh directory under "
                        "outputs/compare" + ("" if always_fresh else "; for one sweep directory, the sweep") + ")")
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exc:  # argparse's usage line and its exit code (2; 0 for --help)
        return exc.code
    missing = [p for p in parsed.paths if not Path(p).is_dir()]
    if missing:
        print(f"{prog}: no such directory: {missing[0]}", file=sys.stderr)
        return 2
    empty = next((p for p in parsed.paths if not job_dirs([p])), None)
    if empty is not None:
        print(f"{prog}: no runs in {empty} (a sweep directory, or run directories with summary.json or .hydra/)",
              file=sys.stderr)
        return 2
    sweep_dir = len(parsed.paths) == 1 and SweepDir(parsed.paths[0]).multirun.is_file()
    # A sweep's leaderboard goes into the sweep; one of chosen runs, into a directory of its own.
    folder = parsed.out or (Path(parsed.paths[0]) if sweep_dir and not always_fresh else fresh_compare_dir())
    folder.mkdir(parents=True, exist_ok=True)
    rows, _ = write(folder, parsed.paths)
    print(f"{len(rows)} runs -> {SweepDir(folder).leaderboard}")
    return 0
