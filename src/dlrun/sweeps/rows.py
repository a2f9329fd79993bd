"""The rows of a leaderboard: the run directories of a sweep (or any runs), one row per job read
from its summary.json, ranked by the objective; the swept values and the config keys that differ."""

import json
import math
import os
from pathlib import Path

from dlrun.config.sources import flat_items, run_overrides
from dlrun.layout import RunDir
from dlrun.results import record

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


def job_names(dirs):
    """A name per run directory that tells it from the others: its own name when those are unique
    (a sweep's 0, 1, 2...), else its path below the directory the runs share (`multirun/<date>/
    <time>/0` next to `2026-12-03/18-21-53`), as the leaderboard's job column shows them."""
    dirs = [Path(d).resolve() for d in dirs]
    if len({d.name for d in dirs}) == len(dirs):
        return [d.name for d in dirs]
    common = Path(os.path.commonpath(dirs)) if len(dirs) > 1 else dirs[0].parent
    return [str(d.relative_to(common)) for d in dirs]


def job_row(run_dir, name=None):
    """One leaderboard row from a run directory (a job that died early is 'failed'); `name`: its
    job name among the others (job_names), by default the directory's name."""
    overrides = [o for o in run_overrides(run_dir) if not o.startswith("resume=")]  # how, not what, it ran
    row = {"job": name or run_dir.name, "overrides": " ".join(overrides), "status": "failed", "objective": None,
           "best_epoch": None, "wall_time_s": None, "error": "", "path": run_dir}
    file = RunDir(run_dir).summary
    if not file.is_file():
        row["error"] = "no summary.json (the job did not start)"
        return row
    summary = record.read(file)
    test = summary.get("test") or {}
    row.update(status=summary.get("status", "failed"), objective=summary.get("objective"),
               best_epoch=(summary.get("monitor") or {}).get("best_epoch"), wall_time_s=summary.get("wall_time_s"),
               error=summary.get("error", ""),
               monitor=summary.get("objective_metric") or (summary.get("monitor") or {}).get("name"),
               mode=(summary.get("monitor") or {}).get("mode", "min"), weight_stats=summary.get("weight_stats"))
    row.update({f"test/{k}": test[k] for k in HEADLINE if isinstance(test.get(k), (int, float))})
    return row


def rank(rows):
    """Completed rows by objective (best first, per the monitor's mode), then the others. Runs
    with different monitors are never ranked against each other: each monitor is ranked on its
    own (the first run's monitor first), with its own best."""
    done = [r for r in rows if r["status"] == "completed" and finite(r["objective"])]
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


def finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def override_values(row):
    """A row's overrides as {key: value text}."""
    return dict(o.partition("=")[::2] for o in row["overrides"].split())


def shared_overrides(rows):
    """The overrides every row gives with one value (`false` and `False` alike): what the runs share,
    said once above a table whose rows then show only what is their own."""
    common = None
    for r in rows:
        given = {(k, value_key(v)) for k, v in override_values(r).items()}
        common = given if common is None else common & given
    keys = {k for k, _ in common or ()}
    return [o for o in rows[0]["overrides"].split() if o.partition("=")[0] in keys] if rows else []


def swept_parameters(rows):
    """Override keys whose values differ between jobs (as values: `false` and `False`, or `0.1` and
    `1e-1`, are one value)."""
    values = {}
    for r in rows:
        for key, value in override_values(r).items():
            values.setdefault(key, set()).add(value_key(value))
    return [k for k, v in values.items() if len(v) > 1]


def value_key(text):
    """An override's value as something that compares by value: a number, a list of numbers (ordered
    as numbers: [8] < [64] < [512]), a lower-case boolean, or the text."""
    text = str(text).strip()
    if text.lower() in ("true", "false"):
        return (1, text.lower())
    number = _number(text)
    if number is not None:
        return (0, number)
    if text.startswith("[") and text.endswith("]"):
        items = [_number(item) for item in text[1:-1].split(",") if item.strip()]
        if None not in items:
            return (2, tuple(items))
    return (3, text)


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


COLUMNS = ["rank", "best", "job", "overrides", "status", "objective", "best_epoch", "wall_time_s"]


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


def legend_labels(rows, differ=None, most=3):
    """A legend label per run (by its path): the config values that differ between the runs (at
    most `most` keys), else its swept values, else its job name."""
    differ = differing_config(rows) if differ is None else differ
    swept = swept_parameters(rows)
    labels = {}
    given = {key for r in rows for key in override_values(r)}
    # the keys the user typed first, then the groups they chose (optimizer=adam: optimizer.name)
    order = sorted((k for k in (differ[0] if differ else {}) if k != "job"),
                   key=lambda k: (k not in given, k.rpartition(".")[0] not in given or not k.endswith(".name")))
    for r, config in zip(rows, differ, strict=True):
        values = {k: json.dumps(config[k]) if isinstance(config[k], (list, dict)) else config[k] for k in order} \
            or {k: v for k, v in override_values(r).items() if k in swept}
        text = " ".join(f"{k}={v}" for k, v in list(values.items())[:most])
        labels[str(r["path"])] = (text + (" …" if len(values) > most else "")) or r["job"]
    return labels
