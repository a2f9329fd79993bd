"""Bad input through the real CLI: a short message naming the problem, a
non-zero exit, no traceback, and nothing left behind in the outputs."""

import pytest

from conftest import SMOKE

CASES = {
    "unknown option": (["model=cnnn"], "model=cnnn is not known. Did you mean 'cnn'? Choose one of: cnn, logistic"),
    "unknown option in a sweep": (["-m", "model=cnn,mlpp"], "model=mlpp is not known"),
    "unknown key": (["trainer.foo=1"], "Key 'foo' is not in struct"),
    "unknown model argument": (["model.hiden_sizes=[3]"], "Key 'hiden_sizes' is not in struct"),
    "unknown registry name": (["optimizer.name=adamm"], "optimizer.name=adamm is not known. Did you mean 'adam'?"),
    "wrong type": (["optimizer.lr=abc"], "optimizer.lr='abc' is not a number"),
    "float batch size": (["trainer.batch_size=1.5"], "trainer.batch_size=1.5 is not an integer"),
    "lr zero": (["optimizer.lr=0"], "optimizer.lr=0 is out of range; it must be > 0"),
    "lr negative": (["optimizer.lr=-1"], "optimizer.lr=-1 is out of range"),
    "batch size zero": (["trainer.batch_size=0"], "trainer.batch_size=0 is out of range; it must be >= 1"),
    "epochs zero": (["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range"),
    "negative patience": (["trainer.early_stopping.patience=-1"], "patience=-1 is out of range; it must be >= 0"),
    "dropout out of range": (["model.dropout=1.5"], "model.dropout=1.5 is out of range; it must be in [0, 1)"),
    "no training data": (["split.val=0.6", "split.test=0.5"], "leaves no training data"),
    "monitor typo": (["trainer.monitor=val/f1"], "Did you mean 'val/f1_macro'?"),
    "monitor not produced by task": (["trainer.monitor=val/r2"], "is not produced by this dataset's task 'multiclass'"),
    "cuda absent": (["device=cuda"], "no CUDA device is available on this machine"),
    "mps absent": (["device=mps"], "no MPS device is available"),
    "loss does not fit task": (["dataset=diabetes", "loss=cross_entropy"], "does not fit this dataset's task 'regression'"),
    "augment on tabular data": (["dataset=iris", "regularization=augment"], "needs an image dataset"),
    "unknown augmentation": (["regularization.augment=flipp"], "Did you mean 'flip'?"),
    "missing csv": (["dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], "missing.csv: no such file"),
    "missing image folder": (["dataset=image_folder", "dataset.root=nowhere"], "nowhere: no such directory"),
    "missing mnist": (["dataset=mnist", "dataset.root=empty", "dataset.download=false"],
                      "dataset=mnist: its files are not in"),
    "missing checkpoint": (["ckpt_path=nothing/last.pt"], "ckpt_path=nothing/last.pt: no such file or directory"),
    "eval without checkpoint": (["task=eval"], "task=eval needs ckpt_path"),
    "unknown plot": (["plots=[curvez]"], "Did you mean 'curves'?"),
    "missing plugin": (["plugins=[no_such_plugin]"], "cannot import 'no_such_plugin'"),
}


@pytest.mark.parametrize("args,message", CASES.values(), ids=CASES.keys())
def test_bad_input_fails_clearly_and_leaves_nothing(cli, args, message):
    proc = cli(*SMOKE, *args, check=False)
    assert proc.returncode != 0
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout
    leftovers = [p for p in cli.outputs.rglob("*") if p.is_file() or (p.is_dir() and p.name[0].isdigit()
                                                                          and p.parent.name != "outputs")]
    assert leftovers == []


def test_full_traceback_on_request(cli):
    proc = cli(*SMOKE, "optimizer.lr=0", env={"HYDRA_FULL_ERROR": "1"}, check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_unwritable_output_directory(cli, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    proc = cli(*SMOKE, env={"DLRUN_OUTPUTS": str(blocker / "runs")}, check=False)
    assert proc.returncode != 0
    assert "cannot create the output directory" in proc.stderr and "Traceback" not in proc.stderr
