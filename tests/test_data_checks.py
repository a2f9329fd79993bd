"""Data checks before training: a bad table, image folder, split or model/data
pairing is one line naming what to fix, raised before the run starts, so that
nothing is left on disk. Legitimate variants of the same inputs still load."""

import numpy as np
import pytest

import dlrun
from conftest import SMOKE
from dlrun.data import DATASETS
from dlrun.errors import ConfigError, DlrunError

HEADER = ["a", "b", "y"]
ROWS = [[f"{i * 0.1:.1f}", f"{(i * 7) % 10}", str(i % 2)] for i in range(60)]


def table(header=HEADER, rows=ROWS, edit=None):
    """CSV text of `rows` (data row i is on line i + 2), after `edit(rows)`."""
    rows = [list(r) for r in rows]
    if edit:
        edit(rows)
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


def put(rows, row, column, value):
    rows[row][column] = value


CSV_CASES = {
    "blank numeric cell": (table(edit=lambda r: put(r, 5, 0, "")), [],
                           "column 'a' has a missing value ('') on line 7 (1 cell in all)"),
    "stray string in a numeric column": (table(edit=lambda r: put(r, 7, 1, "oops")), [],
                                         "column 'b' is numeric but line 9 has 'oops' (1 non-numeric cell in all); "
                                         "fix those cells, or declare the column as text with dataset.categorical=[b]"),
    "NaN feature": (table(edit=lambda r: put(r, 2, 0, "nan")), [], "column 'a' has a missing value ('nan') on line 4"),
    "duplicate column name": (table(header=["a", "a", "y"]), [],
                              "the column name 'a' appears 2 times in the header (columns 1, 2)"),
    "NaN target": (table(edit=lambda r: put(r, 9, 2, "nan")), [],
                   "the target column 'y' is empty on line 11 (1 row without a target)"),
    "blank target": (table(edit=lambda r: put(r, 3, 2, "")), [], "the target column 'y' is empty on line 5"),
    "ragged row": (table(edit=lambda r: r[3].pop()), [], "line 5 has 2 values and the header has 3"),
    "text target for regression": (table(edit=lambda r: put(r, 0, 2, "no")), ["dataset.task=regression"],
                                   "dataset.task=regression needs a numeric target, but column 'y' has 'no' on line 2"),
    "one class": (table(rows=[[a, b, "1"] for a, b, _ in ROWS]), [],
                  "the dataset's 60 rows all belong to one class (1); classification needs at least two"),
    "target among the features": (table(), ["dataset.features=[a,y]"], "dataset.features lists the target column 'y'"),
    "unknown categorical column": (table(), ["dataset.categorical=[c]"], "dataset.categorical=c is not known"),
    "unknown encoding": (table(), ["dataset.encoding=klingon"], "dataset.encoding=klingon is not a text encoding"),
}


