"""Every registered estimator, checked against exact ground truth and a per-trajectory reference loop."""

from __future__ import annotations

import numpy as np
import pytest
from ope_cases import policies_for, small_task
from ope_reference import reference_estimate

from opelab.envs import collect
from opelab.ope import ESTIMATORS, OPEInput, OPEInputError, build_inputs, evaluate, get_estimator
from opelab.ope.estimators.base import applicable
from opelab.ope.estimators import EstimationContext, PointEstimator, self_normalize

ALL = sorted(applicable("trajectories", "discrete"))  # the cases here are discrete trajectories
BACKBONE = ["dm", "dr", "pdis", "sndr", "snpdis", "sntis", "tis"]
IMPORTANCE = ["tis", "pdis", "sntis", "snpdis"]


def test_registry_has_the_backbone_estimators():
    assert {"dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr"} <= set(ESTIMATORS)


@pytest.mark.parametrize("name", ALL)
def test_shape_determinism_and_finiteness(name, variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, n_folds=2)  # cross-fitted, so that drl runs too
    ctx = EstimationContext(ds, inputs)
    est = get_estimator(name)
    first = est.estimate(ctx)
    assert first.shape == (len(evals),)
    assert np.isfinite(first).all()
    assert est.trajectory_values(ctx).shape == (len(evals), ds.n_trajectories)
    np.testing.assert_array_equal(first, get_estimator(name).estimate(EstimationContext(ds, inputs)))


@pytest.mark.parametrize("name", BACKBONE)
def test_matches_per_trajectory_reference_on_variable_lengths(name, variable_length_case):
    """Vectorized estimates equal a plain loop over each trajectory's own steps."""
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    got = evaluate(ds, inputs, [name]).estimate(name)
    want = [reference_estimate(name, ds, inputs, p) for p in range(len(evals))]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", IMPORTANCE)
def test_behavior_as_evaluation_policy_gives_logged_mean(name, variable_length_case):
    task, behavior, _, ds = variable_length_case
    inputs = build_inputs(ds, [behavior])
    np.testing.assert_array_equal(inputs.eval_pscore, ds.behavior_pscore[None])
    got = evaluate(ds, inputs, [name]).estimate(name)[0]
    assert got == pytest.approx(ds.mean_return(), rel=1e-13, abs=1e-15)


def test_dr_equals_logged_mean_plus_control_variate_when_policies_match(variable_length_case):
    """With π_e = π_b every W is 1, so DR = mean G + mean Σ_t γ^t (V̂_t − Q̂_t): zero only on average."""
    task, behavior, _, ds = variable_length_case
    inputs = build_inputs(ds, [behavior])
    control = ((inputs.v_hat[0] - inputs.q_hat[0]) * ds.discounts).sum(axis=1).mean()
    got = evaluate(ds, inputs, ["dr"]).estimate("dr")[0]
    assert got == pytest.approx(ds.mean_return() + control, rel=1e-12)


def _repeated_estimates(task, behavior, evals, n, n_datasets, seed, q_tables=None, names=BACKBONE):
    out = np.empty((n_datasets, len(names), len(evals)))
    for d in range(n_datasets):
        ds = collect(task, behavior, n, seed=seed + d)
        inputs = build_inputs(ds, evals, q_tables=q_tables)
        out[d] = evaluate(ds, inputs, names).estimates
    return out


@pytest.mark.statistical
def test_tis_pdis_dr_are_unbiased():
    """Mean over 300 independent datasets within 3.5 standard errors of the exact value.

    DR is unbiased for any Q̂ fitted independently of the data: here the exact Q-function plus a fixed
    perturbation (a deliberately wrong model), so the test also shows the IS correction at work.
    """
    task = small_task(seed=5)
    behavior, evals = policies_for(task, seed=1)
    truth = task.policy_values(evals)
    rng = np.random.default_rng(0)
    wrong_q = [task.q_values(p) + rng.normal(0.0, 0.5, size=(task.horizon, task.n_states, task.n_actions)) for p in evals]
    names = ["tis", "pdis", "dr"]
    est = _repeated_estimates(task, behavior, evals, n=50, n_datasets=300, seed=1000, q_tables=wrong_q, names=names)
    mean = est.mean(axis=0)
    se = est.std(axis=0, ddof=1) / np.sqrt(est.shape[0])
    z = np.abs(mean - truth) / se
    assert (z < 3.5).all(), f"z-scores per (estimator, policy):\n{np.round(z, 2)}"
    # The perturbed model alone is badly biased, so the unbiasedness above is not a property of the model.
    dm = _repeated_estimates(task, behavior, evals, n=50, n_datasets=50, seed=1000, q_tables=wrong_q, names=["dm"])
    dm_z = np.abs(dm.mean(axis=0) - truth) / (dm.std(axis=0, ddof=1) / np.sqrt(50))
    assert (dm_z > 3.5).any()


