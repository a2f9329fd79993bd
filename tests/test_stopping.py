"""The one stop (dlrun.stopping), in this process: real signals to this process, a real sweep
marker file, and the real loop reading the stop after each step. The command-line stops (a
sweep's Ctrl-C, SIGTERM to a process group, torchrun, SLURM) are in test_sweep, test_safety,
test_distributed and test_slurm."""

import os
import signal
import time

import pytest
import torch

from dlrun import build
from dlrun.api import compose
from dlrun.stopping import TIME_BUDGET, Reason, Stop, Stopped, SweepStop
from dlrun.train.fit_policy import FitState
from dlrun.train.trainer import Interrupted


def test_a_signal_in_training_is_a_reason_and_a_second_ctrl_c_raises_at_once():
    stop = Stop()
    with stop.watching():
        with pytest.raises(Stopped) as raised:
            with stop.training():
                os.kill(os.getpid(), signal.SIGTERM)
                assert stop.why() == Reason("SIGTERM", 143)  # recorded, nothing raised: the loop reads it
                os.kill(os.getpid(), signal.SIGINT)
                pytest.fail("a second Ctrl-C in training raises at once")
    assert raised.value.exit_code == 130 and "second Ctrl-C" in str(raised.value)
    assert stop.reason.cause == "SIGTERM"  # the first reason stays


def test_outside_training_a_signal_raises_where_the_program_is():
    stop = Stop()
    with pytest.raises(Stopped) as raised, stop.watching():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert raised.value.exit_code == 143 and str(raised.value) == "stopped by SIGTERM"


def test_a_stop_after_the_loops_last_look_raises_as_training_ends():
    stop = Stop()
    with pytest.raises(Stopped) as raised, stop.watching(), stop.training():
        stop.request(Reason("SIGINT", 130))
    assert raised.value.exit_code == 130


def test_the_time_budget_ends_training_but_not_the_run():
    stop = Stop()
    with stop.watching():
        with stop.training(max_time=0.0):
            assert stop.why() is TIME_BUDGET and not TIME_BUDGET.ends_run
        assert stop.why() is None  # the budget belongs to the block


def test_a_new_run_starts_without_the_last_ones_reason():
    stop = Stop()
    with pytest.raises(Stopped), stop.watching():
        stop.request(Reason("SIGINT", 130))
    assert stop.reason is not None  # read after the run (job.run_from_hydra, the SLURM launcher)
    with stop.watching():
        assert stop.why() is None


def test_a_request_before_a_run_stops_it_as_it_begins():
    stop = Stop()
    stop.request(Reason("preemption", 143))  # SLURM's signal just before the job starts: nothing raises
    with pytest.raises(Stopped) as raised, stop.watching():
        pytest.fail("the run starts although it was asked to stop")
    assert raised.value.exit_code == 143 and stop.preempted  # what the SLURM launcher reads, to requeue


def test_a_process_that_ignores_signals_for_good_keeps_ignoring_them_after_its_run():
    """What a failing data-parallel process asks for: torchrun's SIGTERM after another process
    ended arrives whenever it arrives, also once the run's handlers are put back."""
    import subprocess
    import sys

    program = ("import os, signal\n"
               "from dlrun.stopping import Stop, ignore_signals_for_good\n"
               "with Stop().watching():\n"
               "    ignore_signals_for_good()\n"
               "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGINT)\n"
               "print('still here')\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "still here\n", done.stderr


@pytest.mark.parametrize("in_training", [False, True])
def test_a_job_stops_with_its_sweep(tmp_path, in_training):
    """The file of the protocol, written by another process in a real sweep: the job raises
    where it is (outside training) or its loop reads the sweep's reason."""
    stop = Stop()
    with pytest.raises(Stopped) as raised, stop.watching(tmp_path):
        if in_training:
            with stop.training():
                SweepStop(tmp_path).request(130)
                deadline = time.monotonic() + 10
                while stop.why() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert stop.why() == Reason("sweep", 130)
        else:
            SweepStop(tmp_path).request(143)
            time.sleep(10)
    assert raised.value.exit_code == (130 if in_training else 143)


def test_the_sweeps_first_signal_marks_it_and_a_second_ctrl_c_ends_it_at_once(tmp_path):
    ended = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sweep = SweepStop(tmp_path)
        sweep.install(at_once=lambda: ended.append(True))
        os.kill(os.getpid(), signal.SIGTERM)
        assert SweepStop(tmp_path).requested() == 143 and not ended
        os.kill(os.getpid(), signal.SIGINT)
        assert ended == [True] and SweepStop(tmp_path).requested() == 143  # the first code stays
        sweep.wind_down()  # the sweep's process ends the stopped sweep: its file goes first
        os.kill(os.getpid(), signal.SIGTERM)
        assert SweepStop(tmp_path).requested() is None  # not marked again
        os.kill(os.getpid(), signal.SIGINT)
        assert ended == [True, True]  # a second Ctrl-C while it winds down: at once
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    SweepStop(tmp_path).clear()
    assert SweepStop(tmp_path).requested() is None and not list(tmp_path.iterdir())


def test_the_loop_reads_the_stop_after_each_step_and_keeps_the_exact_position():
    cfg = compose(["experiment=smoke", "trainer.max_epochs=3", "plots=[]", "report=false"])
    build.load_components(cfg)
    data = build.dataset(cfg)
    loop = build.loop(cfg, data, build.model(cfg, data), torch.device("cpu"))
    stop, saved, state = Stop(), {}, FitState()
    steps = len(loop.train_batches) + 2  # in the second epoch
    loop.step_hooks.append(lambda: state.step == steps and stop.request(Reason("preemption", 143)))
    with pytest.raises(Interrupted) as raised:
        loop.fit(state, lambda name, ckpt: saved.update({name: ckpt}), stop)
    assert raised.value.exit_code == 143
    assert str(raised.value).startswith(f"stopped by preemption at step {steps} (epoch 2)")
    assert saved["last"]["fit"]["step"] == steps and saved["last"]["fit"]["partial"]["batch"] == 2 and state.epoch == 1


PACKAGE = '''
import os, signal, time
import stopped_pkg.part
VALUE = stopped_pkg.part.VALUE
if os.environ.pop("STOP_IN_IMPORT", None):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
'''


def test_a_stop_inside_an_import_leaves_the_package_importable(tmp_path, monkeypatch):
    (tmp_path / "stopped_pkg").mkdir()
    (tmp_path / "stopped_pkg" / "__init__.py").write_text(PACKAGE)
    (tmp_path / "stopped_pkg" / "part.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STOP_IN_IMPORT", "1")
    stop = Stop()
    with pytest.raises(Stopped), stop.watching():
        import stopped_pkg  # noqa: F401
    import stopped_pkg

    assert stopped_pkg.VALUE == 7
