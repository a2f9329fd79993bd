"""summary.json is one typed, versioned record (dlrun.results.record): what a run writes is declared, and
what reads it is refused a record it cannot understand."""

import json
import re

import pytest

import dlrun
from conftest import REPO, SMOKE
from dlrun.errors import DlrunError
from dlrun.results import record


def test_a_run_writes_only_declared_fields_of_their_types_with_the_format(tmp_path):
    summary = dlrun.run([*SMOKE, "dataset=breast_cancer", "plots=[]"], run_dir=tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["format"] == record.FORMAT and on_disk == summary
    record.check(on_disk)  # raises on an undeclared field or a value of another type
    assert {"status", "objective", "monitor", "test", "threshold"} <= set(on_disk)


@pytest.mark.parametrize("data,error", [({"status": "completed", "best": 1}, "has no field 'best'"),
                                        ({"objective": "0.5"}, "objective is a str"),
                                        ({"steps": True}, "steps is a bool")])
def test_a_field_that_is_not_declared_or_of_another_type_is_refused(tmp_path, data, error):
    with pytest.raises((TypeError, ValueError), match=error):
        record.write(tmp_path / "summary.json", data)
    assert not (tmp_path / "summary.json").exists()


def test_a_record_of_a_newer_format_is_one_line_and_an_older_one_is_read(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"format": record.FORMAT + 1, "status": "completed"}))
    with pytest.raises(DlrunError, match=f"is a record of format {record.FORMAT + 1}; this dlrun reads format"):
        record.read(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))  # before records had a format
    assert record.read(tmp_path / "summary.json")["status"] == "completed"
    assert record.update(tmp_path / "summary.json", error="x")["format"] == record.FORMAT


def test_the_readmes_table_names_every_declared_field():
    readme = (REPO / "README.md").read_text()
    table = readme.split("### summary.json", 1)[1].split("\n## ", 1)[0]
    named = {name for row in table.splitlines() if row.startswith("| `")
             for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert named == set(record.FIELDS)


def test_the_change_per_epoch_is_over_the_epochs_that_measured_it():
    from dlrun.results.summary import change_per_epoch

    nan = float("nan")
    history = [{"epoch": 1, "train/loss": 2.0, "val/loss": 1.5}, {"epoch": 2, "train/loss": 1.0, "val/loss": nan},
               {"epoch": 3, "train/loss": 0.5, "val/loss": 0.5}, {"epoch": 4, "train/loss": 0.5, "val/loss": nan}]
    assert change_per_epoch(history) == {"train/loss": -0.5, "val/loss": -0.5}  # val every 2nd epoch: 1 to 3
    assert change_per_epoch(history[:1]) is None
