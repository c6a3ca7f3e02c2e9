"""Continuous-action marginal weights (``opelab.ope.minimax_continuous``) against closed-form ratios.

Linear-Gaussian task (one dimension): s_0 ~ N(0, σ0²), s_{t+1} = α s_t + β u_t + τ ε, reward r_t = −s_t² − 0.1 u_t²,
policies u ~ N(k s + c, σ²). Under such a policy every d_t is Gaussian, N(μ_t, v_t), with

    μ_{t+1} = (α + β k) μ_t + β c,     v_{t+1} = (α + β k)² v_t + β² σ² + τ²,     μ_0 = 0, v_0 = σ0²,

so the marginal ratios are exact: w_t(s) = N(s; μ_e,t, v_e,t) / N(s; μ_b,t, v_b,t) and
ζ_t(s, u) = w_t(s) π_e(u | s) / π_b(u | s), and so is the value
J = Σ_t γ^t (−E s_t² − 0.1 E u_t²), E s_t² = v_t + μ_t², E u_t² = k² E s_t² + 2 k c μ_t + c² + σ².
A deterministic policy u = k s + c smoothed by a Gaussian kernel of bandwidth h is the Gaussian policy with σ = h,
so it has the same exact weights.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import integrate

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import collect, make
from opelab.ope import (
    MinimaxConfig,
    OPEInputError,
    build_continuous_inputs,
    continuous_marginal_weights,
    evaluate,
    fit_continuous_state_weights,
    fit_continuous_weights,
    predict_continuous_weights,
)
from opelab.ope.continuous import kernel_noise
from opelab.ope.kernels import KERNELS
from opelab.policies.continuous import DeterministicPolicy, GaussianPolicy

torch = pytest.importorskip("torch")  # the [rl] extra
torch.set_num_threads(1)

ALPHA, BETA, TAU, SIGMA0 = 0.9, 0.5, 0.3, 1.0
BEHAVIOR = (-0.2, 0.0, 0.6)  # (k, c, σ)
TARGET = (-0.4, 0.3, 0.4)
HORIZON, GAMMA = 4, 0.9
SMALL = MinimaxConfig(hidden=(32, 32), n_steps=500, n_features=128)


class LinearGaussianTask:
    """The task of the module docstring, a ``VectorTask`` for ``collect``."""

    name = "linear-gaussian"
    horizon, gamma = HORIZON, GAMMA
    action_space = ActionSpace.continuous(1)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return SIGMA0 * rng.standard_normal((n, 1))

    def step(self, states, actions, rng):
        s, u = states[:, 0], actions[:, 0]
        nxt = ALPHA * s + BETA * u + TAU * rng.standard_normal(len(s))
        return nxt[:, None], -(s**2) - 0.1 * u**2, np.zeros(len(s), dtype=bool)


def gaussian_policy(k: float, c: float, sigma: float, name: str) -> GaussianPolicy:
    return GaussianPolicy(lambda obs: k * obs[:, :1] + c, sigma, name=name)


def state_moments(k: float, c: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    mu, v = [0.0], [SIGMA0**2]
    for _ in range(HORIZON - 1):
        mu.append((ALPHA + BETA * k) * mu[-1] + BETA * c)
        v.append((ALPHA + BETA * k) ** 2 * v[-1] + BETA**2 * sigma**2 + TAU**2)
    return np.array(mu), np.array(v)


def normal_pdf(x, mean, var):
    return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)


def exact_weights(ds: LoggedDataset) -> tuple[np.ndarray, np.ndarray]:
    """(w_t(s_t), ζ_t(s_t, u_t)) of TARGET against BEHAVIOR on the logged steps, (n, H) each."""
    s, u = ds.observations[..., 0], ds.actions[..., 0]
    (mb, vb), (me, ve) = state_moments(*BEHAVIOR), state_moments(*TARGET)
    w = normal_pdf(s, me, ve) / normal_pdf(s, mb, vb)
    (kb, cb, sb), (ke, ce, se) = BEHAVIOR, TARGET
    return w, w * normal_pdf(u, ke * s + ce, se**2) / normal_pdf(u, kb * s + cb, sb**2)


def exact_value(k: float, c: float, sigma: float) -> float:
    mu, v = state_moments(k, c, sigma)
    s2 = v + mu**2
    u2 = k**2 * s2 + 2 * k * c * mu + c**2 + sigma**2
    return float(sum(GAMMA**t * (-s2[t] - 0.1 * u2[t]) for t in range(HORIZON)))


def pearson_per_step(learned: np.ndarray, exact: np.ndarray, steps) -> np.ndarray:
    return np.array([np.corrcoef(learned[:, t], exact[:, t])[0, 1] for t in steps])


@pytest.fixture(scope="module")
def closed_form():
    """2,000 trajectories of H = 4 and the weights of two policies with the same exact ratios: TARGET scored by its
    density, and its mean u = k s + c, deterministic, smoothed by a Gaussian kernel of h = σ_e."""
    ds = collect(LinearGaussianTask(), gaussian_policy(*BEHAVIOR, "behavior"), 2000, seed=0)
    k, c, sigma = TARGET
    policies = [gaussian_policy(*TARGET, "target"), DeterministicPolicy(lambda obs: k * obs[:, :1] + c, name="mean")]
    start = time.perf_counter()
    inputs = build_continuous_inputs(ds, policies, bandwidth=sigma, weights="mwl", minimax=SMALL, seed=0)
    return ds, inputs, time.perf_counter() - start


# ------------------------------------------------------------------------------------------ closed form
@pytest.mark.statistical
def test_learned_weights_correlate_with_the_exact_ratios(closed_form):
    """Pearson correlation with the exact ratios on the logged steps, per step (fit of SMALL: 500 Adam steps,
    (32, 32), 128 features, 16 draws per state). Measured with seeds 0, 1, 2 (data, draws and networks together),
    for the density policy / the smoothed deterministic one, the range over the steps:

        seed 0: ζ 0.966–0.987 / 0.963–0.987, w 0.993–0.997 / 0.992–0.999
        seed 1: ζ 0.969–0.984 / 0.969–0.983, w 0.983–0.994 / 0.985–0.994
        seed 2: ζ 0.929–0.973 / 0.931–0.976, w 0.991–0.996 / 0.992–0.998

    The lowest ζ is always at t = 0, where ζ_0 = π_e / π_b. The bounds 0.9 (ζ) and 0.95 (w) sit below the worst
    step of every seed with room for other platforms' floats; they are not tuned to this seed. A learner that
    ignored the state would reach only the one-step ratio's correlation with ζ, 0.60–0.64 at t = 3 (checked below).
    """
    ds, inputs, _ = closed_form
    w_exact, zeta_exact = exact_weights(ds)
    ratio = zeta_exact / w_exact  # π_e(u | s) / π_b(u | s)
    for p in range(2):
        zeta_corr = pearson_per_step(inputs.marginal_weights[p], zeta_exact, range(HORIZON))
        w_corr = pearson_per_step(inputs.state_marginal_weights[p], w_exact, range(1, HORIZON))
        assert zeta_corr.min() > 0.9, zeta_corr
        assert w_corr.min() > 0.95, w_corr
    one_step = pearson_per_step(ratio, zeta_exact, [HORIZON - 1])[0]
    assert one_step < 0.75 < zeta_corr[-1]  # the state part of ζ is learned, not only π_e / π_b
    assert np.allclose(inputs.marginal_weights.mean(axis=1), 1.0)  # E_{d_t^D}[ζ_t] = 1 per step
    assert np.all(inputs.state_marginal_weights[:, :, 0] == 1.0)  # w_0 ≡ 1


@pytest.mark.statistical
def test_sam_snis_with_the_learned_weights_estimates_the_exact_value(closed_form):
    """J(π_e) = −2.4197 exactly; the logged mean is 0.45–0.52 away. Measured over seeds 0, 1, 2 (density policy /
    smoothed deterministic one):

        |sam_snis − J| 0.002 / 0.001, 0.053 / 0.055, 0.015 / 0.001   (0.02, 0.77, 0.23 standard errors)
        |sm_snis − J|  0.021 / 0.008, 0.044 / 0.050, 0.122 / 0.114   (up to 1.57 standard errors)
        |snpdis − J|   0.009, 0.026, 0.245                           (up to 1.91 standard errors)

    So sam_snis is not always closer than snpdis (seed 1), and that is not asserted. What holds in every seed, and is
    asserted: both marginal estimators lie within 3 standard errors of J (a check of the error's order: the weights
    are learned on the same data, so this is no confidence statement), within a third of the logged mean's distance,
    and their standard errors (0.064–0.078) are below snpdis's (0.082–0.129): the marginal weights do not compound.
    """
    ds, inputs, _ = closed_form
    truth = exact_value(*TARGET)
    table = evaluate(ds, inputs, estimators=["sam_snis", "sm_snis", "snpdis"], interval="t")
    se = (table.upper - table.lower) / (2 * 1.959963984540054)
    error = np.abs(table.estimates[:2] - truth)
    assert np.all(error <= 3 * se[:2]), (table.estimates, se, truth)
    assert np.all(error < abs(ds.mean_return() - truth) / 3), (table.estimates, ds.mean_return(), truth)
    assert np.all(se[:2] < se[2]), se


# ------------------------------------------------------------------------------------------ end to end
TINY = MinimaxConfig(hidden=(16, 16), n_steps=60, n_features=32)


def pendulum_policy(gain: float, sigma: float | None, name: str):
    def mean(obs):
        return np.clip(-gain * obs[:, 2:3] - 2.0 * obs[:, 1:2], -2.0, 2.0)

    return DeterministicPolicy(mean, name=name) if sigma is None else GaussianPolicy(mean, sigma, low=-2.0, high=2.0, name=name)


@pytest.fixture(scope="module")
def pendulum():
    return collect(make("pendulum", horizon=5), pendulum_policy(0.5, 1.0, "behavior"), 200, seed=0)


def test_pendulum_gets_finite_marginal_estimates_end_to_end(pendulum):
    ds = pendulum
    policies = [pendulum_policy(0.8, 0.7, "gaussian"), pendulum_policy(0.8, None, "deterministic")]

    def q(obs, actions, steps):  # any Q̂ will do for finiteness: the DR forms need one
        return -(obs[:, 1] ** 2) - 0.1 * actions[:, 0] ** 2

    inputs = build_continuous_inputs(ds, policies, bandwidth=0.5, weights="mwl", minimax=TINY, q_functions=[q, q], seed=0)
    assert inputs.marginal_weights.shape == inputs.state_marginal_weights.shape == (2, ds.n_trajectories, ds.horizon)
    assert np.all(inputs.marginal_weights >= 0) and np.all(inputs.state_marginal_weights >= 0)
    names = ["sam_is", "sam_snis", "sam_dr", "sam_sndr", "sm_is", "sm_snis", "sm_dr", "sm_sndr"]
    table = evaluate(ds, inputs, estimators=names)
    assert list(table.estimator_names) == names
    assert np.isfinite(table.estimates).all()
    again = build_continuous_inputs(ds, policies, bandwidth=0.5, weights="mwl", minimax=TINY, q_functions=[q, q], seed=0)
    np.testing.assert_array_equal(again.marginal_weights, inputs.marginal_weights)  # seeded: reproducible
    plain = build_continuous_inputs(ds, policies, bandwidth=0.5, q_functions=[q, q], seed=0)
    np.testing.assert_array_equal(plain.v_hat, inputs.v_hat)  # the weights' draws leave V̂'s Monte Carlo alone


def test_weights_are_off_by_default_and_other_settings_run(pendulum):
    policy = pendulum_policy(0.8, 0.7, "gaussian")
    plain = build_continuous_inputs(pendulum, [policy], bandwidth=None)
    assert plain.marginal_weights is None and plain.state_marginal_weights is None
    for setting in ("dualdice", "gendice", "bestdice"):
        inputs = build_continuous_inputs(pendulum, [policy], bandwidth=None, weights=setting, minimax=TINY, n_weight_samples=2)
        assert np.isfinite(inputs.marginal_weights).all() and (inputs.marginal_weights >= 0).all(), setting


def test_variable_length_trajectories_and_prediction_on_other_data():
    """Finished trajectories sit in the absorbing state; a fit predicts on another dataset of the same horizon."""
    rng = np.random.default_rng(0)
    info = DatasetInfo(task="toy", gamma=0.9, action_space=ActionSpace.continuous(2))

    def trajectories(n):
        out = []
        for length in rng.integers(1, 5, size=n):
            actions = rng.normal(size=(length, 2))
            density = np.exp(-0.5 * (actions**2).sum(1)) / (2 * np.pi)
            out.append({"observations": rng.normal(size=(length, 3)), "actions": actions, "rewards": rng.normal(size=length),
                        "behavior_pscore": density, "terminal": bool(length < 4)})  # fmt: skip
        return LoggedDataset.from_trajectories(out, info, horizon=4)

    train, test = trajectories(120), trajectories(30)
    draws = rng.normal(0.3, 0.8, size=(1, 120, 4, 3, 2))
    pair = fit_continuous_weights(train, draws, "mwl", TINY)
    state = fit_continuous_state_weights(pair, train, TINY)
    for fit in (pair, state):
        values = predict_continuous_weights(fit, test)
        assert values.shape == (1, 30, 4) and np.isfinite(values).all() and (values >= 0).all()
    assert np.isfinite(pair.residual) and np.isnan(state.residual)
    w, zeta = continuous_marginal_weights(train, draws[:, :, :, 0], "mwl", TINY, predict_on=test)  # one draw: (P, n, H, d)
    assert w.shape == zeta.shape == (1, 30, 4)
    one_step = {"observations": np.zeros((1, 3)), "actions": np.zeros((1, 2)), "rewards": np.zeros(1), "behavior_pscore": np.ones(1)}
    short = LoggedDataset.from_trajectories([one_step], info, horizon=3)
    with pytest.raises(ValueError, match="dataset.horizon: expected 4"):
        predict_continuous_weights(pair, short)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_noise_has_the_kernels_law(name):
    """μ + h U must have density K_h(· − μ): check the second moment and the CDF at a few points."""
    k = KERNELS[name]
    u = kernel_noise(k, (200_000,), np.random.default_rng(0))
    assert np.mean(u**2) == pytest.approx(k.second_moment, rel=0.02)
    assert abs(np.mean(u)) < 0.01
    if k.support == 1.0:
        assert np.abs(u).max() <= 1.0
    lower = -min(k.support, 12.0)
    for x in (-0.5, 0.0, 0.5):
        cdf = integrate.quad(lambda v: float(k(np.array(v))), lower, x)[0]
        assert np.mean(u <= x) == pytest.approx(cdf, abs=0.006)


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_names_the_argument(pendulum):
    policy = pendulum_policy(0.8, 0.7, "gaussian")
    with pytest.raises(OPEInputError, match="^weights: expected None, one of"):
        build_continuous_inputs(pendulum, [policy], bandwidth=None, weights="tabular")
    with pytest.raises(OPEInputError, match="^weights: learns the marginal weights, but marginal_weights"):
        build_continuous_inputs(pendulum, [policy], bandwidth=None, weights="mwl", marginal_weights=np.ones((1, 200, 5)))
    with pytest.raises(OPEInputError, match="^minimax: a MinimaxConfig is used with weights="):
        build_continuous_inputs(pendulum, [policy], bandwidth=None, minimax=TINY)
    with pytest.raises(OPEInputError, match="^n_weight_samples: expected a positive int"):
        build_continuous_inputs(pendulum, [policy], bandwidth=None, weights="mwl", n_weight_samples=0)

    class DensityOnly:  # a stochastic policy that cannot be sampled: its actions at s' are missing
        name = "density-only"

        def pscore(self, obs, actions, steps):
            return policy.pscore(obs, actions, steps)

    with pytest.raises(OPEInputError, match=r"^policies\[0\] \('density-only'\): expected a sample\(observations"):
        build_continuous_inputs(pendulum, [DensityOnly()], bandwidth=None, weights="mwl", minimax=TINY)
    custom = KERNELS["gaussian"].__class__("mine", KERNELS["gaussian"].density, np.inf, 1.0)
    with pytest.raises(OPEInputError, match="^kernel: drawing from the smoothed policy needs one of"):
        deterministic = pendulum_policy(0.8, None, "det")
        build_continuous_inputs(pendulum, [deterministic], kernel=custom, bandwidth=0.5, weights="mwl", minimax=TINY)

    n, H = pendulum.n_trajectories, pendulum.horizon
    with pytest.raises(ValueError, match="^eval_actions: expected π_e's actions"):
        fit_continuous_weights(pendulum, None)
    with pytest.raises(ValueError, match=r"^eval_actions: expected shape \(P, 200, 5, M, 1\)"):
        fit_continuous_weights(pendulum, np.zeros((1, n, H - 1, 1)))
    with pytest.raises(ValueError, match="^eval_actions: expected finite actions"):
        fit_continuous_weights(pendulum, np.full((1, n, H, 1), np.nan))
    with pytest.raises(ValueError, match="^fit: expected a ContinuousWeightsFit of kind 'weights'"):
        fit_continuous_state_weights("not a fit", pendulum)


def test_discrete_actions_are_refused_by_name():
    from ope_cases import policies_for, small_task

    task = small_task()
    behavior, evals = policies_for(task)
    ds = collect(task, behavior, 10, seed=0)
    with pytest.raises(OPEInputError, match="^dataset.action_space: expected continuous actions, found discrete"):
        build_continuous_inputs(ds, evals, bandwidth=None, weights="mwl")
    with pytest.raises(ValueError, match="^dataset.action_space: expected continuous actions, found discrete"):
        fit_continuous_weights(ds, np.zeros((1, ds.n_trajectories, ds.horizon, 1)))


def test_the_pipeline_passes_the_weights_on_for_continuous_actions(pendulum):
    from opelab.pipeline import learned_inputs

    policy = pendulum_policy(0.8, 0.7, "gaussian")
    inputs = learned_inputs(pendulum, [policy], q_function="none", bandwidth=0.5, weights="mwl", minimax=TINY)
    assert inputs.marginal_weights is not None and np.isfinite(inputs.state_marginal_weights).all()
    plain = learned_inputs(pendulum, [policy], q_function="none", bandwidth=0.5, minimax=TINY)  # the benchmark's call
    assert plain.marginal_weights is None


def test_continuous_fits_are_recorded_with_their_convergence(pendulum):
    """A benchmark cell sees these fits (``record_fits``) and stores one row per nuisance; an under-trained fit
    (3 steps) is flagged (by its loss trend: its flow residual, 0.05 measured, is already under 0.1 there)."""
    from opelab.bench.runner import nuisance_frame
    from opelab.ope.minimax import MinimaxConfig, record_fits

    policy = pendulum_policy(0.8, 0.7, "gaussian")
    with record_fits() as fits:
        build_continuous_inputs(pendulum, [policy], bandwidth=None, weights="mwl", minimax=MinimaxConfig(n_steps=3, seed=0), n_weight_samples=2)
    assert [f.kind for f in fits] == ["weights", "state_weights"]
    frame = nuisance_frame(fits).set_index("nuisance")
    assert list(frame.index) == ["weights", "state_weights"] and int(frame.loc["weights", "steps"]) == 3
    assert not frame.loc["weights", "converged"] and abs(frame.loc["weights", "trend"]) >= 1e-2
    assert np.isnan(frame.loc["weights", "last_change"])  # not measured for the continuous learner
