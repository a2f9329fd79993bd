"""trainer.tta: the outputs after training (tested weights, test split, task=predict, the exports)
are the model's outputs averaged over the views; each epoch's validation is not."""

import csv
import json

import numpy as np
import pytest
import torch
from sklearn import datasets as skd

import dlrun
from dlrun.errors import ConfigError
from dlrun.results import checkpoint
from dlrun.train import tta
from dlrun.train.trainer import MEASURED

QUIET = ["model=cnn", "trainer.progress=false", "plots=[]", "report=false", "show_config=none", "trainer.max_epochs=3",
         "probabilities=true"]


def test_the_views_keep_the_image_and_its_size():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    flips = tta.VIEWS["flip"](x)
    assert len(flips) == 2 and torch.equal(flips[0], x) and torch.equal(flips[1][..., 0], x[..., -1])
    crops = tta.VIEWS["multicrop"](x)
    assert len(crops) == 10 and all(c.shape == x.shape for c in crops) and torch.equal(crops[0], x)
    assert torch.equal(crops[2][..., 1:, 1:], x[..., :-1, :-1])  # shifted by one pixel on a 32-pixel side
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    expected = torch.stack([model(v) for v in crops]).mean(0)
    assert torch.allclose(tta.averaged(model, x, "multicrop"), expected, atol=1e-4)
    assert torch.equal(tta.averaged(model, x), model(x))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _probabilities(rows):
    return np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])


def test_test_predict_and_export_average_the_views_and_training_does_not_change(tmp_path):
    dlrun.run([*QUIET, "export=torchscript"], run_dir=tmp_path / "plain")
    dlrun.run([*QUIET, "export=torchscript", "trainer.tta=flip"], run_dir=tmp_path / "tta")
    epochs = [[{k: v for k, v in r.items() if k not in MEASURED} for r in _rows(tmp_path / name / "metrics.csv")]
              for name in ("plain", "tta")]
    assert epochs[0] == epochs[1]  # the same training and per-epoch validation
    ckpt = checkpoint.load(tmp_path / "tta" / "checkpoints" / "best.pt")
    assert ckpt["preprocessing"]["tta"] == "flip"
    test = _rows(tmp_path / "tta" / "predictions.csv")
    images = torch.tensor(skd.load_digits().images[[int(r["index"]) for r in test]], dtype=torch.float32)
    exported = torch.jit.load(tmp_path / "tta" / "checkpoints" / "best.torchscript.pt")
    plain = torch.jit.load(tmp_path / "plain" / "checkpoints" / "best.torchscript.pt")
    by_hand = torch.stack([torch.log(plain(v.unsqueeze(1))) for v in (images, images.flip(-1))])
    with torch.no_grad():
        averaged = torch.softmax(by_hand.mean(0), 1)  # the mean of the logits (up to a constant per view)
        assert np.allclose(exported(images.unsqueeze(1)).numpy(), averaged.numpy(), atol=1e-5)
    assert np.allclose(_probabilities(test), averaged.numpy(), atol=1e-4)  # the test split's outputs
    assert not np.allclose(_probabilities(_rows(tmp_path / "plain" / "predictions.csv")), averaged.numpy(), atol=1e-3)
    assert json.loads((tmp_path / "tta" / "checkpoints" / "best.json").read_text())["test_time_augmentation"] == "flip"
    np.save(tmp_path / "digits.npy", images.numpy())
    for run, extra in (("tta", []), ("plain", ["trainer.tta=flip"])):  # recorded, or asked for at predict
        dlrun.run(["task=predict", f"ckpt_path={tmp_path / run}", f"predict.input={tmp_path / 'digits.npy'}",
                   "probabilities=true", "show_config=none", *extra], run_dir=tmp_path / f"predicted_{run}")
        assert np.allclose(_probabilities(_rows(tmp_path / f"predicted_{run}" / "predictions.csv")), averaged.numpy(),
                           atol=1e-4)


def test_tta_needs_images():
    with pytest.raises(ConfigError, match="trainer.tta=flip takes views of images; iris has feature rows"):
        dlrun.run(["dataset=iris", "trainer.tta=flip", "trainer.max_epochs=1"])
