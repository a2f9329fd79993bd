"""What an Optuna sweep's search found, for its leaderboard page: which parameters mattered (Optuna's
importance evaluator), the trials across all parameters (parallel coordinates) and how the search
progressed (the optimisation history), drawn by Optuna's own matplotlib plots from the study the
sweeper kept (optuna_study.json names it)."""

import contextlib
import warnings
from pathlib import Path

from dlrun.layout import SweepDir
from dlrun.results import artifacts

PLOTS = {  # file stem: Optuna's plot function (which parameters mattered, every trial across the
    # parameters, how the search progressed)
    "optuna_importances": "plot_param_importances",
    "optuna_parallel_coordinates": "plot_parallel_coordinate",
    "optuna_history": "plot_optimization_history",
}


def study_of(folder):
    """The Optuna study of the sweep in `folder`, or None (another sweeper, or no study yet)."""
    spec = SweepDir(folder).optuna_study
    if not spec.is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = artifacts.read_json(spec)
    try:
        return optuna.load_study(study_name=found["study"], storage=found["storage"])
    except (KeyError, ValueError):
        return None


def explain(folder):
    """(the plot files written, the importances {parameter: share} or {}, notes (why what is missing
    is missing), the Pareto front's rows of a multi-objective search) for the sweep in `folder`;
    nothing without an Optuna study."""
    study = study_of(folder)
    if study is None:
        return [], {}, [], []
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return [], {}, [f"the search is explained from two completed trials on ({len(complete)} so far)"], []
    if len(study.directions) > 1:
        return _pareto(folder, study)
    importances, notes = {}, []
    try:  # seeded: the same page for the same study; the plot reads the same numbers
        importances = {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=_evaluator()).items()}
    except (RuntimeError, ValueError) as exc:  # e.g. every trial at the same point
        notes.append(f"no importances: {exc}")
    files = [path for path in (_plot(folder, study, stem, importances) for stem in PLOTS) if path is not None]
    return files, importances, notes, []


def objective_names(study):
    """The objectives of a multi-objective study, as the sweeper named them in it."""
    return study.user_attrs.get("objectives") or [f"objective {i}" for i in range(len(study.directions))]


def pareto_rows(study):
    """The trials on the Pareto front of a multi-objective study: trial, each objective, each parameter."""
    from dlrun.sweeps.objectives import COUNTS

    names = objective_names(study)
    return [{"trial": t.number, **{n: round(v) if n in COUNTS else v for n, v in zip(names, t.values)}, **t.params}
            for t in sorted(study.best_trials, key=lambda t: t.values)]


def _pareto(folder, study):
    """A multi-objective search: its Pareto front drawn (two or three objectives) and listed."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as drawn

    names, rows = objective_names(study), pareto_rows(study)
    note = (f"{len(rows)} trial(s) on the Pareto front of "
            f"{' and '.join(f'{n} ({d.name.lower()})' for n, d in zip(names, study.directions))}: none of the others is "
            f"as good in every objective")
    if len(study.directions) > 3:
        return [], {}, [note, "the front is listed, not drawn (Optuna draws two or three objectives)"], rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with plt.rc_context({"figure.figsize": (9, 6)}):
            figure = drawn.plot_pareto_front(study, target_names=names).figure
    return [_saved(figure, Path(folder) / "optuna_pareto_front.png")], {}, [note], rows


def _evaluator():
    import optuna

    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def _plot(folder, study, stem, importances):
    """One of Optuna's matplotlib plots of `study`, saved as <stem>.png in `folder` (None when it
    does not apply: importances that could not be computed)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as drawn

    if stem == "optuna_importances" and not importances:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        with plt.rc_context({"figure.figsize": (9, 5)}):
            extra = {"evaluator": _evaluator()} if stem == "optuna_importances" else {}
            axes = getattr(drawn, PLOTS[stem])(study, **extra)
    return _saved((axes.flat[0] if hasattr(axes, "flat") else axes).figure, Path(folder) / f"{stem}.png")


def _saved(figure, path):
    """Save one of Optuna's pyplot figures and close it."""
    import matplotlib.pyplot as plt

    from dlrun.results.plots import DPI

    try:  # cut to what is drawn: Optuna's figures leave room for a colour bar and long parameter names
        artifacts.atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI, bbox_inches="tight"))
    finally:
        with contextlib.suppress(Exception):
            plt.close(figure)
    return path
