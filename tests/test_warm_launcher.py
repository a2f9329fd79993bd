"""hydra/launcher=warm: each job's config equals the one Hydra composes; jobs run in this process
or in forked warm workers with the results of the basic launcher; a failed job is a row; a stop
through the process group leaves a sweep that resumes to the straight outcome."""

import os
import signal

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from conftest import PACED_ENV, SMOKE, paced
from dlrun.config import schema, sources
from hydra_plugins.dlrun_warm.launcher import remember_compositions
from test_safety import start, wait_for
from test_sweep import leaderboard, outcome, resume_command

QUIET = [*SMOKE, "plots=[]", "report=false"]
JOBS = [["seed=1"], ["seed=2", "optimizer.lr=0.01"], ["model=cnn", "seed=1"], ["model=cnn", "optimizer=sgd"],
        ["model=mlp", "+model.extra=3", "optimizer=sgd", "optimizer.momentum=0.9"], ["dataset=iris", "seed=4"],
        ["hydra.job.chdir=false", "seed=5"], ["model=mlp", "seed=1"]]


def _configs(remember):
    """Each of JOBS as Hydra's config loader composes it for a multirun job (remembering or not)."""
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(sources.conf_dir()), version_base="1.3", job_name="dlrun"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["experiment=smoke"], RunMode.MULTIRUN)
        if remember:
            remember_compositions(loader)
        return [OmegaConf.to_container(loader.load_sweep_config(master, ["experiment=smoke", *job]))
                for job in JOBS * 2]


def test_each_job_config_is_the_one_hydra_composes():
    remembered, hydras = _configs(True), _configs(False)
    for mine, theirs in zip(remembered, hydras):
        assert mine == theirs
    assert remembered[0]["model"] != remembered[2]["model"] and remembered[4]["model"]["extra"] == 3
    assert remembered[5]["dataset"]["name"] == "iris" and remembered[3]["optimizer"]["name"] == "sgd"


@pytest.mark.slow
def test_a_warm_sweep_ends_as_the_basic_launcher_does_in_this_process_and_in_workers(cli):
    grid = [*QUIET, "seed=1,2", "model=mlp,logistic"]
    cli("-m", *grid, "hydra.sweep.dir=basic")
    for workers in (1, 2):
        cli("-m", *grid, "hydra/launcher=warm", f"hydra.launcher.n_jobs={workers}", f"hydra.sweep.dir=warm{workers}")
        assert outcome(cli.cwd / f"warm{workers}") == outcome(cli.cwd / "basic")
        assert all(r["status"] == "completed" for r in leaderboard(cli.cwd / f"warm{workers}"))


@pytest.mark.slow
def test_a_failed_job_in_a_warm_worker_is_a_row_and_the_sweep_goes_on(cli):
    proc = cli("-m", *QUIET, "optimizer.lr=0.001,-1,0.01,0.02", "hydra/launcher=warm", "hydra.sweep.dir=sweep",
               check=False)
    assert proc.returncode == 1
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "sweep")}
    assert rows["1"]["status"] == "failed" and "optimizer.lr=-1 is out of range" in rows["1"]["error"]
    assert {rows[j]["status"] for j in "023"} == {"completed"}


@pytest.mark.slow
def test_sigterm_to_the_group_stops_warm_workers_and_the_resume_ends_like_a_straight_sweep(cli):
    args = [*QUIET, *paced(0.02), "trainer.max_epochs=4", "seed=1,2,3"]
    cli("-m", *args, "hydra.sweep.dir=straight", env=PACED_ENV)
    proc = start(cli, "-m", *args, "hydra/launcher=warm", "hydra.sweep.dir=stopped", env=PACED_ENV, own_group=True)
    wait_for(cli.cwd / "stopped" / "1" / "checkpoints" / "last.pt")  # both workers are training
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job's whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    rows = {r["job"]: r for r in leaderboard(cli.cwd / "stopped")}
    assert rows["1"]["status"] == "interrupted" and rows["2"]["status"] == "not started"
    assert not (cli.cwd / "stopped" / ".stopping").exists()
    cli(*resume_command(err), env=PACED_ENV)
    assert outcome(cli.cwd / "stopped") == outcome(cli.cwd / "straight")
