"""The user guide: every command in it composes, the offline ones run on the
smoke budget, and the notebook example runs."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import DLRUN, REPO

pytestmark = pytest.mark.slow

PAGES = sorted((REPO / "docs").glob("*.md"))
NEEDS_DOWNLOAD = ("mnist", "cifar10", "pretrained=true", "image_folder", "dataset=csv", "torchrun", "slurm")


def blocks():
    """The `dlrun ...` lines of each fenced block of the guide, in order (a later line may use
    what an earlier one wrote, such as the run that init_from= starts from)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(), re.S):
            lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
            lines = [line for line in lines if line.startswith("dlrun ")]
            if lines:
                found.append((page.name, lines))
    return found


BLOCKS = blocks()
COMMANDS = [(page, line) for page, lines in BLOCKS for line in lines]


def single_job(args):
    """A sweep's first combination, as one job (--cfg job shows a single job)."""
    out = []
    for arg in args:
        if arg in ("-m", "--multirun"):
            continue
        key, sep, value = arg.partition("=")
        if sep and "," in value and not value.startswith(("[", "{")):
            value = value.split(",")[0]
        out.append(f"{key}{sep}{value}")
    return out


def test_the_guide_has_its_lessons():
    names = {p.stem for p in PAGES}
    assert len(PAGES) >= 9 and len(COMMANDS) >= 20, names


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[6:50]}" for p, c in COMMANDS])
def test_every_command_composes(page, command, tmp_path):
    args = shlex.split(command)[1:]
    if not _informational(args):  # show the job's config instead of running it
        args = [*single_job(args), "--cfg", "job"]
    proc = subprocess.run([str(DLRUN), *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def _informational(args):
    return args[:1] == ["list"] or bool({"--help", "--cfg"} & set(args))


def _spec_commands(page):
    """The commands a page's result tables run (their test below runs them on the smoke budget)."""
    import yaml

    specs = re.findall(r"<!-- results\n(.*?)\n-->", (REPO / "docs" / page).read_text(), re.S)
    runs = [run for spec in specs for run in yaml.safe_load(spec)["runs"]]
    return {run if isinstance(run, str) else run["command"] for run in runs}


# a command that a result table runs already is not run twice
OFFLINE = [(p, [c for c in lines if not _informational(shlex.split(c)[1:]) and c not in _spec_commands(p)])
           for p, lines in BLOCKS if not any(k in c for c in lines for k in NEEDS_DOWNLOAD)]
OFFLINE = [(p, lines) for p, lines in OFFLINE if lines]


@pytest.mark.parametrize("page,lines", OFFLINE, ids=[f"{p}:{lines[0][6:50]}" for p, lines in OFFLINE])
def test_offline_commands_run_on_the_smoke_budget(page, lines, tmp_path):
    for i, command in enumerate(lines):  # one directory for the block: a command may use an earlier one's run
        _run_on_the_smoke_budget(command, tmp_path, f"sweep{i}")


def _run_on_the_smoke_budget(command, tmp_path, sweep_dir):
    args = shlex.split(command)[1:]
    if "-m" in args:  # at most the first two values of each swept key, and few trials
        args = [a if "," not in a.partition("=")[2] or a.partition("=")[2].startswith("[")
                else a.partition("=")[0] + "=" + ",".join(a.partition("=")[2].split(",")[:2]) for a in args]
        args.append("hydra.sweeper.n_trials=2" if "hparams_search" in command else f"hydra.sweep.dir={sweep_dir}")
    budget = ["trainer.max_epochs=1", "lr_find.steps=20", "plots=[]", "report=false", "trainer.progress=false"]
    proc = subprocess.run([str(DLRUN), *args, *budget], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "DLRUN_OUTPUTS": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_notebook_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "notebook_example.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test accuracy" in proc.stdout
    assert {p.name for p in (tmp_path / "steps").glob("*.png")} == {"curves.png", "confusion.png",
                                                                     "embeddings_pca.png"}


def yaml_blocks():
    """Every ```yaml block of the README and the guide, with the file it says it is (its first line)."""
    found = []
    for page in [REPO / "README.md", *PAGES]:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            first = block.splitlines()[0].lstrip("# ").strip()
            found.append((page.name, first if first.endswith(".yaml") and not first.startswith("@") else None, block))
    return found


@pytest.mark.parametrize("page,path,block", yaml_blocks(), ids=[f"{p}:{f}" for p, f, _ in yaml_blocks()])
def test_every_yaml_block_is_the_shipped_file_or_composes(page, path, block, tmp_path):
    """A block naming a shipped file says what that file holds; any other composes when pasted there."""
    import yaml

    from dlrun.config.composition import compose

    data = yaml.safe_load(block)
    assert path is not None, f"a YAML block in {page} does not say which file it is (# conf/<group>/<option>.yaml)"
    shipped = REPO / path
    if shipped.is_file() or not path.startswith("conf/"):  # an example's file must be there, as shown
        assert data == yaml.safe_load(shipped.read_text()), f"{page} shows {path} other than it is"
        return
    group, option = Path(path).parent.name, Path(path).stem
    (tmp_path / group).mkdir()
    (tmp_path / group / f"{option}.yaml").write_text(block)
    cfg = OmegaConf.to_container(compose([f"{group}={option}"], config_dir=str(tmp_path)))
    placed = ({k: v for k, v in data.items() if k not in ("defaults", "hydra")} if "@package _global_" in block
              else {group: data})
    assert _within(placed, cfg), f"{path} from {page} does not compose to what it says"


def _within(part, whole):
    """Every key of `part` is in `whole` with the same value (dicts compared key by key)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _within(v, whole[k]) for k, v in part.items())
    return part == whole


def _results_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_results", REPO / "docs" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS = _results_module()
RESULT_BLOCKS = [(page.name, i) for page in PAGES for i, _ in enumerate(RESULTS.blocks(page))]


def test_every_table_of_the_guide_is_generated():
    """No hand-written result table: each one sits in a block that docs/results.py regenerates."""
    for page in PAGES:
        outside = RESULTS.BLOCK.sub("", page.read_text())
        assert "|---" not in outside, f"{page.name} has a table that docs/results.py does not generate"
    assert len(RESULT_BLOCKS) >= 12


@pytest.mark.parametrize("page,index", RESULT_BLOCKS, ids=[f"{p}:{i}" for p, i in RESULT_BLOCKS])
def test_each_result_table_comes_from_this_version_and_regenerates(page, index, tmp_path):
    """The numbers were produced by the dlrun under test, and the spec's runs, on the smoke budget,
    give a table of the same shape (header and rows)."""
    import dlrun

    spec, generated, _ = RESULTS.blocks(REPO / "docs" / page)[index]
    assert f"with dlrun {dlrun.__version__}, torch " in generated.splitlines()[0]
    fresh = RESULTS.run_spec(spec, tmp_path, smoke=True)
    assert RESULTS.shape(fresh) == RESULTS.shape(RESULTS.table_of(generated))


def test_the_first_lesson_table_reproduces_at_full_budget():
    """The numbers themselves, not only the shape: the first page's full runs are cheap enough."""
    assert RESULTS.check(REPO / "docs" / "01-logistic-mlp-cnn.md") == []


def test_a_check_names_every_cell_a_fresh_run_says_differently():
    spec = {"columns": {"model": "override model", "loss": "monitor.best_value", "epochs": "epochs_run",
                        "time": "wall_time_s .1f"}}
    page = "| model | loss | epochs | time |\n|---|---|---|---|\n| cnn | 0.0484 | 30 | 8.9 |\n| mlp | 0.1067 | 12 | 4.3 |\n"
    rounding = "| model | loss | epochs | time |\n|---|---|---|---|\n| cnn | 0.0485 | 30 | 9.7 |\n| mlp | 0.1067 | 12 | 4.0 |\n"
    assert RESULTS.differences(spec, page, rounding) == []
    drifted = page.replace("0.0484", "0.0494").replace("| 12 |", "| 13 |")
    assert RESULTS.differences(spec, page, drifted) == [
        "row 'cnn', loss: the page says 0.0484, a fresh run gives 0.0494",
        "row 'mlp', epochs: the page says 12, a fresh run gives 13"]
    assert "changed shape" in RESULTS.differences(spec, page, page.rsplit("| mlp", 1)[0])[0]
    # Made with other CPU kernels: numbers within the tolerance are the same, counts still exact.
    other = page.replace("0.0484", "0.0501").replace("0.1067", "0.1200")
    assert RESULTS.differences(spec, page, other, RESULTS.OTHER_KERNELS_TOLERANCE) == [
        "row 'mlp', loss: the page says 0.1067, a fresh run gives 0.1200"]


def test_a_table_names_the_cpu_kernels_its_numbers_came_from():
    line = RESULTS.provenance()
    assert RESULTS.kernels_of(line) == RESULTS.cpu_kernels() != ""
    assert RESULTS.kernels_of("on 2 CPU threads (x86_64, 2 cores), no GPU") is None  # an older table: exact
