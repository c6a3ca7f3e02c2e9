"""Kernels for continuous-action importance sampling (Kallus & Zhou, 2018).

A deterministic evaluation policy a = π_e(s) has no density, so the step ratio π_e(a_t | s_t) / π_b(a_t | s_t)
does not exist. Kallus & Zhou ("Policy evaluation and optimization with continuous treatments", AISTATS 2018)
replace the point mass by a kernel of bandwidth h around π_e(s_t):

    w_t ≈ K_h(a_t − π_e(s_t)) / π_b(a_t | s_t),        K_h(x) = Π_{j=1}^{d} K(x_j / h_j) / h_j,

with K a one-dimensional kernel integrating to 1 and d the action dimension. K_h is the density of
π_e(s) + h ⊙ U with U_j i.i.d. ~ K, so the estimate targets the value of that *smoothed* policy; the bias
vanishes as h → 0 (O(h²) for the symmetric kernels here, which have ∫ u K(u) du = 0) and the variance grows
like 1 / (n Π_j h_j) per step.

Units. K_h must be a density in the *same* units as π_b(a | s), the density of the logged action. If the
actions are rescaled before smoothing, ã_j = a_j / s_j, then K(ã_j / h) / h is a density in ã_j and must be
divided by the Jacobian s_j to become one in a_j. Equivalently, the bandwidth in action units is
h_j = h · s_j and the normaliser is Π_j h_j, not h^d (``effective_bandwidth``). A kernel of the Euclidean
distance ‖a − π_e(s)‖ with a one-dimensional normaliser, or none, is not a density in d > 1 dimensions (SCOPE-RL's
kernels act on that distance between scaled actions, normalised for d = 1 or not at all depending on the
version), and dropping the Jacobian makes the ratio scale with the chosen action units; both bias every
estimator by a constant factor per step (the test suite checks unit invariance).

The five kernels (u the scaled distance in one dimension; the compact ones vanish for |u| > 1):

    gaussian       K(u) = exp(−u² / 2) / √(2π)          ∫ u² K = 1
    epanechnikov   K(u) = 3/4 (1 − u²)                  ∫ u² K = 1/5
    triangular     K(u) = 1 − |u|                       ∫ u² K = 1/6
    cosine         K(u) = π/4 cos(π u / 2)              ∫ u² K = 1 − 8/π²
    uniform        K(u) = 1/2                           ∫ u² K = 1/3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Kernel:
    """A symmetric one-dimensional kernel: ``density(u)`` integrates to 1 over ``support``.

    ``second_moment`` is ∫ u² K(u) du, the variance of the smoothing noise per unit of bandwidth: the smoothed
    deterministic policy π_e(s) + h U has per-dimension action variance h² · second_moment.
    """

    name: str
    density: Callable[[np.ndarray], np.ndarray]
    support: float  # K(u) = 0 for |u| > support (inf for the Gaussian)
    second_moment: float

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.density(np.asarray(u, dtype=np.float64))


def _gaussian(u: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


def _epanechnikov(u: np.ndarray) -> np.ndarray:
    return 0.75 * np.maximum(1.0 - u * u, 0.0)


def _triangular(u: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.abs(u), 0.0)


def _cosine(u: np.ndarray) -> np.ndarray:
    return np.where(np.abs(u) <= 1.0, (math.pi / 4.0) * np.cos(0.5 * math.pi * np.clip(u, -1.0, 1.0)), 0.0)


def _uniform(u: np.ndarray) -> np.ndarray:
    return np.where(np.abs(u) <= 1.0, 0.5, 0.0)


KERNELS: dict[str, Kernel] = {
    "gaussian": Kernel("gaussian", _gaussian, math.inf, 1.0),
    "epanechnikov": Kernel("epanechnikov", _epanechnikov, 1.0, 0.2),
    "triangular": Kernel("triangular", _triangular, 1.0, 1.0 / 6.0),
    "cosine": Kernel("cosine", _cosine, 1.0, 1.0 - 8.0 / math.pi**2),
    "uniform": Kernel("uniform", _uniform, 1.0, 1.0 / 3.0),
}


def get_kernel(kernel: str | Kernel) -> Kernel:
    """The kernel named ``kernel`` (one of ``KERNELS``), or the ``Kernel`` itself."""
    if isinstance(kernel, Kernel):
        return kernel
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {sorted(KERNELS)}, found {kernel!r}")
    return KERNELS[kernel]


def kernel_density(
    actions: np.ndarray, centers: np.ndarray, bandwidths: np.ndarray, kernel: str | Kernel = "gaussian"
) -> np.ndarray:
    """Product-kernel density K_h(a − c) = Π_j K((a_j − c_j) / h_j) / h_j, shape (...,).

    ``actions`` and ``centers`` have shape (..., d); ``bandwidths`` (d,) are in the actions' own units (see
    ``effective_bandwidth``), so the result is a density in those units, comparable with π_b(a | s).
    """
    k = get_kernel(kernel)
    actions = np.asarray(actions, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    h = np.asarray(bandwidths, dtype=np.float64)
    if actions.shape != centers.shape:
        raise ValueError(f"centers: expected the shape of actions {actions.shape}, found {centers.shape}")
    if h.ndim != 1 or h.shape[0] != actions.shape[-1]:
        raise ValueError(f"bandwidths: expected shape ({actions.shape[-1]},) (one per action dimension), found {h.shape}")
    if not (np.isfinite(h).all() and (h > 0).all()):
        raise ValueError(f"bandwidths: expected positive finite values, found {h.tolist()}")
    u = actions - centers
    u /= h
    values = k(u)
    out = values[..., 0] / h[0]
    for j in range(1, len(h)):  # column products: cheaper than a reduction over a short last axis
        out *= values[..., j] / h[j]
    return out


def action_scales(
    actions: np.ndarray,
    action_scale: str | Sequence[float],
    low: Sequence[float] | None,
    high: Sequence[float] | None,
) -> np.ndarray:
    """The unit s_j of each action dimension in which the bandwidth is given, shape (d,).

    ``"none"``: s_j = 1 (the bandwidth is in action units); ``"range"``: s_j = high_j − low_j (the action box;
    needs bounds); ``"std"``: s_j = the sample standard deviation of the logged actions (``actions`` (m, d),
    logged steps only); or a sequence of d positive floats.
    """
    d = actions.shape[-1]
    if isinstance(action_scale, str):
        if action_scale == "none":
            return np.ones(d)
        if action_scale == "range":
            if low is None or high is None:
                raise ValueError("action_scale: 'range' needs the action space's bounds low/high, found None")
            return np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
        if action_scale == "std":
            scale = actions.std(axis=0, ddof=1) if len(actions) > 1 else np.zeros(d)
            if not (scale > 0).all():
                raise ValueError(f"action_scale: 'std' needs logged actions that vary in every dimension, found std {scale.tolist()}")
            return scale
        raise ValueError(f"action_scale: expected 'none', 'range', 'std' or {d} positive floats, found {action_scale!r}")
    scale = np.asarray(action_scale, dtype=np.float64)
    if scale.shape != (d,) or not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError(f"action_scale: expected 'none', 'range', 'std' or {d} positive floats, found {action_scale!r}")
    return scale


def effective_bandwidth(bandwidth: float | Sequence[float], scales: np.ndarray) -> np.ndarray:
    """h_j = bandwidth_j · s_j: the bandwidth in action units, shape (d,).

    ``bandwidth`` is one positive float (the same in every scaled dimension) or one per dimension.
    """
    d = len(scales)
    message = f"bandwidth: expected a positive float or {d} positive floats (one per action dimension), found {bandwidth!r}"
    if isinstance(bandwidth, (bool, str)) or bandwidth is None:
        raise ValueError(message)
    try:
        h = np.asarray(bandwidth, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if h.ndim == 0:
        h = np.full(d, float(h))
    if h.shape != (d,) or not (np.isfinite(h).all() and (h > 0).all()):
        raise ValueError(message)
    return h * scales
