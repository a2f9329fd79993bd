"""The leaderboard of a sweep, written when a multirun ends (a Hydra callback)
or rebuilt on demand with `dlrun leaderboard DIR...`.

Files in the sweep directory: summary.csv and summary.md (one row per job,
sorted by the objective, the best row marked), leaderboard.html, a plot of
the objective against each swept parameter, and, when only seeds differ
between jobs of a configuration, their mean and standard deviation.
"""

import argparse
import html
import json
import math
import os
import shlex
import signal
import statistics
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from dlrun.config.sources import flat_items, run_overrides
from dlrun.errors import ConfigError, DlrunError
from dlrun.layout import RunDir, SweepDir
from dlrun.results import artifacts, record
from dlrun.stopping import EXIT_CODES, SweepStop
from dlrun.sweeps import tracking

HEADLINE = ("accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2")


def job_dirs(paths):
    """Run directories under `paths` (a sweep directory, run directories, or both)."""
    found = []
    for path in map(Path, paths):
        if RunDir(path).summary.is_file() or RunDir(path).hydra.is_dir():
            found.append(path)
        else:
            found += sorted((p for p in path.iterdir() if p.is_dir() and RunDir(p).hydra.is_dir()),
                            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return found


def job_row(run_dir):
    """One leaderboard row from a run directory (a job that died early is 'failed')."""
    overrides = [o for o in run_overrides(run_dir) if not o.startswith("resume=")]  # how, not what, it ran
    row = {"job": run_dir.name, "overrides": " ".join(overrides), "status": "failed", "objective": None,
           "best_epoch": None, "wall_time_s": None, "error": "", "path": run_dir}
    file = RunDir(run_dir).summary
    if not file.is_file():
        row["error"] = "no summary.json (the job did not start)"
        return row
    summary = record.read(file)
    test = summary.get("test") or {}
    row.update(status=summary.get("status", "failed"), objective=summary.get("objective"),
               best_epoch=(summary.get("monitor") or {}).get("best_epoch"), wall_time_s=summary.get("wall_time_s"),
               error=summary.get("error", ""), monitor=(summary.get("monitor") or {}).get("name"),
               mode=(summary.get("monitor") or {}).get("mode", "min"))
    row.update({f"test/{k}": test[k] for k in HEADLINE if isinstance(test.get(k), (int, float))})
    return row


def rank(rows):
    """Completed rows by objective (best first, per the monitor's mode), then the others. Runs
    with different monitors are never ranked against each other: each monitor is ranked on its
    own (the first run's monitor first), with its own best."""
    done = [r for r in rows if r["status"] == "completed" and _finite(r["objective"])]
    monitors = list(dict.fromkeys((r.get("monitor"), r.get("mode", "min")) for r in done))
    ranked = []
    for monitor, mode in monitors:
        group = sorted((r for r in done if (r.get("monitor"), r.get("mode", "min")) == (monitor, mode)),
                       key=lambda r: r["objective"], reverse=mode == "max")
        for i, r in enumerate(group):
            r["rank"], r["best"] = i + 1, "*" if i == 0 else ""
        ranked += group
    rest = [r for r in rows if r not in done]
    for r in rest:
        r["rank"], r["best"] = None, ""
    return ranked + rest


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def override_values(row):
    """A row's overrides as {key: value text}."""
    return dict(o.partition("=")[::2] for o in row["overrides"].split())


def swept_parameters(rows):
    """Override keys whose values differ between jobs."""
    values = {}
    for r in rows:
        for key, value in override_values(r).items():
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1]


