"""Runs you can find: name= and tags= in the record, and `dlrun runs` listing, filtering, sorting
and deleting the runs under a folder from their summary.json files."""

import json
import shutil

import pytest

import dlrun
from conftest import SMOKE, summary_of
from dlrun.errors import DlrunError
from dlrun.results import runs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Four runs as they lie under an outputs root: two tagged, a sweep's job, a cross-validation."""
    root = tmp_path_factory.mktemp("outputs")
    dlrun.run([*SMOKE, "name=baseline", "tags=[dev,paper]"], run_dir=root / "2026-12-01" / "10-00-00")
    dlrun.run([*SMOKE, "dataset=wine", "optimizer.lr=0.01", "tags=[dev]"], run_dir=root / "2026-12-01" / "11-00-00")
    dlrun.run([*SMOKE, "seed=3"], run_dir=root / "multirun" / "2026-12-02" / "09-00-00" / "0")
    dlrun.run([*SMOKE, "cv.folds=2"], run_dir=root / "2026-12-02" / "12-00-00")
    return root


def _listed(root, **filters):
    return [str(runs._relative(r["path"], root)) for r in runs.select(list(runs.find(root)), **filters)]


def test_name_and_tags_are_recorded_and_shown(outputs):
    summary = summary_of(outputs / "2026-12-01" / "10-00-00")
    assert summary["name"] == "baseline" and summary["tags"] == ["dev", "paper"]
    page = (outputs / "2026-12-01" / "10-00-00" / "report.html").read_text()
    assert "<th>name</th><td>baseline</td>" in page and "<th>tags</th><td>dev, paper</td>" in page


def test_every_run_is_found_once_and_filters_combine(outputs):
    # the cross-validation is one run: its folds belong to it
    assert sorted(_listed(outputs)) == ["2026-12-01/10-00-00", "2026-12-01/11-00-00", "2026-12-02/12-00-00",
                                        "multirun/2026-12-02/09-00-00/0"]
    assert sorted(_listed(outputs, tags=["dev"])) == ["2026-12-01/10-00-00", "2026-12-01/11-00-00"]
    assert _listed(outputs, tags=["dev", "paper"]) == ["2026-12-01/10-00-00"]
    assert _listed(outputs, where=["dataset=wine"]) == ["2026-12-01/11-00-00"]
    assert _listed(outputs, where=["optimizer.lr=0.01"]) == ["2026-12-01/11-00-00"]
    assert _listed(outputs, where=["seed=3"]) == ["multirun/2026-12-02/09-00-00/0"]
    assert len(_listed(outputs, statuses=["completed"])) == 4 and _listed(outputs, statuses=["failed"]) == []


def test_a_mistyped_filter_names_what_there_is(outputs):
    with pytest.raises(DlrunError, match="Did you mean 'optimizer.lr'"):
        _listed(outputs, where=["optimiser.lr=0.01"])
    with pytest.raises(DlrunError, match="Did you mean 'completed'"):
        _listed(outputs, statuses=["complete"])
    with pytest.raises(DlrunError, match="write KEY=VALUE"):
        _listed(outputs, where=["dataset"])


def test_the_command_lists_sorts_by_the_best_value_and_prints_paths(outputs, cli):
    table = cli("runs", str(outputs), "--tag", "dev").stdout
    assert "2 of 4 runs under" in table and "baseline" in table and "dev, paper" in table and "wine / mlp" in table
    best = cli("runs", str(outputs), "--sort", "best", "--paths").stdout.split()
    values = [runs._best(summary_of(p))[1] for p in best]
    assert len(best) == 4 and values == sorted(values)  # every run monitors val/loss: the lowest first
    cv = summary_of(outputs / "2026-12-02" / "12-00-00")
    assert f"val/loss {cv['cv']['best_value']['mean']:.4g} (mean)" in cli("runs", str(outputs)).stdout
    wrong = cli("runs", str(outputs), "--status", "complete", check=False)
    assert wrong.returncode == 2 and "Did you mean 'completed'" in wrong.stderr and not wrong.stdout


def test_delete_asks_keeps_running_runs_and_removes_only_those_listed(outputs, cli, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(outputs, root)
    running = root / "2026-12-01" / "11-00-00" / "summary.json"
    running.write_text(json.dumps({**json.loads(running.read_text()), "status": "running"}))
    refused = cli("runs", str(root), "--tag", "dev", "--delete", check=False)  # no terminal to answer
    assert refused.returncode == 2 and "--yes" in refused.stderr and len(list(runs.find(root))) == 4
    done = cli("runs", str(root), "--tag", "dev", "--delete", "--yes").stdout
    assert "1 running run(s) kept" in done and "deleted 1 runs" in done
    assert sorted(_listed(root)) == ["2026-12-01/11-00-00", "2026-12-02/12-00-00", "multirun/2026-12-02/09-00-00/0"]
    assert not (root / "2026-12-01" / "10-00-00").exists()


def test_an_unreadable_record_is_listed_as_such(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    (found,) = runs.find(tmp_path)
    assert found["status"] == "unreadable" and found["path"] == str(tmp_path / "broken")
