"""SLOPE (Su, Srinath & Krishnamurthy, ICML 2020): the rule on hand-built families, the standard families' order,
the errors, the ``slope`` point estimator's contract, and a one-step bandit with exact truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opelab.envs import bandit_inputs, make
from opelab.ope import EstimateTable, OPEInput, OPEInputError, evaluate, get_estimator
from opelab.ope.estimators import EstimationContext
from opelab.ope.intervals import bootstrap_counts
from opelab.select.slope import SlopeEstimator, lepski_pick, slope, slope_family, slope_from_table


def hand_table(estimates, widths, names=None) -> EstimateTable:
    """An ``EstimateTable`` whose member e has estimate V̂[e, p] and interval V̂ ± w[e, p] (half-width w)."""
    v, w = np.asarray(estimates, dtype=float), np.asarray(widths, dtype=float)
    names = names or tuple(f"m{i + 1}" for i in range(len(v)))
    policies = tuple(f"p{j}" for j in range(v.shape[1]))
    return EstimateTable(policies, tuple(names), v, 0.0, lower=v - w, upper=v + w, interval="t", alpha=0.05)


# --------------------------------------------------------------------------------------- the rule by hand


def test_negligible_widths_pick_the_least_biased_member():
    """Truth 0.5 and bias growing along the family, widths 1e-9: the intervals are points, so SLOPE keeps the
    first member (policy p0) or the last of the unbiased ones (policy p1: m1 and m2 both have bias 0)."""
    truth = 0.5
    v = truth + np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.3], [0.4, 0.6]])
    result = slope_from_table(hand_table(v, np.full((4, 2), 1e-9)))
    assert result.chosen_names == ("m1", "m2")
    np.testing.assert_allclose(result.estimates, [truth, truth])


def test_unbiased_members_pick_the_narrowest():
    """Every member unbiased, each estimate within its own half-width of the truth: the truth lies in every
    V̂ ± 2w, so no interval is ever missed and SLOPE reaches the last, narrowest member."""
    truth = 1.0
    w = np.array([[1.0, 0.8], [0.5, 0.4], [0.25, 0.2], [0.1, 0.05]])
    signs = np.array([[1, -1], [-1, 1], [1, 1], [-1, -1]])
    result = slope_from_table(hand_table(truth + 0.9 * signs * w, w))
    assert result.chosen_names == ("m4", "m4")
    assert result.widths_decrease.all()
    assert (result.low <= truth).all() and (truth <= result.high).all()


def test_the_order_and_intersection_rule_on_four_members():
    """By hand. p0: I(1) = [0, 4], I(2) = [1.5, 3.5] -> [1.5, 3.5]; I(3) = [2.7, 3.7] -> [2.7, 3.5]; I(4) = [3.6, 4.0]
    meets I(3) but not I(2) (3.6 > 3.5), so the common part is empty: pick m3.
    p1: I(1) = [0, 4], I(2) = [1.5, 3.5], I(3) = [0.5, 1.5] -> [1.5, 1.5] (touching ends meet), and I(4) = [0.8, 1.2]
    misses the point 1.5: pick m3 with the common part [1.5, 1.5].
    p2: I(2) = [5, 6] misses I(1) = [0, 4]: pick m1, whatever comes later (I(3), I(4) inside I(1))."""
    v = np.array([[2.0, 2.0, 2.0], [2.5, 2.5, 5.5], [3.2, 1.0, 2.0], [3.8, 1.0, 2.0]])
    w = np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 0.25], [0.25, 0.25, 0.25], [0.1, 0.1, 0.1]])
    result = slope_from_table(hand_table(v, w))
    assert result.chosen_names == ("m3", "m3", "m1")
    np.testing.assert_allclose(result.low, [2.7, 1.5, 0.0])
    np.testing.assert_allclose(result.high, [3.5, 1.5, 4.0])
    np.testing.assert_allclose(result.estimates, [3.2, 1.0, 2.0])
    assert result.reasons[0].startswith("picked m3, member 3 of 4: the intervals V̂ ± 2w of members 1-3 share [2.7, 3.5]")
    assert "member 4 (m4, [3.6, 4]) misses" in result.reasons[0]
    assert "member 2 (m2, [5, 6]) misses" in result.reasons[2]
    frame = result.to_pandas()
    assert list(frame.columns) == ["policy", "position", "member", "estimate", "lower", "upper", "width", "chosen"]
    assert frame.groupby("policy")["chosen"].sum().tolist() == [1, 1, 1]
    assert frame.loc[frame.chosen, "member"].tolist() == ["m3", "m3", "m1"]
    # the same rule as an array function: all four members meet when the fourth moves to 3.4
    picked, low, high = lepski_pick(np.array([2.0, 2.5, 3.2, 3.4]), np.array([1.0, 0.5, 0.25, 0.1]))
    assert picked == 3 and (low, high) == pytest.approx((3.2, 3.5))


def test_a_full_intersection_reason_and_infinite_widths():
    """An infinite width meets everything (an unbounded first interval constrains nothing)."""
    v = np.array([[100.0], [1.0], [1.1]])
    w = np.array([[math.inf], [0.2], [0.1]])
    result = slope_from_table(hand_table(v, w))
    assert result.chosen_names == ("m3",)
    assert result.reasons[0] == "picked m3, the last of 3 members: all 3 intervals V̂ ± 2w share [0.9, 1.3]."


def test_auto_order_sorts_by_width_widest_first():
    """The four-member family of the hand example, rows shuffled: ``order="auto"`` recovers the pick; the given
    (shuffled) order scans another sequence, says that its widths do not decrease, and picks differently."""
    v = np.array([[2.0], [2.5], [3.2], [3.8]])
    w = np.array([[1.0], [0.5], [0.25], [0.1]])
    shuffle = [2, 0, 3, 1]
    names = tuple(f"m{i + 1}" for i in shuffle)
    auto = slope_from_table(hand_table(v[shuffle], w[shuffle], names), order="auto")
    assert auto.chosen_names == ("m3",) and auto.widths_decrease.all()
    assert [names[i] for i in auto.order[0]] == ["m1", "m2", "m3", "m4"]
    given = slope_from_table(hand_table(v[shuffle], w[shuffle], names))
    assert not given.widths_decrease.any()
    assert given.reasons[0].endswith("though the measured widths do not decrease along this order.")
    # scan m3 [2.7, 3.7], m1 [0, 4] -> [2.7, 3.7], m4 [3.6, 4.0] -> [3.6, 3.7], m2 [1.5, 3.5] misses: pick m4
    assert given.chosen_names == ("m4",)


def test_monotone_widths_take_the_largest_later_width():
    """w = (1, 0.1, 0.5), enforced to (1, 0.5, 0.5). Measured: I(1) = [0, 4], I(2) = [3.3, 3.7], and I(3) = [1, 3]
    misses it: m2. Enforced: I(2) = [2.5, 4.5] -> [2.5, 4], I(3) = [1, 3] -> [2.5, 3]: m3."""
    v = np.array([[2.0], [3.5], [2.0]])
    w = np.array([[1.0], [0.1], [0.5]])
    assert slope_from_table(hand_table(v, w)).chosen_names == ("m2",)
    enforced = slope_from_table(hand_table(v, w), monotone_widths=True)
    np.testing.assert_allclose(enforced.widths[:, 0], [1.0, 0.5, 0.5])
    assert enforced.chosen_names == ("m3",)


# ------------------------------------------------------------------------------------------------ families


def test_slope_family_orders_each_standard_family():
    assert [e.name for e in slope_family(("dr", "lambda_"), [1, 10, math.inf, 100])] == [
        "dr", "dr(lambda_=100.0)", "dr(lambda_=10.0)", "dr(lambda_=1.0)",
    ]  # fmt: skip
    assert [e.lambda_ for e in slope_family("switch_dr", [0, 5, 50])] == [50.0, 5.0, 0.0]
    assert [e.lambda_ for e in slope_family("dr_os", [3, 300])] == [300.0, 3.0]
    assert [e.lambda_ for e in slope_family("sg_dr", [1.0, 0.0, 0.1])] == [0.0, 0.1, 1.0]
    assert [e.name for e in slope_family(("sam_dr", "k"), [0, 2, 1])] == ["sam_dr@2", "sam_dr@1", "sam_dr@0"]


@pytest.mark.parametrize(
    ("kind", "grid", "match"),
    [
        ("dm", [1, 2], "kind: expected one of"),
        (("dr", "k"), [1, 2], "runs over 'lambda_', found option 'k'"),
        ("dr", [10.0], "at least 2 distinct lambda_ values"),
        ("dr", [10.0, 10], "at least 2 distinct"),
        ("dr", "10", "expected a list of lambda_ values"),
        ("dr", [1.0, float("nan")], "expected numbers"),
        ("sam_dr", [0, 1.5], "non-negative ints"),
        ("ipw", [1.0, -1.0], "lambda_"),  # the estimator's own check
    ],
)
def test_slope_family_refuses_bad_kinds_and_grids(kind, grid, match):
    with pytest.raises(ValueError, match=match):
        slope_family(kind, grid)


# -------------------------------------------------------------------------------------- a one-step bandit


@pytest.fixture(scope="module")
def bandit():
    task = make("bandit")
    policies = task.candidates(epsilons=(0.0, 0.3), temperatures=(0.5,), adversarial_epsilons=(0.5,))
    ds = task.collect(task.behavior_policy(), 2000, seed=1)
    return task, policies, ds, bandit_inputs(task, ds, policies)


def clipped_ipw_expectations(task, policies, lambdas) -> np.ndarray:
    """E[V̂] of ipw at each clipping λ, exactly: Σ_x p(x) Σ_a π_b(a|x) min(π_e(a|x) / π_b(a|x), λ) q(x, a); (M, P)."""
    behavior = task.policy_table(task.behavior_policy())  # (K, A)
    out = np.empty((len(lambdas), len(policies)))
    for p, policy in enumerate(policies):
        ratio = task.policy_table(policy) / behavior
        for m, lam in enumerate(lambdas):
            out[m, p] = task.context_probs @ (behavior * np.minimum(ratio, lam) * task.q_table).sum(axis=1)
    return out


def test_slope_on_a_clipping_grid_is_within_six_widths_of_the_truth(bandit):
    """Clipped IPW at λ = ∞ ... 0.3 on 2000 rounds, t intervals at α = 0.01 with enforced monotone widths.

    Exact truth and exact member means E[V̂_m] give each member's bias B_m = V − E[V̂_m] ≥ 0 (growing as λ falls,
    rewards being non-negative). At this seed every member's estimate lies within its half-width of its mean
    (checked: the event of the module docstring), so for i₀ the last member with B ≤ w, SLOPE's error is at most
    6 w_{i₀}; and, whatever the event, the pick's interval meets the unclipped member's, so its error is at most
    that member's error + 2 w_1 + 2 w_pick. It never exceeds the worst member's error (it is a member)."""
    task, policies, ds, inputs = bandit
    lambdas = [math.inf, 100.0, 30.0, 10.0, 3.0, 1.0, 0.3]
    family = slope_family("ipw", lambdas)
    result = slope(ds, inputs, family, interval="t", alpha=0.01, monotone_widths=True)
    truth = task.policy_values(policies)
    means = clipped_ipw_expectations(task, policies, lambdas)
    np.testing.assert_allclose(means[0], truth, rtol=1e-12)  # λ = ∞ is unbiased
    w = result.widths  # (M, P), non-increasing down the rows
    assert (np.diff(w, axis=0) <= 0).all()
    assert (np.abs(result.table.estimates - means) <= w).all(), "the coverage event fails at this seed"
    bias = truth - means
    assert (bias >= -1e-12).all() and (np.diff(bias, axis=0) >= -1e-12).all()
    columns = np.arange(len(policies))
    i0 = np.array([np.flatnonzero(bias[:, p] <= w[:, p]).max() for p in columns])
    error = np.abs(result.estimates - truth)
    assert (error <= 6 * w[i0, columns]).all(), (error, 6 * w[i0, columns])
    first = np.abs(result.table.estimates[0] - truth)
    assert (error <= first + 2 * w[0] + 2 * w[result.chosen, columns] + 1e-12).all()
    assert (error <= np.abs(result.table.estimates - truth).max(axis=0)).all()
    assert (result.chosen >= i0).all()  # SLOPE goes at least as far as i₀ on the event
    assert result.chosen.max() > 0  # it leaves the unclipped member for some policy


def test_slope_with_bootstrap_intervals_and_auto_order(bandit):
    """A Switch-DR grid handed over shuffled, percentile-bootstrap intervals: ``order="auto"`` scans each policy's
    members widest first, and the result's estimates are the picked rows of its table."""
    task, policies, ds, inputs = bandit
    family = slope_family("switch_dr", [math.inf, 30.0, 10.0, 3.0, 1.0, 0.0])
    shuffled = [family[i] for i in (3, 0, 5, 1, 4, 2)]
    result = slope(ds, inputs, shuffled, interval="bootstrap", n_bootstrap=50, seed=2, order="auto")
    assert result.table.interval == "bootstrap" and result.member_names == tuple(e.name for e in shuffled)
    for p in range(len(policies)):
        assert (np.diff(result.widths[result.order[p], p]) <= 0).all()
    np.testing.assert_array_equal(result.estimates, result.table.estimates[result.chosen, np.arange(len(policies))])
    assert len(result.reasons) == len(policies) and all(r.startswith("picked switch_dr") for r in result.reasons)


