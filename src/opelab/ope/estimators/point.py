"""Point estimators of a policy's value from logged trajectories.

Each is a few lines over the shared quantities of ``EstimationContext`` (see ``base`` for the notation
and for how variable-length trajectories are handled). Their mean over trajectories is the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opelab.ope.estimators.base import (
    EstimationContext,
    PointEstimator,
    register_estimator,
    resampled_sums,
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

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return ctx.trajectory_ratio * ctx.returns


@register_estimator
@dataclass(frozen=True)
class PerDecisionIS(PointEstimator):
    """Per-decision importance sampling (Precup et al., 2000): V̂ = (1/n) Σ_i Σ_t γ^t W_{i,t} r_{i,t}."""

    name = "pdis"

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return np.einsum("pnh,nh->pn", ctx.cumulative_ratio, ctx.discounted_rewards)


def _doubly_robust(ctx: EstimationContext, W: np.ndarray, W_prev: np.ndarray) -> np.ndarray:
    """Σ_t γ^t [W_t (r_t − Q̂(s_t, a_t)) + W_{t−1} V̂(s_t)], (P, n)."""
    inputs = ctx.inputs
    correction = np.einsum("pnh,nh->pn", W, ctx.discounted_rewards)
    correction -= np.einsum("pnh,pnh,nh->pn", W, inputs.q_hat, ctx.discounts)
    baseline = np.einsum("pnh,pnh,nh->pn", W_prev, inputs.v_hat, ctx.discounts)
    return correction + baseline


@register_estimator
@dataclass(frozen=True)
class DoublyRobust(PointEstimator):
    """Doubly robust (Jiang & Li, 2016; Thomas & Brunskill, 2016):
    V̂ = (1/n) Σ_i Σ_t γ^t [W_{i,t} (r_{i,t} − Q̂(s_{i,t}, a_{i,t})) + W_{i,t−1} V̂(s_{i,t})]."""

    name = "dr"
    requires = ("q_hat", "v_hat")

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return _doubly_robust(ctx, ctx.cumulative_ratio, ctx.previous_cumulative_ratio)


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedTrajectoryIS(PointEstimator):
    """Self-normalised TIS: W_{i,H−1} replaced by W_{i,H−1} / ((1/n) Σ_j W_{j,H−1})."""

    name = "sntis"
    self_normalized = True

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return self_normalize(ctx.trajectory_ratio) * ctx.returns

    def resampled_estimates(self, ctx: EstimationContext, counts: np.ndarray) -> np.ndarray:
        W = ctx.trajectory_ratio  # (P, n)
        return safe_ratio((W * ctx.returns) @ counts.T, W @ counts.T)


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedPerDecisionIS(PointEstimator):
    """Self-normalised PDIS: W_{i,t} replaced by W_{i,t} / ((1/n) Σ_j W_{j,t}) at every step."""

    name = "snpdis"
    self_normalized = True

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return np.einsum("pnh,nh->pn", ctx.normalized_cumulative_ratio, ctx.discounted_rewards)

    def resampled_estimates(self, ctx: EstimationContext, counts: np.ndarray) -> np.ndarray:
        W = ctx.cumulative_ratio
        per_step = safe_ratio(resampled_sums(counts, W * ctx.discounted_rewards), resampled_sums(counts, W))
        return per_step.sum(axis=-1)


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedDoublyRobust(PointEstimator):
    """Self-normalised DR: both W_t and W_{t−1} divided by their mean over trajectories at each step."""

    name = "sndr"
    self_normalized = True
    requires = ("q_hat", "v_hat")

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        return _doubly_robust(ctx, ctx.normalized_cumulative_ratio, ctx.normalized_previous_cumulative_ratio)

    def resampled_estimates(self, ctx: EstimationContext, counts: np.ndarray) -> np.ndarray:
        ctx.require(self.name, *self.requires)
        W, W_prev, inputs = ctx.cumulative_ratio, ctx.previous_cumulative_ratio, ctx.inputs
        residual = W * (ctx.discounted_rewards - inputs.q_hat * ctx.discounts)
        baseline = W_prev * inputs.v_hat * ctx.discounts
        per_step = safe_ratio(resampled_sums(counts, residual), resampled_sums(counts, W))
        per_step += safe_ratio(resampled_sums(counts, baseline), resampled_sums(counts, W_prev))
        return per_step.sum(axis=-1)
