"""Point estimators of a policy's value from logged trajectories.

Each is a few lines over the shared quantities of ``EstimationContext`` (see ``base`` for the notation
and for how variable-length trajectories are handled). Their mean over trajectories is the estimate.

The per-decision family shares one skeleton: for a weight W_t on each step (and W_{t−1}, with W_{−1} = 1),

    IS form:  Σ_t γ^t W_t r_t
    DR form:  Σ_t γ^t [W_t (r_t − Q̂(s_t, a_t)) + W_{t−1} V̂(s_t)]    (Jiang & Li, 2016; Thomas & Brunskill, 2016)

and the self-normalised versions divide W_t (and W_{t−1}) by their mean over trajectories at each step.
PDIS, DR, SNPDIS and SNDR take W_t = Π_{t' ≤ t} w_t'; the marginal estimators (``marginal.py``) plug in
marginal importance weights. ``TransformedCumulativeRatio`` takes ŵ_t = f_λ(W_t) for a weight transform with an
option λ: DR's clipping min(W_t, λ) here, and the Switch-DR, DR-OS and SG transforms of ``bandit.py``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from opelab.ope.estimators.base import (
    EstimationContext,
    PointEstimator,
    linearized_ratio,
    previous_step,
    register_estimator,
    safe_ratio,
    self_normalize,
)


@register_estimator
@dataclass(frozen=True)
class DirectMethod(PointEstimator):
    """Direct method: V̂ = (1/n) Σ_i V̂(s_{i,0}), the model's value of the initial states."""

    name = "dm"
    requires = ("initial_v_hat",)

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return ctx.inputs.initial_v_hat


@register_estimator
@dataclass(frozen=True)
class TrajectoryIS(PointEstimator):
    """Trajectory-wise importance sampling (Precup et al., 2000): V̂ = (1/n) Σ_i W_{i,H−1} G_i."""

    name = "tis"
    default_on = ("trajectories",)

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return ctx.trajectory_ratio * ctx.returns


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedTrajectoryIS(PointEstimator):
    """Self-normalised TIS: W_{i,H−1} replaced by W_{i,H−1} / ((1/n) Σ_j W_{j,H−1})."""

    name = "sntis"
    default_on = ("trajectories",)
    self_normalized = True

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return self_normalize(ctx.trajectory_ratio) * ctx.returns

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, np.ndarray]:
        W = ctx.trajectory_ratio  # (P, n)
        return {(self, "WG"): W * ctx.returns, ("trajectory_ratio", "W"): W}

    def estimates_from_sums(self, sums: dict[Hashable, np.ndarray], totals: np.ndarray) -> np.ndarray:
        return safe_ratio(sums[(self, "WG")], sums[("trajectory_ratio", "W")])

    def interval_values(self, ctx: EstimationContext) -> np.ndarray:
        return linearized_ratio(ctx.trajectory_ratio, np.broadcast_to(ctx.returns, ctx.trajectory_ratio.shape))


