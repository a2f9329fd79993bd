"""The sweeper: ask Optuna for trials, launch them as Hydra jobs, tell the results."""

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from dlrun.errors import ConfigError, unknown_choice
from dlrun.layout import SweepDir
from dlrun.results import record
from dlrun.results.metric_names import mode_of
from dlrun.stopping import SweepStop
from dlrun.sweeps import objectives as several
from dlrun.sweeps.pruning import PRUNERS, hand_to_jobs
from dlrun.sweeps.search_space import Param, parse_space

SAMPLERS = ("tpe", "random", "grid")
DIRECTIONS = ("auto", "minimize", "maximize")


class OptunaSweeper(Sweeper):
    def __init__(self, direction, n_trials, n_jobs, sampler, seed, study_name, storage, params, pruner=None,
                 warmup_epochs=1, startup_trials=3, objectives=None, directions=None):
        self.direction = direction
        self.objectives, self.directions = list(objectives or []), list(directions or [])
        self.pruner, self.warmup_epochs, self.startup_trials = pruner, warmup_epochs, startup_trials
        self.n_trials = n_trials
        self.n_jobs = max(1, n_jobs)
        self.sampler_name = sampler
        self.seed = seed
        self.study_name = study_name
        self.storage = storage
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params)

    def setup(self, *, hydra_context, task_function, config):
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        with _one_line_errors(config.hydra.sweep.dir):
            self._validate(config)

    def _validate(self, config):
        if self.sampler_name not in SAMPLERS:
            raise ConfigError(unknown_choice("hydra.sweeper.sampler", self.sampler_name, SAMPLERS))
        self.space = parse_space(self.params, config)
        self._check_grid(self.space)
        wanted = "maximize" if mode_of(config.trainer) == "max" else "minimize"
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ConfigError(unknown_choice("hydra.sweeper.pruner", self.pruner, ["null", *PRUNERS]))
        if self.warmup_epochs < 0 or self.startup_trials < 0:
            raise ConfigError(f"hydra.sweeper.warmup_epochs={self.warmup_epochs} and hydra.sweeper.startup_trials="
                              f"{self.startup_trials} must be >= 0.")
        if self.direction not in DIRECTIONS:
            raise ConfigError(unknown_choice("hydra.sweeper.direction", self.direction, DIRECTIONS))
        if self.direction not in ("auto", wanted):
            raise ConfigError(f"hydra.sweeper.direction={self.direction} contradicts trainer.monitor="
                              f"{config.trainer.monitor}, which the search should {wanted}: leave the direction at "
                              f"auto (it follows trainer.mode).")
        self.direction = wanted
        if self.objectives:
            if self.pruner is not None:
                raise ConfigError("hydra.sweeper.pruner prunes on one objective: leave it at null for a search of "
                                  "several (hydra.sweeper.objectives).")
            self.directions = several.check(self.objectives, self.directions)
        elif self.directions:
            raise ConfigError("hydra.sweeper.directions goes with hydra.sweeper.objectives=[...] (one direction each); "
                              "a search of trainer.monitor alone takes hydra.sweeper.direction.")

    def _check_grid(self, space):
        if self.sampler_name == "grid" and any(p.kind != "categorical" for p in space):
            raise ConfigError("hydra.sweeper.sampler=grid needs every parameter to be categorical (choices: [...]).")

    def _sampler(self, seed, space):
        import optuna

        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler_name == "grid":
            return _grid({p.key: p.optuna_choices for p in space}, seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _search_space(self, arguments):
        """(the fixed overrides, the parameters): the preset's and the command line's (which wins)."""
        fixed, swept = _command_line_space(arguments)
        space = [p for p in self.space if p.key not in {q.key for q in swept}] + swept
        if not space:
            raise ConfigError("nothing to search: give hydra.sweeper.params, or a parameter to sweep on the command "
                              "line (optimizer.lr=0.1,0.01 or 'optimizer.lr=interval(0.001,0.1)').")
        self._check_grid(space)
        return fixed, space

    def sweep(self, arguments):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with _one_line_errors(self.config.hydra.sweep.dir):
            fixed, space = self._search_space(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # the sweep's record, as Hydra's basic sweeper writes it: a stop and a resume read it
        OmegaConf.save(self.config, SweepDir(sweep_dir).multirun)
        storage = self.storage or f"sqlite:///{SweepDir(sweep_dir).optuna_db.resolve()}"
        study = optuna.create_study(study_name=self.study_name, storage=storage, load_if_exists=True,
                                    **({"directions": self.directions} if self.objectives else {"direction": self.direction}))
        if self.objectives:
            study.set_user_attr("objectives", self.objectives)
        hand_to_jobs(sweep_dir, storage, self.study_name, self.pruner, self.warmup_epochs, self.startup_trials)
        # A continued study draws new points: the sampler's seed moves on with the trials already in it
        # (the same seed again would propose the first trials' values again).
        study.sampler = self._sampler(self.seed + len(study.trials), space)
        self._requeue_interrupted(study, sweep_dir)
        interrupted = set(study.user_attrs.get("interrupted_trials", []))
        finished = [t for t in study.trials if t.state.is_finished() and t.number not in interrupted]
        wanted = self.n_trials if self.sampler_name != "grid" else min(self.n_trials, math.prod(
            len(p.choices) for p in space))  # a grid is done once every point ran
        remaining = wanted - len(finished)
        returns = []
        while remaining > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, remaining))]
            overrides = [tuple(fixed) + tuple(p.override(t) for p in space) for t in trials]
            results = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            stopped = SweepStop(sweep_dir).requested() is not None
            for trial, result in zip(trials, results):
                status, value = _outcome(sweep_dir, trial.number, result, self.objectives)
                if status == "pruned":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif value is not None:
                    study.tell(trial, value)
                elif not stopped:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                # else: left running, as a killed sweep leaves it: the continued study asks it again
            returns.append(results)
            remaining -= len(trials)
            if stopped:  # the sweep was interrupted (dlrun.sweeps.callback.Leaderboard ends it)
                break
        _write_best(study, sweep_dir)
        return returns

    def _requeue_interrupted(self, study, sweep_dir):
        """Trials left running by a killed sweep are failed, marked, and asked again with the same values."""
        import optuna

        stale = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if not stale:
            return
        numbers = study.user_attrs.get("interrupted_trials", []) + [t.number for t in stale]
        study.set_user_attr("interrupted_trials", numbers)
        for trial in stale:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params)
            summary = SweepDir(sweep_dir).job(trial.number).summary
            if summary.is_file():
                record.update(summary, status="superseded",
                              error="interrupted with the sweep; its point was asked again as a new trial")


