"""The README's "Bring your own data and model" example, through the real `dlrun` command: a
researcher's 1-D signals with a CNN and a GRU of their own, against the plain PyTorch script that
experiment=paper reproduces."""

import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import REPO, run_dirs, summary_of

EXAMPLE = REPO / "docs" / "examples" / "signals"
OWN = ["--config-dir", str(EXAMPLE / "conf")]
ENV = {"PYTHONPATH": str(EXAMPLE)}


@pytest.mark.slow
def test_dlrun_reproduces_the_plain_script_on_the_same_rows_and_sampling(cli):
    plain = subprocess.run([sys.executable, str(EXAMPLE / "plain_pytorch.py"), "--model", "cnn1d"], capture_output=True,
                           text=True, env={**os.environ, **ENV, "OMP_NUM_THREADS": "1"}, check=True, timeout=300)
    script_accuracy = float(re.search(r"test accuracy ([\d.]+)", plain.stdout).group(1))
    cli(*OWN, "experiment=paper", "trainer.progress=false", "hydra.run.dir=paper", env=ENV)
    summary = summary_of(cli.cwd / "paper")
    assert summary["sizes"] == {"train": 3000, "val": 0, "test": 1000}
    assert summary["data_summary"]["source_dtype"] == "float64" and summary["model"] == "cnn1d"
    assert summary["validation"].startswith("none (split.val=0)")
    assert summary["tested_weights"] == "the last epoch's (epoch 15)"
    assert script_accuracy > 0.8 and abs(summary["test"]["accuracy"] - script_accuracy) < 0.03
    # Evaluating it again needs the user's code: one line says what to pass, or trust reuses it.
    refused = cli("task=eval", "ckpt_path=paper", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    # The preset names the plugin, so the config directory and the module's directory are what it takes.
    assert f"(PYTHONPATH={EXAMPLE} dlrun --config-dir {EXAMPLE / 'conf'} task=eval ckpt_path=paper)" in refused.stderr
    cli("task=eval", "ckpt_path=paper", "trust_run_code=true", "trainer.progress=false", "hydra.run.dir=again")
    assert summary_of(cli.cwd / "again")["test"]["accuracy"] == summary["test"]["accuracy"]


@pytest.mark.slow
def test_one_sweep_over_own_models_with_their_own_settings(cli):
    cli(*OWN, "-m", "experiment=paper", "model=cnn1d,gru,gru_small,mlp_wide", "trainer.max_epochs=1", "plots=[]",
        "report=false", "trainer.progress=false", env=ENV)
    models = [OmegaConf.load(d / ".hydra" / "config.yaml").model for d in run_dirs(cli.outputs)]
    assert all(summary_of(d)["status"] == "completed" for d in run_dirs(cli.outputs))
    assert sorted(m.name for m in models) == ["cnn1d", "gru", "gru", "mlp"]
    assert sorted(m.hidden_size for m in models if m.name == "gru") == [16, 64]  # gru_small: gru, other settings
    assert [list(m.hidden_sizes) for m in models if m.name == "mlp"] == [[256, 256]]  # a built-in, own settings


def test_help_and_list_show_the_users_options_wherever_the_flag_stands(cli):
    assert "model: cnn, logistic, mlp, resnet18, timm, torchvision, vgg_fast; yours: cnn1d, gru, gru_small, mlp_wide" in \
        cli(*OWN, "--help").stdout
    for args in ([*OWN, "list", "model"], ["list", *OWN, "model"], ["list", "model", *OWN]):
        assert "gru_small (yours)" in cli(*args).stdout
