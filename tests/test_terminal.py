"""What a person sees: the live training display, the phases after training,
early stopping, the short config, the model and data summaries, task=inspect."""

import contextlib
import shutil
import subprocess
import time

import pytest
import torch

import dlrun
from conftest import DLRUN, PACED_ENV, SMOKE, paced, summary_of
from dlrun.tasks import inspection
from dlrun.train import progress
from dlrun.train.fit_policy import FitState


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_display_counts_epochs_from_one_and_estimates_the_whole_run(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    display = progress.TrainingProgress(max_epochs=3, batch_size=10, monitor="val/loss", task="multiclass")
    fields = display.bar.tasks[0].fields
    assert fields["epoch"] == "1/3" and fields["eta"] == "eta -:--:--"
    clock.now += 2.0
    display.step(4, 20)  # 4 of 20 batches in 2 s: 0.5 s a batch, 56 batches to go
    assert fields["epoch"] == "1/3" and fields["eta"] == "eta 0:00:28" and fields["speed"] == "20 samples/s"
    state = FitState(epoch=1, best_value=0.5, best_epoch=1)
    display.epoch(state, {"epoch": 1, "train/loss": 0.9, "val/loss": 0.5, "val/accuracy": 0.75, "seconds": 10.0})
    assert fields["epoch"] == "2/3" and display.bar.tasks[0].completed == 0
    assert display.bar.note == "last: train/loss 0.9000  val/loss 0.5000  val/accuracy 0.7500   best val/loss 0.5000 (epoch 1)"
    display.step(17, 20)  # the loop's last update of an epoch may come a few batches before its end
    state.epoch = 3
    display.epoch(state, {"epoch": 3, "train/loss": 0.5, "val/loss": 0.4, "seconds": 10.0})
    assert fields["epoch"] == "3/3"  # the last epoch stays on screen, not "4/3"
    assert display.bar.tasks[0].completed == 20  # and its bar is full
    display.__exit__(None, None, None)
    assert fields["eta"] == "done"


@pytest.mark.parametrize("ending,last", [("early", "early stopping"), ("stop", "stopped"), ("nothing", None)])
def test_the_last_frame_says_how_training_ended(ending, last):
    display = progress.TrainingProgress(max_epochs=30, batch_size=10, monitor="val/loss", task="multiclass")
    with pytest.raises(KeyboardInterrupt) if ending == "stop" else contextlib.nullcontext():
        with display:
            if ending != "nothing":  # a resume that only finishes sees no batch
                display.step(20, 20)
            if ending == "early":
                display.epoch(FitState(epoch=12, best_value=0.5, best_epoch=9, stopped_early=True),
                              {"epoch": 12, "train/loss": 0.9, "val/loss": 0.6, "seconds": 1.0})
            if ending == "stop":
                raise KeyboardInterrupt
    if last is None:
        assert display.bar.tasks == []  # no "0/?  eta -:--:--" left on screen
    else:
        assert display.bar.tasks[0].fields["eta"] == last


def test_a_message_wraps_between_words_in_a_terminal_and_stays_one_line_when_piped():
    from io import StringIO

    from rich.console import Console

    from dlrun import console

    text = "dlrun train  dataset=synthetic_imbalanced  model=mlp  optimizer=adam (lr 0.001)  scheduler=none"
    terminal = Console(file=StringIO(), force_terminal=True, width=40, color_system=None)
    console.say(text, terminal)
    lines = terminal.file.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert " ".join(" ".join(lines).split()) == " ".join(text.split())  # no word was cut
    piped = Console(file=StringIO(), force_terminal=False, width=40)
    console.say(text, piped)
    assert piped.file.getvalue() == text + "\n"


def test_model_summary_counts_trainable_and_frozen_parameters():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))
    net[0].requires_grad_(False)
    summary = inspection.model_summary(net, (3, 8, 8))
    assert summary["params"] == 3 * 4 * 9 + 4 + 144 * 5 + 5
    assert summary["frozen"] == 3 * 4 * 9 + 4 and summary["trainable"] == 144 * 5 + 5
    assert [(r["layer"], r["output_shape"]) for r in summary["layers"]] == [
        ("0", [4, 6, 6]), ("1", [4, 6, 6]), ("2", [144]), ("3", [5])]
    assert summary["size_mb"] == round(summary["params"] * 4 / 2**20, 3)
    assert net.training  # the trial forward restores the mode


def test_inspect_writes_the_summaries_and_data_plots_without_training(tmp_path):
    summary = dlrun.run(["task=inspect", "model=cnn", "regularization=augment"], run_dir=tmp_path / "run")
    run = tmp_path / "run"
    assert summary["status"] == "completed" and summary["epochs_run"] == 0
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["class_counts.png", "samples.png"]
    assert not (run / "checkpoints").exists()
    counts = summary["data_summary"]["class_counts"]
    assert {split: sum(c.values()) for split, c in counts.items()} == summary["sizes"]
    model = summary["model_summary"]
    assert model["layers"][-1] == {"layer": "head", "type": "Linear", "output_shape": [10], "params": 128 * 10 + 10}


def test_a_table_gets_its_feature_summary_in_original_units(tmp_path):
    summary = dlrun.run([*SMOKE, "dataset=diabetes", "task=inspect"], run_dir=tmp_path / "run")
    features = summary["data_summary"]["features"]
    assert len(features) == 10 and "class_counts" not in summary["data_summary"]
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data
    assert x[:, 2].min() <= features[2]["min"] < features[2]["max"] <= x[:, 2].max()  # raw units, not z-scores