# ------------------------------------------------------------------------------------------------- errors


def test_slope_refuses_small_families_unknown_methods_and_members_that_cannot_run(bandit):
    task, policies, ds, inputs = bandit
    with pytest.raises(ValueError, match=r"family: expected at least 2 estimators to choose from, found 1 \(\['ipw'\]\)"):
        slope(ds, inputs, ["ipw"])
    with pytest.raises(ValueError, match="family: expected a list of estimator names or instances"):
        slope(ds, inputs, "ipw")
    with pytest.raises(ValueError, match=r"interval: expected one of \['bootstrap', 't', 'hoeffding', 'bernstein'\], found 'wald'"):
        slope(ds, inputs, ["ipw", "dm"], interval="wald")
    with pytest.raises(ValueError, match="order: expected one of"):
        slope(ds, inputs, ["ipw", "dm"], order="by_bias")
    no_model = bandit_inputs(task, ds, policies, q_model=None)
    with pytest.raises(OPEInputError, match=r"family\[1\] switch_dr\(lambda_=10.0\): needs q_hat, v_hat in the OPEInput, found None"):
        slope(ds, no_model, slope_family("switch_dr", [math.inf, 10.0]))
    with pytest.raises(OPEInputError, match=r"family\[0\] sips: expected slate data, found bandit"):
        slope(ds, inputs, ["sips", "ipw"])
    with pytest.raises(ValueError, match="table: SLOPE needs intervals"):
        slope_from_table(evaluate(ds, inputs, ["ipw", "dm"]))
    with pytest.raises(ValueError, match="interval widths: expected finite values and lower <= upper, found -0.5 for m2 on policy p0"):
        slope_from_table(hand_table([[1.0], [1.0]], [[1.0], [-0.5]]))


