"""model=timm: timm's models by name, without their classifier, for the data's channels, under a
new head; a name that is not timm's and weights that cannot be fetched are each one clear line."""

import json
import os
import subprocess

import pytest
import torch

import dlrun
from conftest import DLRUN, SMOKE, built_loop
from dlrun.errors import ConfigError

timm = pytest.importorskip("timm", reason="the timm extra: pip install 'dlrun[timm]'")


def test_a_timm_model_trains_on_grey_digits_with_a_new_head(tmp_path):
    loop = built_loop(*SMOKE, "model=timm", "model.arch=test_resnet", "dataset.resize=32")
    features = loop.model.features
    first = next(m for m in features.modules() if isinstance(m, torch.nn.Conv2d))
    assert type(features).__name__ == "ResNet" and first.in_channels == 1  # digits are grey
    assert loop.model.head.out_features == 10 and loop.model.head.in_features == features.num_features
    dlrun.run([*SMOKE, "model=timm", "model.arch=test_resnet", "dataset.resize=32", "plots=[]", "report=false"],
              run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_the_model_is_timms_own():
    loop = built_loop(*SMOKE, "model=timm", "model.arch=test_vit", "dataset.resize=32", "model.drop_rate=0.25")
    reference = timm.create_model("test_vit", num_classes=0, in_chans=1, img_size=32)
    assert {k: v.shape for k, v in loop.model.features.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    assert loop.model.features.head_drop.p == 0.25  # timm applies drop_rate before its (here removed) head
    with torch.no_grad():
        assert loop.model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_a_name_that_is_not_timms_says_how_to_find_one():
    with pytest.raises(ConfigError, match=r"model.arch=resnet181 is not a timm model. Did you mean 'resnet18'\? "
                                          r"timm has [\d,]+: list them with python -c"):
        built_loop(*SMOKE, "model=timm", "model.arch=resnet181")


@pytest.mark.slow
def test_pretrained_weights_offline_are_one_paragraph(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "DLRUN_OUTPUTS": str(tmp_path / "out")}
    proc = subprocess.run([str(DLRUN), *SMOKE, "model=timm", "model.arch=resnet18", "model.pretrained=true",
                           "dataset.resize=32"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "model.pretrained=true, but timm could not fetch the resnet18 weights from the Hugging Face Hub" in line
    assert "or set model.pretrained=false." in line
