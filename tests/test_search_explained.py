"""An Optuna sweep explained (sweeps/explained.py): importances, parallel coordinates and the
optimisation history of the study the sweeper kept, from Optuna's own implementations."""

import optuna

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
    files, importances, notes = explained.explain(tmp_path)
    assert notes == [] and importances["lr"] > 0.9 > 0.1 > importances["momentum"]
    assert [f.name for f in files] == [f"{stem}.png" for stem in explained.PLOTS]
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)


def test_too_few_trials_are_said_and_drawn_not(tmp_path):
    study_in(tmp_path, 1)
    assert explained.explain(tmp_path) == ([], {}, ["the search is explained from two completed trials on (1 so far)"])


def test_a_folder_without_a_study_has_nothing_to_explain(tmp_path):
    assert explained.explain(tmp_path) == ([], {}, [])
