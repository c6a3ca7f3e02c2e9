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


@pytest.mark.parametrize("p", [7, 18])  # 18 tied of 20: some ks need Monte Carlo
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
    exact = m._top_k_stats(j, est, ks, "average", 0.0, True)
    sampled = m._top_k_stats(j, est, ks, "average", 0.0, True, max_enumerated=0, mc_draws=20_000)
    for k, a, b in zip(ks, exact, sampled):
        # best / worst by order statistics and mean by linearity: exact on both paths
        brute = _brute_force(j, est, k, 0.0)
        np.testing.assert_allclose([a.best, a.worst, a.mean], brute[:3], rtol=1e-12)
        np.testing.assert_allclose([b.best, b.worst, b.mean], brute[:3], rtol=1e-12)
        # std and SharpeRatio: enumerated = brute force; Monte Carlo within 1 % with 20,000 draws
        np.testing.assert_allclose([a.std, a.sharpe], brute[3:], rtol=1e-12)
        assert b.std == pytest.approx(a.std, rel=0.01)
        assert b.sharpe == pytest.approx(a.sharpe, rel=0.01)


def test_large_tie_group_uses_monte_carlo_deterministically() -> None:
    rng = np.random.default_rng(4)
    j = rng.normal(size=30)
    est = np.zeros(30)  # C(30, 10) > 10^4 distinct sets at k = 10
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