@contextlib.contextmanager
def _one_line_errors(sweep_dir):
    """A bad search, before any trial: one line, no traceback (unless HYDRA_FULL_ERROR=1), and no
    sweep directory left behind empty."""
    try:
        yield
    except ConfigError as exc:
        with contextlib.suppress(OSError):  # absent, or not empty (a resumed sweep's): left as it is
            Path(sweep_dir).rmdir()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from dlrun.console import error

        error(str(exc))
        sys.exit(exc.exit_code)


def _grid(grid, seed):
    """Optuna's grid sampler for ask-and-tell: the sweep stops itself after the last point (Optuna's
    own after_trial calls study.stop() there, which works only inside study.optimize)."""
    import optuna

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return Grid(grid, seed=seed)


def _command_line_space(arguments):
    """Hydra's sweep syntax on the command line as search parameters: a comma list, choice() and
    range() are categorical, interval() a float range (a preset's parameter of the same key is
    replaced: a range narrowed from the command line). Returns (the other overrides, the parameters)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    fixed, swept = [], []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        key, value = override.get_key_element(), override.value()
        tags = set(getattr(value, "tags", ()) or ())
        if isinstance(value, IntervalSweep):
            swept.append(_interval(key, value.start, value.end, tags))
        elif tags:
            raise ConfigError(f"{override.input_line}: sweep tags ({', '.join(sorted(tags))}) apply to interval() "
                              f"only, where log samples on a log scale and int draws integers.")
        else:
            swept.append(Param(key, "categorical", choices=tuple(override.sweep_string_iterator())))
    return fixed, swept


INTERVAL_TAGS = ("log", "int")  # Hydra's sweep tags that an interval() takes here


def _interval(key, low, high, tags):
    """interval(low, high), tagged log (a log scale) and/or int (integers), as a search parameter."""
    unknown = sorted(tags - set(INTERVAL_TAGS))
    if unknown:
        raise ConfigError(f"{key}=tag({', '.join(unknown)}, interval(...)): the tag {unknown[0]} is not known here; "
                          f"interval() takes {' and '.join(INTERVAL_TAGS)}.")
    if "log" in tags and low <= 0:
        raise ConfigError(f"{key}=tag(log, interval({low:g}, {high:g})): a log scale needs a low end above 0.")
    if "int" in tags:
        return Param(key, "int", low=int(low), high=int(high), log="log" in tags)
    return Param(key, "float", low=low, high=high, log="log" in tags)


def _outcome(sweep_dir, number, result, objectives):
    """(the status the trial's job recorded in its summary.json, None without one; its objective:
    the job's returned value, or with several `objectives` their recorded values when it completed;
    None for a failed or stopped trial). The record is read once."""
    summary = SweepDir(sweep_dir).job(number).summary
    found = record.read(summary) if summary.is_file() else {}
    status = found.get("status")
    if not objectives:
        return status, _objective(result)
    return status, several.values(found, objectives) if status == "completed" else None


def _objective(result):
    """The job's returned objective, or None for a failed or non-finite one."""
    try:
        value = result.return_value
    except Exception:  # the job raised: a failed trial
        return None
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _write_best(study, sweep_dir):
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(study.directions) > 1:
        best = {"objectives": study.user_attrs.get("objectives"), "directions": [d.name.lower() for d in study.directions],
                "pareto_front": [{"trial": t.number, "values": t.values, "params": t.params} for t in study.best_trials]}
    else:
        best = {"direction": study.direction.name.lower(), **({
            "best_value": study.best_value, "best_params": study.best_params, "best_trial": study.best_trial.number}
            if complete else {})}
    SweepDir(sweep_dir).optuna_best.write_text(json.dumps({
        "trials": len(study.trials), "complete": len(complete), **best}, indent=2) + "\n")
