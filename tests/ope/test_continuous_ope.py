"""Continuous-action OPE: kernels, kernel-smoothed evaluation pscores and the estimators on top of them.

The statistical checks run on a linear-quadratic task whose values are known in closed form: a scalar state
s_0 ~ N(0, 1), actions a ∈ R^d, reward r_t = −‖a_t − c s_t‖², next state s' = ρ s + κ mean_j(a_j) + τ ε. For a
policy a = θ s + ξ with zero-mean noise ξ of per-dimension variances q_j (q = 0: deterministic; q = σ²:
Gaussian; q = h_j² ∫u²K: the kernel-smoothed deterministic policy that the kernel estimators target),

    E r_t = −(‖θ − c‖² v_t + Σ_j q_j),     v_{t+1} = (ρ + κ θ̄)² v_t + κ² Σ_j q_j / d² + τ²,   v_0 = 1,

and J = Σ_t γ^t E r_t. The exact Q of a deterministic policy is quadratic: V_t(s) = −A_t s² − B_t with
A_t = ‖θ − c‖² + γ (ρ + κ θ̄)² A_{t+1}, B_t = γ (τ² A_{t+1} + B_{t+1}), A_H = B_H = 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import collect
from opelab.ope import ESTIMATORS, OPEInputError, evaluate
from opelab.ope.continuous import build_continuous_inputs
from opelab.ope.kernels import KERNELS, action_scales, effective_bandwidth, kernel_density
from opelab.policies.continuous import DeterministicPolicy, GaussianPolicy


class LinearQuadraticTask:
    """The closed-form task of the module docstring (a ``VectorTask`` for ``collect``)."""

    name = "linear-quadratic"

    def __init__(self, d: int = 2, horizon: int = 3, gamma: float = 0.9, box: float | None = None) -> None:
        self.d, self.horizon, self.gamma = d, horizon, gamma
        self.rho, self.kappa, self.tau = 0.8, 0.5, 0.3
        self.c = np.array([1.0, -0.5, 0.25])[:d]
        self.box = box

    @property
    def action_space(self) -> ActionSpace:
        if self.box is None:
            return ActionSpace.continuous(self.d)
        return ActionSpace.continuous(self.d, low=[-self.box] * self.d, high=[self.box] * self.d)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, 1))

    def step(self, states, actions, rng):
        x = states[:, 0]
        rewards = -((actions - self.c * x[:, None]) ** 2).sum(axis=1)
        nxt = self.rho * x + self.kappa * actions.mean(axis=1) + self.tau * rng.standard_normal(len(x))
        return nxt[:, None], rewards, np.zeros(len(x), dtype=bool)

    def value(self, theta: np.ndarray, noise_var: float | np.ndarray = 0.0) -> float:
        theta = np.asarray(theta, dtype=np.float64)
        q = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), (self.d,)).sum()
        v, J, a = 1.0, 0.0, self.rho + self.kappa * theta.mean()
        for t in range(self.horizon):
            J -= self.gamma**t * (((theta - self.c) ** 2).sum() * v + q)
            v = a * a * v + self.kappa**2 * q / self.d**2 + self.tau**2
        return J

    def q_function(self, theta: np.ndarray):
        """The exact Q_t(s, a) of the deterministic policy a = θ s, as q(obs, actions, steps)."""
        theta = np.asarray(theta, dtype=np.float64)
        a = self.rho + self.kappa * theta.mean()
        A, B = np.zeros(self.horizon + 1), np.zeros(self.horizon + 1)
        for t in range(self.horizon - 1, -1, -1):
            A[t] = ((theta - self.c) ** 2).sum() + self.gamma * A[t + 1] * a * a
            B[t] = self.gamma * (A[t + 1] * self.tau**2 + B[t + 1])

        def q(obs, actions, steps):
            x = obs[:, 0]
            nxt = self.rho * x + self.kappa * actions.mean(axis=1)
            return -((actions - self.c * x[:, None]) ** 2).sum(axis=1) - self.gamma * (
                A[steps + 1] * (nxt**2 + self.tau**2) + B[steps + 1]
            )

        return q


def linear(theta):
    theta = np.asarray(theta, dtype=np.float64)
    return lambda obs: obs[:, :1] * theta


THETA_B, SIGMA_B = np.array([0.8, -0.3]), 0.5
THETA_E = np.array([0.9, -0.35])


@pytest.fixture(scope="module")
def lq():
    task = LinearQuadraticTask()
    behavior = GaussianPolicy(linear(THETA_B), SIGMA_B, name="behavior")
    return task, behavior, collect(task, behavior, 20_000, seed=1)


def estimate_and_se(ds, inputs, estimators):
    table = evaluate(ds, inputs, estimators=estimators, interval="t", alpha=0.05)
    return table.estimates[:, 0], (table.upper - table.lower)[:, 0] / (2 * 1.959963984540054)


# ------------------------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_integrates_to_one_with_its_support_and_second_moment(name):
    k = KERNELS[name]
    lim = 1.0 if k.support == 1.0 else 40.0
    mass = integrate.quad(lambda u: float(k(np.array(u))), -lim, lim, points=None if lim > 1 else [0.0])[0]
    second = integrate.quad(lambda u: u * u * float(k(np.array(u))), -lim, lim)[0]
    assert mass == pytest.approx(1.0, abs=1e-9)
    assert second == pytest.approx(k.second_moment, abs=1e-9)
    u = np.array([-5.0, -1.0001, -0.999, 0.0, 0.5, 0.999, 1.0001, 5.0])
    values = k(u)
    assert (values >= 0).all() and np.array_equal(values, k(-u))  # non-negative and symmetric
    if k.support == 1.0:
        assert (values[[0, 1, 6, 7]] == 0).all() and (values[[2, 3, 4, 5]] > 0).all()
    else:
        assert (values > 0).all()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_product_kernel_is_a_density_in_action_units(name):
    h = np.array([0.3, 2.0])
    center = np.array([0.2, -1.0])
    reach = h * (1.0 if KERNELS[name].support == 1.0 else 12.0)

    def density(y, x):
        return float(kernel_density(np.array([[x, y]]), center[None], h, name)[0])

    mass = integrate.dblquad(density, center[0] - reach[0], center[0] + reach[0], center[1] - reach[1], center[1] + reach[1], epsabs=1e-10)[0]
    assert mass == pytest.approx(1.0, abs=1e-6)
    a = np.array([[0.25, -0.4]])
    one_d = [float(kernel_density(a[:, [j]], center[None, [j]], h[[j]], name)[0]) for j in range(2)]
    assert kernel_density(a, center[None], h, name)[0] == pytest.approx(one_d[0] * one_d[1], rel=1e-12)


def test_bandwidth_units():
    actions = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 50.0]])
    assert np.array_equal(action_scales(actions, "none", None, None), [1.0, 1.0])
    assert np.allclose(action_scales(actions, "std", None, None), [2.0, 20.0])
    assert np.allclose(action_scales(actions, "range", [-1.0, 0.0], [1.0, 100.0]), [2.0, 100.0])
    assert np.allclose(effective_bandwidth(0.1, np.array([2.0, 100.0])), [0.2, 10.0])
    assert np.allclose(effective_bandwidth([0.1, 0.5], np.array([2.0, 100.0])), [0.2, 50.0])


# ------------------------------------------------------------------------------------------ π_e = π_b
@pytest.mark.parametrize("box", [None, 1.0])
def test_tis_with_the_behavior_policy_scored_by_its_own_density_is_the_logged_mean(box):
    task = LinearQuadraticTask(box=box)
    kwargs = {} if box is None else {"low": -box, "high": box}
    behavior = GaussianPolicy(linear(THETA_B), [0.4, 0.7], name="behavior", **kwargs)
    ds = collect(task, behavior, 500, seed=3)
    same = GaussianPolicy(linear(THETA_B), [0.4, 0.7], name="same", **kwargs)
    inputs = build_continuous_inputs(ds, [same], bandwidth=None)
    assert np.array_equal(inputs.eval_pscore[0], ds.behavior_pscore)
    table = evaluate(ds, inputs, estimators=["tis", "pdis", "sntis", "snpdis"])
    assert table.estimates[0, 0] == ds.mean_return()  # every ratio is exactly 1
    np.testing.assert_allclose(table.estimates[1:, 0], ds.mean_return(), rtol=1e-12)  # other summation orders


# ------------------------------------------------------------------------------------------ bias and variance
@pytest.mark.statistical
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_estimators_are_unbiased_for_the_smoothed_policy(lq, name):
    """E_b[Π_t K_h(a_t − π_e(s_t)) / π_b(a_t | s_t) ...] = J(π_e + h U), U ~ K: within 4 standard errors."""
    task, _, ds = lq
    policy = DeterministicPolicy(linear(THETA_E), name="det")
    h = 0.3
    smoothed = task.value(THETA_E, h * h * KERNELS[name].second_moment)
    inputs = build_continuous_inputs(ds, [policy], kernel=name, bandwidth=h)
    est, se = estimate_and_se(ds, inputs, ["tis", "pdis"])
    assert np.all(np.abs(est - smoothed) <= 4 * se), (est, se, smoothed)


@pytest.fixture(scope="module")
def lq_1d():
    """One action dimension, two steps: two kernel factors per trajectory, so small bandwidths stay usable."""
    task = LinearQuadraticTask(d=1, horizon=2)
    return task, collect(task, GaussianPolicy(linear(THETA_B[:1]), SIGMA_B, name="behavior"), 20_000, seed=1)


@pytest.mark.statistical
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_bias_shrinks_with_the_bandwidth_and_vanishes_at_small_h(lq_1d, name):
    """Bandwidths with equal smoothing variance h² ∫u²K across kernels: at the epanechnikov-equivalent of
    h = 0.4 the O(h²) bias dominates (tens of SEs); at the equivalent of h = 0.05 it is ~0.001, below the SE,
    and TIS and PDIS land within 4 standard errors of the deterministic policy's value."""
    task, ds = lq_1d
    theta = THETA_E[:1]
    policy = DeterministicPolicy(linear(theta), name="det")
    truth = task.value(theta)
    unit = math.sqrt(0.2 / KERNELS[name].second_moment)  # epanechnikov-equivalent bandwidth
    biases = [abs(task.value(theta, (h * unit) ** 2 * KERNELS[name].second_moment) - truth) for h in (0.4, 0.2, 0.1, 0.05)]
    assert biases == sorted(biases, reverse=True) and biases[-1] < 0.02 * biases[0]  # O(h²)
    far, far_se = estimate_and_se(ds, build_continuous_inputs(ds, [policy], kernel=name, bandwidth=0.4 * unit), ["tis", "pdis"])
    near, near_se = estimate_and_se(ds, build_continuous_inputs(ds, [policy], kernel=name, bandwidth=0.05 * unit), ["tis", "pdis"])
    assert np.all(np.abs(far - truth) > 20 * far_se)  # a wide kernel is visibly biased...
    assert np.all(np.abs(near - truth) <= 4 * near_se), (near, near_se, truth)  # ...a narrow one is not
    assert np.all(np.abs(near - truth) < np.abs(far - truth))


