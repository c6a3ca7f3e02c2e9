"""Risk functionals of an estimated return CDF on a grid, and the projection onto valid CDFs.

An estimated CDF (Chandak et al., 2021, "Universal Off-Policy Evaluation"; Huang et al., 2021, 2022) is
given by its values ``cdf[..., k] = F̂(grid[k])`` on an increasing ``grid`` (G,) and read as a **step
function**::

    F̂(y) = 0          for y < grid[0]
    F̂(y) = cdf[k]     for grid[k] ≤ y < grid[k+1]
    F̂(y) = 1          for y ≥ grid[-1]

i.e. the distribution puts mass ``cdf[0]`` on ``grid[0]`` and ``cdf[k] − cdf[k−1]`` on ``grid[k]``; any mass
missing at the top, ``1 − cdf[-1]``, is placed on ``grid[-1]`` (the largest value the grid admits: for an
unnormalised estimate such as CDF-TIS, whose top value is the mean importance weight, the functionals then
describe a proper distribution). The functionals are exact for that distribution, vectorized over the
leading axes of ``cdf``:

- mean ∫ y dF̂ and variance ∫ (y − mean)² dF̂;
- lower quantile q_α = inf{y : F̂(y) ≥ α} (an accumulated probability within ``QUANTILE_TOLERANCE`` of α
  counts as reaching it, so that float sums such as 0.1 + 0.15 reach 0.25);
- lower-tail CVaR_α = (1/α) ∫_0^α q_u du, the mean of the lowest α-fraction, including the part of the
  atom at q_α (Rockafellar & Uryasev, 2002; Acerbi & Tasche, 2002);
- inter-quartile range q_0.75 − q_0.25.

``project_cdf`` turns any array (an estimate that dips or leaves [0, 1]) into a valid CDF.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

#: Probabilities within this of α count as reaching α (matches ``opelab.envs.returns``).
QUANTILE_TOLERANCE = 1e-12
_CDF_SLACK = 1e-9  # how far a given cdf may leave [0, 1] or decrease before it is refused


def project_cdf(cdf: np.ndarray) -> np.ndarray:
    """The closest valid CDF values in least squares, along the last axis.

    Each row y (the last axis) is replaced by argmin_x Σ_k (x_k − y_k)² over non-decreasing x with values
    in [0, 1]: the isotonic regression of y by pool-adjacent-violators (Barlow et al., 1972), clipped to
    [0, 1], which is exactly that bounded projection. Rows already non-decreasing are only clipped, so a
    valid CDF comes back unchanged. Non-finite values are refused. Returns a new float64 array of the same
    shape.
    """
    values = np.array(cdf, dtype=np.float64, copy=True)
    if values.ndim == 0:
        raise ValueError("cdf: expected an array with a last (grid) axis, found a scalar")
    if not np.isfinite(values).all():
        raise ValueError("cdf: expected finite values, found NaN or infinity")
    rows = values.reshape(-1, values.shape[-1])
    violating = np.flatnonzero((np.diff(rows, axis=-1) < 0).any(axis=-1))
    for row in violating:  # a C-speed PAVA per row; only rows that need it
        rows[row] = isotonic_regression(rows[row]).x
    return np.clip(rows, 0.0, 1.0).reshape(values.shape)


def _check(grid: np.ndarray, cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.asarray(grid, dtype=np.float64)
    cdf = np.asarray(cdf, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0:
        raise ValueError(f"grid: expected a non-empty 1-D array, found shape {grid.shape}")
    if not np.isfinite(grid).all() or (np.diff(grid) <= 0).any():
        raise ValueError("grid: expected finite, strictly increasing values")
    if cdf.ndim == 0 or cdf.shape[-1] != len(grid):
        raise ValueError(f"cdf: expected shape (..., {len(grid)}) to match the grid, found {cdf.shape}")
    if not np.isfinite(cdf).all():
        raise ValueError("cdf: expected finite values, found NaN or infinity")
    low, high = float(cdf.min()), float(cdf.max())
    if low < -_CDF_SLACK or high > 1 + _CDF_SLACK:
        raise ValueError(f"cdf: expected values in [0, 1] (see project_cdf), found range [{low!r}, {high!r}]")
    drop = float((-np.diff(cdf, axis=-1)).max(initial=0.0))
    if drop > _CDF_SLACK:
        raise ValueError(
            f"cdf: expected non-decreasing values along the grid (see project_cdf), found a drop of {drop!r}"
        )
    return grid, np.clip(cdf, 0.0, 1.0)


def _masses(grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Probability on every grid point, (..., G): jumps of the CDF, top-up to 1 on the last point."""
    closed = cdf.copy()
    closed[..., -1] = 1.0
    mass = np.diff(closed, axis=-1, prepend=0.0)
    return np.maximum(mass, 0.0)


