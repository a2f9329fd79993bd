"""`dlrun compare RUN_OR_SWEEP...`: the leaderboard page of any set of runs (single runs, sweeps,
or both) in a fresh directory: every run's curves overlaid, a link to each run's report, and a
table of only the config keys that differ."""

from dlrun.sweeps import leaderboard


def main(args):
    return leaderboard.main(args, prog="dlrun compare", always_fresh=True)
