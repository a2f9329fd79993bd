"""`dlrun torchrun [torchrun's options] [overrides]`: torchrun starting dlrun on every process, ending
as dlrun ends.

torchrun itself exits 1 whatever its workers' exit codes were, and prints its own traceback on a
signal and its failure report after any worker's failure. This runs torchrun's own launcher
(torch.distributed.run) with `-m dlrun` and the overrides, and ends with the run's code: 130 or
143 for a stop (rank 0 has said where the run is), the code of rank 0 (or, without one, of the
first process that failed) otherwise, as 128 + N for a process ended by signal N (exit_code). dlrun's
ranks say what went wrong (rank 0 names a failed rank); a process that died without a word from
dlrun (a crash in native code) gets one line here.
"""

import logging
import signal
import sys

from dlrun.errors import ConfigError, DlrunError
from dlrun.stopping import EXIT_CODES

USAGE = """usage: dlrun torchrun [torchrun's options] [overrides]

Runs `torchrun [options] -m dlrun [overrides]` and exits with the run's code: 130/143 for a stop,
rank 0's code (or the first failed process's) for a failure. torchrun's options come first:
    dlrun torchrun --standalone --nproc_per_node=4 model=resnet18 dataset=cifar10
    dlrun torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 --rdzv_id=JOB model=cnn
"""
STOPS = tuple(EXIT_CODES.values())
FAILURES = (DlrunError.exit_code, ConfigError.exit_code)
DLRUN_CODES = FAILURES + STOPS  # the codes dlrun itself ends with, each said by a rank before it exits


def split(argv):
    """(torchrun's options, dlrun's overrides): the leading arguments that start with '-', each
    with its value when written apart (`--nproc_per_node 4`), and the rest."""
    options, i = [], 0
    while i < len(argv) and argv[i].startswith("-"):
        takes_value = "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("-") \
            and "=" not in argv[i + 1]
        options += argv[i:i + 1 + takes_value]
        i += 1 + takes_value
    return options, argv[i:]


def exit_code(failures):
    """The code a failed run ends with, from torchrun's failures ({rank: ProcessFailure}), a
    process ended by signal N as 128 + N: a stop's when every process stopped; else rank 0's when
    it ended with dlrun's failure codes (it named the failed process); else that of the process
    that failed first (`first_failed`)."""
    codes = _codes(failures)
    if set(codes.values()) <= set(STOPS):
        return codes[min(codes)]
    if codes.get(0) in FAILURES:
        return codes[0]
    return codes[first_failed(failures)]


def first_failed(failures):
    """The rank of the process that failed first. torchrun sends SIGTERM to the others once one
    has ended, so a stop's code beside another failure is torchrun's doing, not a cause; its
    timestamps are whole seconds, so the earliest is found among the other codes."""
    codes = _codes(failures)
    causes = [rank for rank in failures if codes[rank] not in STOPS] or list(failures)
    return min(causes, key=lambda rank: (failures[rank].timestamp, rank))


def _codes(failures):
    return {rank: 128 - f.exitcode if f.exitcode < 0 else f.exitcode for rank, f in failures.items()}


class _DlrunSaidIt(logging.Filter):
    """Drops torchrun's own line on a failed process: dlrun's ranks have said what went wrong."""

    def filter(self, record):
        return not str(record.msg).startswith("failed (exitcode")


def main(argv, config_dirs=()):
    if {"-h", "--help"} & set(argv):
        print(USAGE, end="")
        return 0
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(_DlrunSaidIt())
    options, overrides = split(argv)
    overrides = [*(f"--config-dir={folder}" for folder in config_dirs), *overrides]  # dlrun's, wherever they stood
    try:
        run.run(run.get_args_parser().parse_args([*options, "-m", "dlrun", *overrides]))
    except SignalException as exc:  # torchrun was stopped: its workers stop on the same signal
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        failures = exc.failures
        code = exit_code(failures)
        if code not in DLRUN_CODES:  # no dlrun process had the last word
            rank = first_failed(failures)
            how = f"signal {code - 128} ({signal.Signals(code - 128).name})" if code > 128 else f"code {code}"
            print(f"dlrun torchrun: rank {rank} ended with {how}; run.log and torchrun's error file "
                  f"({failures[rank].error_file or 'none'}) say more.", file=sys.stderr)
        return code
    return 0
