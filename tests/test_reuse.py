"""cache=true: a training whose config, code, packages, device and data completed before is not
run again; its files are linked into the new run directory, and its record says so."""

import json

import dlrun
from conftest import SMOKE

QUICK = [*SMOKE, "plots=[]", "report=false", "cache=true"]


def record(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_the_same_training_is_linked_not_run_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLRUN_OUTPUTS", str(tmp_path / "outputs"))
    first = tmp_path / "outputs" / "first"
    dlrun.run([*QUICK, "name=first"], run_dir=first)
    again = tmp_path / "outputs" / "again"
    dlrun.run([*QUICK, "name=again", "tags=[dev]", "trainer.progress=true"], run_dir=again)  # labels and display
    assert "its files are linked here and nothing is trained" in capsys.readouterr().out
    kept, linked = record(first), record(again)
    assert linked["cached_from"] == str(first) and linked["name"] == "again" and linked["tags"] == ["dev"]
    assert {k: v for k, v in linked.items() if k not in ("cached_from", "run_dir", "name", "tags", "overrides",
                                                         "started_at")} == \
        {k: v for k, v in kept.items() if k not in ("run_dir", "name", "tags", "overrides", "started_at")}
    best = again / "checkpoints" / "best.pt"
    assert best.stat().st_ino == (first / "checkpoints" / "best.pt").stat().st_ino  # a link, not a copy
    assert (again / "metrics.csv").read_text() == (first / "metrics.csv").read_text()


def test_another_setting_or_changed_data_trains_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DLRUN_OUTPUTS", str(tmp_path / "outputs"))
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60)))
    table = ["dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=y"]
    dlrun.run([*QUICK, *table], run_dir=tmp_path / "outputs" / "first")
    dlrun.run([*QUICK, *table, "seed=1"], run_dir=tmp_path / "outputs" / "seeded")
    assert "cached_from" not in record(tmp_path / "outputs" / "seeded")
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 4},{i % 2}\n" for i in range(60)))
    dlrun.run([*QUICK, *table], run_dir=tmp_path / "outputs" / "changed")
    assert "cached_from" not in record(tmp_path / "outputs" / "changed")
    assert record(tmp_path / "outputs" / "changed")["cache_key"] != record(tmp_path / "outputs" / "first")["cache_key"]
    dlrun.run([*QUICK, *table], run_dir=tmp_path / "outputs" / "same")
    assert record(tmp_path / "outputs" / "same")["cached_from"] == str(tmp_path / "outputs" / "changed")


def test_an_image_folder_is_found_again_after_its_first_run_decoded_it(tmp_path, monkeypatch):
    """The decoded cache that the first run writes is derived data, not a change of the folder."""
    from test_image_cache import write_folder

    monkeypatch.setenv("DLRUN_OUTPUTS", str(tmp_path / "outputs"))
    write_folder(tmp_path / "images")
    folder = ["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=16",
              f"dataset.cache_dir={tmp_path / 'cache'}", "model=cnn"]
    dlrun.run([*QUICK, *folder], run_dir=tmp_path / "outputs" / "first")
    dlrun.run([*QUICK, *folder], run_dir=tmp_path / "outputs" / "again")
    assert record(tmp_path / "outputs" / "again")["cached_from"] == str(tmp_path / "outputs" / "first")