@pytest.mark.statistical
def test_doubly_robust_with_the_exact_q_function(lq):
    task, _, ds = lq
    policy = DeterministicPolicy(linear(THETA_E), name="det")
    truth = task.value(THETA_E)
    inputs = build_continuous_inputs(ds, [policy], kernel="gaussian", bandwidth=0.2, q_functions=[task.q_function(THETA_E)])
    est, se = estimate_and_se(ds, inputs, ["dm", "dr", "sndr", "pdis"])
    assert np.all(np.abs(est[:3] - truth) <= 4 * se[:3]), (est, se, truth)
    assert se[1] < 0.2 * se[3]  # the control variate removes most of the variance


@pytest.mark.statistical
def test_stochastic_evaluation_policy_modes(lq):
    task, _, ds = lq
    sigma = 0.3
    stochastic = GaussianPolicy(linear(THETA_E), sigma, name="gauss")
    exact = task.value(THETA_E, sigma**2)
    est, se = estimate_and_se(ds, build_continuous_inputs(ds, [stochastic], bandwidth=None), ["pdis"])
    assert abs(est[0] - exact) <= 4 * se[0]
    h = 0.2  # "sample": smoothed noise of variance σ² + h²
    inputs = build_continuous_inputs(ds, [stochastic], bandwidth=h, stochastic="sample", seed=4)
    est, se = estimate_and_se(ds, inputs, ["pdis"])
    assert abs(est[0] - task.value(THETA_E, sigma**2 + h * h)) <= 4 * se[0]
    # "mean" evaluates the deterministic mean policy: the same numbers as DeterministicPolicy
    mean = build_continuous_inputs(ds, [stochastic], bandwidth=h, stochastic="mean")
    det = build_continuous_inputs(ds, [DeterministicPolicy(linear(THETA_E), name="gauss")], bandwidth=h)
    assert np.array_equal(mean.eval_pscore, det.eval_pscore)


