"""What this machine gives this process, read where the operating system keeps it."""

import os


def cores():
    """The CPU cores this process may run on (its affinity: a SLURM or taskset limit counts)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