def run_fails(tmp_path, args, message, error=DlrunError):
    with pytest.raises(error) as raised:
        dlrun.run([*SMOKE, *args], run_dir=tmp_path / "run")
    assert message in " ".join(str(raised.value).split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,args,message", CSV_CASES.values(), ids=CSV_CASES.keys())
def test_bad_csv_is_one_line_naming_the_line_and_column(tmp_path, text, args, message):
    (tmp_path / "d.csv").write_text(text)
    run_fails(tmp_path, ["dataset=csv", f"dataset.path={tmp_path / 'd.csv'}", "dataset.target=y", *args], message,
              ConfigError)


def test_a_file_in_another_encoding_names_the_byte_and_the_setting(tmp_path):
    (tmp_path / "d.csv").write_bytes(table(header=["a", "b", "y"]).replace("0.3", "café", 1).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not utf-8 text: byte 0xe9 on line 5 .* dataset.encoding=latin-1"):
        DATASETS.build({"name": "csv", "path": str(tmp_path / "d.csv"), "target": "y"})


def csv_data(tmp_path, text, **args):
    path = tmp_path / "d.csv"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return DATASETS.build({"name": "csv", "path": str(path), "target": "y", **args})


def test_legitimate_tables_load(tmp_path):
    data = csv_data(tmp_path, table(edit=lambda r: put(r, 7, 1, "oops")), categorical=["b"])
    assert data.x.shape == (60, 1 + 11)  # a, and b one-hot over its 10 digits and 'oops'
    text_column = table(header=["a", "colour", "y"], rows=[[a, ["red", "blue"][i % 2], y] for i, (a, _, y) in
                                                          enumerate(ROWS)])
    assert csv_data(tmp_path, text_column).x.shape == (60, 3)  # a text column is one-hot without being declared
    latin = table(rows=[[a, b, ["oui", "café"][int(y)]] for a, b, y in ROWS]).encode("latin-1")
    assert csv_data(tmp_path, latin, encoding="latin-1").class_names == ["café", "oui"]
    with_bom = b"\xef\xbb\xbf" + table().encode()
    assert csv_data(tmp_path, with_bom).x.shape == (60, 2)
    with_blank_lines = table().replace("\n", "\n\n", 3)
    assert csv_data(tmp_path, with_blank_lines).y.shape == (60,)


def test_a_column_that_counts_the_rows_is_named_as_a_likely_id(tmp_path):
    with_id = table(header=["id", "a", "b", "y"], rows=[[str(100 + i), *r] for i, r in enumerate(ROWS)])
    (caution,) = csv_data(tmp_path, with_id).cautions
    assert caution.startswith("dataset.path: column 'id' has a different whole number on every row, in order "
                              "(100, 101, ... 159): a row number or id")
    assert csv_data(tmp_path, with_id, features=["a", "b"]).cautions == []  # features chosen: nothing to say
    shuffled = table(header=["n", "a", "b", "y"], rows=[[str((i * 7) % 60), *r] for i, r in enumerate(ROWS)])
    assert csv_data(tmp_path, shuffled).cautions == []  # distinct whole numbers out of order: a real feature


def image_folder(root, classes, files=6, corrupt=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(files):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    if corrupt:
        (root / classes[0] / corrupt).write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.parametrize("args,message", [
    (["dataset=synthetic", "dataset.n_classes=1", "dataset.n_informative=2"], "all belong to one class (0)"),
    (["dataset=iris", "cv.folds=60"], "cv.folds=60 with stratified folds needs at least 60 rows of every class, "
                                      "and class 'versicolor' has 42"),
    (["dataset=iris", "cv.folds=200", "cv.stratified=false"], "cv.folds=200 is more than the 127 rows left"),
    (["dataset=fake", "dataset.size=40"], "split.test=0.15 with a stratified split needs at least 2 rows of every "
                                          "class, and class 'class"),
    (["dataset=wine", "model=resnet18"], "model=resnet18 does not fit this dataset's inputs of shape (13,): "),
    (["dataset=wine", "model=vgg_fast"], "for tabular data use model=mlp or model=logistic"),
], ids=["one class", "folds above a class count", "folds above the rows", "class too small to split",
        "image model on tabular data", "hint"])
def test_impossible_data_is_refused_before_the_start(tmp_path, args, message):
    run_fails(tmp_path, args, message, ConfigError)


def test_cross_validation_refused_before_any_fold_is_written(tmp_path):
    run_fails(tmp_path, ["dataset=iris", "cv.folds=60"], "lower cv.folds or set cv.stratified=false", ConfigError)


def test_image_folders_are_checked_before_the_start(tmp_path):
    one = image_folder(tmp_path / "one", ["cat"])
    run_fails(tmp_path, ["dataset=image_folder", f"dataset.root={one}", "model=cnn"], "all belong to one class (cat)")
    bad = image_folder(tmp_path / "bad", ["cat", "dog"], corrupt="broken.png")
    run_fails(tmp_path, ["dataset=image_folder", f"dataset.root={bad}", "model=cnn"],
              "1 of 13 files are not readable images, the first is")


def test_a_model_whose_output_does_not_fit_is_refused(tmp_path):
    import torch

    from dlrun.models import MODELS

    @MODELS.register("flat_output_for_test")
    def flat(input_shape, num_outputs):
        return torch.nn.Sequential(torch.nn.Linear(input_shape[0], num_outputs), torch.nn.Flatten(0))

    run_fails(tmp_path, ["dataset=breast_cancer", "model=logistic", "model.name=flat_output_for_test"],
              "model=flat_output_for_test returns (2,) for a batch of 2 inputs of shape (30,); dlrun needs a tensor "
              "of shape (2, 1)", ConfigError)
