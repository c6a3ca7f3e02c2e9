"""The tie rule of the top-k metrics: ``ties="first" | "last" | "average"`` (default "average")."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opelab.ope import EstimateTable
from opelab.select import assess
from opelab.select import metrics as m
from opelab.select.metrics import (
    TIE_RULES,
    normalized_regret_at_k,
    regret_at_k,
    sharpe_ratio_at_k,
    top_k_inclusion,
    top_k_indices,
    topk_metrics,
)
from opelab.select.risk import safety_violation_rate_at_k

# Toy example of Kiyohara et al. (ICLR 2024): estimator Y ties policies 1 and 2 (J = 3, 4) at
# Ĵ = 11, just below policy 9 (J = 12, Ĵ = 12), so the top-2 is {12, 3} or {12, 4}. J(π_b) = 8.
TOY_J = np.array([1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0])
TOY_Y = np.array([1.0, 11.0, 11.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0])
TOY_B = 8.0
# Sample std with ddof = 1 of two values a, b is |a − b| / √2, and best@2 − J(π_b) = 12 − 8 = 4:
#   "first"   {12, 3}: std = 9/√2,  SR = 4√2/9 = 0.62854
#   "last"    {12, 4}: std = 8/√2,  SR = 4√2/8 = 1/√2 = 0.70711
#   "average" (only these two orderings matter, each with probability 1/2):
#             SR = (4√2/9 + 1/√2) / 2 = 0.66782, std = (9/√2 + 8/√2) / 2 = 17/(2√2),
#             worst = (3 + 4)/2, mean = (15/2 + 16/2)/2 = 31/4, best = 12.
SR_FIRST = 4 * math.sqrt(2) / 9
SR_LAST = 1 / math.sqrt(2)


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):  # underflow is silent by default
            yield


def _brute_force(true_values: np.ndarray, estimates: np.ndarray, k: int, b: float) -> list[float]:
    """Mean of best, worst, mean, std, SharpeRatio over every r-subset of the boundary tie group."""
    split = m._split(estimates, k)
    rows = []
    for subset in itertools.combinations(split.tied.tolist(), split.r):
        top = np.sort(true_values[np.r_[split.sure, subset].astype(int)])
        std = m._sample_std(top)
        rows.append([top.max(), top.min(), top.mean(), std, m._sharpe(top, b, True)])
    return np.mean(rows, axis=0).tolist()


def _as_list(s: m._Stats) -> list[float]:
    return [s.best, s.worst, s.mean, s.std, s.sharpe]


# --------------------------------------------------------------------------- #
# the paper's toy example
# --------------------------------------------------------------------------- #
def test_toy_example_sharpe_ratio_at_2() -> None:
    first = sharpe_ratio_at_k(TOY_J, TOY_Y, TOY_B, 2, ties="first")
    last = sharpe_ratio_at_k(TOY_J, TOY_Y, TOY_B, 2, ties="last")
    average = sharpe_ratio_at_k(TOY_J, TOY_Y, TOY_B, 2, ties="average")
    assert round(first, 4) == 0.6285
    assert round(last, 4) == 0.7071
    assert round(average, 4) == 0.6678
    assert first == pytest.approx(SR_FIRST, rel=1e-14)
    assert last == pytest.approx(SR_LAST, rel=1e-14)
    assert average == pytest.approx((SR_FIRST + SR_LAST) / 2, rel=1e-14)
    assert sharpe_ratio_at_k(TOY_J, TOY_Y, TOY_B, 2) == average  # the default


def test_toy_example_topk_metrics_average() -> None:
    tk = topk_metrics(TOY_J, TOY_Y, TOY_B, [2])
    assert tk.best[0] == 12.0
    assert tk.worst[0] == pytest.approx(3.5, rel=1e-14)
    assert tk.mean[0] == pytest.approx(31 / 4, rel=1e-14)
    assert tk.std[0] == pytest.approx(17 / (2 * math.sqrt(2)), rel=1e-14)
    assert tk.sharpe_ratio[0] == pytest.approx((SR_FIRST + SR_LAST) / 2, rel=1e-14)
    # k >= 3 holds both tied policies: no tie at the boundary, every rule agrees.
    ks = list(range(3, 11))
    tables = [topk_metrics(TOY_J, TOY_Y, TOY_B, ks, ties=t) for t in TIE_RULES]
    for field in ("best", "worst", "mean", "std", "sharpe_ratio"):
        for other in tables[1:]:
            np.testing.assert_array_equal(getattr(tables[0], field), getattr(other, field))


# --------------------------------------------------------------------------- #
# invariants
# --------------------------------------------------------------------------- #
def test_no_ties_all_rules_agree() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = int(rng.integers(2, 12))
        j, est = rng.normal(size=p), rng.normal(size=p)
        ks = list(range(1, p + 1))
        ref = topk_metrics(j, est, 0.1, ks, ties="first")
        for rule in ("last", "average"):
            other = topk_metrics(j, est, 0.1, ks, ties=rule)
            for field in ("best", "worst", "mean", "std", "sharpe_ratio"):
                np.testing.assert_array_equal(getattr(ref, field), getattr(other, field))
        for k in ks:
            values = {regret_at_k(j, est, k, ties=t) for t in TIE_RULES}
            assert len(values) == 1
            if k >= 2:
                sharpes = [sharpe_ratio_at_k(j, est, 0.1, k, ties=t) for t in TIE_RULES]
                assert sharpes[0] == sharpes[1] == sharpes[2]


@pytest.mark.parametrize("p", [7, 18])  # a tie group of 7 or 18 (all enumerated)
def test_average_is_invariant_to_listing_order(p: int) -> None:
    rng = np.random.default_rng(1)
    j = rng.normal(size=p + 2)
    est = np.r_[np.full(p, 0.5), 2.0, -1.0]  # a tie group of p policies between two singletons
    ks = list(range(1, p + 3))
    ref = topk_metrics(j, est, 0.0, ks)
    for _ in range(3):
        perm = rng.permutation(p + 2)
        other = topk_metrics(j[perm], est[perm], 0.0, ks)
        for field in ("best", "worst", "mean", "std", "sharpe_ratio"):
            np.testing.assert_allclose(getattr(other, field), getattr(ref, field), rtol=1e-12)
        for k in ks:
            assert regret_at_k(j[perm], est[perm], k) == pytest.approx(regret_at_k(j, est, k), rel=1e-12, abs=1e-15)


_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_tied_pairs = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.tuples(
        st.lists(_finite, min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 1.0, 2.0]), min_size=n, max_size=n),  # many ties
    )
)


@settings(max_examples=100, deadline=None)
@given(_tied_pairs)
def test_average_properties_hold_exactly_in_floats(pair: tuple[list[float], list[float]]) -> None:
    true_values, estimates = np.array(pair[0]), np.array(pair[1])
    ks = list(range(1, true_values.shape[0] + 1))
    regrets = np.array([regret_at_k(true_values, estimates, k) for k in ks])
    assert np.all(regrets >= 0.0) and np.all(np.diff(regrets) <= 0.0) and regrets[-1] == 0.0
    tk = topk_metrics(true_values, estimates, 0.0, ks)
    assert np.all(np.diff(tk.best) >= 0.0) and np.all(np.diff(tk.worst) <= 0.0)
    assert np.all(tk.worst <= tk.best)


def test_first_and_last_give_nested_sets_and_average_is_monotone() -> None:
    est = np.array([3.0, 1.0, 3.0, 3.0, 2.0, 1.0])
    j = np.array([0.5, 2.0, 4.0, 1.0, 3.0, 0.0])
    for rule in ("first", "last"):
        sets = [set(top_k_indices(est, k, ties=rule).tolist()) for k in range(1, 7)]
        assert all(a < b for a, b in zip(sets, sets[1:]))
    assert top_k_indices(est, 3, ties="first").tolist() == [0, 2, 3]
    assert top_k_indices(est, 3, ties="last").tolist() == [3, 2, 0]
    tk = topk_metrics(j, est, 0.0, range(1, 7))
    assert np.all(np.diff(tk.best) >= 0) and np.all(np.diff(tk.worst) <= 0)


def test_inclusion_probabilities() -> None:
    est = np.array([3.0, 1.0, 3.0, 3.0, 2.0])
    np.testing.assert_allclose(top_k_inclusion(est, 2), [2 / 3, 0, 2 / 3, 2 / 3, 0])
    np.testing.assert_array_equal(top_k_inclusion(est, 2, ties="first"), [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(top_k_inclusion(est, 2, ties="last"), [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(top_k_inclusion(est, 4), [1, 0, 1, 1, 1])
    j = np.array([1.0, 5.0, 2.0, 6.0, 0.0])
    assert topk_metrics(j, est, 0.0, [2]).mean[0] == pytest.approx(top_k_inclusion(est, 2) @ j / 2)
    # safety violation rate@2 below J = 1.5: the tied J (1, 2, 6) hold one violator -> 1/3 of 2 slots / 2
    assert safety_violation_rate_at_k(j, est, 1.5, 2) == pytest.approx(1 / 3)
    assert safety_violation_rate_at_k(j, est, 1.5, 2, ties="first") == 0.5
    assert safety_violation_rate_at_k(j, est, 1.5, 2, ties="last") == 0.0


# --------------------------------------------------------------------------- #
# exact enumeration, closed forms and Monte Carlo
# --------------------------------------------------------------------------- #
def test_enumeration_matches_brute_force_over_subsets() -> None:
    # Integer values: repeated true values in the tie group (multisets) and std@k = 0 cases (inf).
    rng = np.random.default_rng(2)
    for _ in range(60):
        p = int(rng.integers(2, 9))
        j = rng.integers(0, 4, p).astype(float)
        est = rng.integers(0, 3, p).astype(float)
        for k in range(1, p + 1):
            (stats,) = m._top_k_stats(j, est, [k], "average", 1.0, True)
            np.testing.assert_allclose(_as_list(stats), _brute_force(j, est, k, 1.0), rtol=1e-12, atol=1e-12)


def test_enumeration_against_closed_form_and_monte_carlo() -> None:
    rng = np.random.default_rng(3)
    j = rng.normal(size=14)
    est = np.r_[np.zeros(12), 1.0, 1.0]  # 12 tied policies below two sure ones: C(12, r) <= 924
    ks = list(range(3, 14))
    draws = 20_000
    exact = m._top_k_stats(j, est, ks, "average", 0.0, True)
    sampled = m._top_k_stats(j, est, ks, "average", 0.0, True, max_enumerated=0, mc_draws=draws)
    split = m._split(est, 3)
    mc = m._monte_carlo(j[split.sure], m._tied_values(j, split), [k - 2 for k in ks], 0.0, True, draws)
    for k, a, b in zip(ks, exact, sampled):
        # best / worst by order statistics and mean by linearity: exact on both paths
        brute = _brute_force(j, est, k, 0.0)
        np.testing.assert_allclose([a.best, a.worst, a.mean], brute[:3], rtol=1e-12)
        np.testing.assert_allclose([b.best, b.worst, b.mean], brute[:3], rtol=1e-12)
        np.testing.assert_allclose([a.std, a.sharpe], brute[3:], rtol=1e-12)
        # std and SharpeRatio: Monte Carlo within 4 standard errors, estimated from the draws
        # (22 comparisons: a false alarm has probability about 22 * 6e-5 for an unlucky seed)
        r = k - 2
        assert (b.std, b.sharpe) == (mc[r].std, mc[r].sharpe)
        assert 0.0 < mc[r].std_se and 0.0 < mc[r].sharpe_se
        assert abs(b.std - a.std) <= 4 * mc[r].std_se
        assert abs(b.sharpe - a.sharpe) <= 4 * mc[r].sharpe_se


def test_monte_carlo_standard_error_matches_the_exact_spread() -> None:
    # The standard error reported by _monte_carlo is the subset std of the metric / sqrt(draws).
    rng = np.random.default_rng(5)
    j = rng.normal(size=9)
    tied = m._TiedValues(np.sort(j), np.ones(9, dtype=np.int64), 4)
    draws = 50_000
    mc = m._monte_carlo(np.zeros(0), tied, [4], 0.0, True, draws)[4]
    rows = np.array([[m._sample_std(j[list(c)]), m._sharpe(j[list(c)], 0.0, True)] for c in itertools.combinations(range(9), 4)])
    spread = rows.std(axis=0)
    assert mc.std_se == pytest.approx(spread[0] / math.sqrt(draws), rel=0.05)
    assert mc.sharpe_se == pytest.approx(spread[1] / math.sqrt(draws), rel=0.05)
    assert abs(mc.std - rows[:, 0].mean()) <= 4 * mc.std_se
    assert abs(mc.sharpe - rows[:, 1].mean()) <= 4 * mc.sharpe_se


def test_monte_carlo_draws_only_the_open_slots_uniformly() -> None:
    # Partial draws without replacement: every ordered pair of distinct entries equally likely,
    # on both the rejection path (slots^2 <= t) and the partial Fisher-Yates path.
    for t, slots in [(9, 2), (5, 3)]:
        rng = np.random.default_rng(6)
        x = m._random_slots(rng, np.arange(t, dtype=float), 90_000, slots)
        assert x.shape == (90_000, slots)
        assert np.all(np.sort(x, axis=1)[:, 1:] != np.sort(x, axis=1)[:, :-1])  # no repeats
        pairs = (x[:, 0] * t + x[:, 1]).astype(int)
        freq = np.bincount(pairs, minlength=t * t).reshape(t, t)
        assert np.all(np.diag(freq) == 0)
        expected = 90_000 / (t * (t - 1))
        off = freq[~np.eye(t, dtype=bool)]
        assert np.all(np.abs(off - expected) <= 5 * math.sqrt(expected))


def test_enumeration_replaces_monte_carlo_when_it_is_cheaper() -> None:
    # 200 tied policies, k = 2: 19,900 pairs (x 2 slots) are enumerated, exactly; this was a slow,
    # inexact Monte Carlo over full random orders of all 200 values.
    rng = np.random.default_rng(7)
    j = rng.normal(size=200)
    est = np.zeros(200)
    a, b = np.triu_indices(200, 1)
    std = np.abs(j[a] - j[b]) / math.sqrt(2)
    sharpe = np.maximum(np.maximum(j[a], j[b]), 0.0) / std
    tk = topk_metrics(j, est, 0.0, [2])
    assert tk.std[0] == pytest.approx(std.mean(), rel=1e-12)
    assert tk.sharpe_ratio[0] == pytest.approx(sharpe.mean(), rel=1e-12)
    assert sharpe_ratio_at_k(j, est, 0.0, 2) == pytest.approx(sharpe.mean(), rel=1e-12)


def test_enumeration_by_slots_with_repeated_values_matches_brute_force() -> None:
    # Many distinct tied values and few open slots (d > r): the slot-wise enumeration, with repeats.
    rng = np.random.default_rng(8)
    for _ in range(40):
        p = int(rng.integers(4, 11))
        j = rng.integers(0, 8, p).astype(float)
        est = np.r_[np.zeros(p - 2), rng.integers(0, 2, 2).astype(float)]
        for k in range(1, p + 1):
            (stats,) = m._top_k_stats(j, est, [k], "average", 1.0, True)
            np.testing.assert_allclose(_as_list(stats), _brute_force(j, est, k, 1.0), rtol=1e-12, atol=1e-12)


def test_layouts_are_cached_across_calls() -> None:
    rng = np.random.default_rng(9)
    j, est = rng.normal(size=10), np.zeros(10)
    ref = topk_metrics(j, est, 0.0, range(2, 11))
    hits = m._cached_layout.cache_info().hits
    again = topk_metrics(rng.normal(size=10), est, 0.0, range(2, 11))  # same multiplicities, new values
    assert m._cached_layout.cache_info().hits >= hits + 8  # k = 2..9 cut the group
    assert again.sharpe_ratio[0] != ref.sharpe_ratio[0]
    np.testing.assert_array_equal(topk_metrics(j, est, 0.0, range(2, 11)).sharpe_ratio, ref.sharpe_ratio)


def test_sharpe_average_is_inf_not_nan_when_weights_underflow() -> None:
    # All-zero top-2000 (std 0, numerator 1 > 0) has probability ~1e-1200: its weight underflows to
    # 0, and 0 * inf used to give nan. Every enumerated multiset is possible: the answer is inf.
    j = np.r_[np.zeros(2000), np.ones(2000)]
    est = np.zeros(4000)
    assert sharpe_ratio_at_k(j, est, -1.0, 2000, ties="first") == math.inf
    assert sharpe_ratio_at_k(j, est, -1.0, 2000) == math.inf
    assert topk_metrics(j, est, -1.0, [2000]).sharpe_ratio[0] == math.inf
    assert math.isfinite(topk_metrics(j, est, -1.0, [2000]).std[0])


def test_monte_carlo_finds_rare_infinite_sharpe_exactly() -> None:
    # 60 tied policies, one pair of equal true values: P(that pair at k = 2) = 1 / 1770.
    rng = np.random.default_rng(10)
    j = rng.normal(size=60)
    j[1] = j[0] = abs(j[0]) + 0.1  # above J(pi_b) = 0
    est = np.zeros(60)
    (sampled,) = m._top_k_stats(j, est, [2], "average", 0.0, True, max_enumerated=0, mc_draws=10)
    (exact,) = m._top_k_stats(j, est, [2], "average", 0.0, True)
    assert sampled.sharpe == exact.sharpe == math.inf
    assert math.isfinite(sampled.std)
    # clip=False: equal pairs above and below J(pi_b) give +inf and -inf: nan on both paths
    j[3] = j[2] = -abs(j[2]) - 0.1
    (sampled,) = m._top_k_stats(j, est, [2], "average", 0.0, False, max_enumerated=0, mc_draws=10)
    (exact,) = m._top_k_stats(j, est, [2], "average", 0.0, False)
    assert math.isnan(sampled.sharpe) and math.isnan(exact.sharpe)
    # a fixed policy with the same value as r tied copies: std 0 too
    j2, est2 = np.array([2.0, 2.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.0, 0.0])
    (s,) = m._top_k_stats(j2, est2, [2], "average", 0.0, True, max_enumerated=0, mc_draws=10)
    assert s.sharpe == math.inf


def test_average_sharpe_is_inf_when_any_boundary_subset_has_zero_std() -> None:
    # two tied policies with equal true values: one of the three pairs has std 0
    j, est = np.array([3.0, 1.0, 1.0]), np.zeros(3)
    assert math.isfinite(sharpe_ratio_at_k(j, est, 0.0, 2, ties="first"))
    assert sharpe_ratio_at_k(j, est, 0.0, 2) == math.inf


def test_last_is_the_reversed_stable_ascending_sort() -> None:
    rng = np.random.default_rng(11)
    for p in (5, 17, 40, 300):  # numpy's default sort is not stable beyond 16 elements
        est = rng.integers(0, 3, p).astype(float)
        order = np.argsort(est, kind="stable")[::-1]
        for k in (1, p // 2, p):
            np.testing.assert_array_equal(top_k_indices(est, k, ties="last"), order[:k])


def test_large_tie_group_uses_monte_carlo_deterministically() -> None:
    rng = np.random.default_rng(4)
    j = rng.normal(size=30)
    est = np.zeros(30)  # C(30, 10) x 10 > MAX_ENUMERATED at k = 10: Monte Carlo
    first = topk_metrics(j, est, 0.0, [2, 10, 29])
    again = topk_metrics(j, est, 0.0, [10])
    assert again.sharpe_ratio[0] == first.sharpe_ratio[1]  # fixed seed
    assert first.mean[1] == pytest.approx(np.mean(j))  # every policy equally likely
    assert sharpe_ratio_at_k(j, est, 0.0, 10) == pytest.approx(first.sharpe_ratio[1], rel=1e-12)


# --------------------------------------------------------------------------- #
# regret with ties
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("k", "first", "last", "average"),
    [
        (1, 2.0, 0.0, 1.0),  # one of J = 0, 1, 2: E[max] = 1
        (2, 1.0, 0.0, 1 / 3),  # {0,1}: 1, {0,2}: 2, {1,2}: 2 -> E[max] = 5/3
        (3, 0.0, 0.0, 0.0),  # the whole group: no tie at the boundary
    ],
)
def test_regret_with_ties(k: int, first: float, last: float, average: float) -> None:
    j, est = [0.0, 1.0, 2.0], [5.0, 5.0, 5.0]
    assert regret_at_k(j, est, k, ties="first") == first
    assert regret_at_k(j, est, k, ties="last") == last
    assert regret_at_k(j, est, k) == pytest.approx(average, abs=1e-15)
    assert normalized_regret_at_k(j, est, k) == pytest.approx(average / 2, abs=1e-15)


# --------------------------------------------------------------------------- #
# threading through assess and the error message
# --------------------------------------------------------------------------- #
def test_assess_passes_ties() -> None:
    table = EstimateTable(
        policy_names=tuple("abcdefghij"),
        estimator_names=("Y",),
        estimates=TOY_Y[None, :],
        behavior_value=TOY_B,
    )
    expected = {"first": SR_FIRST, "last": SR_LAST, "average": (SR_FIRST + SR_LAST) / 2}
    for rule, sr in expected.items():
        result = assess(table, TOY_J, ks=[2], ties=rule)
        assert result.ties == rule
        assert result.summary.loc["Y", "sharpe_ratio@2"] == pytest.approx(sr, rel=1e-14)
    assert assess(table, TOY_J, ks=[2]).ties == "average"
    assert assess(table, TOY_J, ks=[2], ties="last").rankings["Y"][:3] == ("j", "c", "b")
    assert assess(table, TOY_J, ks=[2]).rankings["Y"][:3] == ("j", "b", "c")


@pytest.mark.parametrize(
    "call",
    [
        lambda ties: regret_at_k(TOY_J, TOY_Y, 2, ties=ties),
        lambda ties: normalized_regret_at_k(TOY_J, TOY_Y, 2, ties=ties),
        lambda ties: sharpe_ratio_at_k(TOY_J, TOY_Y, TOY_B, 2, ties=ties),
        lambda ties: topk_metrics(TOY_J, TOY_Y, TOY_B, [2], ties=ties),
        lambda ties: top_k_inclusion(TOY_Y, 2, ties=ties),
    ],
)
@pytest.mark.parametrize("bad", ["mean", "FIRST", None, 1])
def test_bad_ties_names_the_argument(call, bad) -> None:
    message = f"ties: expected one of 'first', 'last', 'average', found {bad!r}"
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        call(bad)


def test_top_k_indices_has_no_average() -> None:
    with pytest.raises(ValueError, match="^ties: expected one of 'first', 'last', found 'average'$"):
        top_k_indices(TOY_Y, 2, ties="average")  # type: ignore[arg-type]
