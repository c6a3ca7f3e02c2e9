"""Uncertainty on the assessment: bootstrap intervals across datasets and paired estimator comparisons.

Monte-Carlo tests use fixed seeds; every tolerance is derived from a binomial or sampling standard error
(SE) stated next to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from opelab.ope import EstimateTable
from opelab.select.assess import assess
from opelab.select.uncertainty import (
    EXACT_MAX_DATASETS,
    Comparison,
    assessment_frame,
    best_estimator_table,
    compare_estimators,
    metric_direction,
    sign_flip_p_value,
    summarize_across_datasets,
)

Z975 = float(stats.norm.ppf(0.975))


def _frame(columns: dict[str, Sequence[float] | np.ndarray], metric: str = "nmse") -> pd.DataFrame:
    """Long frame with one metric: ``columns`` maps estimator -> values on datasets 0..m-1."""
    values = [np.asarray(v, dtype=np.float64) for v in columns.values()]
    return pd.DataFrame(
        {
            "dataset": np.concatenate([np.arange(len(v)) for v in values]),
            "estimator": np.repeat(np.array(list(columns), dtype=object), [len(v) for v in values]),
            "metric": metric,
            "value": np.concatenate(values),
        }
    )


def _c4(n: int) -> float:
    """E[s]/σ for the sample std (ddof=1) of n normal draws."""
    return float(np.sqrt(2.0 / (n - 1)) * np.exp(special.gammaln(n / 2) - special.gammaln((n - 1) / 2)))


# --------------------------------------------------------------------------- #
# assessment_frame
# --------------------------------------------------------------------------- #
def _table(estimates: list[list[float]]) -> EstimateTable:
    return EstimateTable(
        policy_names=("a", "b", "c"),
        estimator_names=("good", "bad"),
        estimates=np.array(estimates),
        behavior_value=0.5,
    )


def _assessments() -> list:
    # Dataset 0: true J = (1, 2, 3). Dataset 1: true J = (1, 1, 0), "good" ranks a, b first: the top-2
    # true values are identical and above J(π_b) = 0.5, so its SharpeRatio@2 is +inf; "bad" ranks the
    # policies in a constant way → rank correlation NaN.
    first = assess(_table([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), [1.0, 2.0, 3.0])
    second = assess(_table([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0]]), [1.0, 1.0, 0.0])
    return [first, second]


def test_assessment_frame_stacks_real_assessments():
    first, second = _assessments()
    frame = assessment_frame([first, second])
    assert list(frame.columns) == ["dataset", "estimator", "metric", "value"]
    assert len(frame) == 2 * 2 * first.summary.shape[1]
    assert set(frame["dataset"]) == {0, 1}
    for key, assessment in enumerate((first, second)):
        rows = frame[frame["dataset"] == key]
        for est in assessment.summary.index:
            for metric in assessment.summary.columns:
                got = rows[(rows.estimator == est) & (rows.metric == metric)]["value"]
                assert len(got) == 1
                np.testing.assert_equal(got.iloc[0], assessment.summary.loc[est, metric])
    second_rows = frame[frame["dataset"] == 1].set_index(["estimator", "metric"])["value"]
    assert second_rows[("good", "sharpe_ratio@2")] == np.inf
    assert np.isnan(second_rows[("bad", "rank_correlation")])

    keyed = assessment_frame({"seed-7": first, ("env", 2): second})
    assert list(pd.unique(keyed["dataset"])) == ["seed-7", ("env", 2)]
    np.testing.assert_array_equal(keyed["value"].to_numpy(), frame["value"].to_numpy())

    # The frame feeds the summary directly; the +inf SharpeRatio is counted, not averaged.
    summary = summarize_across_datasets(keyed).set_index(["estimator", "metric"])
    sr = summary.loc[("good", "sharpe_ratio@2")]
    assert sr["n_datasets"] == 1 and sr["n_posinf"] == 1
    assert sr["mean"] == first.summary.loc["good", "sharpe_ratio@2"]
    assert summary.loc[("bad", "rank_correlation"), "n_nan"] == 1


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ([], "assessments: expected at least one Assessment, found none"),
        ("abc", "assessments: expected a sequence or mapping of Assessment, found str"),
        ([1.0], r"assessments\[0\]: expected an Assessment, found float"),
    ],
)
def test_assessment_frame_errors(arg, message):
    with pytest.raises(ValueError, match=message):
        assessment_frame(arg)


# --------------------------------------------------------------------------- #
# summarize_across_datasets
# --------------------------------------------------------------------------- #
def test_summary_hand_values_and_direction():
    frame = pd.concat(
        [
            _frame({"x": [1.0, 2.0, 4.0], "y": [0.0, 0.0, 3.0]}, metric="nmse"),
            _frame({"x": [0.5, 0.5, 0.5]}, metric="sharpe_ratio@2"),
        ],
        ignore_index=True,
    )
    out = summarize_across_datasets(frame)
    assert list(out.columns) == [
        "estimator", "metric", "better", "n_datasets", "n_nan", "n_posinf", "n_neginf",
        "mean", "std", "lower", "upper",
    ]  # fmt: skip
    # Rows: estimators, then metrics, in order of first appearance.
    assert list(zip(out.estimator, out.metric)) == [("x", "nmse"), ("x", "sharpe_ratio@2"), ("y", "nmse")]
    row = out.iloc[0]
    assert row["better"] == "lower" and row["n_datasets"] == 3
    assert row["mean"] == pytest.approx(7 / 3) and row["std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    # Bootstrap means of resamples lie between min and max, and the interval brackets the mean here.
    assert 1.0 <= row["lower"] < row["mean"] < row["upper"] <= 4.0
    constant = out.iloc[1]
    assert constant["better"] == "higher"
    assert (constant["mean"], constant["std"], constant["lower"], constant["upper"]) == (0.5, 0.0, 0.5, 0.5)
    assert metric_direction("normalized_regret@3") == "lower"
    assert metric_direction("type_ii") == "lower"
    assert metric_direction("rank_correlation") == "higher"


def test_nan_and_inf_are_counted_and_left_out():
    values = [1.0, np.nan, 3.0, np.inf, 5.0, -np.inf, np.inf]
    out = summarize_across_datasets(_frame({"x": values}, metric="sharpe_ratio@2")).iloc[0]
    assert (out["n_datasets"], out["n_nan"], out["n_posinf"], out["n_neginf"]) == (3, 1, 2, 1)
    assert out["mean"] == 3.0 and out["std"] == 2.0
    assert np.isfinite(out["lower"]) and np.isfinite(out["upper"])
    assert 1.0 <= out["lower"] <= out["upper"] <= 5.0
    # Identical to the summary of the finite values alone, which sit on datasets 0, 2, 4.
    finite = _frame({"x": [1.0, 3.0, 5.0]}, metric="sharpe_ratio@2")
    alone = summarize_across_datasets(finite).iloc[0]
    assert (alone["lower"], alone["upper"]) == (out["lower"], out["upper"])


def test_single_dataset_and_no_finite_value():
    out = summarize_across_datasets(_frame({"x": [0.25], "y": [np.nan]}))
    single, empty = out.iloc[0], out.iloc[1]
    assert single["n_datasets"] == 1 and single["mean"] == 0.25
    assert np.isnan(single["std"]) and np.isnan(single["lower"]) and np.isnan(single["upper"])
    assert empty["n_datasets"] == 0 and empty["n_nan"] == 1
    assert np.isnan(empty[["mean", "std", "lower", "upper"]].to_numpy(dtype=float)).all()
    comp = compare_estimators(_frame({"x": [0.25], "y": [0.5]}), "x", "y", "nmse")
    assert comp.n_datasets == 1 and comp.mean_difference == -0.25
    assert np.isnan(comp.lower) and np.isnan(comp.upper)
    assert comp.p_value == 1.0 and comp.verdict == "no clear difference"


def test_deterministic_given_seed_and_unaffected_by_other_groups():
    rng = np.random.default_rng(5)
    frame = _frame({"x": rng.normal(size=25), "y": rng.normal(size=25)})
    first = summarize_across_datasets(frame, seed=11)
    pd.testing.assert_frame_equal(first, summarize_across_datasets(frame, seed=11))
    other = summarize_across_datasets(frame, seed=12)
    assert not np.array_equal(first["lower"].to_numpy(), other["lower"].to_numpy())
    # Resampling depends on (seed, m) only: adding an estimator leaves the others' intervals unchanged.
    bigger = pd.concat([frame, _frame({"z": rng.normal(size=25)})], ignore_index=True)
    pd.testing.assert_frame_equal(summarize_across_datasets(bigger, seed=11).iloc[:2], first)
    a = compare_estimators(frame, "x", "y", "nmse", seed=3)
    assert a == compare_estimators(bigger, "x", "y", "nmse", seed=3)


@pytest.mark.statistical
def test_bootstrap_interval_coverage_at_30_datasets():
    # x_1..x_30 ~ N(μ, σ²). The percentile interval behaves like x̄ ± z·σ̂₀/√m with σ̂₀ the ddof=0 std, so it
    # covers μ with probability P(|t_29| ≤ z·√(29/30)) = 0.936 rather than 0.95. With 400 repetitions the
    # binomial SE is √(0.95·0.05/400) = 0.011 (0.012 at 0.936): accept [0.936 − 2·0.012, 0.95 + 2·0.011]
    # = [0.91, 0.97] (rounded).
    theory = 1 - 2 * stats.t.sf(Z975 * np.sqrt(29 / 30), 29)
    assert theory == pytest.approx(0.936, abs=5e-4)
    rng = np.random.default_rng(123)
    mu, sigma, reps = 1.5, 2.0, 400
    covered = 0
    for r in range(reps):
        out = summarize_across_datasets(_frame({"x": rng.normal(mu, sigma, 30)}), seed=r)
        covered += bool(out["lower"].iat[0] <= mu <= out["upper"].iat[0])
    assert 0.91 <= covered / reps <= 0.97


@pytest.mark.statistical
def test_interval_width_scales_like_one_over_sqrt_m():
    # Width ≈ 2·z·σ̂₀/√m, so E[w₂₀]/E[w₈₀] = 2·c4(20)√(19/20) / (c4(80)√(79/80)) = 1.942 (c4: E[s]/σ).
    # The tolerance is 4 SEs of the ratio of mean widths over the repetitions (delta method).
    expected = 2 * _c4(20) * np.sqrt(19 / 20) / (_c4(80) * np.sqrt(79 / 80))
    assert expected == pytest.approx(1.942, abs=1e-3)
    rng = np.random.default_rng(7)
    reps = 120
    widths: dict[int, list[float]] = {20: [], 80: []}
    scaled: dict[int, list[float]] = {20: [], 80: []}
    sigmas: dict[int, list[float]] = {20: [], 80: []}
    for r in range(reps):
        for m in (20, 80):
            x = rng.normal(0.0, 1.0, m)
            out = summarize_across_datasets(_frame({"x": x}), seed=r)
            width = float(out["upper"].iat[0] - out["lower"].iat[0])
            widths[m].append(width)
            scaled[m].append(width / (2 * Z975 * np.std(x) / np.sqrt(m)))
            sigmas[m].append(float(np.std(x)))
    w20, w80 = np.array(widths[20]), np.array(widths[80])
    ratio = w20.mean() / w80.mean()
    se = ratio * np.sqrt(np.var(w20, ddof=1) / w20.mean() ** 2 / reps + np.var(w80, ddof=1) / w80.mean() ** 2 / reps)
    assert se < 0.035
    assert abs(ratio - expected) <= 4 * se
    # Most of that SE is the spread of σ̂ itself: against the realised 2·mean σ̂₀(20)/mean σ̂₀(80) the ratio
    # agrees to 1 %.
    realised = 2 * np.mean(sigmas[20]) / np.mean(sigmas[80])
    assert ratio == pytest.approx(realised, rel=0.01)
    # Given the data, the width is 2·z·σ̂₀/√m up to bootstrap noise (B = 2000): mean of the scaled widths
    # is 1 within 0.02 (their sd is ≈ 0.02 per repetition, so the SE of the mean is ≈ 0.0015).
    for m in (20, 80):
        assert np.mean(scaled[m]) == pytest.approx(1.0, abs=0.02)


# --------------------------------------------------------------------------- #
# compare_estimators
# --------------------------------------------------------------------------- #
def test_paired_comparison_detects_a_shift_hidden_by_the_spread_across_datasets():
    # Datasets differ a lot (sd 1), estimator b is worse than a by δ = 0.3 on each (noise sd 0.05).
    rng = np.random.default_rng(2024)
    m, delta = 20, 0.3
    a = rng.normal(1.0, 1.0, m)
    b = a + delta + rng.normal(0.0, 0.05, m)
    frame = _frame({"a": a, "b": b}, metric="nmse")  # lower is better → a better
    comp = compare_estimators(frame, "a", "b", "nmse")
    assert isinstance(comp, Comparison)
    assert comp.verdict == "a better" and comp.separated
    assert comp.p_value < 0.01 and not comp.exact and comp.n_permutations == 2000
    assert comp.lower < -delta < comp.upper < 0.0
    assert comp.mean_difference == pytest.approx(np.mean(a - b))
    assert (comp.mean_a, comp.mean_b) == (pytest.approx(a.mean()), pytest.approx(b.mean()))
    # Unpaired, the shift is lost in the spread: the per-estimator intervals overlap, Welch's test does not
    # reject, and the paired interval is more than 10 times narrower than the unpaired ones.
    summary = summarize_across_datasets(frame).set_index("estimator")
    assert summary.loc["a", "upper"] > summary.loc["b", "lower"]
    assert stats.ttest_ind(a, b, equal_var=False).pvalue > 0.05
    unpaired_width = summary.loc["a", "upper"] - summary.loc["a", "lower"]
    assert comp.upper - comp.lower < 0.1 * unpaired_width
    # Reversed roles and a higher-is-better metric flip the verdict accordingly.
    assert compare_estimators(frame, "b", "a", "nmse").verdict == "b better"
    higher = _frame({"a": a, "b": b}, metric="rank_correlation")
    assert compare_estimators(higher, "a", "b", "rank_correlation").verdict == "b better"


@pytest.mark.statistical
def test_false_positive_rate_without_a_difference():
    # δ = 0, m = 10 (exact enumeration of 2^10 sign vectors): a winner should be named in at most α of the
    # repetitions. Binomial SE with 300 repetitions: √(0.05·0.95/300) = 0.0126; accept ≤ α + 3·SE = 0.088.
    # The sign-flip test alone (p ≤ α) is exact, so its rejection rate should also be ≥ α − 3·SE = 0.012
    # (the test is not degenerate).
    rng = np.random.default_rng(110)
    m, reps, alpha = 10, 300, 0.05
    se = np.sqrt(alpha * (1 - alpha) / reps)
    named = rejected = 0
    for r in range(reps):
        a = rng.normal(0.0, 1.0, m)
        b = a + rng.normal(0.0, 0.1, m)
        comp = compare_estimators(_frame({"a": a, "b": b}), "a", "b", "nmse", seed=r, n_bootstrap=500)
        assert comp.exact
        named += comp.verdict != "no clear difference"
        rejected += comp.p_value <= alpha
    assert named / reps <= alpha + 3 * se
    assert alpha - 3 * se <= rejected / reps <= alpha + 3 * se


@pytest.mark.statistical
def test_random_sign_flip_test_has_the_nominal_size():
    # m = 20 > 14: p from 500 random sign flips, (count + 1)/(500 + 1) is a valid p-value, so under H0
    # (symmetric differences) P(p ≤ α) ≤ α. Same binomial bounds as above over 300 repetitions.
    rng = np.random.default_rng(120)
    reps, alpha = 300, 0.05
    se = np.sqrt(alpha * (1 - alpha) / reps)
    p = np.array([sign_flip_p_value(rng.normal(0.0, 0.1, 20), 500, r)[0] for r in range(reps)])
    assert alpha - 3 * se <= np.mean(p <= alpha) <= alpha + 3 * se
    assert p.min() >= 1 / 501


def test_exact_sign_flip_p_values_by_hand():
    # m = 4, all differences positive: only the identity and the all-minus flip reach |Σd| → p = 2/16.
    comp = compare_estimators(_frame({"a": [2.0, 3.0, 4.0, 5.0], "b": [1.0, 1.0, 1.0, 1.0]}), "a", "b", "nmse")
    assert comp.exact and comp.n_permutations == 16
    assert comp.p_value == 0.125
    # Mixed signs: compare with a brute-force enumeration.
    d = np.array([0.7, -0.2, 1.1, 0.4, -0.9, 0.3])
    brute = np.mean([abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product((-1, 1), repeat=6)])
    assert sign_flip_p_value(d, 1000, 0) == (brute, True, 64)
    # Ties: d = (1, 1, 2): |Σ s·d| ≥ 4 for (+,+,+), (−,−,−) only; = 2 and 0 otherwise → 2/8.
    assert sign_flip_p_value(np.array([1.0, 1.0, 2.0]), 10, 0)[0] == 0.25
    # All-zero differences: every flip ties → p = 1.
    assert sign_flip_p_value(np.zeros(5), 10, 0)[0] == 1.0
    # Random branch (m = 20 > 14): all 20 differences positive, so only the all-plus/all-minus flips (2 in
    # 2^20) could reach the observed statistic: none of 999 draws does and p = (0 + 1)/(999 + 1).
    p, exact, draws = sign_flip_p_value(np.linspace(0.1, 2.0, 20), 999, 0)
    assert (p, exact, draws) == (1 / 1000, False, 999)
    assert np.isnan(sign_flip_p_value(np.empty(0), 10, 0)[0])


def test_too_few_datasets_never_name_a_winner():
    # m = 3, all differences of the same sign: the percentile interval excludes 0, but the exact test
    # cannot go below 2/8 = 0.25, so no winner is named.
    comp = compare_estimators(_frame({"a": [1.0, 2.0, 3.0], "b": [2.0, 3.5, 4.2]}), "a", "b", "nmse")
    assert comp.upper < 0.0 and comp.p_value == 0.25
    assert comp.verdict == "no clear difference" and not comp.separated


def test_comparison_pairs_only_datasets_where_both_are_finite():
    a = [1.0, np.nan, 3.0, np.inf, 5.0, 6.0]
    b = [2.0, 2.0, np.nan, 4.0, 5.5, 7.0]
    comp = compare_estimators(_frame({"a": a, "b": b}), "a", "b", "nmse")
    # Datasets 0, 4, 5 remain: differences (−1, −0.5, −1).
    assert comp.n_datasets == 3
    assert comp.mean_difference == pytest.approx(-2.5 / 3)
    assert (comp.mean_a, comp.mean_b) == (pytest.approx(4.0), pytest.approx(14.5 / 3))
    # Datasets need not be listed in the same order, nor on the same datasets for both estimators.
    frame = _frame({"a": a, "b": b}).sample(frac=1.0, random_state=0)
    shuffled = compare_estimators(frame[~((frame.estimator == "b") & (frame.dataset == 1))], "a", "b", "nmse")
    assert shuffled.n_datasets == 3 and shuffled.mean_difference == pytest.approx(comp.mean_difference)
    assert shuffled.p_value == comp.p_value


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-100, 100), st.floats(-100, 100)),
        min_size=2,
        max_size=18,
    )
)
def test_comparison_is_antisymmetric_and_intervals_stay_in_range(pairs):
    a, b = np.array(pairs).T
    frame = _frame({"a": a, "b": b})
    ab = compare_estimators(frame, "a", "b", "nmse", n_bootstrap=200)
    ba = compare_estimators(frame, "b", "a", "nmse", n_bootstrap=200)
    assert ba.mean_difference == pytest.approx(-ab.mean_difference, abs=1e-9)
    assert ba.p_value == pytest.approx(ab.p_value)
    assert ba.lower == pytest.approx(-ab.upper, abs=1e-9) and ba.upper == pytest.approx(-ab.lower, abs=1e-9)
    swap = {"a better": "b better", "b better": "a better", "no clear difference": "no clear difference"}
    assert ba.verdict == swap[ab.verdict]
    assert 0.0 < ab.p_value <= 1.0
    # Percentile intervals of a mean are within [min, max] of the values (up to round-off).
    d = a - b
    span = 1e-9 * (1 + np.abs(d).max())
    assert d.min() - span <= ab.lower <= ab.upper <= d.max() + span
    row = summarize_across_datasets(frame, n_bootstrap=200).iloc[0]
    assert a.min() - span <= row["lower"] <= row["upper"] <= a.max() + span


# --------------------------------------------------------------------------- #
# best_estimator_table
# --------------------------------------------------------------------------- #
def test_best_estimator_table():
    rng = np.random.default_rng(9)
    m = 25
    base = rng.normal(1.0, 1.0, m)
    nmse = _frame(
        {"good": base, "ok": base + 0.4 + rng.normal(0, 0.05, m), "poor": base + 1.0 + rng.normal(0, 0.05, m)},
        metric="nmse",
    )
    # rank correlation: "ok" and "good" are indistinguishable (noise only); "poor" is far behind.
    corr = _frame(
        {
            "good": 0.5 + rng.normal(0, 0.1, m),
            "ok": 0.5 + rng.normal(0, 0.1, m),
            "poor": np.full(m, -0.5),
        },
        metric="rank_correlation",
    )
    sr = _frame({"good": [np.inf] + [1.0] * (m - 1), "ok": [np.nan] * m, "poor": [np.nan] * m}, "sharpe_ratio@2")
    empty = _frame({"good": [np.nan] * m}, metric="regret@1")
    table = best_estimator_table(pd.concat([nmse, corr, sr, empty], ignore_index=True)).set_index("metric")
    assert list(table.index) == ["nmse", "rank_correlation", "sharpe_ratio@2", "regret@1"]
    row = table.loc["nmse"]
    assert (row["best"], row["runner_up"], row["better"]) == ("good", "ok", "lower")
    assert bool(row["separated"]) and row["p_value"] < 0.01 and row["upper"] < 0.0 and row["n_datasets"] == m
    row = table.loc["rank_correlation"]
    assert {row["best"], row["runner_up"]} == {"good", "ok"} and row["better"] == "higher"
    assert not bool(row["separated"]) and row["lower"] < 0.0 < row["upper"]
    summary = summarize_across_datasets(pd.concat([corr], ignore_index=True)).set_index("estimator")
    assert row["best_mean"] == summary.loc[row["best"], "mean"] >= summary.loc[row["runner_up"], "mean"]
    row = table.loc["sharpe_ratio@2"]  # a single estimator with finite values; its +inf is flagged
    assert row["best"] == "good" and row["best_mean"] == 1.0 and row["runner_up"] is None
    assert row["n_infinite"] == 1 and not bool(row["separated"]) and np.isnan(row["p_value"])
    row = table.loc["regret@1"]
    assert row["best"] is None and np.isnan(row["best_mean"])
    only = best_estimator_table(nmse, metrics=["nmse"], n_bootstrap=500)
    assert list(only["metric"]) == ["nmse"] and only["best"].iloc[0] == "good"


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def _small() -> pd.DataFrame:
    return _frame({"x": [1.0, 2.0, 3.0], "y": [2.0, 2.0, 2.0]})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda f: summarize_across_datasets(f.drop(columns="metric")),
            r"frame: expected columns .*missing \['metric'\]",
        ),
        (lambda f: summarize_across_datasets(f.iloc[:0]), "frame: expected at least one row, found an empty table"),
        (lambda f: summarize_across_datasets([1, 2]), "frame: expected a pandas DataFrame"),
        (lambda f: summarize_across_datasets(f.assign(value="high")), "frame: expected a numeric 'value' column"),
        (
            lambda f: summarize_across_datasets(pd.concat([f, f.iloc[[4]]])),
            r"frame: expected one value per \(dataset, estimator, metric\), found duplicates, e.g. "
            r"dataset=1, estimator='y', metric='nmse'",
        ),
        (lambda f: summarize_across_datasets(f, alpha=1.0), r"alpha: expected a real number in \(0, 1\), found 1.0"),
        (lambda f: summarize_across_datasets(f, n_bootstrap=0), "n_bootstrap: expected a positive integer, found 0"),
        (lambda f: summarize_across_datasets(f, seed=-1), "seed: expected a non-negative integer or None, found -1"),
        (lambda f: compare_estimators(f, "x", "z", "nmse"), r"b: expected one of \['x', 'y'\], found 'z'"),
        (lambda f: compare_estimators(f, "w", "y", "nmse"), r"a: expected one of \['x', 'y'\], found 'w'"),
        (lambda f: compare_estimators(f, "x", "y", "nsme"), r"metric: expected one of \['nmse'\], found 'nsme'"),
        (lambda f: compare_estimators(f, "x", "x", "nmse"), "b: expected an estimator different from a"),
        (lambda f: compare_estimators(f, "x", "y", "nmse", alpha=0), r"alpha: expected a real number in \(0, 1\)"),
        (lambda f: best_estimator_table(f, metrics=["regret@1"]), r"metrics: expected one of \['nmse'\]"),
        (lambda f: best_estimator_table(f, metrics="nmse"), "metrics: expected a sequence of metric names"),
        (lambda f: sign_flip_p_value(np.ones((2, 2)), 10), r"differences: expected a 1-D array, found shape \(2, 2\)"),
        (lambda f: sign_flip_p_value(np.ones(3), 0), "n_random: expected a positive integer, found 0"),
    ],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(_small())


def test_estimator_without_values_for_the_metric():
    frame = pd.concat([_small(), _frame({"z": [1.0, 2.0, 3.0]}, metric="regret@1")], ignore_index=True)
    with pytest.raises(ValueError, match="b: expected an estimator with values for metric 'nmse', found none for 'z'"):
        compare_estimators(frame, "x", "z", "nmse")
