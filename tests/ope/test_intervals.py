"""Confidence intervals: closed forms, bootstrap resampling against explicit resamples, and coverage of
the exact value over many datasets of a tabular task."""

from __future__ import annotations

import numpy as np
import pytest
from ope_cases import policies_for, small_task
from scipy import stats

from opelab.data import LoggedDataset
from opelab.envs import TabularMDP, collect
from opelab.ope import ESTIMATORS, OPEInput, build_inputs, evaluate, get_estimator
from opelab.ope.estimators.base import applicable
from opelab.ope.estimators import EstimationContext
from opelab.ope.intervals import IntervalSpec, bootstrap_counts, mean_interval
from opelab.policies import SoftmaxPolicy, TabularQ

TRAJECTORY_ESTIMATORS = sorted(applicable("trajectories", "discrete"))  # the cases here are discrete trajectories
# those whose estimate on a resample is the estimator rerun on it (not opera: its weights are fitted once)
RESAMPLE_EXACT = [name for name in TRAJECTORY_ESTIMATORS if ESTIMATORS[name].resample_exact]


def _resample(ds: LoggedDataset, inputs: OPEInput, idx: np.ndarray) -> tuple[LoggedDataset, OPEInput]:
    """The dataset and inputs restricted to trajectories ``idx`` (with repeats), built explicitly."""
    pick = lambda a: None if a is None else np.asarray(a)[idx]  # noqa: E731
    pick_p = lambda a: None if a is None else np.asarray(a)[:, idx]  # noqa: E731
    sub = LoggedDataset(
        observations=pick(ds.observations),
        actions=pick(ds.actions),
        rewards=pick(ds.rewards),
        terminals=pick(ds.terminals),
        mask=pick(ds.mask),
        behavior_pscore=pick(ds.behavior_pscore),
        behavior_action_probs=pick(ds.behavior_action_probs),
        info=ds.info,
    )
    sub_inputs = OPEInput(
        policy_names=inputs.policy_names,
        eval_pscore=pick_p(inputs.eval_pscore),
        q_hat=pick_p(inputs.q_hat),
        v_hat=pick_p(inputs.v_hat),
        initial_v_hat=pick_p(inputs.initial_v_hat),
        state_marginal_weights=pick_p(inputs.state_marginal_weights),
        marginal_weights=pick_p(inputs.marginal_weights),
        cross_fit_folds=inputs.cross_fit_folds,
    )
    return sub, sub_inputs


@pytest.mark.parametrize("name", RESAMPLE_EXACT)
def test_resampled_estimates_equal_estimates_on_explicit_resamples(name, variable_length_case):
    """The count-weighted bootstrap shortcut (incl. renormalisation for SN estimators) is exact."""
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, n_folds=2)  # cross-fitted, so that drl runs too
    est = get_estimator(name)
    ctx = EstimationContext(ds, inputs)
    n = ds.n_trajectories
    np.testing.assert_allclose(est.resampled_estimates(ctx, np.ones((1, n)))[:, 0], est.estimate(ctx), rtol=1e-12, atol=1e-14)
    rng = np.random.default_rng(5)
    for _ in range(3):
        idx = rng.integers(0, n, n)
        counts = np.bincount(idx, minlength=n)[None, :].astype(float)
        sub, sub_inputs = _resample(ds, inputs, idx)
        want = est.estimate(EstimationContext(sub, sub_inputs))
        np.testing.assert_allclose(est.resampled_estimates(ctx, counts)[:, 0], want, rtol=1e-10, atol=1e-12)