def test_ratios_do_not_depend_on_the_action_units(lq):
    """Rescaling action dimension j by c_j (densities divide by Π c_j) leaves the ratios unchanged when the
    bandwidth is given in standard deviations (or box widths): the kernel carries the same Jacobian."""
    task, _, ds = lq
    small = ds.subset(np.arange(300))
    c = np.array([10.0, 0.1])
    scaled = LoggedDataset(
        observations=small.observations,
        actions=small.actions * c,
        rewards=small.rewards,
        terminals=small.terminals,
        mask=small.mask,
        behavior_pscore=small.behavior_pscore / c.prod(),
        info=small.info,
    )
    policy = DeterministicPolicy(linear(THETA_E), name="det")
    scaled_policy = DeterministicPolicy(linear(THETA_E * c), name="det")
    for name in sorted(KERNELS):
        a = build_continuous_inputs(small, [policy], kernel=name, bandwidth=0.5, action_scale="std")
        b = build_continuous_inputs(scaled, [scaled_policy], kernel=name, bandwidth=0.5, action_scale="std")
        np.testing.assert_allclose(a.eval_pscore / small.behavior_pscore, b.eval_pscore / scaled.behavior_pscore, rtol=1e-9)
        units = build_continuous_inputs(scaled, [scaled_policy], kernel=name, bandwidth=0.5, action_scale=[10.0, 0.1])
        plain = build_continuous_inputs(small, [policy], kernel=name, bandwidth=0.5)
        np.testing.assert_allclose(units.eval_pscore / scaled.behavior_pscore, plain.eval_pscore / small.behavior_pscore, rtol=1e-9)


