"""The statistics of a sweep: the mean and spread of each configuration over its seeds, and whether
one configuration is better than another on the same seeds (a paired comparison)."""

import math
import statistics

from dlrun.sweeps.rows import finite, override_values


def by_configuration(rows):
    """Mean and std of the objective over seeds, per configuration (the other overrides)."""
    groups = {}
    for r in rows:
        if r["status"] != "completed" or not finite(r["objective"]):
            continue
        groups.setdefault(_configuration(r), []).append(r)
    if all(len(g) == 1 for g in groups.values()):
        return []
    out = []
    for config, members in groups.items():
        entry = {"configuration": config or "(defaults)", "runs": len(members)}
        for key in ["objective", *[k for k in members[0] if k.startswith("test/")]]:
            values = [m[key] for m in members if finite(m.get(key))]
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
        if r["status"] == "completed" and finite(r["objective"]) and seed is not None:
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
