"""Tests for opelab.select.metrics (hand-worked examples + one property test)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from opelab.select.metrics import (
    TopKMetrics,
    TypeErrors,
    nmse,
    normalized_regret_at_k,
    rank_correlation,
    regret_at_k,
    sharpe_ratio_at_k,
    top_k_indices,
    topk_metrics,
    type_errors,
)

# Shared running example (P = 5).
#   index:      0    1    2    3    4
J = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
J_HAT = np.array([2.0, 2.0, 5.0, 1.0, 4.0])
# Descending Ĵ: 5.0 (2), 4.0 (4), 2.0 (0), 2.0 (1), 1.0 (3); the tie 2.0 goes to index 0
# (listed first), so the full order is [2, 4, 0, 1, 3] and J along it is [2, 4, 1, 3, 5].


@contextmanager
def no_warnings() -> Iterator[None]:
    """Turn every warning (and every numpy floating-point event) into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            yield


# --------------------------------------------------------------------------- #
# top_k_indices
# --------------------------------------------------------------------------- #
def test_top_k_indices_order_and_ties() -> None:
    assert top_k_indices(J_HAT, 5).tolist() == [2, 4, 0, 1, 3]
    # k = 3 cuts inside the tie at 2.0: index 0 (listed first) wins over index 1.
    assert top_k_indices(J_HAT, 3).tolist() == [2, 4, 0]
    assert top_k_indices(J_HAT, 1).tolist() == [2]
    out = top_k_indices(J_HAT, 2)
    assert np.issubdtype(out.dtype, np.integer) and out.shape == (2,)


def test_top_k_indices_all_tied() -> None:
    # Every estimate equal -> the listed order is kept.
    assert top_k_indices([7.0, 7.0, 7.0, 7.0], 3).tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- #
# nmse
# --------------------------------------------------------------------------- #
def test_nmse_hand_example() -> None:
    # J = [1, 2, 3], Ĵ = [2, 2, 1]: squared errors 1, 0, 4 -> mean 5/3;
    # mean J² = (1 + 4 + 9)/3 = 14/3; NMSE = (5/3)/(14/3) = 5/14.
    assert nmse([1.0, 2.0, 3.0], [2.0, 2.0, 1.0]) == pytest.approx(5 / 14)
    assert nmse(J, J) == 0.0


def test_nmse_zero_true_values_is_nan() -> None:
    with no_warnings():
        assert math.isnan(nmse([0.0, 0.0], [1.0, -1.0]))


def test_nmse_large_values_no_overflow() -> None:
    # mean(J²) would overflow without rescaling; Ĵ = 2J -> NMSE = mean(J²)/mean(J²) = 1.
    with no_warnings():
        assert nmse([1e200, -1e200], [2e200, -2e200]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- #
# rank_correlation
# --------------------------------------------------------------------------- #
def test_rank_correlation_with_ties_matches_scipy() -> None:
    # J = [1, 2, 3, 4] -> ranks r = [1, 2, 3, 4]; Ĵ = [1, 1, 2, 3] -> s = [1.5, 1.5, 3, 4].
    # Centred: r - 2.5 = [-1.5, -0.5, 0.5, 1.5], s - 2.5 = [-1, -1, 0.5, 1.5].
    # Σ r s = 1.5 + 0.5 + 0.25 + 2.25 = 4.5; Σ r² = 5; Σ s² = 4.5;
    # ρ = 4.5 / sqrt(5 · 4.5) = sqrt(0.9).
    true_values = [1.0, 2.0, 3.0, 4.0]
    estimates = [1.0, 1.0, 2.0, 3.0]
    rho = rank_correlation(true_values, estimates)
    assert rho == pytest.approx(math.sqrt(0.9))
    assert rho == pytest.approx(spearmanr(true_values, estimates)[0])


def test_rank_correlation_running_example_matches_scipy() -> None:
    assert rank_correlation(J, J_HAT) == pytest.approx(spearmanr(J, J_HAT)[0])


def test_rank_correlation_perfect_and_reversed() -> None:
    assert rank_correlation([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert rank_correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("true_values", "estimates"),
    [
        ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]),  # constant estimates
        ([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]),  # constant true values
        ([1.0], [2.0]),  # P = 1
    ],
)
def test_rank_correlation_degenerate_is_nan_without_warning(
    true_values: list[float], estimates: list[float]
) -> None:
    with no_warnings():
        assert math.isnan(rank_correlation(true_values, estimates))


