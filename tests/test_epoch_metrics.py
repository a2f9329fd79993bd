"""What each epoch costs: its validation numbers, counted on the device, equal scikit-learn's;
the probability metrics are validated only where they are monitored or listed; last.pt is written
at its interval."""

import pytest
import torch

import dlrun
from dlrun.api import compose
from dlrun.errors import ConfigError
from dlrun.results import artifacts, metrics
from dlrun.stopping import Stop

QUIET = ["trainer.progress=false", "show_config=none", "plots=[]", "report=false", "trainer.max_epochs=2"]


@pytest.mark.parametrize("task,classes", [("multiclass", 5), ("binary", 2)])
def test_the_confusion_matrix_gives_scikit_learns_numbers(task, classes):
    rng = torch.Generator().manual_seed(0)
    for n in (7, 200):  # few rows: some classes never true or never predicted
        outputs = torch.randn(n, 1 if task == "binary" else classes, generator=rng)
        targets = torch.randint(0, classes, (n,), generator=rng)
        if task == "multiclass":
            targets[targets == 4] = 3  # class 4 is never true
        ours = metrics.epoch_metrics(task, outputs, targets, 0.5, classes, threshold=0.3)
        theirs = metrics.scalar_metrics(metrics.Predictions(task, outputs, targets, 0.3), classes, 0.5)
        assert set(ours) < set(theirs) and "roc_auc" not in ours
        for name, value in ours.items():
            assert value == pytest.approx(theirs[name], abs=1e-12), (name, n)


def test_regression_errors_are_scikit_learns_in_the_targets_units():
    rng = torch.Generator().manual_seed(1)
    outputs, targets = torch.randn(50, 2, generator=rng), torch.randn(50, 2, generator=rng)
    scale = (torch.tensor([10.0, -3.0]), torch.tensor([2.0, 0.5]))
    ours = metrics.epoch_metrics("regression", outputs, targets, 0.7, 0, target_scale=scale)
    theirs = metrics.scalar_metrics(metrics.Predictions("regression", outputs, targets, target_scale=scale), 0, 0.7)
    assert ours == pytest.approx(theirs)
    constant = metrics.epoch_metrics("regression", torch.ones(4, 1), torch.ones(4, 1), 0.0, 0)
    assert constant["r2"] == 1.0  # a constant target predicted exactly, as scikit-learn scores it


def test_probability_metrics_each_epoch_only_when_asked(tmp_path):
    from dlrun.results import artifacts

    plain = dlrun.run(QUIET, run_dir=tmp_path / "plain")
    columns = artifacts.read_csv(tmp_path / "plain" / "metrics.csv")[0]
    assert "val/f1_macro" in columns and "val/roc_auc" not in columns
    assert plain["best_val"]["val/roc_auc"] > 0.9  # the best epoch gets every metric, measured again
    assert plain["best_val"]["val/loss"] == plain["monitor"]["best_value"]
    dlrun.run([*QUIET, "trainer.val_metrics=[ece]", "trainer.monitor=val/roc_auc", "trainer.mode=max"],
              run_dir=tmp_path / "asked")
    columns = artifacts.read_csv(tmp_path / "asked" / "metrics.csv")[0]
    assert "val/ece" in columns and "val/roc_auc" in columns and "val/log_loss" not in columns
    from dlrun.config import validate

    with pytest.raises(ConfigError, match="trainer.val_metrics=f1_macro is not known"):
        validate.check_config(compose(["trainer.val_metrics=[f1_macro]"]))


def test_last_checkpoint_at_its_interval_and_after_the_final_epoch():
    from conftest import built_loop
    from dlrun.train.fit_policy import FitState

    loop = built_loop("trainer.max_epochs=5", "trainer.checkpoint.every_n_epochs=2", "trainer.early_stopping.enabled=false",
                      "plots=[]")
    written = []
    loop.fit(FitState(), lambda name, ckpt: written.append((name, ckpt["fit"]["epoch"])), Stop())
    assert [epoch for name, epoch in written if name == "last"] == [2, 4, 5]
    best = [epoch for name, epoch in written if name == "best"]
    assert best == sorted(set(best)) and len(best) <= 5  # only epochs that improved the monitor


