"""CSV files through the columnar reader: the values as written, each kind of column as before
(numbers, text, flags and dates as categories), and a table too wide to be features refused at once."""

import numpy as np
import pytest

from dlrun.data.csv_file import MAX_COLUMNS, csv
from dlrun.errors import ConfigError


def test_a_larger_table_reads_the_values_written(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 12)).astype(np.float32)
    y = rng.integers(0, 3, 20_000)
    header = ",".join([*(f"f{i}" for i in range(12)), "kind", "y"])
    kinds = np.array(["red", "green", "blue"])[rng.integers(0, 3, 20_000)]
    with open(tmp_path / "t.csv", "w") as file:
        file.write(header + "\n")
        for row, kind, label in zip(x, kinds, y):
            file.write(",".join([*(repr(float(v)) for v in row), kind, str(label)]) + "\n")
    data = csv(tmp_path / "t.csv", target="y")
    assert data.x.shape == (20_000, 15) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x[:, :12], x)
    assert data.input_spec["columns"][12] == {"name": "kind", "levels": ["blue", "green", "red"]}
    np.testing.assert_array_equal(data.x[:, 12:].argmax(1), np.searchsorted(["blue", "green", "red"], kinds))
    np.testing.assert_array_equal(data.y, y)
    assert data.class_names == ["0", "1", "2"]


def test_flags_dates_and_quoted_cells_are_text_as_written(tmp_path):
    (tmp_path / "t.csv").write_text('n,flag,day,note,y\n1,true,2020-01-01,"a, b",x\n2,False,2020-01-02,c,y\n'
                                    '\n3,true,2020-01-01,"two\nlines",x\n')
    data = csv(tmp_path / "t.csv", target="y")
    levels = {c["name"]: c["levels"] for c in data.input_spec["columns"]}
    assert levels == {"n": None, "flag": ["False", "true"], "day": ["2020-01-01", "2020-01-02"],
                      "note": ["a, b", "c", "two\nlines"]}
    assert data.class_names == ["x", "y"] and data.x.shape == (3, 8)


def test_a_missing_cell_is_named_with_its_line_and_text(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n\n2,NA,1\n3,4,1\n")
    with pytest.raises(ConfigError, match=r"column 'b' has a missing value \('NA'\) on line 4 \(1 cell in all\)"):
        csv(tmp_path / "t.csv", target="y")


def test_a_table_too_wide_to_be_features_is_refused_unless_its_features_are_named(tmp_path):
    columns = MAX_COLUMNS + 1
    with open(tmp_path / "wide.csv", "w") as file:
        file.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        for r in range(30):
            file.write(",".join([str(r % 2)] + ["1"] * (columns - 1)) + "\n")
    with pytest.raises(ConfigError, match=f"has {columns:,} columns: a table of features has one column per feature"):
        csv(tmp_path / "wide.csv", target="c0")
    assert csv(tmp_path / "wide.csv", target="c0", features=["c1", "c2"]).x.shape == (30, 2)