# --------------------------------------------------------------------------- #
# regret
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 3.0),  # top-1 = {2}: J = 2; max J = 5 -> 5 - 2 = 3
        (2, 1.0),  # top-2 = {2, 4}: best J = 4 -> 1
        (3, 1.0),  # adds index 0 (J = 1), not index 1 (tie) -> still 1
        (4, 1.0),  # adds index 1 (J = 3) -> still 1
        (5, 0.0),  # every policy, including index 3 (J = 5) -> 0
    ],
)
def test_regret_at_k(k: int, expected: float) -> None:
    assert regret_at_k(J, J_HAT, k) == expected
    # normalised by |max J| = 5
    assert normalized_regret_at_k(J, J_HAT, k) == pytest.approx(expected / 5.0)


def test_regret_tie_break_matters() -> None:
    # Ĵ ties at indices 0 and 1; J = [0, 1]: "first" chooses J = 0 at k = 1, "last" J = 1,
    # and the default "average" the mean of the two regrets, (1 + 0) / 2.
    assert regret_at_k([0.0, 1.0], [3.0, 3.0], 1, ties="first") == 1.0
    assert regret_at_k([0.0, 1.0], [3.0, 3.0], 1, ties="last") == 0.0
    assert regret_at_k([0.0, 1.0], [3.0, 3.0], 1) == 0.5


def test_normalized_regret_negative_max() -> None:
    # J = [-4, -2], Ĵ picks index 0: regret = -2 - (-4) = 2; |max J| = 2 -> 1.0
    assert normalized_regret_at_k([-4.0, -2.0], [1.0, 0.0], 1) == pytest.approx(1.0)


def test_normalized_regret_zero_max_is_nan() -> None:
    with no_warnings():
        assert math.isnan(normalized_regret_at_k([0.0, -1.0], [0.0, 1.0], 1))


# --------------------------------------------------------------------------- #
# type_errors
# --------------------------------------------------------------------------- #
def test_type_errors_hand_example() -> None:
    # threshold 2.5: truly safe (J >= 2.5) = {1, 3, 4}; estimated safe (Ĵ >= 2.5) = {2, 4}.
    # Type I  = |{1, 3}| / 3 = 2/3 (safe, estimated unsafe)
    # Type II = |{2}| / |{0, 2}| = 1/2 (unsafe, estimated safe)
    te = type_errors(J, J_HAT, 2.5)
    assert isinstance(te, TypeErrors)
    assert te.type_i == pytest.approx(2 / 3)
    assert te.type_ii == pytest.approx(1 / 2)


def test_type_errors_threshold_is_inclusive() -> None:
    # J = 2 and Ĵ = 2 with threshold 2: both safe -> no errors; no unsafe policy -> nan
    te = type_errors([2.0], [2.0], 2.0)
    assert te.type_i == 0.0
    assert math.isnan(te.type_ii)


def test_type_errors_empty_denominators() -> None:
    with no_warnings():
        all_safe = type_errors(J, J_HAT, 0.0)  # every J >= 0 -> no truly unsafe policy
        none_safe = type_errors(J, J_HAT, 10.0)  # no J >= 10 -> no truly safe policy
    assert all_safe.type_i == 0.0 and math.isnan(all_safe.type_ii)
    assert math.isnan(none_safe.type_i) and none_safe.type_ii == 0.0