def test_bootstrap_counts_are_multinomial_resamples_and_reproducible():
    chunks = list(bootstrap_counts(50, 30, seed=1))
    counts = np.concatenate(chunks)
    assert counts.shape == (30, 50) and (counts.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(counts, np.concatenate(list(bootstrap_counts(50, 30, seed=1))))
    assert not np.array_equal(counts, np.concatenate(list(bootstrap_counts(50, 30, seed=2))))


def test_closed_forms_on_a_hand_sample():
    x = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])  # mean 2, s² = 2.5, n = 5
    alpha = 0.1
    lo, hi = mean_interval(x, "t", alpha)
    half = stats.t.ppf(0.95, 4) * np.sqrt(2.5 / 5)
    np.testing.assert_allclose([lo[0], hi[0]], [2 - half, 2 + half])
    lo, hi = mean_interval(x, "hoeffding", alpha, value_range=(0.0, 10.0))
    half = 10.0 * np.sqrt(np.log(2 / alpha) / 10)
    np.testing.assert_allclose([lo[0], hi[0]], [2 - half, 2 + half])
    lo, hi = mean_interval(x, "bernstein", alpha, value_range=(-1.0, 5.0))
    L = np.log(4 / alpha)
    half = np.sqrt(2 * 2.5 * L / 5) + 7 * 6.0 * L / (3 * 4)
    np.testing.assert_allclose([lo[0], hi[0]], [2 - half, 2 + half])
    # Without a range, the observed range (4) stands in.
    lo, hi = mean_interval(x, "hoeffding", alpha)
    np.testing.assert_allclose(hi[0] - 2, 4.0 * np.sqrt(np.log(2 / alpha) / 10))


def test_hoeffding_width_shrinks_as_one_over_root_n():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (100, 400, 1600):
        lo, hi = mean_interval(rng.uniform(0, 1, (1, n)), "hoeffding", 0.05, value_range=(0.0, 1.0))
        widths[n] = (hi - lo)[0]
    assert widths[100] / widths[400] == pytest.approx(2.0, rel=1e-12)
    assert widths[400] / widths[1600] == pytest.approx(2.0, rel=1e-12)


def test_interval_errors(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    with pytest.raises(ValueError, match="interval: expected one of"):
        evaluate(ds, inputs, ["tis"], interval="wald")
    with pytest.raises(ValueError, match="alpha"):
        evaluate(ds, inputs, ["tis"], interval="t", alpha=1.5)
    with pytest.raises(ValueError, match=r"value_range: expected every per-trajectory value of tis in \[0.0, 0.001\]"):
        evaluate(ds, inputs, ["tis"], interval="hoeffding", value_range=(0.0, 0.001))
    with pytest.raises(ValueError, match="n_bootstrap"):
        IntervalSpec("bootstrap", n_bootstrap=1)


def test_table_carries_bounds(variable_length_case):
    task, _, evals, ds = variable_length_case
    table = evaluate(ds, build_inputs(ds, evals), ["pdis", "sndr"], interval="bootstrap", n_bootstrap=200, alpha=0.1)
    frame = table.to_pandas()
    assert list(frame.columns) == ["policy", "estimator", "estimate", "lower", "upper"]
    assert (frame.lower <= frame.upper).all()
    assert table.interval == "bootstrap" and table.alpha == 0.1
    lo, hi = table.bounds("sndr")
    assert lo.shape == (len(evals),)
    with pytest.raises(ValueError, match="no intervals"):
        evaluate(ds, build_inputs(ds, evals), ["pdis"]).bounds("pdis")
    same = evaluate(ds, build_inputs(ds, evals), ["pdis", "sndr"], interval="bootstrap", n_bootstrap=200, alpha=0.1)
    np.testing.assert_array_equal(table.lower, same.lower)  # the seed fixes the resamples


def _coverage_case() -> tuple[TabularMDP, object, list, np.ndarray, float]:
    """Noise-free rewards in [0, 1] and evaluation policies close to the behavior policy, so that an
    a-priori bound on the per-trajectory values exists: 0 ≤ X_i ≤ Σ_t γ^t ρ^{t+1}, ρ = max π_e/π_b."""
    task = TabularMDP.random(5, 3, horizon=4, gamma=0.9, seed=21, n_terminal=1)
    q = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q, 1.0, name="behavior")
    evals = [SoftmaxPolicy(q, 0.8, name="cooler"), SoftmaxPolicy(q, 1.25, name="warmer")]
    b = task.policy_table(behavior)
    rho = max(float((task.policy_table(p) / b).max()) for p in evals)
    top = sum(task.gamma**t * rho ** (t + 1) for t in range(task.horizon))
    return task, behavior, evals, task.policy_values(evals), top