def test_every_estimator_runs_on_continuous_inputs(lq):
    task, _, ds = lq
    small = ds.subset(np.arange(400))
    policies = [DeterministicPolicy(linear(THETA_E), name="det"), GaussianPolicy(linear(THETA_B), 0.3, name="g")]
    qs = [task.q_function(THETA_E), task.q_function(THETA_B)]
    ones = np.ones((2, small.n_trajectories, small.horizon))
    inputs = build_continuous_inputs(
        small, policies, bandwidth=0.3, q_functions=qs, state_marginal_weights=ones, marginal_weights=ones
    )
    assert inputs.initial_v_hat.shape == (2, 400)
    table = evaluate(small, inputs)
    expected = {name for name, cls in ESTIMATORS.items() if "trajectories" in cls.default_on and "cross_fit_folds" not in cls.requires}
    assert set(table.estimator_names) == expected
    assert np.isfinite(table.estimates).all()


def test_padding_and_variable_lengths():
    info = DatasetInfo("toy", 0.9, ActionSpace.continuous(1))
    rng = np.random.default_rng(0)
    trajectories = [
        {"observations": rng.standard_normal((T, 1)), "actions": rng.standard_normal((T, 1)), "rewards": np.ones(T), "behavior_pscore": np.full(T, 0.4)}
        for T in (1, 3, 2)
    ]
    ds = LoggedDataset.from_trajectories(trajectories, info)
    q = lambda obs, actions, steps: np.full(len(obs), 2.0)  # noqa: E731
    inputs = build_continuous_inputs(ds, [DeterministicPolicy(lambda o: o[:, 0], name="d")], bandwidth=0.5, q_functions=[q])
    assert (inputs.eval_pscore[0][~ds.mask] == 1).all() and (inputs.q_hat[0][~ds.mask] == 0).all()
    assert (inputs.v_hat[0][ds.mask] == 2).all()
    inputs.check_dataset(ds)


