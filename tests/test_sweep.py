"""Sweeps through the real CLI: grid, Optuna, failures, resumption, parallel load."""

import csv
import json
import os
import shlex
import signal
import time

import pytest
from matplotlib.image import imread

from conftest import PACED_ENV, SMOKE, chromium, paced, render_in_chromium, summary_of
from dlrun.stopping import SweepStop
from dlrun.train.device import gpu_for_job
from test_safety import start, wait_for

QUIET = [*SMOKE, "plots=[]", "report=false"]


def leaderboard(sweep):
    with open(sweep / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_grid_sweep_leaderboard_cell_by_cell(cli):
    cli("-m", *QUIET, "model=mlp,logistic", "optimizer.lr=0.001,0.01", "hydra.sweep.dir=sweep")
    sweep = cli.cwd / "sweep"
    rows = leaderboard(sweep)
    assert len(rows) == 4 and {r["job"] for r in rows} == {"0", "1", "2", "3"}
    objectives = [float(r["objective"]) for r in rows]
    assert objectives == sorted(objectives)  # val/loss: lower is better, best first
    assert [r["best"] for r in rows] == ["*", "", "", ""] and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    for row in rows:
        summary = summary_of(sweep / row["job"])
        assert row["status"] == summary["status"] == "completed"
        assert float(row["objective"]) == pytest.approx(summary["objective"])
        assert int(row["best_epoch"]) == summary["monitor"]["best_epoch"]
        assert float(row["test/accuracy"]) == pytest.approx(summary["test"]["accuracy"])
        assert row["overrides"].split()[-2:] == summary["overrides"][-2:]
    assert {"model=mlp optimizer.lr=0.001", "model=logistic optimizer.lr=0.01"} <= {
        " ".join(r["overrides"].split()[-2:]) for r in rows}
    assert (sweep / "summary.md").read_text().count("| completed |") == 4
    assert (sweep / "objective_vs_model.png").is_file() and (sweep / "objective_vs_optimizer.lr.png").is_file()
    page = (sweep / "leaderboard.html").read_text()
    assert "objective: val/loss at the best epoch (lower is better)" in page
    assert "<a href=" not in page  # report=false: no job has a report to link to
    assert (sweep / "curves.png").is_file() and "<h2>Config keys that differ</h2>" in page


@pytest.mark.slow
def test_a_failing_job_is_a_row_and_the_sweep_exits_non_zero(cli):
    proc = cli("-m", *QUIET, "optimizer.lr=0.001,-1,0.01", "hydra.sweep.dir=sweep", check=False)
    assert proc.returncode == 1
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "sweep")}
    assert rows["1"]["status"] == "failed" and "optimizer.lr=-1 is out of range" in rows["1"]["error"]
    assert rows["0"]["status"] == rows["2"]["status"] == "completed"


@pytest.mark.slow
def test_seed_sweep_reports_mean_std_and_whether_one_configuration_is_better(cli):
    out = cli("-m", *QUIET, "model=mlp,logistic", "seed=1,2,3", "hydra.sweep.dir=sweep").stdout
    sweep = cli.cwd / "sweep"
    with open(sweep / "summary_by_configuration.csv", newline="") as handle:
        groups = {r["configuration"].split()[-1]: r for r in csv.DictReader(handle)}
    objectives = {model: [summary_of(sweep / str(i))["objective"] for i in range(6)
                          if f"model={model}" in summary_of(sweep / str(i))["overrides"]] for model in ("mlp", "logistic")}
    import statistics

    for model, values in objectives.items():
        group = groups[f"model={model}"]
        assert int(group["runs"]) == 3
        assert float(group["objective mean"]) == pytest.approx(statistics.fmean(values))
        assert float(group["objective std"]) == pytest.approx(statistics.stdev(values))
        assert float(group["objective ci95 low"]) < statistics.fmean(values) < float(group["objective ci95 high"])
    paired = json.loads((sweep / "paired_comparison.json").read_text())
    assert paired["seeds"] == ["1", "2", "3"] and {paired["a"], paired["b"]} == {"model=mlp", "model=logistic"}
    first = objectives[paired["a"].split("=")[1]]
    second = objectives[paired["b"].split("=")[1]]
    assert paired["mean_difference"] == pytest.approx(statistics.fmean(x - y for x, y in zip(first, second)))
    assert paired["verdict"] in out and paired["verdict"] in (sweep / "summary.md").read_text()