def test_type_errors_is_frozen() -> None:
    te = TypeErrors(type_i=0.1, type_ii=0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        te.type_i = 0.5  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# topk_metrics
# --------------------------------------------------------------------------- #
def test_topk_metrics_hand_example() -> None:
    # The running example ties Ĵ at indices 0 and 1 across the k = 3 boundary, so this hand
    # computation fixes the rule "first" (index 0, J = 1, fills the third slot); the default
    # "average" is checked in test_ties.py.
    # J along the Ĵ order: [2, 4, 1, 3, 5]; behavior value 2.5.
    # k=1: {2}            best 2 worst 2 mean 2   std nan           SR nan
    # k=2: {2, 4}         best 4 worst 2 mean 3   std sqrt(2)       SR 1.5/sqrt(2)
    # k=3: {2, 4, 1}      best 4 worst 1 mean 7/3 std sqrt(42/9/2)  SR 1.5/sqrt(7/3)
    # k=4: {2, 4, 1, 3}   best 4 worst 1 mean 2.5 std sqrt(5/3)     SR 1.5/sqrt(5/3)
    # k=5: all            best 5 worst 1 mean 3   std sqrt(10/4)    SR 2.5/sqrt(2.5)
    with no_warnings():
        m = topk_metrics(J, J_HAT, 2.5, [1, 2, 3, 4, 5], ties="first")
    assert isinstance(m, TopKMetrics)
    assert m.ks.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(m.best, [2.0, 4.0, 4.0, 4.0, 5.0])
    np.testing.assert_array_equal(m.worst, [2.0, 2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(m.mean, [2.0, 3.0, 7 / 3, 2.5, 3.0])
    np.testing.assert_allclose(
        m.std, [np.nan, math.sqrt(2), math.sqrt(7 / 3), math.sqrt(5 / 3), math.sqrt(2.5)]
    )
    np.testing.assert_allclose(
        m.sharpe_ratio,
        [np.nan, 1.5 / math.sqrt(2), 1.5 / math.sqrt(7 / 3), 1.5 / math.sqrt(5 / 3), math.sqrt(2.5)],
    )
    for k, sr in zip([2, 3, 4, 5], m.sharpe_ratio[1:]):
        assert sharpe_ratio_at_k(J, J_HAT, 2.5, k, ties="first") == pytest.approx(sr)


def test_topk_metrics_keeps_ks_order_and_to_pandas() -> None:
    m = topk_metrics(J, J_HAT, 2.5, (5, 2))
    assert m.ks.tolist() == [5, 2]
    np.testing.assert_array_equal(m.best, [5.0, 4.0])
    df = m.to_pandas()
    assert list(df.columns) == ["k", "best", "worst", "mean", "std", "sharpe_ratio"]
    assert df["k"].tolist() == [5, 2]
    np.testing.assert_allclose(df["sharpe_ratio"], m.sharpe_ratio)


def test_topk_metrics_is_immutable() -> None:
    m = topk_metrics(J, J_HAT, 2.5, [1, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.best = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError):
        m.best[0] = 0.0


# --------------------------------------------------------------------------- #
# sharpe_ratio_at_k conventions
# --------------------------------------------------------------------------- #
def test_sharpe_k1_is_nan() -> None:
    with no_warnings():
        assert math.isnan(sharpe_ratio_at_k(J, J_HAT, 0.0, 1))


def test_sharpe_zero_std_positive_numerator_is_inf() -> None:
    # Ĵ picks indices 0, 1 with J = 0.1, 0.1 (identical): std@2 = 0; numerator 0.1 - 0 > 0.
    # (0.1 is chosen so that a naive mean/std could leave round-off; result must be inf.)
    with no_warnings():
        assert sharpe_ratio_at_k([0.1, 0.1, 5.0], [2.0, 1.0, 0.0], 0.0, 2) == math.inf
        m = topk_metrics([0.1, 0.1, 0.1, 5.0], [3.0, 2.0, 1.0, 0.0], 0.0, [3])
    assert m.std[0] == 0.0 and m.sharpe_ratio[0] == math.inf


def test_sharpe_zero_numerator_is_zero() -> None:
    with no_warnings():
        # best@2 = 3 = behavior value, std@2 = 0 -> 0.0 (not nan)
        assert sharpe_ratio_at_k([3.0, 3.0, 0.0], [2.0, 1.0, 0.0], 3.0, 2) == 0.0
        # best@2 = 3 = behavior value, std@2 = sqrt(2) > 0 -> 0.0
        assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 3.0, 2) == 0.0
        assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 3.0, 2, clip=False) == 0.0


def test_sharpe_negative_numerator_clip() -> None:
    # top-2 J = {3, 1}: best 3, std sqrt(((3-2)² + (1-2)²)/1) = sqrt(2); behavior 5.
    # clip=True: max(3 - 5, 0) / sqrt(2) = 0.0;  clip=False: -2 / sqrt(2) = -sqrt(2).
    with no_warnings():
        assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 5.0, 2) == 0.0
        assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 5.0, 2, clip=False) == (
            pytest.approx(-math.sqrt(2))
        )


