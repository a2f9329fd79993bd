"""Graceful stop on Ctrl-C (SIGINT) and SIGTERM (what schedulers send before a kill).

In training, the first signal raises a flag that the loop reads after each
step: it finishes the step, writes last.pt and stops. A second Ctrl-C exits at
once; every file is written atomically, so nothing is left half-written.
Outside training (loading data, evaluating, plotting) both signals raise where
the program is, so that the run records what was done.
"""

import contextlib
import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

# Set when a cluster's scheduler stopped the job to requeue it (slurm.py): the job is resumed by
# the scheduler, so its sweep goes on.
preemption = threading.Event()


@contextlib.contextmanager
def _handlers(handlers):
    """Install `handlers` (signal -> handler) inside the block, and put the previous ones back;
    signal handlers can only be set in the main thread, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopFlag:
    """`signum`: the signal that asked training to stop, None until one does."""

    def __init__(self):
        self.signum = None
        self._installed = None

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        self._installed = _handlers({sig: self._handle for sig in EXIT_CODES})
        self._installed.__enter__()
        return self

    def __exit__(self, *exc):
        self._installed.__exit__(*exc)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: raised like Ctrl-C's KeyboardInterrupt."""

    exit_code = EXIT_CODES[signal.SIGTERM]


def _raise_terminated(signum, frame):
    raise Terminated("SIGTERM")


def stops_raise():
    """Inside this block Ctrl-C raises KeyboardInterrupt and SIGTERM raises Terminated (even
    where the shell started dlrun with SIGINT ignored, as it does for background jobs)."""
    return _handlers({signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated})
