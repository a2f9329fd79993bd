"""`dlrun compare RUN_OR_SWEEP...`: the leaderboard page of any set of runs (single runs, sweeps,
or both) in a fresh directory: every run's curves overlaid, a link to each run's report, and a
table of only the config keys that differ."""

from datetime import datetime

from dlrun import sweep
from dlrun.config import outputs_root, reserve_dir


def _fresh_dir():
    now = datetime.now()
    return reserve_dir(outputs_root() / "compare" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"))


def main(args):
    return sweep.main(args, prog="dlrun compare", default_out=_fresh_dir)