@pytest.mark.statistical
def test_coverage_over_1000_datasets():
    """Nominal 95% intervals cover the exact value: t and bootstrap in [93%, 97%] over 1000 datasets (the
    binomial SE is 0.69%, so the band is ±2.9 SE), Hoeffding and Bernstein (a-priori range) at least 95%."""
    task, behavior, evals, truth, top = _coverage_case()
    n_datasets, n = 1000, 300
    names = ["tis", "pdis"]
    zero_q = [np.zeros((task.n_states, task.n_actions))] * len(evals)
    covered = {m: np.zeros((len(names), len(evals))) for m in ("t", "bootstrap", "hoeffding", "bernstein")}
    for d in range(n_datasets):
        ds = collect(task, behavior, n, seed=10_000 + d)
        inputs = build_inputs(ds, evals, q_tables=zero_q)
        for method in covered:
            table = evaluate(ds, inputs, names, interval=method, n_bootstrap=300, seed=d, value_range=(0.0, top))
            covered[method] += (table.lower <= truth) & (truth <= table.upper)
    rates = {m: c / n_datasets for m, c in covered.items()}
    for method in ("t", "bootstrap"):
        assert ((0.93 <= rates[method]) & (rates[method] <= 0.97)).all(), f"{method}: {rates[method]}"
    for method in ("hoeffding", "bernstein"):
        assert (rates[method] >= 0.95).all(), f"{method}: {rates[method]}"


def _one_state_case(n: int, seed: int):
    """One state, one step, rewards (0, 1) for actions (0, 1); π_b = (0.1, 0.9), π_e = (0.9, 0.1): J = 0.1."""
    from opelab.data import ActionSpace, DatasetInfo

    rng = np.random.default_rng(seed)
    actions = (rng.random((n, 1)) < 0.9).astype(np.int64)
    ds = LoggedDataset(
        observations=np.zeros((n, 1), dtype=np.int64),
        actions=actions,
        rewards=actions.astype(np.float64),
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.where(actions == 1, 0.9, 0.1),
        info=DatasetInfo(task="one-state", gamma=1.0, action_space=ActionSpace.discrete(2)),
    )
    pscore = np.where(actions == 1, 0.1, 0.9)[None]
    inputs = OPEInput(policy_names=("e",), eval_pscore=pscore, q_hat=np.zeros_like(pscore), v_hat=np.zeros_like(pscore), initial_v_hat=np.zeros((1, n)))
    return ds, inputs


@pytest.mark.statistical
def test_t_intervals_of_self_normalized_estimators_cover():
    """The t interval of a ratio estimator needs the linearised values W̃(Y − μ) + μ: on this case the
    naive W̃·Y values cover the truth 0.1 in about 6% of datasets. Over 1000 datasets the coverage of
    SNTIS, SNPDIS and SNDR is in [93%, 97%] (±2.9 binomial SE)."""
    names = ["sntis", "snpdis", "sndr"]
    covered = np.zeros(len(names))
    for d in range(1000):
        ds, inputs = _one_state_case(200, seed=d)
        table = evaluate(ds, inputs, names, interval="t")
        covered += ((table.lower <= 0.1) & (0.1 <= table.upper))[:, 0]
    rates = covered / 1000
    assert ((0.93 <= rates) & (rates <= 0.97)).all(), rates


def test_interval_values_average_to_the_estimate(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, n_folds=2)
    ctx = EstimationContext(ds, inputs)
    for name in TRAJECTORY_ESTIMATORS:
        est = get_estimator(name)
        np.testing.assert_allclose(est.interval_values(ctx).mean(axis=1), est.estimate(ctx), rtol=1e-10, atol=1e-12, err_msg=name)


def test_self_normalization_survives_underflowing_weights():
    """Over 2000 steps the cumulative weights underflow toward subnormal numbers; the self-normalised
    estimators must stay finite (the weights' mean must not be inverted into inf)."""
    from opelab.data import ActionSpace, DatasetInfo

    n, H = 300, 2000
    rng = np.random.default_rng(0)
    actions = (rng.random((n, H)) < 0.5).astype(np.int64)
    ds = LoggedDataset(
        observations=np.zeros((n, H), dtype=np.int64),
        actions=actions,
        rewards=(actions == 0).astype(np.float64),
        terminals=np.zeros((n, H), dtype=bool),
        mask=np.ones((n, H), dtype=bool),
        behavior_pscore=np.full((n, H), 0.5),
        info=DatasetInfo(task="long", gamma=1.0, action_space=ActionSpace.discrete(2)),
    )
    pscore = np.where(actions == 0, 0.9, 0.1)[None]
    inputs = OPEInput(policy_names=("e",), eval_pscore=pscore)
    table = evaluate(ds, inputs, ["sntis", "snpdis"])
    assert np.isfinite(table.estimates).all(), table.estimates