def by_configuration(rows):
    """Mean and std of the objective over seeds, per configuration (the other overrides)."""
    groups = {}
    for r in rows:
        if r["status"] != "completed" or not _finite(r["objective"]):
            continue
        groups.setdefault(_configuration(r), []).append(r)
    if all(len(g) == 1 for g in groups.values()):
        return []
    out = []
    for config, members in groups.items():
        entry = {"configuration": config or "(defaults)", "runs": len(members)}
        for key in ["objective", *[k for k in members[0] if k.startswith("test/")]]:
            values = [m[key] for m in members if _finite(m.get(key))]
            if values:
                entry[f"{key} mean"] = statistics.fmean(values)
                entry[f"{key} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            if key == "objective" and len(values) > 1:
                half = _t_quantile(len(values) - 1) * entry["objective std"] / math.sqrt(len(values))
                entry["objective ci95 low"], entry["objective ci95 high"] = (entry["objective mean"] - half,
                                                                             entry["objective mean"] + half)
        out.append(entry)
    return out


def _configuration(row):
    """A row's overrides without its seed: the configuration that its seed repeats."""
    return " ".join(o for o in row["overrides"].split() if not o.startswith("seed="))


def _t_quantile(dof, level=0.95):
    """The two-sided Student t quantile: a mean's confidence interval is mean +- this x std / sqrt(n)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def paired_comparison(rows, resamples=10_000):
    """"Is A better than B?" for a sweep of exactly two configurations run on the same seeds (two
    or more): the objective's difference seed by seed, its mean, a 95% bootstrap interval, a paired
    t-test and a verdict in words; None for any other sweep."""
    import numpy as np
    from scipy import stats

    runs = {}
    for r in rows:
        seed = override_values(r).get("seed")
        if r["status"] == "completed" and _finite(r["objective"]) and seed is not None:
            runs.setdefault(_configuration(r) or "(defaults)", {})[seed] = r
    if len(runs) != 2:
        return None
    (config_a, a), (config_b, b) = runs.items()
    common = set(config_a.split()) & set(config_b.split())  # each is named by what sets it apart
    name_a, name_b = (" ".join(o for o in c.split() if o not in common) for c in (config_a, config_b))
    seeds = sorted(set(a) & set(b))
    monitors = {(r.get("monitor"), r.get("mode", "min")) for r in [*a.values(), *b.values()]}
    if len(seeds) < 2 or len(monitors) != 1:
        return None
    ((monitor, mode),) = monitors
    diff = np.array([a[s]["objective"] - b[s]["objective"] for s in seeds])
    means = diff[np.random.default_rng(0).integers(0, len(diff), (resamples, len(diff)))].mean(1)
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    if np.ptp(diff) == 0:  # the same difference on every seed: the t-test's variance is zero
        p = 0.0 if diff[0] else 1.0
    else:
        p = float(stats.ttest_rel([a[s]["objective"] for s in seeds], [b[s]["objective"] for s in seeds]).pvalue)
    mean = float(diff.mean())
    better, worse = (name_a, name_b) if (mean < 0) == (mode == "min") else (name_b, name_a)
    if p < 0.05 and not low <= 0 <= high:
        verdict = (f"{better} is better than {worse} on {monitor}: by {abs(mean):.4g} on average over the same "
                   f"{len(seeds)} seeds (95% interval of the difference {low:.4g} to {high:.4g}, paired t-test "
                   f"p = {p:.2g}).")
    else:
        verdict = (f"No clear difference between {name_a} and {name_b} on {monitor} over {len(seeds)} seeds: "
                   f"the mean difference {mean:.4g} has a 95% interval of {low:.4g} to {high:.4g} and a paired "
                   f"t-test gives p = {p:.2g}. More seeds would narrow it.")
    return {"a": name_a, "b": name_b, "monitor": monitor, "seeds": seeds, "mean_difference": mean,
            "ci95": [low, high], "p_value": p, "verdict": verdict}


COLUMNS = ["rank", "best", "job", "overrides", "status", "objective", "best_epoch", "wall_time_s"]


def write(folder, paths=None, pending=()):
    """Write the leaderboard files into `folder`; returns the ranked rows and the paired comparison
    (or None). `pending`: (job name, overrides) of the jobs of an interrupted sweep that did not
    start, listed as such."""
    folder = Path(folder)
    rows = rank([job_row(d) for d in job_dirs(paths or [folder])] + [
        {"job": name, "overrides": " ".join(overrides), "status": "not started", "objective": None,
         "best_epoch": None, "wall_time_s": None, "error": "", "path": folder / name} for name, overrides in pending])
    metric_cols = sorted({k for r in rows for k in r if k.startswith("test/")})
    columns = COLUMNS + metric_cols + ["error"]
    artifacts.write_csv(SweepDir(folder).summary_csv, rows, columns)
    groups = by_configuration(rows)
    if groups:
        artifacts.write_csv(SweepDir(folder).by_configuration, groups)
    paired = paired_comparison(rows)
    if paired:
        artifacts.write_json(SweepDir(folder).paired, paired)
    labels = _labels(rows)
    plot_files = [*_plot_curves(folder, rows, labels), *_plot_objective(folder, rows)]
    artifacts.write_text(SweepDir(folder).summary_md, _markdown(rows, columns, groups, paired))
    artifacts.write_text(SweepDir(folder).leaderboard, _html(folder, rows, columns, groups, plot_files, paired))
    return rows, paired


def differing_config(rows):
    """For each run, the keys of its resolved config (.hydra/config.yaml) whose values differ
    between the runs: what a comparison is about. Read as data, nothing is instantiated."""
    from omegaconf import OmegaConf

    configs = []
    for r in rows:
        file = RunDir(r["path"]).hydra / "config.yaml"
        configs.append(dict(flat_items(OmegaConf.to_container(OmegaConf.load(file)))) if file.is_file() else {})
    keys = sorted({k for c in configs for k in c})
    differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    return [{"job": r["job"], **{k: c.get(k) for k in differ}} for r, c in zip(rows, configs)]


def _labels(rows):
    """A legend label per run: its swept values (or its job name when nothing was swept)."""
    swept = swept_parameters(rows)
    labels = {}
    for r in rows:
        values = override_values(r)
        labels[r["job"]] = " ".join(f"{k}={values[k]}" for k in swept if k in values) or r["job"]
    return labels


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _markdown(rows, columns, groups, paired=None):
    lines = [f"# Sweep leaderboard ({len(rows)} jobs, {_objective(rows)}; * marks the best)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    if groups:
        keys = list(groups[0])
        lines += ["", "## Mean and standard deviation over seeds", "", "| " + " | ".join(keys) + " |",
                  "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(g.get(k)) for k in keys) + " |" for g in groups]
    if paired:
        lines += ["", "## Is one configuration better than the other?", "", paired["verdict"]]
    return "\n".join(lines) + "\n"


def _html(folder, rows, columns, groups, plot_files, paired=None):
    import base64

    def cell(row, key):
        text = html.escape(_fmt(row.get(key)))
        report = RunDir(row["path"]).report if key == "job" and "path" in row else None
        if report is not None and report.is_file():  # each job's own report, relative to this page
            return f'<td><a href="{html.escape(os.path.relpath(report, folder))}">{text}</a></td>'
        return f"<td>{text}</td>"

    def table(data, keys):
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(cell(r, k) for k in keys) + "</tr>" for r in data)
        return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'

    images = "".join(f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in plot_files)
    seeds = f"<h2>Over seeds</h2>{table(groups, list(groups[0]))}" if groups else ""
    if paired:
        seeds += f"<h2>Is one configuration better than the other?</h2><p>{html.escape(paired['verdict'])}</p>"
    differ = differing_config(rows)
    keys = [k for k in (differ[0] if differ else {}) if k != "job"]
    config = (f"<h2>Config keys that differ</h2>{table(differ, ['job', *keys])}" if keys else "")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem}th{background:#f3f3f3}"
             "img{max-width:100%}.scroll{overflow-x:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dlrun: {len(rows)} runs compared</title>"
            f"<style>{style}</style></head><body><h1>{len(rows)} runs compared</h1><p>{html.escape(_objective(rows))}; "
            f"* marks the best. Each job links to its own report.</p>{table(rows, columns)}{images}{config}{seeds}"
            f"</body></html>\n")


def _objective(rows):
    """The objective and its direction, in words (each one, when runs monitored different metrics)."""
    monitors = list(dict.fromkeys((r["monitor"], r.get("mode", "min")) for r in rows if r.get("monitor")))
    if not monitors:
        return "no run has an objective yet"
    said = [f"{monitor} at the best epoch ({'lower' if mode == 'min' else 'higher'} is better)"
            for monitor, mode in monitors]
    if len(said) == 1:
        return f"objective: {said[0]}"
    return f"objectives: {'; '.join(said)}; runs are ranked against those of the same objective only"


def _plot_curves(folder, rows, labels):
    """curves.png: every run's monitored metric and losses per epoch, one line per run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from dlrun.results.plots import save

    histories = {r["job"]: artifacts.read_csv(RunDir(r["path"]).metrics) for r in rows
                 if RunDir(r["path"]).metrics.is_file()}
    histories = {job: h for job, h in histories.items() if h}
    monitor = next((r.get("monitor") for r in rows if r.get("monitor")), None)
    if not histories or monitor is None:
        return []
    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for job, history in histories.items():
        epochs = [int(row["epoch"]) for row in history]
        line, = axes[0].plot(epochs, [_number(row.get(monitor)) for row in history], marker="o", markersize=3,
                             label=labels[job])
        axes[1].plot(epochs, [_number(row.get("train/loss")) for row in history], "-", color=line.get_color())
        axes[1].plot(epochs, [_number(row.get("val/loss")) for row in history], "--", color=line.get_color())
    axes[0].set(title=f"{monitor} per epoch", xlabel="epoch", ylabel=monitor)
    axes[1].set(title="loss per epoch (train solid, val dashed)", xlabel="epoch", ylabel="loss")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    path = SweepDir(folder).curves
    save(fig, path)
    return [path]


def _number(text):
    return float(text) if text not in (None, "") else float("nan")


def _plot_objective(folder, rows):
    """objective_vs_<param>.png for each swept parameter."""
    from dlrun.results.plots import save

    done = [r for r in rows if r["status"] == "completed" and _finite(r["objective"])]
    files = []
    for key in swept_parameters(rows):
        points = []
        for r in done:
            value = override_values(r).get(key)
            if value is not None:
                points.append((value, r["objective"], r is done[0]))
        if points:
            path = folder / f"objective_vs_{key.replace('/', '_')}.png"
            save(objective_figure(key, points, done[0].get("monitor") or "objective", _objective(done)), path)
            files.append(path)
    return files


def objective_figure(key, points, monitor, objective):
    """The objective against one parameter: `points` are (value as text, objective, is best).
    Numbers spanning a factor of 10 or more get a log axis; categories are in order of value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.subplots()
    numeric = all(_is_number(v) for v, _, _ in points)
    points = sorted(points, key=lambda p: float(p[0]) if numeric else p[0])
    xs = [float(v) if numeric else v for v, _, _ in points]
    ax.scatter(xs, [o for _, o, _ in points], s=40)
    for x, (_, value, best) in zip(xs, points):
        if best:
            ax.scatter([x], [value], s=200, marker="*", color="tab:red", label="best", zorder=3)
            ax.legend()
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:  # log-spaced values, e.g. learning rates
        ax.set_xscale("log")
    ax.set(title=f"Objective vs {key} ({objective.rpartition('(')[2].rstrip(')')})", xlabel=key, ylabel=monitor)
    return fig


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def sweep_command(folder):
    """The sweep in `folder` as its multirun.yaml records it: (task overrides, Hydra overrides,
    its Hydra config), the overrides without `resume=` and what dlrun adds (mode, directory)."""
    from omegaconf import OmegaConf

    saved = OmegaConf.load(SweepDir(folder).multirun).hydra
    task = [str(o) for o in saved.overrides.task if not str(o).startswith("resume=")]
    hydra = [str(o) for o in saved.overrides.hydra if not str(o).startswith(("hydra.mode=", "hydra.sweep.dir="))]
    return task, hydra, saved


def resume_command(folder):
    """The command line that continues the sweep in `folder`."""
    task, hydra, _ = sweep_command(folder)
    return shlex.join(["dlrun", "-m", *task, *hydra, f"hydra.sweep.dir={Path(folder).resolve()}", "resume=true"])


def planned_jobs(folder):
    """Every job's overrides, in the order of their numbers, for a sweep of Hydra's basic sweeper
    (the grid of its command and of its preset's params, expanded by the sweeper's own code);
    None for a sweeper that chooses its jobs as it goes (Optuna)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task, _, saved = sweep_command(folder)
    if not str(saved.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (saved.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + task)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_resumable(folder, overrides, config_dir=None):
    """Refuse, with one line, `resume=true` with another command than the one that started the
    sweep in `folder`, or when a started job's config composes differently now (a config file was
    edited): its results would be labelled with a config they were not run with. Runs before Hydra
    touches the sweep directory."""
    from omegaconf import OmegaConf

    from dlrun.config.composition import compose

    folder = Path(folder)
    if not SweepDir(folder).multirun.is_file():
        return
    before, _, _ = sweep_command(folder)
    now = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/", "resume="))]
    if sorted(before) != sorted(now):
        gone, new = [o for o in before if o not in now], [o for o in now if o not in before]
        raise ConfigError(
            f"resume=true continues the sweep in {folder}, started with: {' '.join(before) or '(no overrides)'}; "
            f"this command differs ({', '.join([*(f'{o} dropped' for o in gone), *(f'{o} added' for o in new)])}). "
            f"Give the same overrides to continue it, or another hydra.sweep.dir for a new sweep.")
    for run_dir in job_dirs([folder]):
        saved = RunDir(run_dir).hydra / "config.yaml"
        if not saved.is_file():
            continue
        job = [o for o in run_overrides(run_dir) if not o.startswith("resume=")]
        then = dict(flat_items(OmegaConf.to_container(OmegaConf.load(saved))))
        current = dict(flat_items(OmegaConf.to_container(compose(job, config_dir))))
        changed = [k for k in sorted(set(then) | set(current)) if k not in ("resume", "ckpt_path")
                   and then.get(k, "(absent)") != current.get(k, "(absent)")]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"resume=true: job {run_dir.name} of the sweep in {folder} ran with {key}={then.get(key, '(absent)')}, "
                f"which now composes to {current.get(key, '(absent)')}" + (f" ({len(changed) - 1} more keys differ)"
                                                                           if len(changed) > 1 else "")
                + "; a config file changed since. Put it back to continue the sweep, or start a new one "
                  "(another hydra.sweep.dir).")


def _stop(config, folder, exit_code):
    """End an interrupted sweep, whichever sweeper ran it: the leaderboard with its interrupted
    and not started jobs, the command that continues it, and the signal's exit code. The mark
    goes first, so that nothing here can leave it behind."""
    SweepStop(folder).clear()
    jobs = planned_jobs(folder)
    pending = [(str(k), job) for k, job in enumerate(jobs or []) if not SweepDir(folder).job(k).root.is_dir()]
    rows, _ = write(folder, pending=pending)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("completed", "interrupted", "failed")}
    left = f"{len(pending)} not started" if jobs is not None else "the trials left not started"
    _end_tracked_sweep(config, folder, "KILLED")
    from dlrun.console import error

    error(f"sweep interrupted: {counts['completed']} completed, {counts['interrupted']} interrupted, "
          f"{counts['failed']} failed, {left}; leaderboard: {SweepDir(folder).summary_md}. "
          f"Resume with: {resume_command(folder)}")
    sys.exit(exit_code)