def outcome(sweep):
    """What a sweep ended with, job by job."""
    return {r["job"]: (r["status"], r["objective"], r["test/accuracy"], r["overrides"]) for r in leaderboard(sweep)}


def resume_command(stderr):
    """The arguments of the resume command an interrupted sweep printed last, as a shell reads them."""
    return shlex.split(stderr.strip().splitlines()[-1].split("Resume with: ")[1])[1:]


@pytest.mark.slow
def test_a_killed_or_interrupted_sweep_resumed_ends_like_a_straight_one(cli):
    args = [*QUIET, "trainer.max_epochs=4", "model.hidden_sizes=[512,256]", "trainer.batch_size=16",
            "optimizer.lr=0.001,0.002,0.003"]
    cli("-m", *args, "hydra.sweep.dir=straight")
    proc = start(cli, "-m", *args, "hydra.sweep.dir=killed")
    wait_for(cli.cwd / "killed" / "1" / "checkpoints" / "last.pt")
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert summary_of(cli.cwd / "killed" / "0")["status"] == "completed"
    cli("-m", *args, "hydra.sweep.dir=killed", "resume=true")
    assert outcome(cli.cwd / "killed") == outcome(cli.cwd / "straight")

    proc = start(cli, "-m", *args, "hydra.sweep.dir=stopped")  # Ctrl-C: the whole sweep stops
    wait_for(cli.cwd / "stopped" / "1" / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert not (cli.cwd / "stopped" / "2").exists()  # no job started after the signal
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "stopped")}
    assert [rows[j]["status"] for j in "012"] == ["completed", "interrupted", "not started"]
    assert rows["2"]["overrides"].endswith("optimizer.lr=0.003")
    assert "sweep interrupted: 1 completed, 1 interrupted, 0 failed, 1 not started" in err.strip().splitlines()[-1]
    resume = resume_command(err)
    assert resume[0] == "-m" and resume[-1] == "resume=true"
    cli(*resume)  # the command exactly as printed
    assert outcome(cli.cwd / "stopped") == outcome(cli.cwd / "straight")


@pytest.mark.slow
def test_ctrl_c_stops_an_optuna_sweep_with_its_leaderboard_and_the_printed_command_continues_it(cli):
    args = [*QUIET, "hparams_search=random_lr", "optimizer=sgd", "hydra.sweeper.n_trials=3", "trainer.max_epochs=3",
            *paced(0.02), "hydra.sweep.dir=search"]
    proc = start(cli, "-m", *args, env=PACED_ENV)
    wait_for(cli.cwd / "search" / "1" / "metrics.csv")  # the second trial is training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not (cli.cwd / "search" / ".stopping").exists()
    rows = {r["job"]: r["status"] for r in leaderboard(cli.cwd / "search")}
    assert rows == {"0": "completed", "1": "interrupted"}
    assert "sweep interrupted: 1 completed, 1 interrupted" in err.strip().splitlines()[-1]
    resume = resume_command(err)
    assert resume[-1] == "resume=true"
    cli(*resume, env=PACED_ENV)  # the command exactly as printed
    rows = {r["job"]: r["status"] for r in leaderboard(cli.cwd / "search")}
    assert sorted(rows.values()) == ["completed"] * 3 + ["superseded"]  # trial 1's point was asked again
    assert rows["1"] == "superseded" and not (cli.cwd / "search" / ".stopping").exists()


