"""Tests for the continuous-action heads and for discrete heads on float observations.

Ground truth: densities integrate to 1 numerically (truncation included; for the clipped Gaussian the interior
density plus the atoms at the bounds), closed forms of the normal and truncated normal (scipy.stats), sampling
frequencies within binomial standard errors, and E_b[π_e / π_b] = 1 for importance weights between heads.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from opelab.policies import (
    CallableActionValues,
    DeterministicPolicy,
    DiscretePolicy,
    EpsilonGreedyPolicy,
    GaussianPolicy,
    GreedyPolicy,
    Policy,
    SoftmaxPolicy,
    TruncatedGaussianPolicy,
)


def constant(*mean):
    """A base policy that returns the same mean for every observation."""
    mu = np.array(mean, dtype=np.float64)
    return lambda obs: np.broadcast_to(mu, (len(obs), len(mu)))


def linear_base(obs):
    return np.stack([np.tanh(obs[:, 0]), 0.5 * obs[:, 1] - 0.3], axis=1)


OBS1 = np.zeros((1, 3))
GRID = np.linspace(-1.0, 1.0, 20001)
MID = (GRID[1:] + GRID[:-1]) / 2  # midpoints: the rule needs no value at the bounds, where truncated heads are 0


def pscores_1d(policy, grid=GRID):
    return policy.pscore(np.zeros((len(grid), 3)), grid[:, None])


# ---------------------------------------------------------------------------------------------- integrate to 1
@pytest.mark.parametrize("mu, sigma", [(0.0, 0.3), (0.8, 0.5), (3.0, 0.4), (-6.0, 0.5)])
def test_truncated_density_integrates_to_one_and_matches_scipy(mu, sigma):
    head = TruncatedGaussianPolicy(constant(mu), sigma, -1.0, 1.0)
    assert pscores_1d(head, MID).sum() * (GRID[1] - GRID[0]) == pytest.approx(1.0, rel=1e-6)
    dens = pscores_1d(head)
    inner = GRID[1:-1]
    a, b = (-1 - mu) / sigma, (1 - mu) / sigma
    np.testing.assert_allclose(dens[1:-1], stats.truncnorm.pdf(inner, a, b, loc=mu, scale=sigma), rtol=1e-8)
    assert dens[0] == 0.0 and dens[-1] == 0.0  # no atoms at the bounds
    assert head.pscore(np.zeros((2, 3)), np.array([[-1.5], [1.01]])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("mu, sigma", [(0.0, 0.3), (0.7, 0.5), (2.0, 1.0), (-0.5, 2.0)])
def test_clipped_density_plus_bound_masses_is_one(mu, sigma):
    head = GaussianPolicy(constant(mu), sigma, low=-1.0, high=1.0)
    dens = pscores_1d(head)
    lower, upper = dens[0], dens[-1]  # the atoms' probabilities
    assert lower == pytest.approx(stats.norm.cdf(-1, mu, sigma), rel=1e-10)
    assert upper == pytest.approx(stats.norm.sf(1, mu, sigma), rel=1e-10)
    interior = pscores_1d(head, MID).sum() * (GRID[1] - GRID[0])
    np.testing.assert_allclose(dens[1:-1], stats.norm.pdf(GRID[1:-1], mu, sigma), rtol=1e-10)
    assert interior + lower + upper == pytest.approx(1.0, abs=1e-6)
    assert head.pscore(np.zeros((1, 3)), np.array([[1.2]]))[0] == 0.0


def test_unbounded_gaussian_integrates_to_one():
    head = GaussianPolicy(constant(0.3), 0.7)
    grid = np.linspace(-8, 8, 40001)
    assert np.trapezoid(pscores_1d(head, grid), grid) == pytest.approx(1.0, abs=1e-8)


def test_two_dimensional_heads_integrate_to_one():
    h = 2 / 400
    g = np.concatenate([[-1.0], np.linspace(-1 + h / 2, 1 - h / 2, 400), [1.0]])  # bounds + cell midpoints
    xx, yy = np.meshgrid(g, g, indexing="ij")
    acts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    obs = np.zeros((len(acts), 3))
    sigma = (0.4, 0.9)
    trunc = TruncatedGaussianPolicy(constant(0.5, -0.2), sigma, (-1, -1), (1, 1)).pscore(obs, acts).reshape(xx.shape)
    assert trunc[1:-1, 1:-1].sum() * h * h == pytest.approx(1.0, rel=1e-4)
    assert trunc[0].sum() == trunc[-1].sum() == trunc[:, 0].sum() == trunc[:, -1].sum() == 0.0
    # clipped: interior density, edges (mass in one dimension x density in the other) and corners (two masses)
    clip = GaussianPolicy(constant(0.5, -0.2), sigma, low=(-1, -1), high=(1, 1)).pscore(obs, acts).reshape(xx.shape)
    interior = clip[1:-1, 1:-1].sum() * h * h
    edges = sum(edge[1:-1].sum() * h for edge in (clip[0], clip[-1], clip[:, 0], clip[:, -1]))
    corners = clip[0, 0] + clip[0, -1] + clip[-1, 0] + clip[-1, -1]
    assert interior + edges + corners == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------------------------------------- sampling
def test_clipped_samples_hit_the_bounds_as_often_as_their_atoms_say():
    head = GaussianPolicy(constant(0.6), 0.5, low=-1.0, high=1.0)
    n = 40000
    acts, ps = head.sample(np.zeros((n, 3)), np.random.default_rng(0))
    p_high = stats.norm.sf(1, 0.6, 0.5)
    freq = (acts[:, 0] == 1.0).mean()
    assert abs(freq - p_high) < 4 * np.sqrt(p_high * (1 - p_high) / n)
    np.testing.assert_allclose(ps[acts[:, 0] == 1.0], p_high)
    np.testing.assert_allclose(ps, head.pscore(np.zeros((n, 3)), acts))


@pytest.mark.parametrize("mu", [0.2, 2.5, -4.0])
def test_truncated_samples_follow_the_truncated_normal(mu):
    sigma, n = 0.6, 40000
    head = TruncatedGaussianPolicy(constant(mu), sigma, -1.0, 1.0)
    acts, ps = head.sample(np.zeros((n, 3)), np.random.default_rng(1))
    assert ((acts > -1) & (acts < 1)).all()
    a, b = (-1 - mu) / sigma, (1 - mu) / sigma
    for q in (0.1, 0.5, 0.9):
        x = stats.truncnorm.ppf(q, a, b, loc=mu, scale=sigma)
        assert abs((acts[:, 0] <= x).mean() - q) < 4 * np.sqrt(q * (1 - q) / n)
    np.testing.assert_allclose(ps, head.pscore(np.zeros((n, 3)), acts), rtol=1e-12)


def test_state_dependent_means_and_per_dimension_sigma():
    obs = np.random.default_rng(2).normal(size=(500, 3))
    head = GaussianPolicy(linear_base, (0.2, 0.5))
    acts, ps = head.sample(obs, np.random.default_rng(3))
    first = stats.norm.pdf(acts[:, 0], np.tanh(obs[:, 0]), 0.2)
    expected = first * stats.norm.pdf(acts[:, 1], 0.5 * obs[:, 1] - 0.3, 0.5)
    np.testing.assert_allclose(ps, expected, rtol=1e-10)
    np.testing.assert_allclose(head.log_pscore(obs, acts), np.log(expected), rtol=1e-10)
    assert isinstance(head, Policy)


def test_importance_weights_between_heads_have_mean_one():
    """E_b[π_e(a|s)/π_b(a|s)] = 1 whenever π_e is absolutely continuous w.r.t. π_b (same reference measure)."""
    n = 200_000
    obs = np.zeros((n, 3))
    behavior = GaussianPolicy(constant(0.3), 0.8, low=-1.0, high=1.0)
    acts, pb = behavior.sample(obs, np.random.default_rng(4))
    for evaluation in (
        GaussianPolicy(constant(-0.4), 0.6, low=-1.0, high=1.0),
        TruncatedGaussianPolicy(constant(0.5), 0.4, -1.0, 1.0),
    ):
        w = evaluation.pscore(obs, acts) / pb
        assert abs(w.mean() - 1.0) < 4 * w.std() / np.sqrt(n)


# ---------------------------------------------------------------------------------------------- edge cases
def test_far_tail_truncation_stays_finite():
    head = TruncatedGaussianPolicy(constant(30.0), 0.5, -1.0, 1.0)
    acts, ps = head.sample(np.zeros((100, 3)), np.random.default_rng(5))
    assert np.isfinite(ps).all() and (ps > 0).all()
    assert ((acts > 0.9) & (acts < 1)).all()  # the mass sits at the upper bound, within a few σ²/(μ − 1)
    assert acts.mean() == pytest.approx(stats.truncnorm.mean(-62, -58, loc=30, scale=0.5), abs=3e-3)


def test_deterministic_policy_is_a_point_mass():
    det = DeterministicPolicy(linear_base)
    obs = np.ones((4, 3))
    acts, ps = det.sample(obs, np.random.default_rng(0))
    np.testing.assert_array_equal(acts, linear_base(obs))
    assert np.isinf(ps).all()
    moved = acts + np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.0, 0.1]])
    assert det.pscore(obs, moved).tolist() == [np.inf, 0, np.inf, 0]


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="sigma"):
        GaussianPolicy(constant(0.0), 0.0)
    with pytest.raises(ValueError, match="low, high"):
        GaussianPolicy(constant(0.0), 1.0, low=-1.0)
    with pytest.raises(ValueError, match="low, high"):
        TruncatedGaussianPolicy(constant(0.0), 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        GaussianPolicy(constant(0.0, 0.0), (1.0, 1.0, 1.0)).sample(OBS1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="low"):
        TruncatedGaussianPolicy(constant(0.0, 0.0), 1.0, (-1, -1, -1), (1, 1, 1)).sample(OBS1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="base"):
        GaussianPolicy(lambda obs: np.zeros((len(obs) + 1, 2)), 1.0).sample(OBS1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="actions"):
        GaussianPolicy(constant(0.0, 0.0), 1.0).pscore(OBS1, np.zeros((1, 3)))
    with pytest.raises(TypeError, match="base"):
        TruncatedGaussianPolicy(3.0, 1.0, -1, 1)


# ---------------------------------------------------------------------------------------------- discrete heads, float obs
def q_net(obs):
    """A linear 'Q-network' on float observations."""
    w = np.array([[1.0, -0.5, 0.0], [0.2, 0.3, -1.0]])
    return obs[:, :2] @ w


@pytest.mark.parametrize(
    "head",
    [
        SoftmaxPolicy(CallableActionValues(q_net, 3), 0.5),
        EpsilonGreedyPolicy(GreedyPolicy(CallableActionValues(q_net, 3)), 0.1),
        GreedyPolicy(CallableActionValues(q_net, 3)),
    ],
    ids=["softmax", "eps-greedy", "greedy"],
)
def test_discrete_heads_on_float_observations(head):
    obs = np.random.default_rng(6).normal(size=(300, 4))
    probs = head.action_probs(obs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert isinstance(head, DiscretePolicy)
    acts, ps = head.sample(obs, np.random.default_rng(7))
    np.testing.assert_array_equal(ps, probs[np.arange(300), acts])
    np.testing.assert_array_equal(head.pscore(obs, acts), ps)
    greedy = np.argmax(q_net(obs), axis=1)
    assert (np.argmax(probs, axis=1) == greedy).all()


def test_callable_action_values_checks_its_output():
    with pytest.raises(ValueError, match="action values"):
        CallableActionValues(q_net, 4).action_values(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_actions"):
        CallableActionValues(q_net, 0)
