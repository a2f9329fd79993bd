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
    half = 2.7764451051977987 * statistics.stdev(diffs) / math.sqrt(5)  # Student t, 4 degrees of freedom
    assert result["ci95"] == pytest.approx([statistics.fmean(diffs) - half, statistics.fmean(diffs) + half])
    assert result["interval"] == "Student t" and result["effect_size"] == pytest.approx(
        statistics.fmean(diffs) / statistics.stdev(diffs))
    t = statistics.fmean(diffs) / (statistics.stdev(diffs) / math.sqrt(5))
    assert t < -40 and result["p_value"] < 1e-5 and result["correction"] is None
    assert result["verdict"].startswith("model=mlp is better than model=logistic on val/loss: by 0.206 (51.1% of the mean value)")
    assert "95% Student t interval of the difference" in result["verdict"] and "effect size d = " in result["verdict"]

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
    assert len(paired_comparison(three)["pairs"]) == 1  # vgg shares one seed only: no pair with it


def test_three_seeds_get_a_t_interval_not_the_min_and_max_of_the_differences():
    diffs = [0.01, 0.03, 0.02]
    rows = [row(f"a{s}", f"model=mlp seed={s}", 0.5) for s in (1, 2, 3)]
    rows += [row(f"b{s}", f"model=cnn seed={s}", 0.5 - d) for s, d in zip((1, 2, 3), diffs)]
    low, high = paired_comparison(rows)["ci95"]
    assert low < min(diffs) and high > max(diffs)  # wider than the values: three seeds say little
    many = [row(f"a{s}", f"model=mlp seed={s}", 0.5) for s in range(25)]
    many += [row(f"b{s}", f"model=cnn seed={s}", 0.5 - 0.01 * (s % 3)) for s in range(25)]
    assert paired_comparison(many)["interval"] == "bootstrap"


def test_a_consistent_but_tiny_gap_is_called_too_small_to_matter():
    rows = [row(f"a{s}", f"model=mlp seed={s}", 0.90 + 0.01 * s, "val/accuracy", "max") for s in range(1, 6)]
    rows += [row(f"b{s}", f"model=cnn seed={s}", 0.9036 + 0.01 * s + 0.0001 * (s % 2), "val/accuracy", "max")
             for s in range(1, 6)]
    verdict = paired_comparison(rows)["verdict"]
    assert verdict.startswith("model=cnn is ahead of model=mlp on val/accuracy on the same 5 seeds, by 0.0036")
    assert "too small to matter (under 0.5%)" in verdict


def test_several_configurations_are_compared_pairwise_with_holm_correction():
    rows = []
    for i, (config, level) in enumerate((("model=mlp optimizer.lr=0.1", 0.30), ("model=mlp optimizer.lr=0.01", 0.40),
                                         ("model=cnn optimizer.lr=0.1", 0.31))):
        rows += [row(f"{config}{s}", f"{config} seed={s}", level + 0.01 * s + 0.003 * ((s + i) % 3)) for s in range(1, 5)]
    result = paired_comparison(rows)
    assert result["correction"] == "Holm" and len(result["pairs"]) == 3
    names = {(p["a"], p["b"]) for p in result["pairs"]}
    assert ("model=mlp optimizer.lr=0.1", "model=mlp optimizer.lr=0.01") in names  # named by all that differs
    for pair in result["pairs"]:
        assert pair["p_adjusted"] >= pair["p_value"]
        assert "Holm-adjusted over 3 comparisons" in pair["verdict"] and pair["verdict"] in result["verdict"]


def test_a_configuration_with_one_run_has_no_spread():
    rows = [row("a", "model=mlp seed=1", 0.3), row("b", "model=mlp seed=2", 0.4), row("c", "model=cnn seed=1", 0.2)]
    groups = {g["configuration"]: g for g in by_configuration(rows)}
    assert groups["model=cnn"]["objective std"] is None and groups["model=mlp"]["objective std"] > 0