def _stop_at_once(folder):
    """A second Ctrl-C while the sweep winds down: exit now, with one line; every file written so
    far is whole (written atomically), and the resume command continues from there."""
    SweepStop(folder).clear()
    from dlrun.console import error

    resume = f" Resume with: {resume_command(folder)}" if SweepDir(folder).multirun.is_file() else ""
    error(f"sweep stopped at once by a second Ctrl-C; the leaderboard was not updated.{resume}")
    sys.exit(EXIT_CODES[signal.SIGINT])


class Leaderboard(Callback):
    """Around a multirun: the first Ctrl-C or SIGTERM between jobs stops the sweep (one during a
    job stops that job, which stops the sweep: job.run_from_hydra); at the end, the leaderboard,
    and a non-zero exit if a job failed or the sweep was interrupted."""

    def on_multirun_start(self, config, **kwargs):
        folder = Path(config.hydra.sweep.dir)
        if config.get("logger") == "mlflow":
            try:
                tracking.start_sweep(config, folder)
            except DlrunError as exc:  # before any job: one line
                from dlrun.console import error

                error(str(exc))
                sys.exit(exc.exit_code)

        stop = SweepStop(folder)
        stop.clear()  # left by a process that is gone (kill -9): this sweep is not stopping
        stop.install(at_once=lambda: _stop_at_once(folder))

    def on_multirun_end(self, config, **kwargs):
        folder = Path(config.hydra.sweep.dir)
        if not folder.is_dir():
            return
        code = SweepStop(folder).requested()
        if code is not None:
            _stop(config, folder, code)
        rows, paired = write(folder)
        failed = [r for r in rows if r["status"] in ("failed", "diverged")]
        _end_tracked_sweep(config, folder, "FAILED" if failed else "FINISHED")
        done = sum(r["status"] == "completed" for r in rows)
        more = {status: sum(r["status"] == status for r in rows) for status in ("interrupted", "pruned")}
        print(f"leaderboard: {SweepDir(folder).summary_md} ({done} completed, {len(failed)} failed"
              + "".join(f", {n} {status}" for status, n in more.items() if n) + ")")
        if paired:
            print(paired["verdict"])
        if more["interrupted"]:  # left so by the launcher (a SLURM job out of requeues): the sweep is not done
            from dlrun.console import error

            error(f"{more['interrupted']} job(s) interrupted and not continued; their summary.json says why. "
                  f"Resume with: {resume_command(folder)}")
        if failed or more["interrupted"]:
            sys.exit(1)


