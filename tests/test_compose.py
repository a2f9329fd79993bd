"""Every option of every group composes with Hydra and passes dlrun's checks."""

import subprocess
import sys

import pytest

from dlrun import validate
from dlrun.api import compose
from dlrun.build import load_components
from dlrun.config import conf_dir
from dlrun.listing import groups

OPTIONS = [(g, p.stem) for g in groups() for p in sorted((conf_dir() / g).glob("*.yaml"))]
# Options whose required values (???) a user must supply.
REQUIRED = {("dataset", "csv"): ["dataset.path=x.csv", "dataset.target=y"],
            ("dataset", "image_folder"): ["dataset.root=images"]}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group, option):
    cfg = compose([f"{group}={option}", *REQUIRED.get((group, option), [])])
    validate.check_config(cfg)
    load_components(cfg)
    validate.check_components(cfg)


def test_defaults_are_the_documented_ones():
    cfg = compose()
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer.name, cfg.scheduler.name) == ("digits", "mlp", "adam", "none")
    assert cfg.regularization.weight_decay == 0 and cfg.regularization.dropout is None
    assert cfg.device.name == "auto" and cfg.seed == 42


def test_regularization_options_combine_over_none():
    cfg = compose(["regularization=l1", "regularization.weight_decay=0.01"])
    assert cfg.regularization.l1 > 0 and cfg.regularization.weight_decay == 0.01


def _imports_torch(args):
    code = ("import sys\nfrom dlrun.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('TORCH_LOADED=%%s' %% ('torch' in sys.modules))" % (args,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return proc.stdout, proc.stderr.rsplit("TORCH_LOADED=", 1)[1]


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["list"]])
def test_help_cfg_and_list_do_not_import_torch(args):
    out, loaded = _imports_torch(args)
    assert loaded == "False"
    assert out.strip()


def test_help_lists_every_group_and_its_options():
    out, _ = _imports_torch(["--help"])
    for group in groups():
        assert f"{group}:" in out
    assert "cnn" in out and "synthetic_imbalanced" in out and "dlrun list" in out
