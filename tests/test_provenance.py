"""The reproducibility record (results/provenance.py) and `dlrun reproduce`: a run started in a git
repository records its commit, branch and uncommitted changes as a patch, the environment and the
host; reproduce names what changed since and runs the same overrides again."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import SMOKE, summary_of
from dlrun.results import provenance, reproduce

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]


def make_repo(folder):
    """A repository with one commit (notes.py, a .gitignore of outputs/), then notes.py changed
    and extra.txt new, not committed."""
    subprocess.run([*GIT, "init", "-q", str(folder)], check=True)
    (folder / ".gitignore").write_text("outputs/\n")
    (folder / "notes.py").write_text("lr = 0.1\n")
    subprocess.run([*GIT, "-C", str(folder), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(folder), "commit", "-qm", "start"], check=True)
    (folder / "notes.py").write_text("lr = 0.2\n")
    (folder / "extra.txt").write_text("new\n")
    return subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_the_code_record_holds_the_commit_and_every_uncommitted_change(tmp_path):
    commit = make_repo(tmp_path)
    run_dir = tmp_path / "outputs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "inside_outputs.txt").write_text("not code\n")
    files = {}
    code = provenance.code_state(tmp_path, run_dir, files)
    provenance.write_files(files)
    assert code["commit"] == commit and code["dirty"] and code["branch"] in ("master", "main")
    patch = (run_dir / code["patch"]).read_text()
    assert "+lr = 0.2" in patch and "+new" in patch and "inside_outputs" not in patch
    assert code["untracked"] == ["extra.txt"]
    # the patch applied to the commit gives the work tree back
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tmp_path), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "apply", str(run_dir / "code.patch")], check=True)
    assert (clone / "notes.py").read_text() == "lr = 0.2\n" and (clone / "extra.txt").read_text() == "new\n"


def test_code_differences_name_the_changed_file_and_nothing_else(tmp_path):
    commit = make_repo(tmp_path)
    run_dir = tmp_path / "outputs" / "run"
    run_dir.mkdir(parents=True)
    files = {}
    code = provenance.code_state(tmp_path, run_dir, files)
    provenance.write_files(files)
    assert provenance.code_differences(code, run_dir, tmp_path) == []
    # committing the recorded changes moves HEAD, and the code is still the run's
    subprocess.run([*GIT, "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(tmp_path), "commit", "-qm", "the changes"], check=True)
    lines = provenance.code_differences(code, run_dir, tmp_path)
    assert len(lines) == 1 and f"the run was at {commit[:10]}" in lines[0]
    (tmp_path / "notes.py").write_text("lr = 0.3\n")
    assert "differ from the run's" in provenance.code_differences(code, run_dir, tmp_path)[-1]
    assert provenance.code_differences(code, run_dir, tmp_path)[-1].endswith(": notes.py")
    assert "not started in a git repository" in provenance.code_differences(None, run_dir, tmp_path)[0]


def test_environment_differences_list_the_packages_that_changed(tmp_path):
    files = {}
    recorded = provenance.environment(tmp_path, files)
    provenance.write_files(files)
    assert provenance.environment_differences(recorded, tmp_path) == []
    listed = (tmp_path / "environment.txt").read_text().splitlines()
    torch_line = next(line for line in listed if line.startswith("torch=="))
    edited = [line for line in listed if line != torch_line] + ["torch==1.0", "gone-package==2.0"]
    (tmp_path / "environment.txt").write_text("\n".join(sorted(edited)) + "\n")
    changed = provenance.environment_differences({**recorded, "hash": "0"}, tmp_path)[0]
    assert f"torch 1.0 -> {torch_line.split('==')[1]}" in changed and "gone-package 2.0 -> (none)" in changed
    assert "2 package(s)" in changed


def test_the_config_hash_follows_the_resolved_values():
    from omegaconf import OmegaConf

    one = OmegaConf.create({"a": 1, "b": {"c": "${a}"}})
    assert provenance.config_hash(one) == provenance.config_hash(OmegaConf.create({"b": {"c": 1}, "a": 1}))
    assert provenance.config_hash(one) != provenance.config_hash(OmegaConf.create({"a": 2, "b": {"c": "${a}"}}))


def test_reproduce_refuses_overrides_that_name_code_unless_trusted(tmp_path):
    from dlrun.errors import DlrunError
    from dlrun.layout import RunDir

    recorded = {"task": "train", "overrides": ["plugins=[mine]", "ckpt_path=/x", "seed=3"]}
    with pytest.raises(DlrunError, match="trust_run_code=true"):
        reproduce.command(recorded, RunDir(tmp_path), [])
    assert reproduce.command(recorded, RunDir(tmp_path), ["trust_run_code=true"]) == [
        "plugins=[mine]", "seed=3", "trust_run_code=true"]  # a resumed training runs again from its start


@pytest.mark.slow
def test_a_run_in_a_dirty_repository_is_recorded_and_reproduced(tmp_path, cli):
    commit = make_repo(tmp_path)
    cli(*SMOKE, "seed=5", "name=first")
    run_dir = next((tmp_path / "outputs").glob("*/*"))
    summary = summary_of(run_dir)
    assert summary["code"]["commit"] == commit and summary["code"]["patch"] == "code.patch"
    assert (run_dir / "environment.txt").read_text().count("==") == summary["environment"]["packages"]
    assert summary["host"]["cpus"] >= 1 and len(summary["config_hash"]) == 64
    assert "Reproducibility" in (run_dir / "report.html").read_text()

    assert cli("reproduce", str(run_dir), "--check").stdout.count("as the run recorded") == 1
    (tmp_path / "notes.py").write_text("lr = 0.5\n")
    checked = cli("reproduce", str(run_dir), "--check", check=False)
    assert checked.returncode == 1 and "1 file(s) differ" in checked.stdout and "notes.py" in checked.stdout

    again = cli("reproduce", str(run_dir))
    assert "config: the same" in again.stdout and "identical" in again.stdout, again.stdout
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2
    fresh = summary_of(runs[1] if runs[0] == run_dir else runs[0])
    assert fresh["config_hash"] == summary["config_hash"] and fresh["objective"] == summary["objective"]
    assert json.loads(json.dumps(fresh["overrides"])) == summary["overrides"]
    assert "lr = 0.5" in Path(fresh["run_dir"], "code.patch").read_text()


def test_reproduce_of_a_folder_that_is_no_run_says_so(tmp_path, cli):
    done = cli("reproduce", str(tmp_path), check=False)
    assert done.returncode == 2 and "has no summary.json" in done.stderr