def _all_point_estimators() -> list:
    """Every registered point estimator, plus points of the SOPE spectrum (their weights blend two kinds)."""
    from opelab.ope.estimators.marginal import spectrum

    blends = [spectrum("sam_sndr", 1), spectrum("sm_snis", 2), spectrum("sam_is", 3)]
    return [get_estimator(name) for name in TRAJECTORY_ESTIMATORS] + blends


def test_bootstrap_estimates_equal_a_reference_loop_over_resamples(variable_length_case, monkeypatch):
    """The shared matrix-product bootstrap of all estimators at once equals, resample by resample, each
    estimator run on the dataset subset by that resample's counts (to 1e-10); chunks of 7 resamples, so
    that the chunking is exercised too."""
    from opelab.ope import intervals

    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, n_folds=2)
    estimators = _all_point_estimators()
    ctx = EstimationContext(ds, inputs)
    n, B = ds.n_trajectories, 20
    monkeypatch.setattr(intervals, "_BOOTSTRAP_CHUNK_ELEMENTS", 7 * n)
    resampled = intervals.bootstrap_estimates(estimators, ctx, B, seed=4)
    counts = np.concatenate(list(bootstrap_counts(n, B, seed=4)))
    assert counts.shape == (B, n)
    for b in range(B):
        idx = np.repeat(np.arange(n), counts[b].astype(int))
        sub = EstimationContext(*_resample(ds, inputs, idx))
        for est, values in zip(estimators, resampled):
            if not est.resample_exact:
                continue
            want = est.estimate(sub)
            np.testing.assert_allclose(values[:, b], want, rtol=1e-10, atol=1e-12, err_msg=f"{est.name}, resample {b}")


def test_bootstrap_estimates_equal_each_estimators_resampled_estimates(variable_length_case):
    """Computing every estimator's sums at once (shared terms summed once) changes nothing but rounding."""
    from opelab.ope.intervals import bootstrap_estimates

    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, n_folds=2)
    estimators = _all_point_estimators()
    ctx = EstimationContext(ds, inputs)
    counts = np.concatenate(list(bootstrap_counts(ds.n_trajectories, 50, seed=9)))
    for est, values in zip(estimators, bootstrap_estimates(estimators, ctx, 50, seed=9)):
        want = est.resampled_estimates(ctx, counts)
        np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-14, err_msg=est.name)


def test_bootstrap_counts_do_not_depend_on_the_chunk_size(monkeypatch):
    from opelab.ope import intervals

    want = np.concatenate(list(bootstrap_counts(37, 100, seed=3)))
    for elements in (1, 37 * 3, 10**6):
        monkeypatch.setattr(intervals, "_BOOTSTRAP_CHUNK_ELEMENTS", elements)
        chunks = list(bootstrap_counts(37, 100, seed=3))
        assert max(c.size for c in chunks) <= max(elements, 37)
        np.testing.assert_array_equal(np.concatenate(chunks), want)


def test_bootstrap_memory_does_not_grow_with_the_number_of_resamples(monkeypatch):
    """Counts are drawn and consumed chunk by chunk: going from 50 to 2000 resamples adds to the peak of
    numpy allocations no more than the (P, B) outputs themselves (plus 64 kB of slack)."""
    import tracemalloc

    from opelab.ope import intervals

    n = 2000
    ds, inputs = _one_state_case(n, seed=1)
    ests = [get_estimator(name) for name in ("tis", "pdis", "sntis", "snpdis", "sndr", "dr")]
    monkeypatch.setattr(intervals, "_BOOTSTRAP_CHUNK_ELEMENTS", 20 * n)
    peaks = {}
    for B in (50, 2000):
        ctx = EstimationContext(ds, inputs)
        tracemalloc.start()
        intervals.bootstrap_estimates(ests, ctx, B, seed=0)
        peaks[B] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    outputs = len(ests) * inputs.n_policies * 2000 * 8
    assert peaks[2000] - peaks[50] <= outputs + 65_536, peaks