def _end_tracked_sweep(config, folder, status):
    """With logger=mlflow, the leaderboard goes to the sweep's parent run, which ends with `status`."""
    if config.get("logger") == "mlflow":
        tracking.end_sweep(folder, status)


def fresh_compare_dir():
    """A new outputs/compare/DATE/TIME directory (reserved: two at once get _1, _2...)."""
    from datetime import datetime

    from dlrun.config.sources import outputs_root, reserve_dir

    now = datetime.now()
    return reserve_dir(outputs_root() / "compare" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"))


def main(args, prog="dlrun leaderboard", always_fresh=False):
    """`dlrun leaderboard DIR...`: rebuild the leaderboard of a sweep (in it) or of a set of run
    directories (in a fresh directory under outputs/compare, where `dlrun compare` always writes)."""
    parser = argparse.ArgumentParser(prog=prog, description="The leaderboard (summary.csv, summary.md, "
                                     "leaderboard.html with every run's curves, links to each report and the config "
                                     "keys that differ) of a sweep directory or of any run directories.")
    parser.add_argument("paths", nargs="+", metavar="DIR", help="a sweep directory, or run directories")
    parser.add_argument("--out", type=Path, help="where to write it (default: a fresh directory under "
                        "outputs/compare" + ("" if always_fresh else "; for one sweep directory, the sweep") + ")")
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exc:  # argparse's usage line and its exit code (2; 0 for --help)
        return exc.code
    missing = [p for p in parsed.paths if not Path(p).is_dir()]
    if missing:
        print(f"{prog}: no such directory: {missing[0]}", file=sys.stderr)
        return 2
    empty = next((p for p in parsed.paths if not job_dirs([p])), None)
    if empty is not None:
        print(f"{prog}: no runs in {empty} (a sweep directory, or run directories with summary.json or .hydra/)",
              file=sys.stderr)
        return 2
    sweep_dir = len(parsed.paths) == 1 and SweepDir(parsed.paths[0]).multirun.is_file()
    # A sweep's leaderboard goes into the sweep; one of chosen runs, into a directory of its own.
    folder = parsed.out or (Path(parsed.paths[0]) if sweep_dir and not always_fresh else fresh_compare_dir())
    folder.mkdir(parents=True, exist_ok=True)
    rows, _ = write(folder, parsed.paths)
    print(f"{len(rows)} runs -> {SweepDir(folder).leaderboard}")
    return 0