def test_an_epochs_best_and_last_are_one_state_written_once(tmp_path):
    from conftest import built_loop
    from dlrun.results import checkpoint
    from dlrun.train.fit_policy import FitState

    loop = built_loop("trainer.max_epochs=3", "trainer.early_stopping.enabled=false", "plots=[]")
    written = []
    loop.fit(FitState(), lambda name, ckpt: written.append((name, ckpt)), Stop())
    first_best = next(i for i, (name, _) in enumerate(written) if name == "best")
    assert written[first_best + 1][0] == "last" and written[first_best + 1][1] is written[first_best][1]
    assert written[first_best][1]["fit"]["epoch"] == 1  # the state at the end of that epoch
    # and the run writes that state's bytes to both files
    dlrun.run([*QUIET, "trainer.max_epochs=1"], run_dir=tmp_path / "one")
    best, last = (tmp_path / "one" / "checkpoints" / f"{n}.pt" for n in ("best", "last"))
    assert best.read_bytes() == last.read_bytes()
    assert checkpoint.load(best)["fit"]["epoch"] == 1


def test_the_mode_follows_the_monitor_unless_set_and_a_contradiction_is_refused(tmp_path):
    from dlrun.config import validate
    from dlrun.results import artifacts

    summary = dlrun.run([*QUIET, "trainer.monitor=val/accuracy", "trainer.max_epochs=4", "optimizer.lr=0.003"],
                        run_dir=tmp_path / "acc")
    rows = artifacts.read_csv(tmp_path / "acc" / "metrics.csv")
    accuracies = [float(row["val/accuracy"]) for row in rows]
    assert summary["monitor"]["mode"] == "max" and len(set(accuracies)) > 1
    assert summary["monitor"]["best_epoch"] == 1 + accuracies.index(max(accuracies))  # the highest, not the lowest
    assert compose(["trainer.monitor=val/rmse", "dataset=diabetes"]).trainer.mode == "auto"
    for monitor, mode, natural in (("val/accuracy", "min", "max"), ("val/loss", "max", "min")):
        with pytest.raises(ConfigError, match=f"trainer.mode={mode} contradicts trainer.monitor={monitor}, where "
                                              f".* drop trainer.mode .* or set trainer.mode={natural}."):
            validate.check_config(compose([f"trainer.monitor={monitor}", f"trainer.mode={mode}"]))


def test_the_curves_plot_marks_the_fit_policys_best_epoch_with_min_delta():
    """With min_delta, an epoch whose loss is lower by less than min_delta is not better: the plot
    marks the epoch the fit policy chose (best.pt's), not the lowest point of the curve."""
    from conftest import built_loop
    from dlrun.results import plots
    from dlrun.train.fit_policy import FitState

    loop = built_loop("trainer.max_epochs=6", "trainer.early_stopping.min_delta=0.2",
                      "trainer.early_stopping.patience=10", "plots=[curves]")
    state = loop.fit(FitState(), lambda name, ckpt: None, Stop())
    lowest = min(state.history, key=lambda row: row["val/loss"])["epoch"]
    assert state.best_epoch != lowest  # the two differ in this run (seeded)
    data = type("Data", (), {"task": "multiclass"})()
    jobs, _ = plots.result_jobs("plots", ["curves"], loop, data, None, state)
    assert jobs[0].args[2] == state.best_epoch


def test_kept_epochs_are_every_nth_and_the_top_k_by_the_monitor(tmp_path):
    from dlrun.layout import RunDir
    from dlrun.results import checkpoint

    summary = dlrun.run(["trainer.max_epochs=12", "trainer.checkpoint.save_top_k=3",
                         "trainer.checkpoint.keep_every_n_epochs=5", "optimizer.lr=0.02", "trainer.progress=false",
                         "plots=[]", "report=false", "show_config=none"], run_dir=tmp_path / "run")
    history = artifacts.read_csv(tmp_path / "run" / "metrics.csv")
    best3 = sorted(history, key=lambda r: (float(r["val/loss"]), int(r["epoch"])))[:3]
    expected = {int(r["epoch"]) for r in best3} | {5, 10}
    kept = RunDir(tmp_path / "run").kept()
    assert [int(p.name[5:8]) for p in kept] == sorted(expected)
    assert summary["kept_checkpoints"] == [p.name for p in kept]
    for path in kept:  # each holds its own epoch, named with its monitored value, and loads checked
        state = checkpoint.load(path)
        row = history[state["fit"]["epoch"] - 1]
        assert path.name == f"epoch{state['fit']['epoch']:03d}_val_loss_{float(row['val/loss']):.4f}.pt"