@pytest.mark.statistical
def test_self_normalized_estimators_converge():
    """Error of SNTIS/SNPDIS/SNDR shrinks with n (√16 = 4× expected from 50 to 800), and at n = 800
    their mean over datasets is within 3.5 standard errors of the exact value."""
    task = small_task(seed=7)
    behavior, evals = policies_for(task, seed=2)
    truth = task.policy_values(evals)
    names = ["sntis", "snpdis", "sndr"]
    small = _repeated_estimates(task, behavior, evals, n=50, n_datasets=100, seed=0, names=names)
    large = _repeated_estimates(task, behavior, evals, n=800, n_datasets=100, seed=500, names=names)
    rmse_small = np.sqrt(((small - truth) ** 2).mean(axis=0))
    rmse_large = np.sqrt(((large - truth) ** 2).mean(axis=0))
    assert (rmse_large < rmse_small / 2).all(), f"{rmse_small=}\n{rmse_large=}"
    se = large.std(axis=0, ddof=1) / np.sqrt(large.shape[0])
    z = np.abs(large.mean(axis=0) - truth) / se
    assert (z < 3.5).all(), f"z-scores:\n{np.round(z, 2)}"


@pytest.mark.statistical
def test_dr_with_exact_q_has_lower_variance_than_pdis():
    task = small_task(seed=5)
    behavior, evals = policies_for(task, seed=1)
    exact_q = [task.q_values(p) for p in evals]
    est = _repeated_estimates(task, behavior, evals, n=50, n_datasets=200, seed=3000, q_tables=exact_q, names=["pdis", "dr"])
    var = est.var(axis=0, ddof=1)
    assert (var[1] < var[0]).all(), f"var(pdis) = {var[0]}, var(dr) = {var[1]}"


def test_dm_with_exact_q_is_exact_in_expectation_of_the_initial_state(variable_length_case):
    """DM with the exact Q-function averages V_0(s_0) over the logged initial states."""
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, q_tables=[task.q_values(p) for p in evals])
    v0 = np.stack([task.state_values(p)[0] for p in evals])  # (P, S)
    want = v0[:, ds.observations[:, 0]].mean(axis=1)
    np.testing.assert_allclose(evaluate(ds, inputs, ["dm"]).estimate("dm"), want, rtol=1e-12)


def test_estimators_vectorize_over_policies(variable_length_case):
    """Evaluating P policies at once equals evaluating each alone."""
    task, _, evals, ds = variable_length_case
    together = evaluate(ds, build_inputs(ds, evals)).estimates
    for p, policy in enumerate(evals):
        alone = evaluate(ds, build_inputs(ds, [policy])).estimates[:, 0]
        np.testing.assert_allclose(together[:, p], alone, rtol=1e-12, atol=1e-14)


def test_missing_inputs_are_named(variable_length_case):
    task, _, evals, ds = variable_length_case
    full = build_inputs(ds, evals)
    bare = OPEInput(policy_names=full.policy_names, eval_pscore=np.asarray(full.eval_pscore))
    with pytest.raises(OPEInputError, match="dr: needs q_hat, v_hat"):
        evaluate(ds, bare, ["dr"])
    with pytest.raises(OPEInputError, match="initial_v_hat"):
        evaluate(ds, bare, ["dm"])
    assert evaluate(ds, bare, ["tis", "pdis"]).estimates.shape == (2, len(evals))


def test_unknown_and_duplicate_estimators(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    with pytest.raises(ValueError, match="expected one of"):
        evaluate(ds, inputs, ["nope"])
    with pytest.raises(ValueError, match="distinct"):
        evaluate(ds, inputs, ["dm", "dm"])


def test_self_normalize_handles_all_zero_weights():
    w = np.array([[[0.0, 2.0], [0.0, 0.0]]])  # (P=1, n=2, H=2): step 0 has no support
    out = self_normalize(w)
    np.testing.assert_array_equal(out, [[[0.0, 2.0], [0.0, 0.0]]])


def test_custom_estimator_plugs_in_by_instance(variable_length_case):
    task, _, evals, ds = variable_length_case

    class FirstReward(PointEstimator):
        name = "first_reward"

        def trajectory_values(self, ctx):
            return np.broadcast_to(ctx.dataset.rewards[:, 0], (ctx.inputs.n_policies, ctx.dataset.n_trajectories))

    table = evaluate(ds, build_inputs(ds, evals), [FirstReward(), "tis"])
    assert table.estimator_names == ("first_reward", "tis")
    np.testing.assert_allclose(table.estimate("first_reward"), ds.rewards[:, 0].mean())
