"""OPERA (Nie et al., NeurIPS 2024): weights from the bootstrap MSE matrix, closed forms, a dominant base, the
blend's MSE over many datasets with exact truth, and its place among the registered estimators."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.envs import bandit_inputs, collect, make
from opelab.ope import ESTIMATORS, OPEInput, OPEInputError, build_inputs, evaluate, get_estimator
from opelab.ope.estimators import EstimationContext, PointEstimator
from opelab.ope.estimators.opera import OPERA, mse_matrix, opera, opera_weights
from opelab.ope.intervals import bootstrap_counts, bootstrap_estimates
from opelab.ope.streaming import StreamError, evaluate_stream


def _synthetic(sigmas: np.ndarray, B: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimates (J, P) and independent normal bootstrap draws around them with sd ``sigmas`` (J, P)."""
    rng = np.random.default_rng(seed)
    estimates = rng.normal(size=sigmas.shape)
    return estimates, estimates[..., None] + sigmas[..., None] * rng.normal(size=(*sigmas.shape, B))


def test_weights_sum_to_one_and_solve_their_programmes():
    """Affine: α = M̂⁻¹1 / 1ᵀM̂⁻¹1. Convex: α ≥ 0 and the KKT conditions of min αᵀM̂α on the simplex hold
    (the gradient M̂α equals its minimum on the support and is no smaller off it)."""
    rng = np.random.default_rng(0)
    J, P, B = 5, 4, 40
    base = rng.normal(size=(J, P, B))
    resampled = base + 0.8 * rng.normal(size=(1, P, B)) + rng.normal(size=(J, 1, 1))  # correlated, biased
    estimates = rng.normal(size=(J, P))
    M = mse_matrix(estimates, resampled)
    affine = opera_weights(estimates, resampled, convex=False)
    convex = opera_weights(estimates, resampled, convex=True)
    np.testing.assert_allclose(affine.sum(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(convex.sum(axis=0), 1.0, rtol=1e-12)
    assert (convex >= 0).all()
    assert (affine < 0).any(), "the case should need signed weights, or the convex check proves little"
    for p in range(P):
        raw = np.linalg.solve(M[p], np.ones(J))
        np.testing.assert_allclose(affine[:, p], raw / raw.sum(), rtol=1e-6)
        gradient = M[p] @ convex[:, p]
        support = convex[:, p] > 1e-12
        level = gradient[support].min()
        np.testing.assert_allclose(gradient[support], level, rtol=1e-6)
        assert (gradient[~support] >= level * (1 - 1e-6)).all()
        assert convex[:, p] @ M[p] @ convex[:, p] >= affine[:, p] @ M[p] @ affine[:, p] * (1 - 1e-9)


def test_two_independent_unbiased_estimators_get_inverse_variance_weights():
    """Closed form: for independent unbiased estimators with variances σ1², σ2², α1 = σ2² / (σ1² + σ2²). The
    bound is 4 standard errors of α1 from B draws (delta method on M̂11, M̂22 and the cross term c):
    Var M̂ii = 2σi⁴/B, Var c = σ1²σ2²/B, ∂α1/∂(M11, M22, c) = (−σ2², σ1², σ2² − σ1²) / (σ1² + σ2²)²."""
    sigmas = np.array([[1.0, 0.5, 2.0], [1.0, 1.5, 0.3]])  # (J = 2, P = 3)
    B = 4000
    estimates, resampled = _synthetic(sigmas, B, seed=1)
    v1, v2 = sigmas**2
    want = v2 / (v1 + v2)
    gradient = np.stack([-v2, v1, v2 - v1]) / (v1 + v2) ** 2
    variance = np.stack([2 * v1**2, 2 * v2**2, v1 * v2]) / B
    se = np.sqrt((gradient**2 * variance).sum(axis=0))
    for convex in (True, False):
        got = opera_weights(estimates, resampled, convex=convex)
        assert (np.abs(got[0] - want) <= 4 * se).all(), (got[0], want, se)


def test_redundant_and_constant_bases():
    """Identical bases share their weight (the ridge) and leave the blend as it was (invariance to redundant
    estimators); bases that never vary get equal weights."""
    estimates, resampled = _synthetic(np.array([[1.0, 2.0], [3.0, 0.5]]), 200, seed=2)
    twice = opera_weights(estimates[[0, 0, 1]], resampled[[0, 0, 1]], convex=False)
    once = opera_weights(estimates, resampled, convex=False)
    np.testing.assert_allclose(twice[0], twice[1], atol=1e-6)  # M̂ singular up to the ridge: cond ~ 1e10
    np.testing.assert_allclose(twice[0] + twice[1], once[0], atol=1e-6)
    flat = opera_weights(np.ones((3, 2)), np.ones((3, 2, 5)))
    np.testing.assert_allclose(flat, 1 / 3)


def test_weight_errors_are_named():
    with pytest.raises(ValueError, match=r"estimates: expected shape \(J, P\)"):
        opera_weights(np.zeros(3), np.zeros((3, 1, 4)))
    with pytest.raises(ValueError, match="at least 2 base estimators"):
        opera_weights(np.zeros((1, 2)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"resampled: expected shape \(2, 3, B\) with B >= 2"):
        opera_weights(np.zeros((2, 3)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="finite"):
        opera_weights(np.array([[0.0], [np.nan]]), np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match=r"centre: expected 3 finite values \(one per policy\)"):
        opera_weights(np.zeros((2, 3)), np.ones((2, 3, 4)), centre=np.zeros(2))


@dataclass(frozen=True)
class NoisyCopy(PointEstimator):
    """A dominated base for the tests: another estimator's trajectory values plus independent N(0, s²) noise
    (a fixed draw per trajectory), so it has the same mean and more variance and adds nothing to the other."""

    name = "noisy_copy"
    of: str = "dr"
    scale: float = 20.0
    draw: int = 0
    option_names = ("of", "scale", "draw")

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        values = get_estimator(self.of).trajectory_values(ctx)
        noise = np.random.default_rng(self.draw).normal(size=values.shape[-1])
        return values + self.scale * values.std(axis=-1, keepdims=True) * noise


@pytest.fixture(scope="module")
def bandit_case():
    task = make("bandit")
    policies = task.candidates()[:3]
    ds = task.collect(task.behavior_policy(), 400, seed=0)
    return task, policies, ds, bandit_inputs(task, ds, policies, q_model="true")


def test_a_dominant_base_is_reproduced(bandit_case):
    """DR with the true reward model against copies of it with 20× its spread of independent noise: the
    copies' optimal weight is 0. What OPERA gives them is noise of the sample and of the bootstrap: with a
    copy's noise ε, about −cov(X, ε)/var(ε), standard error sd(X)/(sd(ε)√n) = 1/(20√n), plus the bootstrap's
    sd(X)/(sd(ε)√B); 4 of each bound the copies' total weight, and the blend stays that close to DR."""
    task, policies, ds, inputs = bandit_case
    n, B = ds.n_trajectories, 400
    base = ("dr", NoisyCopy(draw=1), NoisyCopy(draw=2))
    bound = 4 * (1 / (20 * np.sqrt(n)) + 1 / (20 * np.sqrt(B))) * 2  # two copies
    for convex in (True, False):
        fit = opera(ds, inputs, base, n_bootstrap=B, seed=3, convex=convex)
        assert (np.abs(fit.weights[1:]).sum(axis=0) <= bound).all(), fit.weights
        np.testing.assert_allclose(fit.weights.sum(axis=0), 1.0)
        spread = np.abs(fit.base_estimates[1:] - fit.base_estimates[0]).max(axis=0)
        assert (np.abs(fit.estimate - fit.base_estimates[0]) <= bound * spread).all()


def _bandit_logs(k: int):
    task = make("bandit")
    policies = task.candidates()[:3]
    ds = task.collect(task.behavior_policy(), 200, seed=100 + k)
    return ds, bandit_inputs(task, ds, policies), task.policy_values(policies)


def _trajectory_logs(k: int):
    task = small_task()
    behavior, evals = policies_for(task)
    ds = collect(task, behavior, 100, seed=100 + k)
    return ds, build_inputs(ds, evals), task.policy_values(evals)


def test_a_model_bias_is_invisible_unless_a_reference_centres_the_matrix(bandit_case):
    """DM on the true reward model shifted by +0.3: its resamples vary as little as ever (the model is not
    refit), so the paper's own-estimate centring gives it nearly all the weight and the blend its bias; centred
    at DR (``reference="dr"``), DM's distance from DR counts as bias and its weight falls away."""
    task, policies, ds, inputs = bandit_case
    truth = task.policy_values(policies)
    shifted = dataclasses.replace(inputs, initial_v_hat=inputs.initial_v_hat + 0.3)
    own = opera(ds, shifted, ("dm", "dr", "pdis"))
    assert (own.weights[0] > 0.9).all() and (np.abs(own.estimate - truth) > 0.25).all()
    centred = opera(ds, shifted, ("dm", "dr", "pdis"), reference="dr")
    assert (centred.weights[0] < 0.1).all(), centred.weights
    assert (np.abs(centred.estimate - truth) < 0.1).all()
    assert get_estimator("opera", base=("dm", "dr"), reference="dr").name == "opera(base=('dm', 'dr'), reference='dr')"
    with pytest.raises(ValueError, match=r"reference: expected the name of one of the bases \['dm', 'dr'\]"):
        get_estimator("opera", base=("dm", "dr"), reference="pdis")


@pytest.mark.statistical
@pytest.mark.parametrize("logs", [_bandit_logs, _trajectory_logs], ids=["bandit", "trajectories"])
def test_blend_mse_is_no_worse_than_the_best_base_over_datasets(logs):
    """Over 200 logs with exact values (a contextual bandit, 200 rounds; the variable-length tabular task, 100
    trajectories, tabular FQE): the blend's MSE (default bases; affine and convex) is at most the best single
    base's plus 3 standard errors of their paired difference, for every policy."""
    names = ("opera", "opera(convex=False)", "pdis", "dr", "snpdis", "sndr")
    estimators = [get_estimator("opera", n_bootstrap=100), get_estimator("opera", convex=False, n_bootstrap=100)]
    errors = []
    for k in range(200):
        ds, inputs, truth = logs(k)
        table = evaluate(ds, inputs, [*estimators, *names[2:]])
        errors.append((table.estimates - truth) ** 2)  # (E, P)
    errors = np.array(errors)  # (datasets, E, P)
    for p in range(errors.shape[-1]):
        best = int(np.argmin(errors[:, 2:, p].mean(axis=0))) + 2
        for blend in (0, 1):
            diff = errors[:, blend, p] - errors[:, best, p]
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            assert diff.mean() <= 3 * se, (names[blend], names[best], p, errors[:, :, p].mean(axis=0))


def test_registered_named_only_and_names_record_options():
    assert ESTIMATORS["opera"] is OPERA
    assert OPERA.default_on == ()
    assert get_estimator("opera").name == "opera"
    assert get_estimator("opera", convex=False, n_bootstrap=50).name == "opera(n_bootstrap=50, convex=False)"
    assert get_estimator("opera", base=["pdis", "dr"]).name == "opera(base=('pdis', 'dr'))"
    assert get_estimator("opera", base=["pdis", "dr", "snpdis", "sndr"]).name == "opera"  # the default, as a list
    assert set(get_estimator("opera").requires) == {"q_hat", "v_hat"}


def test_evaluate_runs_opera_beside_its_bases_with_intervals(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    for interval in ("t", "bootstrap"):
        table = evaluate(ds, inputs, ["opera", "pdis", "dr", "snpdis", "sndr"], interval=interval, n_bootstrap=300)
        fit = opera(ds, inputs)
        np.testing.assert_allclose(table.estimate("opera"), fit.estimate, rtol=1e-12)
        np.testing.assert_allclose(fit.estimate, (fit.weights * table.estimates[1:]).sum(axis=0), rtol=1e-12)
        assert (table.lower[0] <= table.estimates[0]).all() and (table.estimates[0] <= table.upper[0]).all()
    assert fit.mse.shape == (len(evals), 4, 4) and fit.base_names == ("pdis", "dr", "snpdis", "sndr")
    assert "opera" not in evaluate(ds, inputs).estimator_names  # named only


def test_values_and_resampling_are_the_blend_with_fixed_weights(variable_length_case):
    """Trajectory and interval values average to the estimate; a resample's estimate is Σ_j α_j V̂_j^(b) with
    α from the whole sample, equal in the shared bootstrap and alone; the fit is deterministic."""
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    ctx = EstimationContext(ds, inputs)
    est = get_estimator("opera")
    estimate = est.estimate(ctx)
    np.testing.assert_array_equal(estimate, get_estimator("opera").estimate(EstimationContext(ds, inputs)))
    np.testing.assert_allclose(est.trajectory_values(ctx).mean(axis=1), estimate, rtol=1e-10)
    np.testing.assert_allclose(est.interval_values(ctx).mean(axis=1), estimate, rtol=1e-10)
    n = ds.n_trajectories
    np.testing.assert_allclose(est.resampled_estimates(ctx, np.ones((1, n)))[:, 0], estimate, rtol=1e-12)
    alpha = est.weights(ctx)
    counts = np.concatenate(list(bootstrap_counts(n, 30, seed=7)))
    bases = est.estimators()
    want = sum(a[:, None] * b.resampled_estimates(ctx, counts) for a, b in zip(alpha, bases))
    np.testing.assert_allclose(est.resampled_estimates(ctx, counts), want, rtol=1e-10)
    shared = bootstrap_estimates([est, *bases], ctx, 30, seed=7)
    np.testing.assert_allclose(shared[0], want, rtol=1e-10)


def test_errors_are_named(variable_length_case):
    task, _, evals, ds = variable_length_case
    with pytest.raises(ValueError, match="at least 2 base estimators for opera, found 1"):
        get_estimator("opera", base=("dr",))
    with pytest.raises(ValueError, match="list of at least 2 estimator names"):
        get_estimator("opera", base="dr")
    with pytest.raises(ValueError, match="list of at least 2 estimator names"):
        opera(ds, build_inputs(ds, evals), "dr")
    with pytest.raises(ValueError, match="n_bootstrap: expected an integer of at least 2"):
        get_estimator("opera", n_bootstrap=1)
    with pytest.raises(ValueError, match="distinct base estimators"):
        get_estimator("opera", base=("dr", "dr"))
    with pytest.raises(ValueError, match="estimator: expected one of"):
        get_estimator("opera", base=("dr", "no_such"))
    inputs = build_inputs(ds, evals)
    bare = OPEInput(policy_names=inputs.policy_names, eval_pscore=inputs.eval_pscore)
    with pytest.raises(OPEInputError, match=r"opera \(base dr\): needs q_hat, v_hat"):
        evaluate(ds, bare, ["opera"])
    assert np.isfinite(evaluate(ds, bare, [get_estimator("opera", base=("pdis", "snpdis"))]).estimates).all()
    with pytest.raises(StreamError, match=r"opera\(base=.*\): expected an estimator with a streaming form"):
        evaluate_stream(ds, evals, None, [get_estimator("opera", base=("pdis", "snpdis"))])  # α needs the whole log
