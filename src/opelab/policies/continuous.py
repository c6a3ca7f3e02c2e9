"""Continuous-action heads around a deterministic base policy μ(s) (any batched callable obs → action).

- ``GaussianPolicy``: a = μ(s) + σ ε, ε ~ N(0, I), σ per dimension. With a box [low, high] it is the
  *clipped* Gaussian a = clip(μ(s) + σ ε, low, high), the usual way exploration noise meets action bounds.
- ``TruncatedGaussianPolicy``: N(μ(s), diag σ²) restricted to the box and renormalised by the box mass.
- ``DeterministicPolicy``: a = μ(s) (a point mass; for rollouts and for estimators that smooth it).

pscore. Dimensions are independent, so π(a | s) = Π_i π_i(a_i | s). With z_i = (a_i − μ_i) / σ_i and φ, Φ
the standard normal density and CDF:

- Gaussian:            π_i(a_i) = φ(z_i) / σ_i.
- truncated Gaussian:  π_i(a_i) = φ(z_i) / (σ_i (Φ(β_i) − Φ(α_i))) for low_i < a_i < high_i, 0 outside,
                       α_i = (low_i − μ_i) / σ_i, β_i = (high_i − μ_i) / σ_i (the standard truncated normal).
- clipped Gaussian:    the law of a clipped coordinate is not a density: it has atoms at the bounds,
                       P(a_i = low_i) = Φ(α_i) and P(a_i = high_i) = 1 − Φ(β_i), and density φ(z_i) / σ_i inside.
                       Its pscore is the Radon–Nikodym derivative with respect to the reference measure
                       ν_i = Lebesgue + δ_{low_i} + δ_{high_i}: the density inside the box, the atom's
                       probability on a bound, 0 outside. Products over dimensions mix the two (an action
                       clipped in one dimension gets mass × density).

All bounded heads use the same reference measure ν = Π_i ν_i, so the ratio of two pscores is a valid
importance weight between any two of them: a head without atoms (truncated Gaussian) has pscore 0 at an exact
bound, which is right, since it never takes that action while a clipped behavior policy takes it with positive
probability. Truncated samples are kept strictly inside the box for the same reason. The unbounded Gaussian
knows no box; do not mix it with bounded heads on bounded data.

Numerics: the box mass uses the tail that is not close to 1 (log Φ from ``scipy.special.log_ndtr``), so a mean
far outside the box still gives finite, positive densities; ``log_pscore`` works in logs throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import log_ndtr, ndtri_exp

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

Base = Callable[[np.ndarray], np.ndarray]
"""A deterministic base policy: observations (batch, ...) → actions (batch, action_dim) or (batch,) when 1-D."""


def _as_vector(value: float | Sequence[float], field: str) -> np.ndarray:
    vec = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if vec.ndim != 1 or not np.isfinite(vec).all():
        raise ValueError(f"{field}: expected a finite float or 1-D sequence of floats, found {value!r}")
    return vec


class _ContinuousHead:
    """The base mean μ(s) with shape checks; subclasses add the noise."""

    def __init__(self, base: Base, sigma: float | Sequence[float], name: str) -> None:
        if not callable(base):
            raise TypeError(f"base: expected a callable observations -> actions, found {type(base).__name__}")
        self.base = base
        self.sigma = _as_vector(sigma, "sigma")
        if not (self.sigma > 0).all():
            raise ValueError(f"sigma: expected positive values, found {sigma!r}")
        self.name = name

    def mean(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """μ(s) of the base policy, shape (batch, action_dim)."""
        mu = np.asarray(self.base(observations), dtype=np.float64)
        batch = len(observations)
        if mu.ndim == 1 and mu.shape == (batch,):
            mu = mu[:, None]
        if mu.ndim != 2 or mu.shape[0] != batch:
            raise ValueError(f"base(observations): expected shape ({batch}, action_dim), found {mu.shape}")
        for field in ("sigma", "low", "high"):
            values = getattr(self, field, None)
            if values is not None and len(values) not in (1, mu.shape[1]):
                raise ValueError(f"{field}: expected 1 or {mu.shape[1]} values (action_dim), found {len(values)}")
        return mu

    def _actions(self, actions: np.ndarray, mu: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim == 1 and mu.shape[1] == 1:
            actions = actions[:, None]
        if actions.shape != mu.shape:
            raise ValueError(f"actions: expected shape {mu.shape}, found {actions.shape}")
        return actions

    def pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """π(a | s) of given actions, shape (batch,) (see the module docstring for the reference measure)."""
        return np.exp(self.log_pscore(observations, actions, steps))

    def log_pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        mu = self.mean(observations, steps)
        return self._log_density(self._actions(actions, mu), mu).sum(axis=1)

    def _log_density(self, actions: np.ndarray, mu: np.ndarray) -> np.ndarray:  # (batch, action_dim)
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sigma={self.sigma.tolist()})"


class GaussianPolicy(_ContinuousHead):
    """a = μ(s) + σ ε, clipped to [low, high] when a box is given (pscore: see the module docstring).

    ``sigma`` is one float or one per action dimension; ``low``/``high`` (both or neither) bound the actions.
    """

    def __init__(
        self,
        base: Base,
        sigma: float | Sequence[float],
        low: float | Sequence[float] | None = None,
        high: float | Sequence[float] | None = None,
        name: str | None = None,
    ) -> None:
        label = "clipped-gaussian" if low is not None else "gaussian"
        super().__init__(base, sigma, name or f"{label}(sigma={_format(sigma)})")
        if (low is None) != (high is None):
            raise ValueError(f"low, high: expected both or neither, found low={low!r}, high={high!r}")
        self.low = None if low is None else _as_vector(low, "low")
        self.high = None if high is None else _as_vector(high, "high")
        if self.low is not None and not (self.low < self.high).all():
            raise ValueError(f"low, high: expected low < high in every dimension, found {low!r}, {high!r}")

    @property
    def clipped(self) -> bool:
        return self.low is not None

    def sample(
        self, observations: np.ndarray, rng: np.random.Generator, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        mu = self.mean(observations, steps)
        actions = mu + self.sigma * rng.standard_normal(mu.shape)
        if self.clipped:
            actions = np.clip(actions, self.low, self.high)
        return actions, np.exp(self._log_density(actions, mu).sum(axis=1))

    def _log_density(self, actions: np.ndarray, mu: np.ndarray) -> np.ndarray:
        z = (actions - mu) / self.sigma
        log_phi = -0.5 * z**2 - np.log(self.sigma) - LOG_SQRT_2PI
        if not self.clipped:
            return log_phi
        low, high = np.broadcast_to(self.low, mu.shape), np.broadcast_to(self.high, mu.shape)
        at_low = log_ndtr((low - mu) / self.sigma)  # log P(a_i = low_i)
        at_high = log_ndtr((mu - high) / self.sigma)  # log P(a_i = high_i)
        inside = (actions > low) & (actions < high)
        out = np.where(inside, log_phi, -np.inf)
        out = np.where(actions == low, at_low, out)
        return np.where(actions == high, at_high, out)


class TruncatedGaussianPolicy(_ContinuousHead):
    """N(μ(s), diag σ²) truncated to the box [low, high] and renormalised (pscore: see the module docstring).

    Sampling is by inverse CDF, u ~ U(0, 1), z = Φ⁻¹(Φ(α) + u (Φ(β) − Φ(α))), on the side of the box where
    Φ is not close to 1 (for α > 0 it samples −z in [−β, −α]), in logs (``log_ndtr``, ``ndtri_exp``), so a box
    far in the tail is sampled correctly too.
    """

    def __init__(
        self,
        base: Base,
        sigma: float | Sequence[float],
        low: float | Sequence[float],
        high: float | Sequence[float],
        name: str | None = None,
    ) -> None:
        super().__init__(base, sigma, name or f"truncated-gaussian(sigma={_format(sigma)})")
        self.low, self.high = _as_vector(low, "low"), _as_vector(high, "high")
        if not (self.low < self.high).all():
            raise ValueError(f"low, high: expected low < high in every dimension, found {low!r}, {high!r}")

    def _standard_bounds(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(α', β', flip): the standardised box, mirrored where α > 0 so that Φ(β') is not close to 1."""
        alpha, beta = (self.low - mu) / self.sigma, (self.high - mu) / self.sigma
        flip = alpha > 0
        return np.where(flip, -beta, alpha), np.where(flip, -alpha, beta), flip

    def _log_mass(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """log(Φ(b) − Φ(a)) for a < b with a ≤ 0, computed as log Φ(b) + log(1 − Φ(a)/Φ(b))."""
        log_b = log_ndtr(b)
        return log_b + np.log1p(-np.exp(log_ndtr(a) - log_b))

    def sample(
        self, observations: np.ndarray, rng: np.random.Generator, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        mu = self.mean(observations, steps)
        a, b, flip = self._standard_bounds(mu)
        log_lo, log_hi = log_ndtr(a), log_ndtr(b)
        u = rng.random(mu.shape)
        z = ndtri_exp(log_hi + np.log(u + (1.0 - u) * np.exp(log_lo - log_hi)))  # Φ⁻¹(Φ(a) + u (Φ(b) − Φ(a)))
        actions = mu + self.sigma * np.where(flip, -z, z)
        low, high = np.broadcast_to(self.low, mu.shape), np.broadcast_to(self.high, mu.shape)
        actions = np.clip(actions, np.nextafter(low, np.inf), np.nextafter(high, -np.inf))  # rounding stays inside
        return actions, np.exp(self._log_density(actions, mu).sum(axis=1))

    def _log_density(self, actions: np.ndarray, mu: np.ndarray) -> np.ndarray:
        z = (actions - mu) / self.sigma
        a, b, _ = self._standard_bounds(mu)
        log_density = -0.5 * z**2 - np.log(self.sigma) - LOG_SQRT_2PI - self._log_mass(a, b)
        inside = (actions > self.low) & (actions < self.high)
        return np.where(inside, log_density, -np.inf)


class DeterministicPolicy:
    """a = μ(s): the base policy itself, as a ``Policy`` for rollouts.

    Its law is a point mass, so it has no density: ``sample`` reports pscore ∞ (a Dirac at the taken
    action) and ``pscore`` is ∞ where the action equals μ(s) and 0 elsewhere. Importance sampling needs a
    smoothed version (kernel methods) or a stochastic head.
    """

    def __init__(self, base: Base, name: str = "deterministic") -> None:
        if not callable(base):
            raise TypeError(f"base: expected a callable observations -> actions, found {type(base).__name__}")
        self.base = base
        self.name = name

    def mean(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        mu = np.asarray(self.base(observations), dtype=np.float64)
        return mu[:, None] if mu.ndim == 1 else mu

    def sample(
        self, observations: np.ndarray, rng: np.random.Generator, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        mu = self.mean(observations, steps)
        return mu, np.full(len(mu), np.inf)

    def pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        mu = self.mean(observations, steps)
        actions = np.asarray(actions, dtype=np.float64).reshape(mu.shape)
        return np.where((actions == mu).all(axis=1), np.inf, 0.0)

    def __repr__(self) -> str:
        return f"DeterministicPolicy(name={self.name!r})"


def _format(sigma: float | Sequence[float]) -> str:
    values = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    return ",".join(f"{v:g}" for v in values)
