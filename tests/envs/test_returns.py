"""Tests for opelab.envs.returns (exact return distributions of tabular MDPs).

Ground truth, never the code under test checking itself:
- atoms written out by hand for tiny MDPs (one with a terminal state);
- ``TabularMDP.policy_value`` (backward induction) for the mean, to 1e-10;
- big Monte-Carlo samples of ``collect``: every simulated return is an atom (noiseless rewards), the
  sup-distance of the CDFs is below the Dvoretzky–Kiefer–Wolfowitz 99% bound 1.63/√N (valid for any law,
  with Massart's constant), scipy's Kolmogorov–Smirnov p-value for continuous laws, variance within 4 SE;
- closed forms of the normal distribution and numerical integration for Gaussian mixtures.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from opelab.envs import TabularMDP, collect
from opelab.envs.returns import ReturnDistribution, exact_return_distribution
from opelab.policies import SoftmaxPolicy, TabularPolicy, TabularQ, UniformPolicy

N_MC = 20_000
DKW_99 = 1.63 / np.sqrt(N_MC)


# ---------------------------------------------------------------------------------------------- helpers
def sas_mdp(seed: int, *, reward_noise: float, n_terminal: int, S: int = 4, A: int = 2, H: int = 4) -> TabularMDP:
    """Next-state dependent rewards R(s, a, s'), built by hand."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.8), size=(S, A))
    R = rng.normal(0.0, 1.0, size=(S, A, S))
    term = np.zeros(S, dtype=bool)
    term[S - n_terminal:] = True
    mu = np.zeros(S)
    mu[: S - n_terminal] = rng.dirichlet(np.ones(S - n_terminal))
    return TabularMDP(initial=mu, transitions=P, rewards=R, horizon=H, gamma=0.9, reward_noise=reward_noise,
                      terminal_states=term, name=f"sas{seed}")


def sa_mdp(seed: int, *, reward_noise: float, n_terminal: int, S: int = 4) -> TabularMDP:
    return TabularMDP.random(S, 2, horizon=4, gamma=0.9, seed=seed, reward_noise=reward_noise, n_terminal=n_terminal)


def time_dependent_policy(task: TabularMDP, seed: int) -> TabularPolicy:
    rng = np.random.default_rng(seed)
    return TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)), name="td")


CASES = {
    "sa_noiseless_terminal": lambda: sa_mdp(0, reward_noise=0.0, n_terminal=1),
    "sa_noiseless": lambda: sa_mdp(1, reward_noise=0.0, n_terminal=0),
    "sa_noisy_terminal": lambda: sa_mdp(2, reward_noise=0.3, n_terminal=1, S=3),  # noisy: few atoms keep KS fast
    "sas_noiseless_terminal": lambda: sas_mdp(3, reward_noise=0.0, n_terminal=1),
    "sas_noisy": lambda: sas_mdp(4, reward_noise=1.0, n_terminal=0, S=3, H=3),
    "sas_noisy_terminal": lambda: sas_mdp(5, reward_noise=0.2, n_terminal=2),
}


def two_state_mdp() -> TabularMDP:
    """s0 --a0 (r 0)--> s0;  s0 --a1 (r 1)--> s0 or s1 (½ each);  s1 --a0 (r 1), a1 (r 3)--> s1.  γ = ½, H = 2."""
    P = np.zeros((2, 2, 2))
    P[0, 0] = [1.0, 0.0]
    P[0, 1] = [0.5, 0.5]
    P[1, :] = [0.0, 1.0]
    R = np.array([[0.0, 1.0], [1.0, 3.0]])
    return TabularMDP(initial=np.array([1.0, 0.0]), transitions=P, rewards=R, horizon=2, gamma=0.5, name="two_state")


def terminal_mdp(reward_noise: float = 0.0) -> TabularMDP:
    """s0 --a0 (r 1)--> s0;  s0 --a1 (r 2)--> s1, terminal.  γ = 0.9, H = 2."""
    P = np.zeros((2, 2, 2))
    P[0, 0] = [1.0, 0.0]
    P[0, 1] = [0.0, 1.0]
    P[1, :] = [0.0, 1.0]
    R = np.array([[1.0, 2.0], [0.0, 0.0]])
    return TabularMDP(initial=np.array([1.0, 0.0]), transitions=P, rewards=R, horizon=2, gamma=0.9,
                      reward_noise=reward_noise, terminal_states=np.array([False, True]), name="terminal")