@dataclass(frozen=True)
class PerDecisionFamily(PointEstimator):
    """The IS or DR form over a per-step weight scheme; subclasses choose ``weights`` and the flags."""

    form: ClassVar[str] = "is"  # "is" or "dr"

    def weight_key(self) -> Hashable:
        """Identifies the weight scheme, so estimators that share it share its arrays in a context."""
        raise NotImplementedError

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        """W_t, shape (P, n, H)."""
        raise NotImplementedError

    def _weights(self, ctx: EstimationContext, normalized: bool) -> np.ndarray:
        key = self.weight_key()
        raw = ctx.memo(key, lambda: self.weights(ctx))
        return ctx.memo((key, "normalized"), lambda: self_normalize(raw)) if normalized else raw

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        W = self._weights(ctx, normalized=self.self_normalized)
        if self.form == "is":
            return np.einsum("pnh,nh->pn", W, ctx.discounted_rewards)
        # W_{t−1} is W shifted by one step with W_{−1} = 1 (also after normalising: the mean of W_{−1} is 1),
        # so the baseline term reads W through a shifted view instead of a copy.
        baseline = ctx.discounted_v_hat
        values = np.einsum("pnh,pnh->pn", W, ctx.discounted_residual)
        values += np.einsum("pnh,pnh->pn", W[..., :-1], baseline[..., 1:])
        return values + baseline[..., 0]

    def interval_values(self, ctx: EstimationContext) -> np.ndarray:
        if not self.self_normalized:
            return super().interval_values(ctx)
        ctx.require(self.name, *self.requires)
        W = self._weights(ctx, normalized=False)
        if self.form == "is":
            return linearized_ratio(W, np.broadcast_to(ctx.discounted_rewards, W.shape)).sum(axis=-1)
        values = linearized_ratio(W, ctx.discounted_residual).sum(axis=-1)
        return values + linearized_ratio(previous_step(W), ctx.discounted_v_hat).sum(axis=-1)

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, np.ndarray]:
        """Self-normalised forms: per-step numerators and the weights W_t, whose resampled sums divide.

        The DR form's baseline term W_{t−1} V̂(s_t) / mean(W_{t−1}) shares the denominator of step t − 1, so
        its numerator joins that step's: Σ_t [S(W_t δ_t) + S(W_t γ^{t+1} V̂(s_{t+1}))] / S(W_t) + S(V̂(s_0)) / n_b
        with S the resampled sum, δ_t = γ^t (r_t − Q̂) and n_b the resample size (W_{−1} = 1).
        """
        if not self.self_normalized:
            return super().resampling_terms(ctx)
        W = self._weights(ctx, normalized=False)  # (P, n, H)
        P, n, H = W.shape
        # The numerators are written trajectory-major, (n, P, H) in memory and returned as (P, n, H) views: the
        # layout of the bootstrap's matrix columns, so that it multiplies them without another copy.
        numerator = np.empty((n, P, H))
        W_n = W.transpose(1, 0, 2)  # (n, P, H) view
        if self.form == "is":
            np.multiply(W_n, ctx.discounted_rewards[:, None, :], out=numerator)
            return {(self, "numerator"): numerator.transpose(1, 0, 2), (self.weight_key(), "W"): W}
        baseline = ctx.discounted_v_hat
        np.multiply(W_n, ctx.discounted_residual.transpose(1, 0, 2), out=numerator)
        baseline_n = baseline.transpose(1, 0, 2)
        for t in range(H - 1):  # step by step: no second (n, P, H) temporary
            numerator[:, :, t] += W_n[:, :, t] * baseline_n[:, :, t + 1]
        return {
            (self, "numerator"): numerator.transpose(1, 0, 2),
            (self.weight_key(), "W"): W,
            (self, "baseline"): baseline[..., 0],
        }

    def estimates_from_sums(self, sums: dict[Hashable, np.ndarray], totals: np.ndarray) -> np.ndarray:
        if not self.self_normalized:
            return super().estimates_from_sums(sums, totals)
        estimates = safe_ratio(sums[(self, "numerator")], sums[(self.weight_key(), "W")]).sum(axis=-1)  # (P, B)
        if self.form == "dr":
            estimates += sums[(self, "baseline")] / totals
        return estimates


@dataclass(frozen=True)
class _CumulativeRatio(PerDecisionFamily):
    """W_t = Π_{t' ≤ t} π_e(a_t' | s_t') / π_b(a_t' | s_t')."""

    def weight_key(self) -> Hashable:
        return "cumulative_ratio"

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        return ctx.cumulative_ratio


@register_estimator
@dataclass(frozen=True)
class PerDecisionIS(_CumulativeRatio):
    """Per-decision importance sampling (Precup et al., 2000): V̂ = (1/n) Σ_i Σ_t γ^t W_{i,t} r_{i,t}."""

    name = "pdis"
    default_on = ("trajectories",)


