"""A user's own data and models: inputs of any numeric dtype are converted once, every plot that
does not apply is named with why, the user's config directory shows in --help and list, and a
plugin run says what to pass to evaluate or resume it."""

from pathlib import Path

import numpy as np
import pytest
import torch

import dlrun
from dlrun import cli
from dlrun.config import listing
from dlrun.data import DATASETS, Data
from dlrun.errors import DlrunError

QUIET = ["trainer.progress=false", "show_config=none", "trainer.max_epochs=1"]


@DATASETS.register("test_float64_signals")
def _float64_signals(n=300):
    """What NumPy gives by default: float64 features (and int64 labels)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 40))
    return Data(x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0), standardize=True)


@DATASETS.register("test_integer_features")
def _integer_features(n=300):
    x = np.random.default_rng(1).integers(0, 10, size=(n, 5))
    return Data(x=x, y=(x[:, 0] > 4).astype(np.int64) + (x[:, 1] > 4), standardize=True)


def test_float64_and_integer_features_train_and_the_dtype_is_recorded(tmp_path):
    for name, dtype in (("test_float64_signals", "float64"), ("test_integer_features", "int64")):
        summary = dlrun.run([*QUIET, f"dataset.name={name}", "plots=[]", "report=false"], run_dir=tmp_path / name)
        assert summary["status"] == "completed" and summary["data_summary"]["source_dtype"] == dtype


def test_skipped_plots_are_named_with_why(tmp_path):
    summary = dlrun.run([*QUIET, "dataset=iris", "plots=[curves,misclassified,filters,pr_curve,regression]"],
                        run_dir=tmp_path / "run")
    skipped = summary["plots_skipped"]
    assert set(skipped) == {"misclassified", "filters", "pr_curve", "regression"}
    assert skipped["pr_curve"] == "drawn for binary and multi-label tasks only" and "convolution" in skipped["filters"]
    log = (tmp_path / "run" / "run.log").read_text()
    assert "plot filters skipped: drawn for models with a 2-D convolution (Conv2d), or a first linear layer, on images " \
           "only" in log
    assert "Plots not drawn (4)" in (tmp_path / "run" / "report.html").read_text()
    assert (tmp_path / "run" / "plots" / "curves.png").is_file()
    summary = dlrun.run([*QUIET, "split.test=0", "plots=[curves,confusion]", "report=false"], run_dir=tmp_path / "two")
    assert summary["plots_skipped"] == {"confusion": "needs a test split (split.test=0 leaves none)"}


EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "plugin"


def test_the_users_config_directory_shows_in_help_and_list_wherever_the_flag_stands(capsys):
    conf = str(EXAMPLE / "conf")
    for argv in (["--config-dir", conf, "list", "model"], ["list", f"--config-dir={conf}", "model"],
                 ["list", "model", "-cd", conf], [f"hydra.searchpath=[file://{conf}]", "list", "model"]):
        with pytest.raises(SystemExit) as listed:
            cli.main(argv)
        out = capsys.readouterr().out
        assert listed.value.code == 0 and "two_layer (yours)" in out and "dataset=" not in out
    text = listing.help_text([conf])
    assert "model: cnn, logistic, mlp, resnet18, timm, torchvision, vgg_fast; yours: two_layer" in text
    assert "; yours: moons" in text and "yours" not in listing.help_text()
    assert listing.main(["model"], [conf]) == 0
    assert "two_layer (yours)" in capsys.readouterr().out


def test_a_plugin_run_says_what_to_pass_to_evaluate_it_or_reuses_it_when_trusted(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    conf = EXAMPLE / "conf"
    run = tmp_path / "run"
    dlrun.run([*QUIET, "plugins=[my_components]", "dataset=moons", "model=two_layer", "plots=[]", "report=false"],
              run_dir=run, config_dir=conf)
    sources = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["sources"]
    assert sources == {"config_dir": str(conf), "python_paths": [str(EXAMPLE)]}
    with pytest.raises(DlrunError) as refused:
        dlrun.run(["task=eval", f"ckpt_path={run}"], run_dir=tmp_path / "refused")
    assert str(refused.value) == (
        f"ckpt_path={run} was composed with 'plugins=[my_components]' and --config-dir {conf}, which makes dlrun "
        f"import or run code. A stored run is read as data: give them yourself (dlrun --config-dir {conf} "
        f"'plugins=[my_components]' task=eval ckpt_path={run}), or add trust_run_code=true if you trust where this "
        f"run came from.")
    assert not (tmp_path / "refused").exists()
    given = dlrun.run(["task=eval", f"ckpt_path={run}", "plugins=[my_components]", "plots=[]", "report=false"],
                      run_dir=tmp_path / "given", config_dir=conf)
    trusted = dlrun.run(["task=eval", f"ckpt_path={run}", "trust_run_code=true", "plots=[]", "report=false"],
                        run_dir=tmp_path / "trusted")
    assert given["test"]["accuracy"] == trusted["test"]["accuracy"] and trusted["model"] == "two_layer"
