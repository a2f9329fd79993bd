"""The statistics of a sweep: the mean and spread of each configuration over its seeds, and whether
one configuration is better than another on the same seeds (paired comparisons of every pair)."""

import itertools
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
                entry[f"{key} std"] = statistics.stdev(values) if len(values) > 1 else None  # one run has no spread
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


# Seeds from which a bootstrap interval of the mean difference is used: with fewer, its interval is
# close to the smallest and largest difference (with 3 seeds, exactly them), so a Student t interval
# is the right one.
BOOTSTRAP_FROM = 20
# A consistent difference under this share of the objective's value is called too small to matter.
NEGLIGIBLE = 0.005


def paired_comparison(rows, resamples=10_000):
    """"Is A better than B?" for every pair of configurations run on the same seeds (two or more):
    the objective's difference seed by seed, its mean, a 95% interval (Student t below
    BOOTSTRAP_FROM seeds, a bootstrap from there), a paired t-test (Holm-corrected over the pairs
    when there are several), the effect size and a verdict in words; None when no pair shares two
    seeds. With two configurations, that pair's fields are also at the top level."""
    runs = {}
    for r in rows:
        seed = override_values(r).get("seed")
        if r["status"] == "completed" and finite(r["objective"]) and seed is not None:
            runs.setdefault(_configuration(r) or "(defaults)", {})[seed] = r
    monitors = {(r.get("monitor"), r.get("mode", "min")) for by_seed in runs.values() for r in by_seed.values()}
    if len(runs) < 2 or len(monitors) != 1:
        return None
    ((monitor, mode),) = monitors
    names = _names(list(runs))
    pairs = [pair for a, b in itertools.combinations(runs, 2)
             if (pair := _pair(names[a], runs[a], names[b], runs[b], mode, resamples)) is not None]
    if not pairs:
        return None
    _holm(pairs)
    for pair in pairs:
        pair["verdict"] = _verdict(pair, monitor, len(pairs))
    result = {"monitor": monitor, "mode": mode, "correction": "Holm" if len(pairs) > 1 else None, "pairs": pairs,
              "verdict": "\n".join(pair["verdict"] for pair in pairs)}
    return {**pairs[0], **result} if len(pairs) == 1 else result


def _names(configurations):
    """Each configuration named by the overrides that set it apart from all the others."""
    common = set.intersection(*(set(c.split()) for c in configurations))
    return {c: " ".join(o for o in c.split() if o not in common) or c for c in configurations}


def _pair(name_a, a, name_b, b, mode, resamples):
    """The paired statistics of A - B over their common seeds (None with fewer than two)."""
    import numpy as np
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diff = np.array([a[s]["objective"] - b[s]["objective"] for s in seeds])
    mean, sd, n = float(diff.mean()), float(diff.std(ddof=1)), len(seeds)
    if n >= BOOTSTRAP_FROM:
        means = diff[np.random.default_rng(0).integers(0, n, (resamples, n))].mean(1)
        interval, method = [float(v) for v in np.percentile(means, [2.5, 97.5])], "bootstrap"
    else:
        half = _t_quantile(n - 1) * sd / math.sqrt(n)
        interval, method = [mean - half, mean + half], "Student t"
    if sd == 0:  # the same difference on every seed: the t-test's variance is zero
        p = 0.0 if mean else 1.0
    else:
        p = float(stats.ttest_rel([a[s]["objective"] for s in seeds], [b[s]["objective"] for s in seeds]).pvalue)
    scale = abs(statistics.fmean([a[s]["objective"] for s in seeds] + [b[s]["objective"] for s in seeds]))
    better, worse = (name_a, name_b) if (mean < 0) == (mode == "min") else (name_b, name_a)
    return {"a": name_a, "b": name_b, "better": better, "worse": worse, "seeds": seeds, "mean_difference": mean,
            "ci95": interval, "interval": method, "p_value": p,
            "effect_size": None if sd == 0 else mean / sd,  # Cohen's d of paired differences (d_z)
            "relative_difference": abs(mean) / scale if scale else None}


def _holm(pairs):
    """Holm's step-down adjustment of the pairs' p-values (p_adjusted): several comparisons at 5%
    each would call some difference significant by chance."""
    order = sorted(range(len(pairs)), key=lambda i: pairs[i]["p_value"])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pairs) - rank) * pairs[i]["p_value"]))
        pairs[i]["p_adjusted"] = running


def _verdict(pair, monitor, comparisons):
    """The pair's result in words: better (with by how much and how sure), too small to matter, or
    no clear difference."""
    low, high = pair["ci95"]
    p = pair["p_adjusted"]
    test = f"paired t-test p = {p:.2g}" + (f", Holm-adjusted over {comparisons} comparisons" if comparisons > 1 else "")
    n, mean, rel = len(pair["seeds"]), pair["mean_difference"], pair["relative_difference"]
    share = f" ({rel:.2%} of the mean value)" if rel is not None and rel < 0.01 else (
        f" ({rel:.1%} of the mean value)" if rel is not None else "")
    spread = (f"effect size d = {abs(pair['effect_size']):.2g}" if pair["effect_size"] is not None
              else "the same difference on every seed")
    interval = f"95% {pair['interval']} interval of the difference {low:.4g} to {high:.4g}"
    if p >= 0.05 or low <= 0 <= high:
        return (f"No clear difference between {pair['a']} and {pair['b']} on {monitor} over {n} seeds: the mean "
                f"difference {mean:.4g} has a {interval} ({test}). More seeds would narrow it.")
    if rel is not None and rel < NEGLIGIBLE:
        return (f"{pair['better']} is ahead of {pair['worse']} on {monitor} on the same {n} seeds, by {abs(mean):.4g}"
                f"{share}: consistent ({test}) but too small to matter (under {NEGLIGIBLE:.1%}).")
    return (f"{pair['better']} is better than {pair['worse']} on {monitor}: by {abs(mean):.4g}{share} on average over "
            f"the same {n} seeds ({interval}; {spread}; {test}).")