def checked_option(estimator: str, option: str, value: object, low: float, high: float) -> float:
    """``value`` as a float in [low, high], or a ValueError naming the estimator's option, the range and the value."""
    message = f"{option}: expected a float in [{low}, {high}] for {estimator}, found {value!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(message)
    number = float(value)
    if not low <= number <= high:  # also refuses nan
        raise ValueError(message)
    return number


@dataclass(frozen=True)
class TransformedCumulativeRatio(_CumulativeRatio):
    """The per-decision forms with a transformed cumulative ratio ŵ_t = f_λ(W_t) in both DR terms:

        IS form:  Σ_t γ^t ŵ_t r_t        DR form:  Σ_t γ^t [ŵ_t (r_t − Q̂(s_t, a_t)) + ŵ_{t−1} V̂(s_t)],   ŵ_{−1} = 1.

    Subclasses give ``transform`` (f_λ), the option's range and ``identity_at``, the λ at which f_λ is the
    identity: there the estimator reads the plain cumulative ratios (shared with PDIS and DR), so it equals
    the untransformed estimator bit for bit. At horizon 1 the DR form is the bandit estimator
    V̂(x) + ŵ (r − Q̂(x, a)); beyond one step only the identity keeps it unbiased for every Q̂ (that needs
    ŵ_t = ŵ_{t−1} w_t), so a transform trades that for a bounded weight.
    """

    lambda_: float = math.inf
    option_names = ("lambda_",)
    transform_name: ClassVar[str] = "clip"  # part of the memo key: estimators with one transform and λ share ŵ
    identity_at: ClassVar[float] = math.inf
    lambda_range: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def __post_init__(self) -> None:
        checked = checked_option(type(self).name, "lambda_", self.lambda_, *self.lambda_range)
        object.__setattr__(self, "lambda_", checked)
        super().__post_init__()

    def transform(self, W: np.ndarray) -> np.ndarray:
        """ŵ = f_λ(W), elementwise, (P, n, H)."""
        raise NotImplementedError

    def weight_key(self) -> Hashable:
        if self.lambda_ == self.identity_at:
            return super().weight_key()
        return ("cumulative_ratio", self.transform_name, self.lambda_)

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        if self.lambda_ == self.identity_at:
            return ctx.cumulative_ratio
        return self.transform(ctx.cumulative_ratio)


@register_estimator
@dataclass(frozen=True)
class DoublyRobust(TransformedCumulativeRatio):
    """Doubly robust (Jiang & Li, 2016; Thomas & Brunskill, 2016):
    V̂ = (1/n) Σ_i Σ_t γ^t [W_{i,t} (r_{i,t} − Q̂(s_{i,t}, a_{i,t})) + W_{i,t−1} V̂(s_{i,t})].

    ``lambda_`` clips the weights, W_t → min(W_t, λ) in both terms (OBP's ``lambda_``; capped weights as in
    Bottou et al., 2013): bias for variance; λ = inf (the default) is the unclipped estimator.
    """

    name = "dr"
    default_on = ("trajectories", "bandit")
    form = "dr"
    requires = ("q_hat", "v_hat")

    def transform(self, W: np.ndarray) -> np.ndarray:
        return np.minimum(W, self.lambda_)


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedPerDecisionIS(_CumulativeRatio):
    """Self-normalised PDIS: W_{i,t} replaced by W_{i,t} / ((1/n) Σ_j W_{j,t}) at every step."""

    name = "snpdis"
    default_on = ("trajectories",)
    self_normalized = True


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedDoublyRobust(_CumulativeRatio):
    """Self-normalised DR: both W_t and W_{t−1} divided by their mean over trajectories at each step."""

    name = "sndr"
    default_on = ("trajectories", "bandit")
    form = "dr"
    self_normalized = True
    requires = ("q_hat", "v_hat")