# ------------------------------------------------------------------------------------------ errors
def test_clear_errors(lq):
    task, _, ds = lq
    small = ds.subset(np.arange(20))
    det = DeterministicPolicy(linear(THETA_E), name="det")
    with pytest.raises(OPEInputError, match=r"kernel: expected one of \['cosine', 'epanechnikov', 'gaussian', 'triangular', 'uniform'\], found 'boxcar'"):
        build_continuous_inputs(small, [det], kernel="boxcar", bandwidth=0.1)
    for bad in (0.0, -0.1, math.inf, [0.1], [0.1, 0.0], "0.1"):
        with pytest.raises(OPEInputError, match="bandwidth: expected a positive float or 2 positive floats"):
            build_continuous_inputs(small, [det], bandwidth=bad)
    with pytest.raises(OPEInputError, match="bandwidth: expected a positive float .*found None"):
        build_continuous_inputs(small, [det], bandwidth=None)
    wrong_dim = DeterministicPolicy(lambda obs: np.zeros((len(obs), 3)), name="3d")
    with pytest.raises(OPEInputError, match=r"policies\[0\] \('3d'\)\.mean: expected actions of shape \(60, action_dim=2\), found \(60, 3\)"):
        build_continuous_inputs(small, [wrong_dim], bandwidth=0.1)
    with pytest.raises(OPEInputError, match="action_scale: 'range' needs the action space's bounds"):
        build_continuous_inputs(small, [det], bandwidth=0.1, action_scale="range")
    with pytest.raises(OPEInputError, match="action_scale: expected 'none', 'range', 'std' or 2 positive floats, found 'minmax'"):
        build_continuous_inputs(small, [det], bandwidth=0.1, action_scale="minmax")
    with pytest.raises(OPEInputError, match=r"stochastic: expected one of \['density', 'sample', 'mean'\], found 'mode'"):
        build_continuous_inputs(small, [det], bandwidth=0.1, stochastic="mode")
    with pytest.raises(OPEInputError, match=r"q_functions: expected one Q̂ callable per policy \(1\), found 2"):
        build_continuous_inputs(small, [det], bandwidth=0.1, q_functions=[None, None])
    with pytest.raises(OPEInputError, match=r"q_functions\[0\]: expected values of shape \(60,\), found \(60, 2\)"):
        build_continuous_inputs(small, [det], bandwidth=0.1, q_functions=[lambda o, a, s: a])
    with pytest.raises(OPEInputError, match="policies: expected at least one policy, found 0"):
        build_continuous_inputs(small, [], bandwidth=0.1)
    discrete = LoggedDataset.from_trajectories(
        [{"observations": np.array([0, 1]), "actions": np.array([0, 1]), "rewards": np.zeros(2), "behavior_pscore": np.full(2, 0.5)}],
        DatasetInfo("toy", 1.0, ActionSpace.discrete(2)),
    )
    with pytest.raises(OPEInputError, match="dataset.action_space: expected continuous actions, found discrete with n_actions=2; use build_inputs"):
        build_continuous_inputs(discrete, [det], bandwidth=0.1)