# ------------------------------------------------------------------------------------ the point estimator


def test_the_slope_estimator_is_the_t_interval_pick_of_its_family(bandit):
    task, policies, ds, inputs = bandit
    estimator = get_estimator("slope", base="dr", grid=[math.inf, 30.0, 3.0, 0.3])
    assert estimator.name == "slope(base='dr', grid=(inf, 30.0, 3.0, 0.3))"
    assert estimator.requires == ("q_hat", "v_hat") and get_estimator("slope").requires == ()
    picked = slope(ds, inputs, estimator.members, interval="t", alpha=0.05)
    table = evaluate(ds, inputs, [estimator], interval="t")
    np.testing.assert_allclose(table.estimates[0], picked.estimates, rtol=1e-12)
    # its t interval is the picked member's
    np.testing.assert_allclose(table.lower[0], picked.table.lower[picked.chosen, np.arange(len(policies))], rtol=1e-12)


def test_the_slope_estimator_redoes_the_pick_on_every_resample(bandit):
    """``resampled_estimates`` equals SLOPE run on the explicitly resampled log, resample by resample."""
    task, policies, ds, inputs = bandit
    estimator = SlopeEstimator(grid=(math.inf, 10.0, 3.0, 1.0, 0.3))
    ctx = EstimationContext(ds, inputs)
    counts = np.concatenate(list(bootstrap_counts(ds.n_trajectories, 6, seed=3)))
    fast = estimator.resampled_estimates(ctx, counts)  # (P, B)
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(ds.n_trajectories), row.astype(np.int64))
        sub = OPEInput(policy_names=inputs.policy_names, eval_pscore=inputs.eval_pscore[:, idx])
        np.testing.assert_allclose(fast[:, b], evaluate(ds.subset(idx), sub, [estimator]).estimates[0], rtol=1e-10)
    np.testing.assert_allclose(estimator.resampled_estimates(ctx, np.ones((1, ds.n_trajectories)))[:, 0], estimator.estimate(ctx), rtol=1e-12)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"base": "snipw"}, "base: expected one of"),
        ({"base": "sam_sndr", "grid": (0, 1)}, "self-normalised 'sam_sndr'"),
        ({"base": "sam_dr"}, "no default grid"),
        ({"grid": (1.0,)}, "at least 2 distinct"),
        ({"alpha": 1.5}, r"alpha: expected a float in \(0, 1\)"),
    ],
)
def test_the_slope_estimator_refuses_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_estimator("slope", **options)
