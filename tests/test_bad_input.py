"""Bad input gets one clear line and loses nothing.

Every message is checked in-process through `dlrun.run()` (the same run path
as the command); a few cases go through the real CLI for the exit code, the
absence of a traceback and the absence of leftovers."""

import numpy as np
import pytest
import torch

import dlrun
from conftest import SMOKE
from dlrun.config import composition
from dlrun.errors import ConfigError, DlrunError

CASES = {
    "unknown option": (["model=cnnn"], "model=cnnn is not known. Did you mean 'cnn'? Choose one of: cnn, logistic"),
    "unknown key": (["trainer.epochs=1"], "trainer.epochs is not a key of trainer. Did you mean 'trainer.max_epochs'?"),
    "unknown key added": (["+trainer.epochs=1"], "trainer.epochs is not a key of trainer. Did you mean"),
    "unknown group": (["optimzer.lr=0.1"], "optimzer.lr is not a config key. Did you mean 'optimizer.lr=0.1'?"),
    "group named in the plural": (["models=cnn"], "models is not a config key. Did you mean 'model=cnn'?"),
    "group misspelt": (["modle=cnn"], "Did you mean 'model=cnn'? The top-level keys and groups: cache, ckpt_path, cv,"),
    "no suggestion that would fail": (["labels=[dev]"], "labels is not a config key. The top-level keys and groups:"),
    "top-level key misspelt": (["sed=3"], "Did you mean 'seed=3'?"),
    "a target names itself": (["+model._target_=math.sqrt"], "is not an argument of model 'math.sqrt'"),
    "unknown nested key": (["trainer.early_stopping.patiense=3"], "Did you mean 'trainer.early_stopping.patience'?"),
    "unknown model argument": (["model.hiden_sizes=[3]"], "model.hiden_sizes is not a key of model. Did you mean "
                                                          "'model.hidden_sizes'?"),
    "added model argument": (["+model.hiden_sizes=[3]"], "model.hiden_sizes is not an argument of model 'mlp'."),
    "unparsable override": (["trainer.max_epochs=[1"], "cannot parse trainer.max_epochs=[1:"),
    "several values without -m": (["model=cnn,mlp"], "model=cnn,mlp gives several values: add -m"),
    "unknown registry name": (["optimizer.name=adamm"], "optimizer.name=adamm is not known. Did you mean 'adam'?"),
    "wrong type": (["optimizer.lr=abc"], "optimizer.lr=abc: expected a finite number"),
    "seed too large": (["seed=99999999999999999999"], "seed=99999999999999999999 is out of range; it must be in [0, 2**63)"),
    "float batch size": (["trainer.batch_size=1.5"], "trainer.batch_size=1.5 is out of range; it must be a count >= 1 or auto"),
    "lr zero": (["optimizer.lr=0"], "optimizer.lr=0 is out of range; it must be > 0"),
    "lr negative": (["optimizer.lr=-1"], "optimizer.lr=-1 is out of range"),
    "batch size zero": (["trainer.batch_size=0"], "trainer.batch_size=0 is out of range; it must be a count >= 1 or auto"),
    "epochs zero": (["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range"),
    "negative patience": (["trainer.early_stopping.patience=-1"], "patience=-1 is out of range; it must be >= 0"),
    "dropout out of range": (["model.dropout=1.5"], "model.dropout=1.5 is out of range; it must be in [0, 1)"),
    "no training data": (["split.val=0.6", "split.test=0.5"], "leaves no training data"),
    "monitor typo": (["trainer.monitor=val/f1_macr"], "Did you mean 'val/f1_macro'?"),
    "monitor not produced by task": (["trainer.monitor=val/r2"], "is not produced by this dataset's task 'multiclass'"),
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
    "threshold of a multiclass task": (["dataset.threshold=0.7"], "dataset.threshold=0.7 is the decision threshold of a "
                                                                  "binary (or multi-label) task, and this dataset's task is "
                                                                  "multiclass"),
    "tracking to ftp": (["logger=mlflow", "mlflow.tracking_uri=ftp://nowhere"],
                        "mlflow.tracking_uri=ftp://nowhere: MLflow cannot track to a 'ftp' URI"),
    "wandb mode misspelt": (["logger=wandb", "wandb.mode=ofline"], "wandb.mode=ofline is not known. Did you mean "
                                                                   "'offline'?"),
    "infinite lr": (["optimizer.lr=inf"], "optimizer.lr=inf: expected a finite number"),
    "huge lr": (["optimizer.lr=1e400"], "optimizer.lr=inf: expected a finite number"),
    "negative focal gamma": (["loss=focal", "loss.gamma=-2"], "loss.gamma=-2 is out of range; it must be >= 0"),
    "step size zero": (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0 is out of range"),
    "plots not a list": (["plots=curves"], "plots=curves: expected a list of strings (write plots=[curves])"),
    "plugins not a list": (["plugins=my_components"], "plugins=my_components: expected a list of strings "
                                                  "(write plugins=[my_components])"),
    "negative width": (["model.hidden_sizes=[-5]"],
                       "model.hidden_sizes=[-5] is out of range: -5 is not allowed; it must be an integer >= 1 or a "
                       "list of them"),
    "zero channels": (["model=cnn", "model.channels=[8,0]"], "model.channels=[8, 0] is out of range: 0 is not allowed"),
    "two image channels": (["dataset=image_folder", "dataset.root=x", "dataset.channels=2"],
                           "dataset.channels=2 is not allowed; it must be one of 1, 3"),
    "image size zero": (["dataset=image_folder", "dataset.root=x", "dataset.image_size=0"],
                        "dataset.image_size=0 is out of range: 0 is not allowed"),
    "time budget zero": (["trainer.max_time=0"], "trainer.max_time=0.0 is out of range; it must be > 0 (seconds) or null"),
    "accumulation zero": (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 is out of range"),
    "batch limit above one": (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5 is out of range; "
                                                                    "it must be a count of batches >= 1, a fraction"),
    "unknown averaging": (["trainer.averaging.kind=ewma"], "Did you mean 'ema'?"),
    "SWA after the end": (["trainer.averaging.kind=swa", "trainer.averaging.swa_start=40"],
                          "trainer.averaging.swa_start=40.0 starts after the last of the 2 epochs"),
    "EMA decay of one": (["trainer.averaging.kind=ema", "trainer.averaging.ema_decay=1"],
                         "trainer.averaging.ema_decay=1.0 is out of range; it must be in (0, 1)"),
    "lr_find with folds": (["task=lr_find", "cv.folds=3"], "task=lr_find tests learning rates on fresh weights"),
    "lr_find range upside down": (["task=lr_find", "lr_find.min_lr=1", "lr_find.max_lr=0.1"],
                                  "lr_find.min_lr=1.0 must be below lr_find.max_lr=0.1"),
    "unknown activation": (["model.activation=relu6"], "model.activation=relu6 is not known"),
    "unknown init": (["model.init=he"], "model.init=he is not known"),
    "freeze pattern matching nothing": (["model.freeze=[backbone.*]"], "the pattern 'backbone.*' matches no parameter"),
    "unknown torchvision arch": (["model=torchvision", "model.arch=resnet05"], "Did you mean 'resnet50'?"),
    "resize on tabular data": (["dataset=iris", "+dataset.resize=64"], "dataset.resize=64 resizes images"),
    "unknown class": (["dataset.classes=[1,eleven]"], "dataset.classes: 'eleven' is not a class of this dataset"),
    "init_from missing": (["init_from=nowhere"], "no such checkpoint"),
    "value without a key": (["=0.1"], "'=0.1' has no key before '=': write key=value"),
    "option without a value": (["model="], "model= gives no value. Choose one of: cnn, logistic"),
    "option in capitals": (["model=CNN"], "model=CNN is not known. Did you mean 'cnn'?"),
    "dataset in capitals": (["dataset=MNIST"], "Did you mean 'mnist'?"),
    "boolean not a boolean": (["trainer.early_stopping.enabled=maybe"],
                              "trainer.early_stopping.enabled=maybe: expected true or false."),
    "boolean given a fraction": (["trainer.progress=0.5"], "trainer.progress=0.5: expected true or false."),
    "regularization boolean": (["regularization.decay_norm_and_bias=nope"],
                               "regularization.decay_norm_and_bias=nope: expected true or false."),
    "model boolean": (["model=resnet18", "model.pretrained=sure"], "model.pretrained=sure: expected true or false"),
    "unknown sampling": (["trainer.sampling=shufle"], "Did you mean 'shuffle'?"),
    "unknown init scheme": (["model.init=kaiming_"], "model.init=kaiming_ is not known. Did you mean 'kaiming'?"),
}


if not torch.cuda.is_available():  # the message for an absent device needs a machine without one
    CASES["cuda absent"] = (["device=cuda"], "no CUDA device is available on this machine")


@pytest.mark.parametrize("args,message", CASES.values(), ids=CASES.keys())
def test_bad_input_fails_clearly_and_leaves_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DlrunError) as raised:
        dlrun.run([*SMOKE, *args], run_dir=tmp_path / "run")
    assert message in " ".join(str(raised.value).split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source,message", [
    ("raise RuntimeError('no licence')\n", "plugins: 'broken' failed as it was imported: RuntimeError: no licence "
                                           "(PATH:1)"),
    ("def f(:\n    pass\n", "plugins: 'broken' failed as it was imported: SyntaxError: invalid syntax (PATH:1)"),
    ("import no_such_dependency\n", "plugins: 'broken' failed as it was imported: ModuleNotFoundError: No module "
                                     "named 'no_such_dependency' (PATH:1)"),
], ids=["raises", "syntax error", "missing dependency"])
def test_a_plugin_that_fails_as_it_is_imported_is_named_with_where(cli, source, message):
    (cli.cwd / "broken.py").write_text(source)
    proc = cli(*SMOKE, "plugins=[broken]", env={"PYTHONPATH": str(cli.cwd)}, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "dlrun error: " + message.replace("PATH", str(cli.cwd / "broken.py"))


def test_every_option_of_a_swept_group_is_checked():
    with pytest.raises(ConfigError, match="model=mlpp is not known. Did you mean 'mlp'?"):
        composition.compose(["model=cnn,mlpp"], multirun=True)
    assert composition.compose(["model=cnn,mlp", "seed=range(0,3)"], multirun=True).model.name == "cnn"


@pytest.mark.parametrize("args,message", [
    (["model=cnnn"], "model=cnnn is not known. Did you mean 'cnn'? Choose one of: cnn, logistic"),
    (["trainer.epochs=5"], "trainer.epochs is not a key of trainer. Did you mean 'trainer.max_epochs'?"),
    (["-m", "model=cnn,mlpp"], "model=mlpp is not known"),
    (["optimizer.lr=0"], "optimizer.lr=0 is out of range; it must be > 0"),
    (["dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], "missing.csv: no such file"),
    (["--config-dir=nowhere"], "--config-dir nowhere: no such directory"),
    (["--epochs", "5"], "--epochs is not an option of dlrun: settings are key=value overrides. Did you mean "
                        "trainer.max_epochs=5?"),
    (["model", "cnn"], "'model cnn' is not an override: write model=cnn"),
    (["dataset.name=my", "data"], "quote the whole override, spaces included: 'dataset.name=my data'"),
    (["~plugins"], "~plugins deletes plugins, which every run reads: give it a value instead"),
    (["ckpt_path=nothing"], "ckpt_path=nothing: no such file or directory"),
    (["dataset=webdataset", "dataset.urls=s/train-0.tar", "dataset.urls=s/train-1.tar"],  # the shell's {0..1}
     "dataset.urls is given several times in a row (s/train-0.tar, s/train-1.tar, ...), as the shell writes a brace "
     "pattern out; Hydra would keep the last alone. Quote the pattern"),
    (["dataset=webdataset", "dataset.urls=s/train-{0..1}.tar"],
     "a value with braces must be quoted for Hydra: \"dataset.urls='s/train-{0..1}.tar'\""),
], ids=["option", "key", "sweep", "range", "missing file", "config dir", "flag", "space for =", "unquoted space",
        "deleted key", "missing checkpoint", "expanded braces", "unquoted braces"])
def test_bad_input_through_the_cli_exits_2_with_one_line(cli, args, message):
    proc = cli(*SMOKE, *args, check=False)
    assert proc.returncode == 2  # what the command line asks for: one rule for every such error
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert list(cli.outputs.rglob("*")) == []  # not even the day's folder


def test_stock_hydra_launchers_and_logging_are_accepted():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the sweep extra: pip install 'dlrun[sweep]'
    for launcher in ("basic", "submitit_local", "joblib"):
        cfg = composition.compose([f"hydra/launcher={launcher}", "hydra/job_logging=disabled"])
        assert cfg.trainer.max_epochs >= 1


def test_full_traceback_on_request(cli):
    proc = cli(*SMOKE, "optimizer.lr=0", env={"HYDRA_FULL_ERROR": "1"}, check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.parametrize("content,message", [
    ({"format": 99, "model": {}}, "is a dlrun checkpoint of format 99; this dlrun"),
    ({"format": 1, "model": {}}, "is an incomplete dlrun checkpoint: it lacks config, overrides, preprocessing"),
    ({"weight": torch.zeros(2, 2)}, "holds only a model's weights (a state_dict), not a dlrun checkpoint"),
    ([1, 2], "is a PyTorch file holding a list, not a dlrun checkpoint"),
], ids=["newer format", "incomplete", "state_dict", "other data"])
def test_a_pytorch_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, message):
    torch.save(content, tmp_path / "file.pt")
    for task in ("train", "eval"):
        with pytest.raises(DlrunError) as raised:
            dlrun.run([*SMOKE, f"task={task}", f"ckpt_path={tmp_path / 'file.pt'}"], run_dir=tmp_path / "run")
        assert message in str(raised.value) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("drop,task,message", [
    ("preprocessing", "predict", "lacks preprocessing, which evaluating and predicting need"),
    ("optimizer", "train", "lacks optimizer, which resuming needs"),
])
def test_an_incomplete_checkpoint_is_named_as_incomplete(tmp_path, drop, task, message):
    from dlrun.results import checkpoint

    dlrun.run([*SMOKE, "plots=[]", "report=false"], run_dir=tmp_path / "trained")
    state = checkpoint.load(tmp_path / "trained" / "checkpoints" / "last.pt")
    del state[drop], state["checksum"], state["format"]
    checkpoint.save(tmp_path / "cut.pt", state)  # a valid checksum over what is left
    np.save(tmp_path / "new.npy", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(DlrunError, match="is an incomplete dlrun checkpoint: it " + message):
        dlrun.run([*SMOKE, f"task={task}", f"ckpt_path={tmp_path / 'cut.pt'}", f"predict.input={tmp_path / 'new.npy'}"],
                  run_dir=tmp_path / "run")


def test_a_run_killed_before_its_first_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    killed = tmp_path / "killed"  # what a SIGKILL during the first epoch leaves
    killed.mkdir()
    (killed / "run.log").write_text("training on cpu from epoch 0\n")
    (killed / ".summary.json.x1y2.tmp").write_text('{"status": "runn')
    for task in ("train", "eval"):
        with pytest.raises(DlrunError, match="is a run directory without checkpoints .it has no summary.json: it was "
                                             "killed early.: it stopped before the first one was written"):
            dlrun.run([*SMOKE, f"task={task}", f"ckpt_path={killed}"], run_dir=tmp_path / "run")
    assert sorted(p.name for p in killed.iterdir()) == ["run.log"]  # the cut write's temporary file is gone


def test_unwritable_output_directory(cli, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    proc = cli(*SMOKE, env={"DLRUN_OUTPUTS": str(blocker / "runs")}, check=False)
    assert proc.returncode != 0
    assert "cannot create the output directory" in proc.stderr and "Traceback" not in proc.stderr


def test_leaderboard_of_a_missing_directory_is_an_error_and_creates_nothing(tmp_path, capsys):
    from dlrun.sweeps import leaderboard

    assert leaderboard.main([str(tmp_path / "no" / "such")]) == 2
    assert "no such directory" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_an_empty_outputs_variable_means_the_default(monkeypatch):
    from dlrun.config.sources import outputs_root

    monkeypatch.setenv("DLRUN_OUTPUTS", "")
    assert str(outputs_root()) == "outputs"
