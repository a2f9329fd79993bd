"""An Optuna sweep explained (sweeps/explained.py): importances, parallel coordinates and the
optimisation history of the study the sweeper kept, from Optuna's own implementations."""

import optuna
import pytest

from dlrun.sweeps import explained, pruning


def study_in(folder, trials):
    storage = f"sqlite:///{folder / 'optuna.db'}"
    pruning.hand_to_jobs(folder, storage, "search", None, 1, 3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="search", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    # the objective depends on lr alone: momentum cannot matter
    study.optimize(lambda t: (t.suggest_float("lr", 0, 1) - 0.3) ** 2 + 0 * t.suggest_float("momentum", 0, 1),
                   n_trials=trials)
    return study


def test_the_parameter_that_decides_the_objective_is_the_important_one(tmp_path):
    study_in(tmp_path, 24)
    files, importances, notes, pareto = explained.explain(tmp_path)
    assert notes == [] == pareto and importances["lr"] > 0.9 > 0.1 > importances["momentum"]
    assert [f.name for f in files] == [f"{stem}.png" for stem in explained.PLOTS]
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)


def test_too_few_trials_are_said_and_drawn_not(tmp_path):
    study_in(tmp_path, 1)
    assert explained.explain(tmp_path) == ([], {}, ["the search is explained from two completed trials on (1 so far)"], [])


def test_a_folder_without_a_study_has_nothing_to_explain(tmp_path):
    assert explained.explain(tmp_path) == ([], {}, [], [])


def test_a_two_objective_study_lists_and_draws_its_pareto_front(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    pruning.hand_to_jobs(tmp_path, storage, "search", None, 1, 3)
    study = optuna.create_study(study_name="search", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["val/accuracy", "params"])
    for accuracy, params in ((0.9, 5000), (0.8, 1000), (0.7, 3000), (0.95, 9000)):  # (0.7, 3000) is dominated
        study.enqueue_trial({"width": params})
        study.optimize(lambda t, a=accuracy: (a, t.suggest_int("width", 1, 10_000)), n_trials=1)
    files, importances, notes, pareto = explained.explain(tmp_path)
    assert [row["trial"] for row in pareto] == [1, 0, 3]  # in order of accuracy, then size
    assert pareto[0] == {"trial": 1, "val/accuracy": 0.8, "params": 1000, "width": 1000}
    assert "3 trial(s) on the Pareto front of val/accuracy (maximize) and params (minimize)" in notes[0]
    assert [f.name for f in files] == ["optuna_pareto_front.png"] and importances == {}


def test_objectives_are_checked_and_read_from_the_record():
    from dlrun.errors import ConfigError
    from dlrun.sweeps import objectives

    assert objectives.check(["val/accuracy", "params"], None) == ["maximize", "minimize"]
    assert objectives.check(["test/loss", "samples_per_s"], ["auto", "minimize"]) == ["minimize", "minimize"]
    with pytest.raises(ConfigError, match="Did you mean 'params'"):
        objectives.check(["val/accuracy", "parms"], None)
    with pytest.raises(ConfigError, match="2 entries for 3 objectives"):
        objectives.check(["val/accuracy", "params", "wall_time_s"], ["auto", "auto"])
    with pytest.raises(ConfigError, match="Did you mean 'val/accuracy'"):
        objectives.check(["val/acuracy", "params"], None)
    with pytest.raises(ConfigError, match="two or more"):
        objectives.check(["params"], None)
    summary = {"best_val": {"val/accuracy": 0.9}, "test": {"loss": 0.3}, "model_summary": {"params": 42},
               "throughput": {"samples_per_s": 1e4}}
    assert objectives.values(summary, ["val/accuracy", "params", "test/loss"]) == [0.9, 42.0, 0.3]
    assert objectives.values(summary, ["val/accuracy", "wall_time_s"]) is None  # not recorded: no value
