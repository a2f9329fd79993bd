"""The leaderboard's statistics, in-process: ranking per monitor, confidence intervals over
seeds, and the paired comparison of two configurations."""

import math
import statistics

import pytest

from dlrun.sweeps.rows import rank
from dlrun.sweeps.stats import by_configuration, paired_comparison


def row(job, overrides, objective, monitor="val/loss", mode="min", status="completed"):
    return {"job": job, "overrides": overrides, "status": status, "objective": objective, "monitor": monitor,
            "mode": mode}


def test_runs_are_ranked_only_against_runs_of_the_same_monitor():
    rows = rank([row("a", "x=1", 0.5), row("b", "x=2", 0.9, "val/accuracy", "max"), row("c", "x=3", 0.2),
                       row("d", "x=4", 0.7, "val/accuracy", "max"), row("e", "x=5", None, status="failed")])
    assert [(r["job"], r["rank"], r["best"]) for r in rows] == [
        ("c", 1, "*"), ("a", 2, ""), ("b", 1, "*"), ("d", 2, ""), ("e", None, "")]


def test_mean_std_and_confidence_interval_per_configuration():
    values = [0.30, 0.34, 0.29, 0.37]
    rows = [row(str(i), f"model=mlp seed={i}", v) for i, v in enumerate(values)]
    (group,) = by_configuration(rows)
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = 3.182446305284263 * std / math.sqrt(4)  # Student t, 3 degrees of freedom, 97.5% quantile
    assert group["objective mean"] == pytest.approx(mean) and group["objective std"] == pytest.approx(std)
    assert (group["objective ci95 low"], group["objective ci95 high"]) == pytest.approx((mean - half, mean + half))


def test_a_clear_paired_difference_is_called_and_a_noisy_one_is_not():
    seeds = range(1, 6)
    mlp = [0.30, 0.32, 0.28, 0.31, 0.29]
    rows = [row(f"a{s}", f"model=mlp seed={s}", v) for s, v in zip(seeds, mlp)]
    rows += [row(f"b{s}", f"model=logistic seed={s}", v + 0.2 + 0.01 * (s % 2)) for s, v in zip(seeds, mlp)]
    result = paired_comparison(rows)
    diffs = [-0.2 - 0.01 * (s % 2) for s in seeds]
    assert result["mean_difference"] == pytest.approx(statistics.fmean(diffs))
    low, high = result["ci95"]
    assert min(diffs) <= low < high <= max(diffs)  # the bootstrap interval of a mean lies within the values
    t = statistics.fmean(diffs) / (statistics.stdev(diffs) / math.sqrt(5))
    assert t < -40 and result["p_value"] < 1e-5
    assert result["verdict"].startswith("model=mlp is better than model=logistic on val/loss: by 0.206")

    noisy = [row(f"a{s}", f"model=mlp seed={s}", v) for s, v in zip(seeds, mlp)]
    noisy += [row(f"b{s}", f"model=cnn seed={s}", v + d) for s, v, d in zip(seeds, mlp, [0.02, -0.03, 0.01, -0.02, 0.03])]
    result = paired_comparison(noisy)
    assert result["p_value"] > 0.5 and result["ci95"][0] < 0 < result["ci95"][1]
    assert result["verdict"].startswith("No clear difference between model=mlp and model=cnn")


def test_higher_is_better_for_a_max_monitor_and_no_verdict_without_shared_seeds():
    rows = [row(f"a{s}", f"model=mlp seed={s}", 0.9 + 0.01 * s, "val/accuracy", "max") for s in (1, 2, 3)]
    rows += [row(f"b{s}", f"model=cnn seed={s}", 0.95 + 0.01 * s, "val/accuracy", "max") for s in (1, 2, 3)]
    assert paired_comparison(rows)["verdict"].startswith("model=cnn is better than model=mlp")
    other_seeds = [r for r in rows if r["job"] in ("a1", "a2", "b3")] + [
        row("b4", "model=cnn seed=4", 0.9, "val/accuracy", "max")]
    assert paired_comparison(other_seeds) is None  # no two seeds in common
    three = rows + [row("c1", "model=vgg seed=1", 0.9, "val/accuracy", "max")]
    assert paired_comparison(three) is None