def test_sharpe_zero_std_negative_numerator() -> None:
    # top-2 J = {3, 3}, behavior 5: clip -> 0.0; no clip -> -2 / 0 = -inf.
    with no_warnings():
        assert sharpe_ratio_at_k([3.0, 3.0, 0.0], [2.0, 1.0, 0.0], 5.0, 2) == 0.0
        assert sharpe_ratio_at_k([3.0, 3.0, 0.0], [2.0, 1.0, 0.0], 5.0, 2, clip=False) == -math.inf


def test_sharpe_positive_numerator() -> None:
    # top-2 J = {3, 1}: (3 - 1) / sqrt(2) = sqrt(2), clip irrelevant.
    assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 1.0, 2) == pytest.approx(math.sqrt(2))
    assert sharpe_ratio_at_k([3.0, 1.0, 0.0], [2.0, 1.0, 0.0], 1.0, 2, clip=False) == pytest.approx(
        math.sqrt(2)
    )


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
ALL_PAIR_FUNCS: list[Callable[[Any, Any], Any]] = [
    nmse,
    rank_correlation,
    lambda t, e: regret_at_k(t, e, 1),
    lambda t, e: normalized_regret_at_k(t, e, 1),
    lambda t, e: type_errors(t, e, 0.0),
    lambda t, e: topk_metrics(t, e, 0.0, [1]),
    lambda t, e: sharpe_ratio_at_k(t, e, 0.0, 1),
]
FUNC_IDS = ["nmse", "rank", "regret", "nregret", "type", "topk", "sharpe"]


@pytest.mark.parametrize("func", ALL_PAIR_FUNCS, ids=FUNC_IDS)
def test_shape_mismatch(func: Callable[[Any, Any], Any]) -> None:
    msg = r"estimates: expected a 1-D array of the same length as true_values \(5\), found shape \(4,\)"
    with pytest.raises(ValueError, match=msg):
        func(J, J_HAT[:4])


@pytest.mark.parametrize("func", ALL_PAIR_FUNCS, ids=FUNC_IDS)
def test_nan_and_inf(func: Callable[[Any, Any], Any]) -> None:
    bad = J.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"true_values: .*finite.*index 2"):
        func(bad, J_HAT)
    bad_est = J_HAT.copy()
    bad_est[3] = np.inf
    with pytest.raises(ValueError, match=r"estimates: .*finite.*index 3"):
        func(J, bad_est)