def _as_alphas(alphas: float | np.ndarray) -> np.ndarray:
    levels = np.asarray(alphas, dtype=np.float64)
    if levels.ndim > 1 or levels.size == 0:
        raise ValueError(f"alphas: expected a number or a non-empty 1-D array, found shape {levels.shape}")
    if not (np.isfinite(levels).all() and (levels > 0).all() and (levels <= 1).all()):
        raise ValueError(f"alphas: expected levels in (0, 1], found {alphas!r}")
    return levels


def cdf_mean(grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """∫ y dF̂ of the step CDF, shape ``cdf.shape[:-1]``."""
    grid, cdf = _check(grid, cdf)
    return _masses(grid, cdf) @ grid


def cdf_variance(grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """∫ (y − mean)² dF̂ of the step CDF, shape ``cdf.shape[:-1]``."""
    grid, cdf = _check(grid, cdf)
    mass = _masses(grid, cdf)
    mean = mass @ grid
    return (mass * (grid - mean[..., None]) ** 2).sum(axis=-1)


def _quantile_index(cdf: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """First grid index k with F̂(grid[k]) ≥ α, (..., K); the last index when the top mass is needed."""
    closed = cdf.copy()
    closed[..., -1] = 1.0
    below = closed[..., :, None] < levels - QUANTILE_TOLERANCE  # (..., G, K), monotone along G
    return np.minimum(below.sum(axis=-2), cdf.shape[-1] - 1)


def cdf_quantile(grid: np.ndarray, cdf: np.ndarray, alphas: float | np.ndarray) -> np.ndarray:
    """Lower quantiles inf{y : F̂(y) ≥ α}: shape ``cdf.shape[:-1]`` for one α, ``(..., K)`` for K levels."""
    grid, cdf = _check(grid, cdf)
    levels = _as_alphas(alphas)
    out = grid[_quantile_index(cdf, np.atleast_1d(levels))]
    return out[..., 0] if levels.ndim == 0 else out


def cdf_cvar(grid: np.ndarray, cdf: np.ndarray, alphas: float | np.ndarray) -> np.ndarray:
    """Lower-tail CVaR_α, the mean of the lowest α-fraction (with the partial atom at q_α).

    CVaR_α = (1/α) [Σ_{grid[k] < q_α} m_k grid[k] + (α − F̂(q_α−)) q_α], m_k the mass on grid[k]. Shape
    ``cdf.shape[:-1]`` for one α, ``(..., K)`` for K levels; CVaR_1 is the mean.
    """
    grid, cdf = _check(grid, cdf)
    levels = _as_alphas(alphas)
    flat = np.atleast_1d(levels)
    mass = _masses(grid, cdf)
    index = _quantile_index(cdf, flat)  # (..., K)
    zero = np.zeros(cdf.shape[:-1] + (1,))
    moment = np.concatenate([zero, np.cumsum(mass * grid, axis=-1)], axis=-1)  # moment[k] = Σ_{j<k}
    below = np.concatenate([zero, np.cumsum(mass, axis=-1)], axis=-1)  # F̂ just below grid[k]
    partial = np.maximum(flat - np.take_along_axis(below, index, axis=-1), 0.0)
    out = (np.take_along_axis(moment, index, axis=-1) + partial * grid[index]) / flat
    return out[..., 0] if levels.ndim == 0 else out


def cdf_interquartile_range(grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """q_0.75 − q_0.25 (lower quantiles), shape ``cdf.shape[:-1]``."""
    quartiles = cdf_quantile(grid, cdf, np.array([0.25, 0.75]))
    return quartiles[..., 1] - quartiles[..., 0]
