"""Sweep command lines that dlrun answers before any job runs (no torch import): the launcher's
settings with -m --cfg hydra, and sweeps refused under torchrun."""

from omegaconf import OmegaConf


def test_cfg_hydra_shows_a_sweeps_launcher(cli):
    proc = cli("-m", "--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.partition=cpu", "model=mlp,cnn",
               "optimizer.lr=interval(0.001,0.01)")
    launcher = OmegaConf.create(proc.stdout).hydra.launcher
    assert launcher.partition == "cpu" and launcher.gpus_per_node is None  # no GPU asked for unless set
    assert launcher._target_.endswith("SlurmLauncher")
    proc = cli("-m", "--cfg", "job", "model=mlp,cnn", check=False)
    assert proc.returncode == 2 and "-m --cfg hydra for the sweep's launcher and sweeper" in proc.stderr


def test_a_sweep_under_torchrun_is_refused(cli):
    proc = cli("-m", "seed=1,2", env={"WORLD_SIZE": "2", "RANK": "0"}, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "a sweep (-m) under torchrun would run every job in every process" in proc.stderr
    assert not cli.outputs.exists()