@pytest.mark.parametrize("func", ALL_PAIR_FUNCS, ids=FUNC_IDS)
def test_empty_and_not_1d(func: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(ValueError, match=r"true_values: expected a non-empty 1-D array, found shape \(0,\)"):
        func([], [])
    with pytest.raises(ValueError, match=r"true_values: .*found shape \(2, 2\)"):
        func([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"estimates: .*found shape \(2, 2\)"):
        func([1.0, 2.0], [[1.0, 2.0], [3.0, 4.0]])


def test_top_k_indices_validation() -> None:
    with pytest.raises(ValueError, match=r"estimates: expected a non-empty 1-D array"):
        top_k_indices([], 1)
    with pytest.raises(ValueError, match=r"estimates: .*index 1"):
        top_k_indices([1.0, np.nan], 1)
    with pytest.raises(ValueError, match=r"estimates: .*cannot be converted"):
        top_k_indices(["a", "b"], 1)


@pytest.mark.parametrize("k", [0, -1, 6, 2.0, True, "1"])
def test_bad_k(k: Any) -> None:
    for call in (
        lambda: top_k_indices(J_HAT, k),
        lambda: regret_at_k(J, J_HAT, k),
        lambda: normalized_regret_at_k(J, J_HAT, k),
        lambda: sharpe_ratio_at_k(J, J_HAT, 0.0, k),
    ):
        with pytest.raises(ValueError, match=r"k: expected an integer in 1\.\.5"):
            call()


def test_numpy_integer_k_accepted() -> None:
    assert regret_at_k(J, J_HAT, np.int64(2)) == 1.0


@pytest.mark.parametrize(
    ("ks", "pattern"),
    [
        ([1, 2, 2], r"ks: expected distinct values, found duplicate 2"),
        ([], r"ks: expected a non-empty"),
        ([0, 1], r"ks\[0\]: expected an integer in 1\.\.5, found 0"),
        ([1, 6], r"ks\[1\]: expected an integer in 1\.\.5, found 6"),
        ([1.5], r"ks\[0\]: expected an integer"),
        (3, r"ks: expected an iterable"),
        ("12", r"ks: expected an iterable"),
    ],
)
def test_bad_ks(ks: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        topk_metrics(J, J_HAT, 0.0, ks)


@pytest.mark.parametrize("value", [np.nan, np.inf, "1.0", None, True])
def test_bad_scalars(value: Any) -> None:
    with pytest.raises(ValueError, match=r"behavior_value: expected a finite real number"):
        sharpe_ratio_at_k(J, J_HAT, value, 2)
    with pytest.raises(ValueError, match=r"behavior_value: expected a finite real number"):
        topk_metrics(J, J_HAT, value, [2])
    with pytest.raises(ValueError, match=r"threshold: expected a finite real number"):
        type_errors(J, J_HAT, value)


# --------------------------------------------------------------------------- #
# property test
# --------------------------------------------------------------------------- #
_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_pairs = st.integers(min_value=1, max_value=10).flatmap(
    lambda n: st.tuples(
        st.lists(_finite, min_size=n, max_size=n), st.lists(_finite, min_size=n, max_size=n)
    )
)


@settings(max_examples=100, deadline=None)
@given(_pairs)
def test_properties(pair: tuple[list[float], list[float]]) -> None:
    true_values = np.array(pair[0])
    estimates = np.array(pair[1])
    p = true_values.shape[0]
    ks = list(range(1, p + 1))

    regrets = np.array([regret_at_k(true_values, estimates, k) for k in ks])
    assert np.all(regrets >= 0.0)
    assert np.all(np.diff(regrets) <= 0.0)
    assert regrets[-1] == 0.0

    m = topk_metrics(true_values, estimates, 0.0, ks)
    assert np.all(np.diff(m.best) >= 0.0)
    assert np.all(np.diff(m.worst) <= 0.0)

    for k in ks:
        assert regret_at_k(true_values, true_values, k) == 0.0
    if p >= 2 and np.unique(true_values).shape[0] == p:
        assert rank_correlation(true_values, true_values) == pytest.approx(1.0)
