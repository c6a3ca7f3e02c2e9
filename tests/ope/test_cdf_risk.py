"""Tests for opelab.ope.risk: risk functionals of step CDFs on a grid and the projection onto valid CDFs.

Ground truth: closed forms on hand-built step CDFs; order statistics of an expanded sample (a step CDF with
masses m_k/N is the empirical law of N points, whose lowest α = j/N fraction is j sorted points); the exact
``ReturnDistribution`` of a tabular MDP read on its atoms (exact) or on a fine grid (within the grid
spacing); a plain-Python pool-adjacent-violators loop for the projection.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opelab.envs import TabularMDP
from opelab.envs.returns import exact_return_distribution
from opelab.ope.risk import (
    cdf_cvar,
    cdf_interquartile_range,
    cdf_mean,
    cdf_quantile,
    cdf_variance,
    project_cdf,
)
from opelab.policies import TabularPolicy, UniformPolicy

UNIFORM_GRID = np.array([1.0, 2.0, 3.0, 4.0])
UNIFORM_CDF = np.array([0.25, 0.5, 0.75, 1.0])


# ---------------------------------------------------------------------------------------------- closed forms
def test_uniform_on_one_to_four():
    g, F = UNIFORM_GRID, UNIFORM_CDF
    assert cdf_mean(g, F) == pytest.approx(2.5, abs=1e-15)
    assert cdf_variance(g, F) == pytest.approx(1.25, abs=1e-15)
    want_cvar = [1.0, (0.25 + 0.05 * 2) / 0.3, 1.5, 2.5]
    np.testing.assert_allclose(cdf_cvar(g, F, [0.25, 0.3, 0.5, 1.0]), want_cvar, atol=1e-15)
    np.testing.assert_array_equal(cdf_quantile(g, F, [0.1, 0.25, 0.26, 0.5, 0.75, 0.76, 1.0]), [1, 1, 2, 2, 3, 4, 4])
    assert cdf_quantile(g, F, 0.5) == 2.0
    assert cdf_cvar(g, F, 0.25) == pytest.approx(1.0)
    assert cdf_interquartile_range(g, F) == 2.0


def test_accumulated_float_sums_reach_their_level():
    """0.1 + 0.15 is 0.25000000000000006 or so in floats: the 0.25-quantile is still the second point."""
    F = np.cumsum([0.1, 0.15, 0.75])
    assert cdf_quantile(np.array([0.0, 1.0, 2.0]), F, 0.25) == 1.0


def test_missing_top_mass_sits_on_the_last_grid_point():
    g, F = np.array([0.0, 1.0, 2.0]), np.array([0.2, 0.5, 0.7])  # masses .2, .3 and .2 + .3 on 2
    assert cdf_mean(g, F) == pytest.approx(0.3 + 1.0)
    assert cdf_variance(g, F) == pytest.approx(0.3 * 1 + 0.5 * 4 - 1.3**2)
    np.testing.assert_array_equal(cdf_quantile(g, F, [0.5, 0.6, 0.99]), [1.0, 2.0, 2.0])
    np.testing.assert_allclose(cdf_cvar(g, F, [0.6, 1.0]), [(0.3 + 0.1 * 2) / 0.6, 1.3])
    all_missing = np.zeros(3)
    assert cdf_mean(g, all_missing) == 2.0 and cdf_variance(g, all_missing) == 0.0


def test_leading_axes_are_vectorized():
    rng = np.random.default_rng(0)
    grid = np.sort(rng.normal(size=9))
    cdf = np.cumsum(rng.dirichlet(np.ones(10), size=(2, 3))[..., :9], axis=-1)
    alphas = np.array([0.05, 0.3, 0.9])
    assert cdf_mean(grid, cdf).shape == (2, 3)
    assert cdf_cvar(grid, cdf, alphas).shape == (2, 3, 3)
    assert cdf_quantile(grid, cdf, 0.3).shape == (2, 3)
    for i in range(2):
        for j in range(3):
            row = cdf[i, j]
            assert cdf_mean(grid, cdf)[i, j] == pytest.approx(float(cdf_mean(grid, row)), rel=1e-14)
            assert cdf_variance(grid, cdf)[i, j] == pytest.approx(float(cdf_variance(grid, row)), rel=1e-13)
            np.testing.assert_array_equal(cdf_quantile(grid, cdf, alphas)[i, j], cdf_quantile(grid, row, alphas))
            np.testing.assert_allclose(cdf_cvar(grid, cdf, alphas)[i, j], cdf_cvar(grid, row, alphas), rtol=1e-14)
            assert cdf_interquartile_range(grid, cdf)[i, j] == cdf_interquartile_range(grid, row)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 5), min_size=1, max_size=8), data=st.data())
def test_matches_order_statistics_of_an_expanded_sample(counts, data):
    """Masses c_k / N: quantile_{j/N} is the j-th smallest point and CVaR_{j/N} the mean of the j smallest."""
    counts = np.array(counts)
    if counts.sum() == 0:
        counts[-1] = 1
    N = int(counts.sum())
    grid = np.cumsum(data.draw(arrays(np.float64, len(counts), elements=st.floats(0.1, 10.0)))) - 5.0
    cdf = np.cumsum(counts) / N
    sample = np.repeat(grid, counts)
    assert cdf_mean(grid, cdf) == pytest.approx(sample.mean(), rel=1e-12, abs=1e-12)
    assert cdf_variance(grid, cdf) == pytest.approx(sample.var(), rel=1e-9, abs=1e-10)
    j = np.arange(1, N + 1)
    np.testing.assert_array_equal(cdf_quantile(grid, cdf, j / N), sample)
    np.testing.assert_allclose(cdf_cvar(grid, cdf, j / N), np.cumsum(sample) / j, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------- exact laws
def _tiny_task(reward_noise: float) -> TabularMDP:
    return TabularMDP.random(3, 2, horizon=3, gamma=0.9, seed=4, reward_noise=reward_noise, n_terminal=1)


def _policy(task: TabularMDP) -> TabularPolicy:
    rng = np.random.default_rng(2)
    return TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)))


ALPHAS = np.array([0.05, 0.1, 0.25, 0.5, 0.9])


def test_exact_on_the_atoms_of_a_noiseless_distribution():
    task = _tiny_task(0.0)
    dist = exact_return_distribution(task, _policy(task))
    grid = np.unique(dist.means)
    cdf = np.asarray(dist.cdf(grid))
    assert cdf_mean(grid, cdf) == pytest.approx(task.policy_value(_policy(task)), abs=1e-12)
    assert cdf_variance(grid, cdf) == pytest.approx(dist.variance(), abs=1e-12)
    np.testing.assert_array_equal(cdf_quantile(grid, cdf, ALPHAS), dist.quantile(ALPHAS))
    np.testing.assert_allclose(cdf_cvar(grid, cdf, ALPHAS), dist.cvar(ALPHAS), atol=1e-12)
    assert cdf_interquartile_range(grid, cdf) == dist.interquartile_range()


def test_fine_grid_of_a_gaussian_mixture_is_within_the_spacing():
    """Reading F on a grid moves the mass of (grid[k−1], grid[k]] up to grid[k]: each point moves by < h."""
    task = _tiny_task(0.3)
    dist = exact_return_distribution(task, _policy(task))
    low = float((dist.means - 9 * dist.stds).min())
    high = float((dist.means + 9 * dist.stds).max())
    grid = np.linspace(low, high, 20_001)
    h = grid[1] - grid[0]
    cdf = np.asarray(dist.cdf(grid))
    sd = np.sqrt(dist.variance())
    assert 0 <= cdf_mean(grid, cdf) - dist.mean() <= h
    assert abs(cdf_variance(grid, cdf) - dist.variance()) <= h * sd + h**2
    q = cdf_quantile(grid, cdf, ALPHAS)
    assert ((q - dist.quantile(ALPHAS) >= 0) & (q - dist.quantile(ALPHAS) <= h + 1e-9)).all()
    np.testing.assert_allclose(cdf_cvar(grid, cdf, ALPHAS), dist.cvar(ALPHAS), rtol=0, atol=h)
    assert abs(cdf_interquartile_range(grid, cdf) - dist.interquartile_range()) <= h + 1e-9
    # the bounds are tight enough to notice a shift by a few grid steps
    assert abs(cdf_mean(grid + 3 * h, cdf) - dist.mean()) > h


# ---------------------------------------------------------------------------------------------- projection
def _pava(y: np.ndarray) -> np.ndarray:
    """Plain pool-adjacent-violators: blocks of (mean, size), merged while they decrease."""
    blocks: list[list[float]] = []
    for value in y:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, size = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * size) / (blocks[-1][1] + size), blocks[-1][1] + size]
    return np.concatenate([np.full(int(size), mean) for mean, size in blocks])


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 12)), elements=st.floats(-0.5, 1.5)))
def test_projection_is_the_bounded_isotonic_fit(values):
    out = project_cdf(values)
    assert out.shape == values.shape
    assert (out >= 0).all() and (out <= 1).all()
    assert (np.diff(out, axis=-1) >= 0).all()
    want = np.stack([np.clip(_pava(row), 0, 1) for row in values])
    np.testing.assert_allclose(out, want, atol=1e-12)
    np.testing.assert_array_equal(project_cdf(out), out)  # idempotent
    running_max = np.clip(np.maximum.accumulate(values, axis=-1), 0, 1)
    assert ((out - values) ** 2).sum() <= ((running_max - values) ** 2).sum() + 1e-12


def test_projection_leaves_a_valid_cdf_unchanged_and_fixes_violations():
    valid = np.array([[0.0, 0.1, 0.1, 0.7, 1.0], [0.2, 0.2, 0.3, 0.3, 0.9]])
    np.testing.assert_array_equal(project_cdf(valid), valid)
    np.testing.assert_allclose(project_cdf(np.array([0.2, 0.6, 0.4, 1.3])), [0.2, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(project_cdf(np.array([-0.2, 0.5])), [0.0, 0.5])
    with pytest.raises(ValueError, match="cdf: expected finite values"):
        project_cdf(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="cdf: expected an array with a last"):
        project_cdf(0.5)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "grid, cdf, match",
    [
        ([1.0, 1.0, 2.0], [0.1, 0.2, 1.0], "grid: expected finite, strictly increasing"),
        ([[1.0, 2.0]], [0.1, 1.0], "grid: expected a non-empty 1-D array"),
        ([1.0, 2.0], [0.1, 0.2, 1.0], r"cdf: expected shape \(\.\.\., 2\)"),
        ([1.0, 2.0], [0.5, 0.2], "non-decreasing values .*project_cdf"),
        ([1.0, 2.0], [0.5, 1.2], r"cdf: expected values in \[0, 1\]"),
        ([1.0, 2.0], [0.5, np.nan], "cdf: expected finite values"),
    ],
)
def test_invalid_inputs_are_refused(grid, cdf, match):
    with pytest.raises(ValueError, match=match):
        cdf_mean(np.array(grid), np.array(cdf))


@pytest.mark.parametrize("alphas", [0.0, 1.5, [0.2, -0.1], [[0.5]], []])
def test_invalid_levels_are_refused(alphas):
    with pytest.raises(ValueError, match="alphas: expected"):
        cdf_cvar(UNIFORM_GRID, UNIFORM_CDF, alphas)
    with pytest.raises(ValueError, match="alphas: expected"):
        cdf_quantile(UNIFORM_GRID, UNIFORM_CDF, alphas)


def test_uniform_policy_sanity_against_exact_iqr():
    """IQR on the atoms equals the exact one for another policy too (guards against policy-specific luck)."""
    task = _tiny_task(0.0)
    dist = exact_return_distribution(task, UniformPolicy(2))
    grid = np.unique(dist.means)
    assert cdf_interquartile_range(grid, np.asarray(dist.cdf(grid))) == dist.interquartile_range()
