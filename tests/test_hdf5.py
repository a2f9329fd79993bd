"""dataset=hdf5 on files the tests write with h5py: images and tables, the file's own test split,
keys named by the user, and inputs read row by row through DataLoader workers."""

import numpy as np
import pytest

import dlrun
from conftest import SMOKE, summary_of
from dlrun.errors import ConfigError

h5py = pytest.importorskip("h5py", reason="the hdf5 extra: pip install 'dlrun[hdf5]'")

QUICK = [*SMOKE, "plots=[]", "report=false"]


def digits_file(path, **keys):
    """scikit-learn's digits as an HDF5 file: grey uint8 images (N, 8, 8), labels 10..19 (not
    0..9: the class names come from the file), the last 297 rows as the file's test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = (digits.images * 15.9).astype(np.uint8), digits.target + 10
    names = {"x": "x", "y": "y", **keys}
    with h5py.File(path, "w") as file:
        file[names["x"]], file[names["y"]] = images[:1500], labels[:1500]
        file[f"{names['x']}_test"], file[f"{names['y']}_test"] = images[1500:], labels[1500:]
    return path


def test_images_and_the_files_own_test_split(tmp_path):
    path = digits_file(tmp_path / "digits.h5")
    summary = dlrun.run([*QUICK, "dataset=hdf5", f"dataset.path={path}", "model=cnn", "trainer.max_epochs=3"],
                        run_dir=tmp_path / "run")
    assert summary["classes"] == [str(c) for c in range(10, 20)]
    assert summary["sizes"]["test"] == 297 and summary["sizes"]["train"] + summary["sizes"]["val"] == 1500
    assert summary["test"]["accuracy"] > 0.5  # a CNN that saw the digits: chance is 0.1


def test_a_table_under_keys_of_its_own(tmp_path):
    from sklearn.datasets import load_diabetes

    table = load_diabetes()
    with h5py.File(tmp_path / "table.h5", "w") as file:
        file["features"], file["progression"] = table.data, table.target.astype(np.float64) + 0.5
    summary = dlrun.run([*QUICK, "dataset=hdf5", f"dataset.path={tmp_path / 'table.h5'}", "dataset.x=features",
                         "dataset.y=progression"], run_dir=tmp_path / "run")
    assert "r2" in summary["test"] and summary["sizes"]["train"] > 300  # float targets: a regression


def test_a_key_that_is_not_in_the_file_lists_those_that_are(tmp_path):
    path = digits_file(tmp_path / "digits.h5", x="images", y="labels")
    with pytest.raises(ConfigError, match="dataset.x=image: .* has no dataset 'image'. Did you mean 'images'\\? "
                                          "It holds: images, images_test, labels, labels_test."):
        dlrun.run([*QUICK, "dataset=hdf5", f"dataset.path={path}", "dataset.x=image", "dataset.y=labels"],
                  run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_inputs_read_row_by_row_by_two_workers_train_like_those_held_in_memory(cli, tmp_path):
    path = digits_file(tmp_path / "digits.h5")
    common = [*QUICK, "dataset=hdf5", f"dataset.path={path}", "model=cnn", "trainer.max_epochs=2"]
    proc = cli(*common, "dataset.in_memory=false", "trainer.num_workers=2", "hydra.run.dir=lazy")
    assert "is read row by row from the file" in proc.stdout + proc.stderr
    cli(*common, "dataset.in_memory=true", "hydra.run.dir=held")
    lazy, held = summary_of(tmp_path / "lazy"), summary_of(tmp_path / "held")
    assert lazy["status"] == "completed" and lazy["sizes"] == held["sizes"]
    assert lazy["test"]["accuracy"] == pytest.approx(held["test"]["accuracy"], abs=0.05)