def single_path_mdp(reward_noise: float) -> TabularMDP:
    """One state, one action, reward 1 each step: G ~ N(Σ γ^t, σ² Σ γ^{2t})."""
    return TabularMDP(initial=np.array([1.0]), transitions=np.ones((1, 1, 1)), rewards=np.ones((1, 1)), horizon=3,
                      gamma=0.9, reward_noise=reward_noise, name="single")


# ---------------------------------------------------------------------------------------------- hand-checked
def test_two_state_atoms_by_hand():
    task = two_state_mdp()
    dist = exact_return_distribution(task, UniformPolicy(2))
    # paths: a0a0 → 0; a0a1 → ½; a1(s0)a0 → 1; a1(s0)a1 → 1.5; a1(s1)a0 → 1 + ½·1 = 1.5; a1(s1)a1 → 2.5
    np.testing.assert_allclose(dist.means, [0.0, 0.5, 1.0, 1.5, 2.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(dist.probs, [0.25, 0.25, 0.125, 0.25, 0.125], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(dist.lengths, [2, 2, 2, 2, 2])
    assert dist.mean() == pytest.approx(0.9375, abs=1e-15)
    assert dist.mean() == pytest.approx(task.policy_value(UniformPolicy(2)), abs=1e-12)
    assert dist.variance() == pytest.approx(1.53125 - 0.9375**2, abs=1e-14)
    # cumulative probabilities .25, .5, .625, .875, 1
    np.testing.assert_allclose(dist.cdf([-1.0, 0.0, 0.4, 0.5, 1.49, 1.5, 2.5, 9.0]),
                               [0.0, 0.25, 0.25, 0.5, 0.625, 0.875, 1.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(dist.quantile([0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0]), [0, 0, 0.5, 1, 1.5, 2.5, 2.5])
    assert dist.interquartile_range() == pytest.approx(1.5)
    np.testing.assert_allclose(dist.cvar([0.1, 0.5, 0.6, 1.0]), [0.0, 0.25, (0.125 + 0.1) / 0.6, 0.9375], atol=1e-14)


def test_terminal_atoms_have_their_own_lengths_and_noise():
    dist = exact_return_distribution(terminal_mdp(), UniformPolicy(2))
    np.testing.assert_allclose(dist.means, [1.9, 2.0, 2.8], atol=1e-14)
    np.testing.assert_allclose(dist.probs, [0.25, 0.5, 0.25], atol=1e-15)
    np.testing.assert_array_equal(dist.lengths, [2, 1, 2])

    noisy_task = terminal_mdp(reward_noise=0.5)
    noisy = exact_return_distribution(noisy_task, UniformPolicy(2))
    np.testing.assert_allclose(noisy.stds, 0.5 * np.sqrt([1 + 0.81, 1.0, 1 + 0.81]), rtol=1e-14)
    y = np.array([1.5, 2.0, 2.6])
    want = (0.25 * stats.norm.cdf(y, 1.9, 0.5 * np.sqrt(1.81)) + 0.5 * stats.norm.cdf(y, 2.0, 0.5)
            + 0.25 * stats.norm.cdf(y, 2.8, 0.5 * np.sqrt(1.81)))
    np.testing.assert_allclose(noisy.cdf(y), want, rtol=1e-12)
    mean = 0.25 * 1.9 + 0.5 * 2.0 + 0.25 * 2.8
    want_var = (0.25 * ((1.9 - mean) ** 2 + 0.25 * 1.81) + 0.5 * ((2.0 - mean) ** 2 + 0.25)
                + 0.25 * ((2.8 - mean) ** 2 + 0.25 * 1.81))
    assert noisy.variance() == pytest.approx(want_var, rel=1e-13)
    assert noisy.mean() == pytest.approx(noisy_task.policy_value(UniformPolicy(2)), abs=1e-12)


def test_float_duplicates_merge():
    """0.1 + 0.2 + 0.1 and 0.2 + 0.1 + 0.1 differ in floating point but are one atom."""
    task = TabularMDP(initial=np.array([1.0]), transitions=np.ones((1, 2, 1)), rewards=np.array([[0.1, 0.2]]),
                      horizon=3, gamma=1.0)
    dist = exact_return_distribution(task, UniformPolicy(2))
    np.testing.assert_allclose(dist.means, [0.3, 0.4, 0.5, 0.6], atol=1e-14)
    np.testing.assert_allclose(dist.probs, np.array([1, 3, 3, 1]) / 8, atol=1e-15)


def test_single_gaussian_closed_forms():
    sigma = 0.4
    dist = exact_return_distribution(single_path_mdp(sigma), UniformPolicy(1))
    mu, sd = 1 + 0.9 + 0.81, sigma * np.sqrt(1 + 0.81 + 0.9**4)
    assert dist.n_atoms == 1 and dist.is_continuous
    assert dist.mean() == pytest.approx(mu, abs=1e-14)
    assert dist.variance() == pytest.approx(sd**2, rel=1e-13)
    y = np.linspace(mu - 3 * sd, mu + 3 * sd, 7)
    np.testing.assert_allclose(dist.cdf(y), stats.norm.cdf(y, mu, sd), rtol=1e-12)
    alphas = np.array([0.01, 0.1, 0.25, 0.5, 0.9])
    z = stats.norm.ppf(alphas)
    np.testing.assert_allclose(dist.quantile(alphas), mu + sd * z, atol=1e-10)
    np.testing.assert_allclose(dist.cvar(alphas), mu - sd * stats.norm.pdf(z) / alphas, atol=1e-10)
    assert dist.interquartile_range() == pytest.approx(2 * sd * stats.norm.ppf(0.75), abs=1e-10)


def test_gaussian_mixture_quantile_and_cvar_by_integration():
    dist = exact_return_distribution(sas_mdp(6, reward_noise=0.3, n_terminal=1, S=3, H=2), UniformPolicy(2))
    assert dist.n_atoms > 3
    means, sds, probs = dist.means, dist.stds, dist.probs

    def pdf(y: float) -> float:
        return float(probs @ stats.norm.pdf(y, means, sds))

    low = float((means - 12 * sds).min())
    for alpha in (0.05, 0.3, 0.5, 0.8):
        q = float(dist.quantile(alpha))
        assert float(dist.cdf(q)) == pytest.approx(alpha, abs=1e-11)
        tail, _ = integrate.quad(lambda y: y * pdf(y), low, q, epsabs=1e-13, epsrel=1e-12, limit=200)
        assert float(dist.cvar(alpha)) == pytest.approx(tail / alpha, abs=1e-8)


# ---------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("policy_kind", ["uniform", "softmax", "time_dependent"])
def test_mean_equals_policy_value(case, policy_kind):
    task = CASES[case]()
    policy = {
        "uniform": UniformPolicy(task.n_actions),
        "softmax": SoftmaxPolicy(TabularQ(task.optimal_q()), 0.3),
        "time_dependent": time_dependent_policy(task, seed=9),
    }[policy_kind]
    dist = exact_return_distribution(task, policy)
    assert dist.probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert abs(dist.mean() - task.policy_value(policy)) < 1e-10


def test_deterministic_policy_drops_impossible_paths():
    task = sa_mdp(0, reward_noise=0.0, n_terminal=1)
    greedy = task.optimal_policy()
    dist = exact_return_distribution(task, greedy)
    assert (dist.probs > 0).all()
    assert abs(dist.mean() - task.policy_value(greedy)) < 1e-10
    assert dist.n_atoms < exact_return_distribution(task, UniformPolicy(2)).n_atoms


@pytest.mark.statistical
@pytest.mark.parametrize("case", sorted(CASES))
def test_distribution_matches_monte_carlo(case):
    task = CASES[case]()
    policy = time_dependent_policy(task, seed=3)
    dist = exact_return_distribution(task, policy)
    returns = np.asarray(collect(task, policy, N_MC, seed=17).returns)
    if dist.is_continuous:
        assert stats.kstest(returns, dist.cdf).pvalue > 1e-3
    else:
        support = np.unique(dist.means)
        assert np.diff(support).min() > 1e-8, "atoms must be distinguishable from float noise"
        index = np.clip(np.searchsorted(support, returns), 1, len(support) - 1)
        nearest = np.where(np.abs(support[index - 1] - returns) <= np.abs(support[index] - returns), index - 1, index)
        assert np.abs(support[nearest] - returns).max() < 1e-9, "every simulated return is an atom"
        empirical = np.cumsum(np.bincount(nearest, minlength=len(support))) / N_MC
        assert np.abs(np.asarray(dist.cdf(support)) - empirical).max() < DKW_99
    centred_sq = (returns - returns.mean()) ** 2
    se = centred_sq.std(ddof=1) / np.sqrt(N_MC)
    assert abs(dist.variance() - returns.var(ddof=1)) < 4 * se


@pytest.mark.statistical
def test_monte_carlo_check_has_power():
    """The DKW check rejects the exact law of another policy: the comparison above can fail."""
    task = CASES["sas_noiseless_terminal"]()
    other = exact_return_distribution(task, UniformPolicy(2))
    returns = np.asarray(collect(task, time_dependent_policy(task, seed=3), N_MC, seed=17).returns)
    grid = np.unique(np.concatenate([other.means, returns]))
    empirical = np.searchsorted(np.sort(returns), grid, side="right") / N_MC
    assert np.abs(np.asarray(other.cdf(grid)) - empirical).max() > 2 * DKW_99


# ---------------------------------------------------------------------------------------------- interface
def test_cdf_shapes_and_monotonicity():
    dist = exact_return_distribution(CASES["sa_noisy_terminal"](), UniformPolicy(2))
    assert isinstance(dist.cdf(1.0), float)
    y = np.linspace(-2, 6, 12).reshape(3, 4)
    values = dist.cdf(y)
    assert values.shape == (3, 4)
    assert (np.diff(values.reshape(-1)) >= 0).all() and values.min() >= 0 and values.max() <= 1
    assert isinstance(dist.quantile(0.5), float) and dist.quantile(np.array([0.2, 0.7])).shape == (2,)


def test_max_atoms_refuses():
    task = TabularMDP.random(6, 3, horizon=6, gamma=0.9, seed=0)
    with pytest.raises(ValueError, match="max_atoms: expected .* at most 1000 atoms"):
        exact_return_distribution(task, UniformPolicy(3), max_atoms=1000)
    with pytest.raises(ValueError, match="max_atoms: expected a positive int"):
        exact_return_distribution(task, UniformPolicy(3), max_atoms=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"probs": [0.5, 0.4]}, "probs: expected non-negative values summing to 1"),
        ({"probs": [0.5]}, r"probs: expected shape \(2,\)"),
        ({"lengths": [0, 1]}, "lengths: expected positive ints"),
        ({"reward_noise": -1.0}, "reward_noise: expected a non-negative float"),
        ({"gamma": 1.5}, r"gamma: expected a float in \[0, 1\]"),
    ],
)
def test_return_distribution_validation(kwargs, match):
    args = {"means": [0.0, 1.0], "probs": [0.5, 0.5], "lengths": [1, 1]} | kwargs
    with pytest.raises(ValueError, match=match):
        ReturnDistribution(**args)


def test_alpha_validation():
    atoms = ReturnDistribution(means=[0.0, 1.0], probs=[0.5, 0.5], lengths=[1, 1])
    assert atoms.quantile(1.0) == 1.0 and atoms.cvar(1.0) == pytest.approx(0.5)
    gaussian = ReturnDistribution(means=[0.0, 1.0], probs=[0.5, 0.5], lengths=[1, 1], reward_noise=1.0)
    for bad in (0.0, -0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="alpha: expected levels in"):
            atoms.quantile(bad)
    with pytest.raises(ValueError, match=r"alpha: expected levels in \(0, 1\)"):
        gaussian.cvar(1.0)