def test_a_second_ctrl_c_while_a_sweep_winds_down_exits_at_once_and_leaves_no_mark(tmp_path):
    """In a process of its own: the second Ctrl-C ends the process there (os._exit)."""
    import subprocess
    import sys

    (tmp_path / ".stopping").write_text("143")  # left by a sweep process that is gone (kill -9)
    script = f"""
import os, signal, time
from pathlib import Path
from omegaconf import OmegaConf
from dlrun.stopping import SweepStop
from dlrun.sweeps.callback import Leaderboard
folder = Path({str(tmp_path)!r})
Leaderboard().on_multirun_start(OmegaConf.create({{"hydra": {{"sweep": {{"dir": str(folder)}}}}, "logger": "csv"}}))
print("fresh", SweepStop(folder).requested(), flush=True)  # a new sweep process is not stopping
os.kill(os.getpid(), signal.SIGINT)  # the first: the sweep winds down
print("winding down", SweepStop(folder).requested(), flush=True)
os.kill(os.getpid(), signal.SIGINT)  # the second, between jobs: at once
time.sleep(5)
print("still running", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stdout.split("\n")[:2] == ["fresh None", "winding down 130"], done.stdout
    assert "still running" not in done.stdout and "stopped at once by a second Ctrl-C" in done.stderr
    assert SweepStop(tmp_path).requested() is None and "Traceback" not in done.stderr


@pytest.mark.slow
def test_sigterm_stops_a_parallel_sweep_and_its_resume_ends_like_a_straight_one(cli):
    args = [*QUIET, "trainer.max_epochs=6", "model.hidden_sizes=[512,256]", "trainer.batch_size=16",
            "optimizer.lr=0.001,0.002,0.003,0.004"]
    cli("-m", *args, "hydra.sweep.dir=straight")
    proc = start(cli, "-m", *args, "hydra/launcher=parallel", "hydra.sweep.dir=stopped")
    wait_for(cli.cwd / "stopped" / "1" / "checkpoints" / "last.pt")  # both workers are training
    proc.send_signal(signal.SIGTERM)  # to the launcher's process only, as a scheduler or `kill` sends it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "stopped")}
    assert rows["0"]["status"] in ("completed", "interrupted") and rows["1"]["status"] == "interrupted"
    assert {rows[j]["status"] for j in "23"} == {"not started"} and not (cli.cwd / "stopped" / "3").exists()
    assert not (cli.cwd / "stopped" / ".stopping").exists()
    cli(*resume_command(err))
    assert outcome(cli.cwd / "stopped") == outcome(cli.cwd / "straight")


@pytest.mark.slow
def test_two_quick_ctrl_c_to_a_sweeps_process_group_exit_at_once_and_the_resume_completes_every_job(cli):
    """As a terminal sends Ctrl-C: to every process of the group, twice, 50 ms apart."""
    import subprocess

    from conftest import DLRUN

    args = ["-m", *QUIET, "plugins=[paced]", "trainer.max_epochs=30", "seed=1,2,3", "hydra.sweep.dir=sweep"]
    env = {**os.environ, **PACED_ENV, "DLRUN_OUTPUTS": str(cli.outputs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(DLRUN), *args], cwd=cli.cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(cli.cwd / "sweep" / "0" / "checkpoints" / "last.pt")
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    # The second Ctrl-C lands in the sweep's process as it winds down (it exits at once, leaderboard
    # not updated) or, on a loaded machine, still inside the job's stop (the job ends at once, and the
    # sweep's wind-down, which takes no time, writes the leaderboard); never as another error.
    last = err.strip().splitlines()[-1]
    assert last.startswith(("dlrun: sweep stopped at once by a second Ctrl-C", "dlrun: sweep interrupted: 0 completed")), err
    assert not (cli.cwd / "sweep" / ".stopping").exists()
    cli(*args, "resume=true", env=PACED_ENV)
    assert [r["status"] for r in leaderboard(cli.cwd / "sweep")] == ["completed"] * 3
    assert all((cli.cwd / "sweep" / job / "run.log").is_file() for job in "012")


@pytest.mark.slow
def test_a_resumed_sweep_must_be_the_same_sweep(cli):
    conf = cli.cwd / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text("defaults:\n  - mlp\n  - _self_\nhidden_sizes: [8]\n")
    args = [*QUIET, "--config-dir", "conf", "model=tiny", "seed=1,2", "hydra.sweep.dir=sweep"]
    cli("-m", *args)
    sweep = cli.cwd / "sweep"
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    proc = cli("-m", *[a.replace("model=tiny", "model=logistic") for a in args], "resume=true", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "started with: " in proc.stderr and "(model=tiny dropped, model=logistic added)" in proc.stderr
    (conf / "tiny.yaml").write_text("defaults:\n  - mlp\n  - _self_\nhidden_sizes: [16]\n")
    proc = cli("-m", *args, "resume=true", check=False)
    assert proc.returncode == 2 and "job 0 of the sweep" in proc.stderr
    assert "ran with model.hidden_sizes=[8], which now composes to [16]" in proc.stderr
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before  # nothing touched
    (conf / "tiny.yaml").write_text("defaults:\n  - mlp\n  - _self_\nhidden_sizes: [8]\n")
    proc = cli("-m", *args, "resume=true")
    assert "completed before, skipped" in proc.stdout
    for job in ("0", "1"):  # the skipped jobs keep the record of how they ran
        assert (sweep / job / ".hydra" / "overrides.yaml").read_bytes() == before[sweep / job / ".hydra" /
                                                                                 "overrides.yaml"]


@pytest.mark.slow
def test_resume_needs_a_sweep_directory(cli):
    proc = cli("-m", *QUIET, "resume=true", check=False)
    assert proc.returncode == 2 and "hydra.sweep.dir=<the sweep directory>" in proc.stderr


@pytest.mark.slow
def test_optuna_search_persists_and_continues_after_interruption(cli):
    args = [*QUIET, "hparams_search=random_lr", "optimizer=sgd", "hydra.sweeper.n_trials=3",
            "trainer.max_epochs=3", "trainer.batch_size=16", "hydra.sweep.dir=search"]
    proc = start(cli, "-m", *args)
    wait_for(cli.cwd / "search" / "1" / "summary.json")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cli("-m", *args)
    states = [t.state.name for t in study_of(cli.cwd / "search").trials]
    assert states.count("COMPLETE") == 3
    best = json.loads((cli.cwd / "search" / "optuna_best.json").read_text())
    assert best["complete"] == 3 and set(best["best_params"]) == {"optimizer.lr", "optimizer.momentum"}
    completed = [r for r in leaderboard(cli.cwd / "search") if r["status"] == "completed"]
    assert len(completed) == 3
    assert min(float(r["objective"]) for r in completed) == pytest.approx(best["best_value"])


@pytest.mark.slow
def test_a_continued_optuna_study_explores_new_points(cli):
    args = [*QUIET, "hparams_search=random_lr", "optimizer=sgd", "trainer.max_epochs=1", "hydra.sweep.dir=search"]
    cli("-m", *args, "hydra.sweeper.n_trials=3")
    cli("-m", *args, "hydra.sweeper.n_trials=6")  # the same study, three more trials
    points = [tuple(sorted(t.params.items())) for t in study_of(cli.cwd / "search").trials]
    assert len(points) == 6 and len(set(points)) == 6
    page = (cli.cwd / "search" / "leaderboard.html").read_text()  # the search explained, all six trials
    assert "The search (Optuna)" in page and page.count('alt="optuna_') == 3
    assert "optimizer.momentum" in (cli.cwd / "search" / "summary.md").read_text().split("importances")[1]


@pytest.mark.slow
def test_optuna_takes_hydras_sweep_syntax_and_the_presets_warn_nothing(cli):
    proc = cli("-m", *QUIET, "hparams_search=mlp_digits", "hydra.sweeper.n_trials=3", "trainer.max_epochs=1",
               "optimizer.lr=interval(0.01,0.02)", "model.dropout=0.1,0.2", "hydra.sweep.dir=search")
    assert "Warning" not in proc.stdout + proc.stderr
    for job in ("0", "1", "2"):
        values = dict(o.split("=", 1) for o in summary_of(cli.cwd / "search" / job)["overrides"])
        assert 0.01 <= float(values["optimizer.lr"]) <= 0.02  # the preset's range, narrowed on the command line
        assert values["model.dropout"] in ("0.1", "0.2") and values["model.hidden_sizes"] in ("[64]", "[256,128]",
                                                                                               "[512,256]")


@pytest.mark.slow
def test_a_log_tag_on_the_command_line_samples_on_a_log_scale_and_others_are_refused(cli):
    cli("-m", *QUIET, "hparams_search=random_lr", "optimizer=sgd", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1",
        "optimizer.lr=tag(log,interval(1e-6,1e-2))", "hydra.sweep.dir=search")
    lr = study_of(cli.cwd / "search").trials[0].distributions["optimizer.lr"]
    assert lr.log and (lr.low, lr.high) == (1e-6, 1e-2)
    refused = cli("-m", *QUIET, "hparams_search=random_lr", "optimizer=sgd", "hydra.sweep.dir=refused",
                  "optimizer.lr=tag(grid,interval(1e-6,1e-2))", check=False)
    assert refused.returncode == 2 and "the tag grid is not known here; interval() takes log and int" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_grid_search_runs_every_point_once_and_ends(cli):
    presets = cli.cwd / "conf" / "hparams_search"
    presets.mkdir(parents=True)
    (presets / "grid_sizes.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: dlrun_optuna\nhydra:\n  sweeper:\n"
        "    sampler: grid\n    params:\n      model.hidden_sizes: {type: categorical, choices: [[16], [32, 16]]}\n")
    cli("-m", *QUIET, "--config-dir", "conf", "hparams_search=grid_sizes", "trainer.max_epochs=1",
        "trainer.batch_size=32,64", "hydra.sweep.dir=grid")  # 20 trials asked for, a grid of 4
    points = {tuple(o for o in summary_of(job)["overrides"] if o.startswith(("model.", "trainer.batch_size")))
              for job in (cli.cwd / "grid").iterdir() if (job / "summary.json").is_file()}
    assert points == {(f"model.hidden_sizes={h}", f"trainer.batch_size={b}") for h in ("[16]", "[32,16]")
                      for b in ("32", "64")}
    assert json.loads((cli.cwd / "grid" / "optuna_best.json").read_text())["complete"] == 4


PRUNED_SEARCH = ["hydra/sweeper=dlrun_optuna", "hydra.sweeper.pruner=median", "hydra.sweeper.startup_trials=1",
                 "hydra.sweeper.warmup_epochs=0", "trainer.monitor=val/accuracy", "trainer.max_epochs=3"]


def study_of(sweep):
    """The sweep's Optuna study, through Optuna's own API."""
    import optuna

    return optuna.load_study(study_name=None, storage=f"sqlite:///{sweep / 'optuna.db'}")


def trial_states(sweep):
    trials = study_of(sweep).trials
    return ({t.number: t.state.name for t in trials},
            {t.number: len(t.intermediate_values) for t in trials if t.intermediate_values})


@pytest.mark.slow
def test_a_median_pruner_stops_the_trials_that_fall_behind(cli):
    """A grid in the order 0.03, 1e-5, 1e-6 (seed 5): the first trial runs in full; the two tiny
    learning rates fall behind it at their first epoch and stop there."""
    proc = cli("-m", *QUIET, *PRUNED_SEARCH, "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=5",
               "optimizer.lr=0.03,0.00001,0.000001", "hydra.sweep.dir=search")
    assert "(1 completed, 0 failed, 2 pruned)" in proc.stdout
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "search")}
    assert [rows[j]["status"] for j in "012"] == ["completed", "pruned", "pruned"]
    assert "optimizer.lr=0.03" in rows["0"]["overrides"]
    for job in ("1", "2"):
        summary = summary_of(cli.cwd / "search" / job)
        assert summary["epochs_run"] == 1 and summary["stop_reason"].startswith("pruned by the sweep's Optuna pruner")
        assert "pruned by Optuna's median pruner after epoch 1: val/accuracy" in summary["error"]
    states, reported = trial_states(cli.cwd / "search")
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "PRUNED"} and reported == {0: 3, 1: 1, 2: 1}


@pytest.mark.slow
def test_pruning_works_with_the_parallel_launcher(cli):
    """Trials in parallel processes report to the one study (SQLite in the sweep directory)."""
    cli("-m", *QUIET, *PRUNED_SEARCH, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=random", "optimizer.lr=interval(0.000001,0.03)",
        "hydra.sweep.dir=search")
    rows = {r["job"]: r["status"] for r in leaderboard(cli.cwd / "search")}
    states, reported = trial_states(cli.cwd / "search")
    assert set(rows) == {"0", "1", "2", "3"} and set(reported) == {0, 1, 2, 3}  # every trial reported its epochs
    assert {int(j): {"completed": "COMPLETE", "pruned": "PRUNED"}[s] for j, s in rows.items()} == states
    assert all(reported[n] == 3 for n, s in states.items() if s == "COMPLETE")


BAD_SPACES = {
    "unknown parameter": ("+hydra.sweeper.params.model.dropoutt={type:float,low:0.1,high:0.5}",
                          "'model.dropoutt' is not a key of the config"),
    "empty choices": ("+hydra.sweeper.params.model.dropout={type:categorical,choices:[]}", "choices is empty"),
    "low above high": ("+hydra.sweeper.params.model.dropout={type:float,low:0.5,high:0.1}",
                       "low=0.5 must be below high=0.1"),
    "unknown sampler": ("hydra.sweeper.sampler=bayes", "hydra.sweeper.sampler=bayes is not known"),
    "direction": ("hydra.sweeper.direction=max", "hydra.sweeper.direction=max is not known. Did you mean 'maximize'?"),
    "unknown pruner": ("hydra.sweeper.pruner=medain", "hydra.sweeper.pruner=medain is not known. Did you mean 'median'?"),
    "direction against the monitor": ("hydra.sweeper.direction=maximize",
                                      "hydra.sweeper.direction=maximize contradicts trainer.monitor=val/loss"),
}


@pytest.mark.slow
@pytest.mark.parametrize("override,message", BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_bad_search_space_fails_before_any_job(cli, override, message):
    proc = cli("-m", *QUIET, "hparams_search=random_lr", "optimizer=sgd", override, "hydra.sweep.dir=search",
               check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (cli.cwd / "search" / "0").exists()


@pytest.mark.slow
def test_twenty_parallel_jobs_end_complete_with_one_leaderboard(cli):
    cli("-m", *QUIET, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=range(0,20)",
        "trainer.max_epochs=1", "hydra.sweep.dir=load")
    rows = leaderboard(cli.cwd / "load")
    assert len(rows) == 20 and all(r["status"] == "completed" for r in rows)
    import torch

    for i in range(20):
        assert summary_of(cli.cwd / "load" / str(i))["status"] == "completed"
        torch.load(cli.cwd / "load" / str(i) / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.slow
def test_leaderboard_rebuilds_for_any_set_of_runs(cli):
    cli(*QUIET, "hydra.run.dir=a")
    cli(*QUIET, "optimizer.lr=0.01", "hydra.run.dir=b")
    cli(*QUIET, "trainer.monitor=val/accuracy", "trainer.mode=max", "hydra.run.dir=c")
    cli("leaderboard", "a", "b", "--out", "board")
    rows = leaderboard(cli.cwd / "board")
    assert {r["job"] for r in rows} == {"a", "b"} and rows[0]["best"] == "*"
    out = cli("leaderboard", "a", "b", "c").stdout  # no --out: a directory of its own, never inside a run
    (board,) = (cli.outputs / "compare").rglob("summary.csv")
    assert "3 runs ->" in out and not (cli.cwd / "a" / "summary.csv").exists()
    rows = leaderboard(board.parent)
    by_monitor = {r["job"]: (r["rank"], r["best"]) for r in rows}
    assert by_monitor["c"] == ("1", "*")  # val/accuracy is ranked on its own, never against val/loss
    assert sorted(by_monitor[j] for j in "ab") == [("1", "*"), ("2", "")]
    assert "runs are ranked against those of the same objective only" in (board.parent / "summary.md").read_text()
    (cli.cwd / "empty").mkdir()
    for path, message in (("nowhere", "no such directory: nowhere"), ("empty", "no runs in empty")):
        proc = cli("leaderboard", path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_compare_puts_any_runs_on_one_page(cli):
    from dlrun.sweeps.rows import job_dirs, job_names, legend_labels

    for momentum in ("0.0", "0.9"):
        cli(*SMOKE, "plots=[]", "optimizer=sgd", f"optimizer.momentum={momentum}", f"hydra.run.dir=m{momentum}")
    for sweep, momentum in (("s1", "0.5"), ("s2", "0.7")):  # two sweeps: each has a job 0
        cli("-m", *SMOKE, "plots=[]", "optimizer=sgd", f"optimizer.momentum={momentum}", f"hydra.sweep.dir={sweep}")
    out = cli("compare", "m0.0", "m0.9", "s1", "s2").stdout
    board = cli.outputs / "compare"
    (page_file,) = board.rglob("leaderboard.html")
    assert f"4 runs -> {page_file}" in out.replace("\n", "")
    page = page_file.read_text()
    for run in ("m0.0", "m0.9", "s1/0", "s2/0"):  # each row links to the run's own report, named apart
        assert f'<a href="../../../../{run}/report.html">{run}</a>' in page
    assert "Every run was given <code>experiment=smoke" in page and "<td class=\"words\">optimizer.momentum=0.7</td>" in page
    differ = page[page.index("<h2>Config keys that differ</h2>"):]
    assert "optimizer.momentum" in differ and "model.name" not in differ
    with open(cli.cwd / "m0.9" / "weight_stats.csv", newline="") as handle:
        first = next(csv.DictReader(handle))  # the run's own record of its first weight tensor
    weights = page[page.index("<h2>Weights: each tensor's L2 norm (and std) in each run</h2>"):]
    assert f"<td>{first['parameter']}</td>" in weights and f"{float(first['l2']):.3g} ({float(first['std']):.3g})" in weights
    dirs = job_dirs([cli.cwd / d for d in ("m0.0", "m0.9", "s1", "s2")])
    rows = [{"job": name, "path": d, "overrides": ""} for d, name in zip(dirs, job_names(dirs))]
    assert sorted(legend_labels(rows).values()) == [f"optimizer.momentum={m}" for m in ("0.0", "0.5", "0.7", "0.9")]
    curves = imread(page_file.parent / "curves.png")
    assert curves.shape[:2] == (500, 1200) and curves[..., :3].std() > 0.02
    if chromium() is not None:  # .ci/run installs it; the page must render whole at 1280 px
        title, image = render_in_chromium(page_file, cli.cwd, height=1600)
        assert title == "loaded 2/2 width 1280/1280 cut 0" and image[..., :3].std() > 0.05


def test_objective_plot_axes():
    from dlrun.sweeps.pages import objective_figure

    fig = objective_figure("optimizer.lr", [("0.1", 0.5, True), ("0.001", 0.9, False), ("0.01", 0.7, False)],
                           "val/loss", "objective: val/loss (lower is better)")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "Objective vs optimizer.lr (lower is better)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["best"]
    fig = objective_figure("model", [("mlp", 0.5, False), ("cnn", 0.4, True)], "val/loss", "x (lower is better)")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cnn", "mlp"]  # by value, not by rank
    decay = objective_figure("regularization.weight_decay", [("0", 0.5, False), ("1e-5", 0.4, True),
                                                             ("1e-4", 0.45, False), ("1e-3", 0.6, False)],
                             "val/loss", "x (lower is better)")
    assert decay.axes[0].get_xscale() == "symlog"  # 0 on the axis, the rest log-spaced
    widths = objective_figure("model.hidden_sizes", [("[512]", 0.3, False), ("[64]", 0.4, True), ("[8]", 0.5, False)],
                              "val/loss", "x (lower is better)")
    assert [t.get_text() for t in widths.axes[0].get_xticklabels()] == ["[8]", "[64]", "[512]"]  # as numbers


def test_the_same_value_written_two_ways_is_not_swept():
    from dlrun.sweeps.rows import swept_parameters

    rows = [{"overrides": "report=false optimizer.lr=0.1 seed=1"}, {"overrides": "report=False optimizer.lr=1e-1 seed=2"}]
    assert swept_parameters(rows) == ["seed"]


def test_parallel_jobs_get_gpus_round_robin():
    assert [gpu_for_job(j, 4) for j in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpu_for_job(3, 1) is None and gpu_for_job(0, 0) is None


@pytest.mark.slow
def test_a_two_objective_search_finds_its_pareto_front(cli):
    args = [*QUIET, "hparams_search=mlp_digits", "hydra.sweeper.n_trials=4", "trainer.max_epochs=1",
            "hydra.sweeper.objectives=[val/accuracy,params]"]
    cli("-m", *args, "hydra.sweep.dir=search")
    study = study_of(cli.cwd / "search")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for trial in study.trials:  # each trial's values are its record's
        summary = summary_of(cli.cwd / "search" / str(trial.number))
        assert trial.values == [summary["best_val"]["val/accuracy"], summary["model_summary"]["params"]]
    best = json.loads((cli.cwd / "search" / "optuna_best.json").read_text())
    assert {t["trial"] for t in best["pareto_front"]} == {t.number for t in study.best_trials} != set()
    page = (cli.cwd / "search" / "leaderboard.html").read_text()
    assert "on the Pareto front of val/accuracy (maximize) and params (minimize)" in page
    assert 'alt="optuna_pareto_front"' in page
    refused = cli("-m", *args, "hydra.sweeper.pruner=median", "hydra.sweep.dir=refused", check=False)
    assert refused.returncode == 2 and "prunes on one objective" in refused.stderr
    assert not (cli.cwd / "refused").exists()
