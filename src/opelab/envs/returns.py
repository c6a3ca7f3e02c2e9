"""The exact distribution of a policy's discounted return on a ``TabularMDP``.

Off-policy evaluation of the whole return distribution (Chandak et al., 2021, "Universal Off-Policy
Evaluation"; Huang et al., 2021, 2022) needs the true CDF F(y) = P_π(G ≤ y) of G = Σ_t γ^t r_t as ground
truth. On a finite MDP it is a finite mixture, computed here by a forward dynamic programme over
(state, accumulated discounted reward, steps taken)::

    start:  mass μ₀(s) at (s, g = 0, t = 0)
    step t: (s, g) --π_t(a | s) P(s' | s, a)--> (s', g + γ^t R(s, a[, s']))
            the episode ends (an *atom* of length L = t + 1) when s' is terminal or t + 1 = H

Paths that reach the same state with the same accumulated reward are merged (keys rounded to about 12
significant digits of the largest possible |return|, so float duplicates merge too); the merged reward is
the probability-weighted mean of the merged values, which keeps the mean exact. The result is a list of
atoms (g_j, p_j, L_j).

The logged rewards of a ``TabularMDP`` carry i.i.d. N(0, σ²) noise (``reward_noise``), so given its path
the return is Gaussian, G | path ~ N(g_j, σ_j²) with σ_j² = σ² Σ_{t<L_j} γ^{2t}; with σ = 0 it is the point
mass g_j. ``ReturnDistribution`` holds the atoms and evaluates the CDF, mean, variance, quantiles, CVaR and
inter-quartile range exactly (no sampling).

The number of atoms can grow like (S·A)^H when rewards are generic; ``max_atoms`` makes the computation
refuse with a ``ValueError`` instead of running out of time or memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from opelab.envs.tabular import TabularMDP
from opelab.policies import DiscretePolicy

#: Probabilities within this of α count as reaching α when a quantile is read off accumulated sums.
QUANTILE_TOLERANCE = 1e-12
_CHUNK = 1 << 22  # entries of the (y, atom) matrix evaluated at once for Gaussian mixtures


def _as_alphas(alpha: float | np.ndarray, *, allow_one: bool) -> np.ndarray:
    alphas = np.asarray(alpha, dtype=np.float64)
    upper_ok = (alphas <= 1.0) if allow_one else (alphas < 1.0)
    if not (np.isfinite(alphas).all() and (alphas > 0.0).all() and upper_ok.all()):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"alpha: expected levels in {interval}, found {alpha!r}")
    return alphas


def _scalar_or_array(values: np.ndarray, like: np.ndarray) -> float | np.ndarray:
    return float(values) if like.ndim == 0 else values


@dataclass(frozen=True, eq=False)
class ReturnDistribution:
    """The exact law of the discounted return: a mixture over atoms (g_j, p_j, L_j).

    With ``reward_noise`` σ = 0 it is Σ_j p_j δ_{g_j}; with σ > 0 it is Σ_j p_j N(g_j, σ_j²) with
    σ_j = σ (Σ_{t<L_j} γ^{2t})^{1/2}. Several atoms may share a mean (different lengths): the point-mass
    methods sum them.

    Attributes:
        means         (K,) float64, g_j
        probs         (K,) float64, p_j ≥ 0 summing to 1
        lengths       (K,) int64, L_j ≥ 1 (steps of the episodes in the atom)
        reward_noise  σ ≥ 0, the standard deviation of the noise on every reward
        gamma         the discount γ in [0, 1]
    """

    means: np.ndarray
    probs: np.ndarray
    lengths: np.ndarray
    reward_noise: float = 0.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        means = np.array(self.means, dtype=np.float64, copy=True)
        probs = np.array(self.probs, dtype=np.float64, copy=True)
        lengths = np.array(self.lengths, copy=True)
        if means.ndim != 1 or len(means) == 0:
            raise ValueError(f"means: expected a non-empty 1-D array, found shape {means.shape}")
        for name, value in (("probs", probs), ("lengths", lengths)):
            if value.shape != means.shape:
                raise ValueError(f"{name}: expected shape {means.shape} like means, found {value.shape}")
        if not np.isfinite(means).all():
            raise ValueError("means: expected finite values, found non-finite ones")
        if not (np.isfinite(probs).all() and (probs >= 0).all()) or not np.isclose(probs.sum(), 1.0, atol=1e-9):
            raise ValueError(f"probs: expected non-negative values summing to 1, found sum {probs.sum()!r}")
        if lengths.dtype.kind not in "iu" or (lengths < 1).any():
            raise ValueError(f"lengths: expected positive ints, found dtype {lengths.dtype} with min {lengths.min()!r}")
        if not (np.isfinite(self.reward_noise) and self.reward_noise >= 0):
            raise ValueError(f"reward_noise: expected a non-negative float, found {self.reward_noise!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a float in [0, 1], found {self.gamma!r}")
        for name, value in (("means", means), ("probs", probs), ("lengths", lengths.astype(np.int64))):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "reward_noise", float(self.reward_noise))
        object.__setattr__(self, "gamma", float(self.gamma))

    # ------------------------------------------------------------------ description
    @property
    def n_atoms(self) -> int:
        return int(len(self.means))

    @property
    def is_continuous(self) -> bool:
        """True when the rewards are noisy, so the law is a Gaussian mixture with a density."""
        return self.reward_noise > 0

    @cached_property
    def stds(self) -> np.ndarray:
        """σ_j = σ (Σ_{t<L_j} γ^{2t})^{1/2}, the standard deviation of the return given atom j, (K,)."""
        steps = np.arange(int(self.lengths.max()), dtype=np.float64)
        cumulative = np.cumsum(self.gamma ** (2.0 * steps))
        return self.reward_noise * np.sqrt(cumulative[self.lengths - 1])

    @cached_property
    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct atom means (sorted), their total probability and the running sum of it."""
        support, inverse = np.unique(self.means, return_inverse=True)
        mass = np.bincount(inverse, weights=self.probs, minlength=len(support))
        return support, mass, np.minimum(np.cumsum(mass), 1.0)

    # ------------------------------------------------------------------ distribution functions
    def cdf(self, y: float | np.ndarray) -> float | np.ndarray:
        """F(y) = P(G ≤ y), for a number or any array of points (same shape out)."""
        points = np.asarray(y, dtype=np.float64)
        flat = points.reshape(-1)
        if not self.is_continuous:
            support, _, cum = self._points
            index = np.searchsorted(support, flat, side="right")
            out = np.where(index > 0, cum[np.maximum(index - 1, 0)], 0.0)
        else:
            out = np.empty(len(flat))
            step = max(1, _CHUNK // self.n_atoms)
            for start in range(0, len(flat), step):
                z = (flat[start : start + step, None] - self.means) / self.stds
                out[start : start + step] = ndtr(z) @ self.probs
            out = np.clip(out, 0.0, 1.0)
        return _scalar_or_array(out.reshape(points.shape), points)

    def mean(self) -> float:
        """E[G] = Σ_j p_j g_j."""
        return float(self.probs @ self.means)

    def variance(self) -> float:
        """Var[G] = Σ_j p_j ((g_j − E G)² + σ_j²)."""
        centred = self.means - self.mean()
        return float(self.probs @ (centred**2 + self.stds**2))

    def quantile(self, alpha: float | np.ndarray) -> float | np.ndarray:
        """Lower quantile q_α = inf{y : F(y) ≥ α}.

        Point masses: the smallest atom whose accumulated probability reaches α (within
        ``QUANTILE_TOLERANCE``), α in (0, 1]. Gaussian mixture: the root of F(y) = α by Brent's method to
        1e-12, α in (0, 1), bracketed by the component quantiles min_j / max_j (g_j + σ_j Φ⁻¹(α)).
        """
        alphas = _as_alphas(alpha, allow_one=not self.is_continuous)
        flat = alphas.reshape(-1)
        if not self.is_continuous:
            support, _, cum = self._points
            index = np.searchsorted(cum, flat - QUANTILE_TOLERANCE, side="left")
            out = support[np.minimum(index, len(support) - 1)]
        else:
            out = np.array([self._mixture_quantile(float(a)) for a in flat])
        return _scalar_or_array(out.reshape(alphas.shape), alphas)

    def _mixture_quantile(self, alpha: float) -> float:
        component = self.means + self.stds * ndtri(alpha)
        low, high = float(component.min()), float(component.max())
        if low == high:
            return low

        def excess(y: float) -> float:
            return float(ndtr((y - self.means) / self.stds) @ self.probs) - alpha

        if excess(low) >= 0:  # F(low) ≤ α exactly; only rounding can push it above
            return low
        if excess(high) <= 0:
            return high
        return float(brentq(excess, low, high, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=500))

    def cvar(self, alpha: float | np.ndarray) -> float | np.ndarray:
        """Lower-tail conditional value at risk: the mean of the lowest α-fraction of returns.

        CVaR_α = (1/α) ∫_0^α q_u du (Rockafellar & Uryasev, 2002; Acerbi & Tasche, 2002). Point masses: the
        atoms below q_α plus the part α − F(q_α−) of the atom at q_α. Gaussian mixture, in closed form:
        (1/α) Σ_j p_j [g_j Φ(z_j) − σ_j φ(z_j)] with z_j = (q_α − g_j) / σ_j.
        """
        alphas = _as_alphas(alpha, allow_one=not self.is_continuous)
        flat = alphas.reshape(-1)
        if not self.is_continuous:
            support, mass, cum = self._points
            index = np.minimum(np.searchsorted(cum, flat - QUANTILE_TOLERANCE, side="left"), len(support) - 1)
            moment = np.concatenate([[0.0], np.cumsum(mass * support)])
            below = np.concatenate([[0.0], cum])[index]
            out = (moment[index] + (flat - below) * support[index]) / flat
        else:
            quantiles = np.asarray(self.quantile(flat))
            z = (quantiles[:, None] - self.means) / self.stds
            density = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
            out = ((self.means * ndtr(z) - self.stds * density) @ self.probs) / flat
        return _scalar_or_array(out.reshape(alphas.shape), alphas)

    def interquartile_range(self) -> float:
        """q_0.75 − q_0.25 (lower quantiles)."""
        return float(self.quantile(0.75)) - float(self.quantile(0.25))


def _merge(keys: np.ndarray, values: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge entries with equal integer keys: total probability and probability-weighted mean value."""
    unique, inverse = np.unique(keys, return_inverse=True)
    mass = np.bincount(inverse, weights=probs, minlength=len(unique))
    moment = np.bincount(inverse, weights=probs * values, minlength=len(unique))
    return moment / mass, mass


def exact_return_distribution(
    task: TabularMDP, policy: DiscretePolicy, *, max_atoms: int = 200_000
) -> ReturnDistribution:
    """The exact distribution of Σ_t γ^t r_t under ``policy`` on ``task`` (see the module docstring).

    Its mean equals ``task.policy_value(policy)`` up to rounding. Raises ``ValueError`` as soon as the
    merged paths still in play plus the finished atoms exceed ``max_atoms``; memory stays of order
    ``max_atoms · n_actions`` per step.
    """
    if isinstance(max_atoms, bool) or not isinstance(max_atoms, (int, np.integer)) or max_atoms < 1:
        raise ValueError(f"max_atoms: expected a positive int, found {max_atoms!r}")
    pi = task.policy_table(policy)  # (H, S, A)
    P, R, terminal = task.transitions, task.rewards, task.terminal_states
    S, H, gamma = task.n_states, int(task.horizon), float(task.gamma)
    scale = float(np.abs(R).max()) * float(np.sum(gamma ** np.arange(H, dtype=np.float64)))
    resolution = 1e-12 * scale if scale > 0 else 1.0  # ~12 significant digits of the largest |return|

    def key(values: np.ndarray) -> np.ndarray:
        return np.rint(values / resolution).astype(np.int64)

    live_states = np.flatnonzero(task.initial > 0)
    live_returns = np.zeros(len(live_states))
    live_probs = task.initial[live_states].astype(np.float64)
    atom_means: list[np.ndarray] = []
    atom_probs: list[np.ndarray] = []
    atom_lengths: list[np.ndarray] = []
    n_finished = 0
    for t in range(H):
        discount = gamma**t
        last = t == H - 1
        action_probs = pi[t, live_states]  # (m, A)
        next_states, next_returns, next_probs = [], [], []
        ended_returns, ended_probs = [], []
        for s_next in range(S):
            probs = live_probs[:, None] * action_probs * P[live_states, :, s_next]  # (m, A)
            reached = probs > 0
            if not reached.any():
                continue
            rewards = R[live_states] if R.ndim == 2 else R[live_states, :, s_next]
            returns = (live_returns[:, None] + discount * rewards)[reached]
            probs = probs[reached]
            if last or terminal[s_next]:
                ended_returns.append(returns)
                ended_probs.append(probs)
            else:
                merged_returns, merged_probs = _merge(key(returns), returns, probs)
                next_states.append(np.full(len(merged_returns), s_next))
                next_returns.append(merged_returns)
                next_probs.append(merged_probs)
        if ended_returns:
            returns, probs = np.concatenate(ended_returns), np.concatenate(ended_probs)
            merged_returns, merged_probs = _merge(key(returns), returns, probs)
            atom_means.append(merged_returns)
            atom_probs.append(merged_probs)
            atom_lengths.append(np.full(len(merged_returns), t + 1, dtype=np.int64))
            n_finished += len(merged_returns)
        if next_states:
            live_states = np.concatenate(next_states)
            live_returns = np.concatenate(next_returns)
            live_probs = np.concatenate(next_probs)
        else:
            live_states = np.zeros(0, dtype=np.int64)
            live_returns = np.zeros(0)
            live_probs = np.zeros(0)
        count = n_finished + len(live_states)
        if count > max_atoms:
            raise ValueError(
                f"max_atoms: expected the return distribution of {policy.name!r} on {task.name!r} to need at most "
                f"{max_atoms} atoms, found {count} after {t + 1} of {H} steps; raise max_atoms or use a task with "
                "fewer distinct rewards"
            )
        if len(live_states) == 0:
            break
    means = np.concatenate(atom_means)
    probs = np.concatenate(atom_probs)
    lengths = np.concatenate(atom_lengths)
    order = np.lexsort((lengths, means))
    return ReturnDistribution(
        means=means[order],
        probs=probs[order] / probs.sum(),
        lengths=lengths[order],
        reward_noise=float(task.reward_noise),
        gamma=gamma,
    )