@pytest.mark.slow
def test_the_terminal_tells_what_happens(cli):
    proc = cli("dataset=diabetes", "trainer.max_epochs=40", "plots=[curves]", "hydra.run.dir=run")
    out = proc.stdout
    assert "dlrun train  dataset=diabetes  model=mlp" in out and "overrides: dataset=diabetes" in out
    assert "early stopping at epoch" in out and "has not improved by more than 0.0 for 5 epochs" in out
    for phase in ("> evaluating on the test split (67 samples)", "> drawing plots into", "> writing report.html"):
        assert phase in out
    assert "test/loss (standardised)" in out and "losses are on standardised targets" in out
    assert "config\n" not in out and "> model: " in out  # the short config and the model's totals
    summary = summary_of(cli.cwd / "run")
    assert summary["stop_reason"] == f"early stopping at epoch {summary['epochs_run']} " \
                                     f"(best epoch {summary['monitor']['best_epoch']})"
    full = cli(*SMOKE, "show_config=full", "hydra.run.dir=full").stdout
    assert "config\n├── task: train" in full and "┃ layer" in full
    assert "model:" not in cli(*SMOKE, "show_config=none", "hydra.run.dir=none").stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (Debian's tmux package) to watch a real terminal")
def test_a_person_watching_a_terminal_sees_epoch_eta_speed_and_metrics(cli, tmp_path):
    session = f"dlrun{time.monotonic_ns()}"
    # 14 batches of at least 0.1 s an epoch: each epoch is on the screen for several captures, on any machine
    command = f"cd {cli.cwd} && PYTHONPATH={PACED_ENV['PYTHONPATH']} DLRUN_OUTPUTS={cli.outputs} {DLRUN} " \
              f"{' '.join(paced(0.1))} trainer.max_epochs=3 plots=[] hydra.run.dir=run; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "40", command], check=True)
    try:
        screens = []
        deadline = time.time() + 180
        while time.time() < deadline and not any("epoch 3/3" in s for s in screens):
            screens.append(subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                          text=True).stdout)
            time.sleep(0.5)
        during = [s for s in screens if "samples/s" in s]
        assert any("epoch 1/3" in s and "eta 0:" in s for s in during)
        assert any("epoch 2/3" in s and "last: train/loss" in s and "best val/loss" in s for s in during)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_version_sub_command_help_and_exit_codes(cli):
    from importlib.metadata import version

    out = cli("--version").stdout
    assert out.startswith(f"dlrun {dlrun.__version__}, torch {version('torch')}, ") and "hydra-core" in out
    assert cli("leaderboard", "--help").stdout.startswith("usage: dlrun leaderboard [-h] [--out OUT] DIR [DIR ...]")
    assert cli("list", "--help").stdout.startswith("usage: dlrun list [-h] [group ...]")
    wrong = cli("list", "modle", check=False)
    assert wrong.returncode == 2 and "group=modle is not known. Did you mean 'model'?" in wrong.stderr
    assert "Exit codes: 0 done; 1 the run failed" in cli("--help").stdout


def test_a_csv_runs_features_are_named_by_their_columns_in_the_record_and_the_report(tmp_path):
    rows = [f"{i * 0.1:.1f},{['red', 'blue'][i % 2]},{i % 3},{i % 2}" for i in range(60)]
    (tmp_path / "t.csv").write_text("height,colour,count,label\n" + "\n".join(rows) + "\n")
    summary = dlrun.run([*SMOKE, "dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=label",
                         "dataset.categorical=[colour]", "plots=[]"], run_dir=tmp_path / "run")
    names = [f["feature"] for f in summary["data_summary"]["features"]]
    assert names == ["height", "colour=blue", "colour=red", "count"]  # one-hot levels sorted
    report = (tmp_path / "run" / "report.html").read_text()
    assert all(f"<td>{name}</td>" in report for name in names)


EXIT_WATCHER = '''
import atexit, os, pathlib, threading, time
out = pathlib.Path(os.environ["WATCH_DIR"])
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(1), (out / "thread").write_text("joined"))).start()
'''


@pytest.mark.slow
@pytest.mark.parametrize("bad", [False, True])
def test_the_command_ends_as_the_interpreter_would_and_keeps_its_exit_code(cli, tmp_path, bad):
    """The `dlrun` script skips only the interpreter's teardown of its modules (bench/RESULTS.md:
    about a second): a plugin's exit handler runs, its thread is joined, the output is whole and
    the exit code is the run's."""
    (tmp_path / "exit_watcher.py").write_text(EXIT_WATCHER)
    failing = ["dataset=csv", f"dataset.path={tmp_path / 'none.csv'}", "dataset.target=y"] if bad else []
    done = cli(*SMOKE, "plugins=[exit_watcher]", "plots=[]", "report=false", *failing, check=False,
               env={"PYTHONPATH": str(tmp_path), "WATCH_DIR": str(tmp_path)})
    assert done.returncode == (2 if bad else 0), done.stderr  # 2: the data file named does not exist
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "joined"
    assert ("none.csv" in done.stderr) if bad else ("test/accuracy" in done.stdout)
