"""Bandit and ranking (slate) estimators: the field's one-step names, weight transforms, marginalised IPS
over action embeddings, kernel names for continuous actions, and the slate estimators.

Data. A one-step (bandit) log is a ``LoggedDataset`` of horizon 1: trajectory i is round i, with context x_i,
action a_i, reward r_i and w_i = π_e(a_i | x_i) / π_b(a_i | x_i). A ranking log (``info.slate``) holds one
trajectory per round with step t = slot t of the list and γ = 1; its step ratios are the conditional ratios of
slot t's item given the items above it, so the cumulative ratio W_t is the cascade (top-t) ratio and W_{K−1}
the joint ratio of the whole slate, and ``OPEInput.marginal_weights`` holds the item-position ratios
π_e(a_t at slot t | x) / π_b(a_t at slot t | x). Every ratio is read from ``EstimationContext`` (in log space
when log-propensities are given).

Most estimators here are the per-decision forms of ``point.py`` (IS: Σ_t γ^t Ŵ_t r_t; DR:
Σ_t γ^t [Ŵ_t (r_t − Q̂_t) + Ŵ_{t−1} V̂_t]) under another name or with another weight Ŵ_t:

    ipw, snipw           tis, sntis on one-step logs (ipw with clipping min(w, λ))
    switch_dr, dr_os     the DR form with Ŵ_t = f_λ(W_t) (switch, optimistic shrinkage)
    sg_ipw, sg_dr        the IS and DR forms with the power-mean correction of W_t
    mips, snmips         the IS form with the embedding-marginal ratio (one-step logs)
    kernel_ipw/dr        ipw, dr on one-step continuous-action logs with a kernel eval pscore
    sips, iips           the TIS form (joint ratio), the IS form with item-position ratios (slates)
    rips, cascade_dr     the PDIS and DR forms with cascade ratios (slates)

Estimators meant for one kind of data refuse the others in every entry point (estimate, intervals, bootstrap)
with an ``OPEInputError`` that names the estimator, what it expected and what it found.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from opelab.ope.estimators.base import EstimationContext, data_kind, register_estimator, safe_ratio
from opelab.ope.estimators.point import (
    DoublyRobust,
    PerDecisionFamily,
    PerDecisionIS,
    SelfNormalizedTrajectoryIS,
    TrajectoryIS,
    TransformedCumulativeRatio,
    checked_option,
)
from opelab.ope.inputs import OPEInputError

_QV = ("q_hat", "v_hat")


_KINDS = {  # data_kind -> what it is, for error messages
    "trajectories": "trajectories (horizon > 1)",
    "bandit": "a one-step log (horizon 1)",
    "slate": "a ranking log (info.slate True)",
}


class _DataCheck:
    """Mixin (first base): ``check_data`` runs before the estimator's values, interval values and bootstrap
    terms are computed, so data it is not defined on (``applies_to``, ``action_types``) is refused on every
    path through ``evaluate``."""

    name: str
    applies_to: ClassVar[tuple[str, ...]]
    action_types: ClassVar[tuple[str, ...]]

    def check_data(self, ctx: EstimationContext) -> None:
        ds = ctx.dataset
        if data_kind(ds.info, ds.horizon) not in self.applies_to:
            expected = " or ".join(_KINDS[kind] for kind in self.applies_to)
            raise OPEInputError(f"{self.name}: expected {expected}, found {_describe(ctx)}")
        if _action_type(ctx) not in self.action_types:
            raise OPEInputError(
                f"{self.name}: expected {' or '.join(self.action_types)} actions, found {_describe_actions(ctx)}"
            )

    def estimate(self, ctx: EstimationContext) -> np.ndarray:
        self.check_data(ctx)  # before the missing inputs: data of the wrong kind is the first thing to say
        return super().estimate(ctx)  # type: ignore[misc]

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        self.check_data(ctx)
        return super().trajectory_values(ctx)  # type: ignore[misc]

    def interval_values(self, ctx: EstimationContext) -> np.ndarray:
        self.check_data(ctx)
        return super().interval_values(ctx)  # type: ignore[misc]

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, Any]:
        self.check_data(ctx)
        return super().resampling_terms(ctx)  # type: ignore[misc]


def _action_type(ctx: EstimationContext) -> str:
    return "discrete" if ctx.dataset.action_space.is_discrete else "continuous"


def _describe_actions(ctx: EstimationContext) -> str:
    space = ctx.dataset.action_space
    if space.is_discrete:
        return f"discrete actions (n_actions={space.n_actions})"
    return f"continuous actions (action_dim={space.action_dim})"


def _describe(ctx: EstimationContext) -> str:
    """What kind of log ``ctx`` holds, for error messages."""
    ds = ctx.dataset
    kind = "a ranking log" if ds.info.slate else ("a one-step log" if ds.horizon == 1 else "trajectories")
    return f"{kind} (info.slate {ds.info.slate}, horizon {ds.horizon}, {_action_type(ctx)} actions)"


# ---------------------------------------------------------------------------------------------- one-step IPW


@register_estimator
@dataclass(frozen=True)
class InverseProbabilityWeighting(TrajectoryIS):
    """Inverse probability weighting (Horvitz & Thompson, 1952), with optional clipping (Ionides, 2008;
    Bottou et al., 2013; OBP's ``lambda_``):

        V̂ = (1/n) Σ_i min(w_i, λ) r_i,        w_i = π_e(a_i | x_i) / π_b(a_i | x_i).

    The one-step name of ``tis``; λ = inf (the default) is ``tis`` exactly. On trajectories it is clipped
    TIS, min(W_{i,H−1}, λ) G_i.
    """

    lambda_: float = math.inf
    name = "ipw"
    default_on = ("bandit",)
    option_names = ("lambda_",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", checked_option(type(self).name, "lambda_", self.lambda_, 0.0, math.inf))
        super().__post_init__()

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        if self.lambda_ == math.inf:
            return super().trajectory_values(ctx)
        return np.minimum(ctx.trajectory_ratio, self.lambda_) * ctx.returns


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedIPW(SelfNormalizedTrajectoryIS):
    """Self-normalised IPW (Swaminathan & Joachims, 2015): V̂ = Σ_i w_i r_i / Σ_i w_i; the one-step name of
    ``sntis``."""

    name = "snipw"
    default_on = ("bandit",)


# ---------------------------------------------------------------------------------------- weight transforms


@register_estimator
@dataclass(frozen=True)
class SwitchDR(TransformedCumulativeRatio):
    """Switch doubly robust (Wang, Agarwal & Dudík, ICML 2017), in OBP's form: the DR correction is switched off
    where the weight exceeds τ = ``lambda_``, leaving the model's value there,

        V̂ = (1/n) Σ_i [V̂(x_i) + 1{w_i ≤ τ} w_i (r_i − Q̂(x_i, a_i))].

    τ = inf (the default) is ``dr``; τ = 0 is the direct method. On trajectories: the DR form with
    Ŵ_t = 1{W_t ≤ τ} W_t (``TransformedCumulativeRatio``).
    """

    name = "switch_dr"
    default_on = ()
    form = "dr"
    requires = _QV
    transform_name = "switch"

    def transform(self, W: np.ndarray) -> np.ndarray:
        return W * (W <= self.lambda_)


@register_estimator
@dataclass(frozen=True)
class DoublyRobustOptimisticShrinkage(TransformedCumulativeRatio):
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudík, ICML 2020):

        V̂ = (1/n) Σ_i [V̂(x_i) + ŵ_i (r_i − Q̂(x_i, a_i))],        ŵ = λ w / (w² + λ),

    which shrinks large weights towards 0 (ŵ ≤ √λ / 2). λ = inf (the default) is ``dr``; λ = 0 is the direct
    method. On trajectories: the DR form with Ŵ_t = λ W_t / (W_t² + λ).
    """

    name = "dr_os"
    default_on = ()
    form = "dr"
    requires = _QV
    transform_name = "optimistic_shrinkage"

    def transform(self, W: np.ndarray) -> np.ndarray:
        if self.lambda_ == 0.0:
            return np.zeros_like(W)
        with np.errstate(over="ignore"):  # W² / λ = inf means ŵ = 0, its limit
            return W / (1.0 + W * (W / self.lambda_))  # = λ W / (W² + λ), without forming λ W


@dataclass(frozen=True)
class _Subgaussian(TransformedCumulativeRatio):
    """The power-mean (subgaussian) correction of Metelli, Russo & Restelli (NeurIPS 2021):
    ŵ = w / ((1 − λ) + λ w), the weighted harmonic mean of w and 1 (ŵ ≤ 1/λ), λ ∈ [0, 1]."""

    lambda_: float = 0.0
    default_on = ()
    transform_name = "subgaussian"
    identity_at = 0.0
    lambda_range = (0.0, 1.0)

    def transform(self, W: np.ndarray) -> np.ndarray:
        return safe_ratio(W, (1.0 - self.lambda_) + self.lambda_ * W)  # λ = 1, W = 0: ŵ = 0


@register_estimator
@dataclass(frozen=True)
class SubgaussianIPW(_Subgaussian):
    """Subgaussian IPW (Metelli, Russo & Restelli, NeurIPS 2021):

        V̂ = (1/n) Σ_i ŵ_i r_i,        ŵ = w / ((1 − λ) + λ w),   λ ∈ [0, 1].

    λ = 0 (the default) is ``ipw``; λ = 1 gives weight 1 to every action π_e can take. On trajectories: the
    per-decision IS form with Ŵ_t = W_t / ((1 − λ) + λ W_t) (so λ = 0 is ``pdis``).
    """

    name = "sg_ipw"


@register_estimator
@dataclass(frozen=True)
class SubgaussianDR(_Subgaussian):
    """Subgaussian DR (Metelli, Russo & Restelli, NeurIPS 2021; the DR form of their correction, as in OBP):

        V̂ = (1/n) Σ_i [V̂(x_i) + ŵ_i (r_i − Q̂(x_i, a_i))],        ŵ = w / ((1 − λ) + λ w),   λ ∈ [0, 1].

    λ = 0 (the default) is ``dr``. On trajectories: the DR form with Ŵ_t = W_t / ((1 − λ) + λ W_t).
    """

    name = "sg_dr"
    form = "dr"
    requires = _QV


# ------------------------------------------------------------------------------------- action embeddings


def embedding_groups(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The embedding id of every action (A,) and the indicator matrix (A, K) of the K distinct embedding rows
    (entry [a, k] is 1 when action a has embedding k; two actions share one when their feature rows are equal)."""
    _, group = np.unique(features, axis=0, return_inverse=True)
    group = group.reshape(-1)  # (A,)
    return group, (group[:, None] == np.arange(group.max() + 1)[None, :]).astype(np.float64)


def embedding_ratio(
    features: np.ndarray, eval_action_probs: np.ndarray, behavior_action_probs: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The marginal ratios of the logged actions' embeddings and their behavior probabilities, (P, n, H) and (n, H):

        w(x_i, e_i) = Σ_{a: e(a) = e(a_i)} π_e(a | x_i) / Σ_{a: e(a) = e(a_i)} π_b(a | x_i).

    ``eval_action_probs`` (P, n, H, A), ``behavior_action_probs`` (n, H, A), ``actions`` (n, H).
    """
    group, members = embedding_groups(features)  # (A,), (A, K)
    logged = group[np.asarray(actions, dtype=np.intp)][..., None]  # (n, H, 1): the logged actions' embedding ids
    eval_mass = np.take_along_axis(eval_action_probs @ members, logged[None], axis=-1)[..., 0]  # (P, n, H)
    behavior_mass = np.take_along_axis(behavior_action_probs @ members, logged, axis=-1)[..., 0]  # (n, H)
    return safe_ratio(eval_mass, np.broadcast_to(behavior_mass, eval_mass.shape)), behavior_mass


@dataclass(frozen=True)
class _EmbeddingMarginal(_DataCheck, PerDecisionFamily):
    """The IS form with the embedding-marginal ratio w(x, e) of Saito & Joachims (ICML 2022) as its weight,
    Σ_i w(x_i, e_i) r_i (``embedding_ratio``), on one-step logs."""

    requires = ("eval_action_probs",)
    default_on = ()
    applies_to = ("bandit",)
    action_types = ("discrete",)

    def check_data(self, ctx: EstimationContext) -> None:
        super().check_data(ctx)
        ds = ctx.dataset
        if ds.info.action_context is None:
            raise OPEInputError(
                f"{self.name}: needs the actions' embeddings in dataset.info.action_context ((n_actions, d)), "
                "found None"
            )
        if ds.behavior_action_probs is None:
            raise OPEInputError(
                f"{self.name}: needs dataset.behavior_action_probs (π_b(· | x) of every round), found None"
            )

    def weight_key(self) -> Hashable:
        return "embedding_marginal_ratio"

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        ds = ctx.dataset
        ratio, behavior_mass = embedding_ratio(
            ds.info.action_features, ctx.inputs.eval_action_probs, ds.behavior_action_probs, ds.actions
        )
        if (behavior_mass <= 0).any():
            i = int(np.argmax((behavior_mass <= 0).any(axis=1)))
            raise OPEInputError(
                f"{self.name}: expected dataset.behavior_action_probs to give the logged action's embedding positive "
                f"probability, found {behavior_mass[i, 0]!r} at round {i}"
            )
        return ratio


@register_estimator
@dataclass(frozen=True)
class MarginalizedIPS(_EmbeddingMarginal):
    """Marginalised IPS over action embeddings (Saito & Joachims, ICML 2022), for deterministic categorical
    embeddings e(a) (rows of ``info.action_context``):

        V̂ = (1/n) Σ_i w(x_i, e_i) r_i,    w(x, e) = Σ_{a: e(a) = e} π_e(a | x) / Σ_{a: e(a) = e} π_b(a | x).

    Unbiased when the reward depends on the action only through its embedding (and π_b(e | x) > 0 wherever
    π_e(e | x) > 0), with weights no larger than, and usually far less spread than, IPW's.
    """

    name = "mips"


@register_estimator
@dataclass(frozen=True)
class SelfNormalizedMIPS(_EmbeddingMarginal):
    """Self-normalised MIPS (Saito & Joachims, ICML 2022): V̂ = Σ_i w(x_i, e_i) r_i / Σ_i w(x_i, e_i)."""

    name = "snmips"
    self_normalized = True


# ----------------------------------------------------------------------------------- continuous actions


class _OneStepContinuous(_DataCheck):
    applies_to = ("bandit",)
    action_types = ("continuous",)

    def check_data(self, ctx: EstimationContext) -> None:
        if _action_type(ctx) == "discrete":
            raise OPEInputError(
                f"{self.name}: expected continuous actions with a kernel eval_pscore (build_continuous_inputs), found "
                f"{_describe_actions(ctx)}; use ipw / dr"
            )
        if data_kind(ctx.dataset.info, ctx.dataset.horizon) != "bandit":
            raise OPEInputError(
                f"{self.name}: expected a one-step log (horizon 1), found {_describe(ctx)}; use tis / dr"
            )


@register_estimator
@dataclass(frozen=True)
class KernelIPW(_OneStepContinuous, InverseProbabilityWeighting):
    """Kernel IPW for continuous actions (Kallus & Zhou, AISTATS 2018):

        V̂ = (1/n) Σ_i K_h(a_i − π_e(x_i)) / π_b(a_i | x_i) · r_i,

    i.e. ``ipw`` on one-step continuous-action data whose eval pscore is the kernel density K_h (built by
    ``opelab.ope.continuous.build_continuous_inputs``; bandwidth and bias in ``opelab.ope.kernels``).
    """

    name = "kernel_ipw"
    default_on = ()


@register_estimator
@dataclass(frozen=True)
class KernelDR(_OneStepContinuous, DoublyRobust):
    """Kernel DR for continuous actions (Kallus & Zhou, AISTATS 2018):

        V̂ = (1/n) Σ_i [V̂(x_i) + K_h(a_i − π_e(x_i)) / π_b(a_i | x_i) · (r_i − Q̂(x_i, a_i))],  V̂(x) = Q̂(x, π_e(x)),

    i.e. ``dr`` on one-step continuous-action data with a kernel eval pscore (``build_continuous_inputs``).
    """

    name = "kernel_dr"
    default_on = ()


# --------------------------------------------------------------------------------------------- slates


class _Slate(_DataCheck):
    applies_to = ("slate",)
    action_types = ("discrete",)


@register_estimator
@dataclass(frozen=True)
class SlateIPS(_Slate, TrajectoryIS):
    """Standard slate IPS (Li et al., KDD 2018; McInerney et al., KDD 2020): the joint ratio of the whole slate
    times the sum of the slot rewards,

        V̂ = (1/n) Σ_i (π_e(s_i | x_i) / π_b(s_i | x_i)) Σ_t r_{i,t},   π(s | x) = Π_t π(a_t | x, a_{<t}).

    Unbiased for any reward; the TIS form on a ranking log.
    """

    name = "sips"
    default_on = ("slate",)


@dataclass(frozen=True)
class _ItemPositionRatio(PerDecisionFamily):
    """W_t = π_e(a_t at slot t | x) / π_b(a_t at slot t | x), the ``marginal_weights`` of a ranking log (the
    item-position ratios of Li et al., KDD 2018)."""

    def weight_key(self) -> Hashable:
        return "item_position_ratio"

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        return ctx.inputs.marginal_weights


@register_estimator
@dataclass(frozen=True)
class IndependentIPS(_Slate, _ItemPositionRatio):
    """Independent IPS (Li et al., KDD 2018, the item-position model): item-position marginal ratios per slot,

        V̂ = (1/n) Σ_i Σ_t (π_e(a_{i,t} at t | x_i) / π_b(a_{i,t} at t | x_i)) r_{i,t}.

    Unbiased when each slot's reward depends only on its own item and slot (no interaction between slots).
    """

    name = "iips"
    default_on = ("slate",)
    requires = ("marginal_weights",)


@register_estimator
@dataclass(frozen=True)
class RewardInteractionIPS(_Slate, PerDecisionIS):
    """Reward-interaction IPS (McInerney et al., KDD 2020): the cascade (top-t) ratio per slot,

        V̂ = (1/n) Σ_i Σ_t W_{i,t} r_{i,t},    W_t = Π_{t' ≤ t} π_e(a_t' | x, a_{<t'}) / π_b(a_t' | x, a_{<t'}).

    Unbiased when slot t's reward depends only on the items at slots ≤ t (the cascade model); the PDIS form on a
    ranking log.
    """

    name = "rips"
    default_on = ("slate",)


@register_estimator
@dataclass(frozen=True)
class CascadeDR(_Slate, DoublyRobust):
    """Cascade doubly robust (Kiyohara et al., WSDM 2022): the DR form with cascade ratios,

        V̂ = (1/n) Σ_i Σ_t [W_{i,t} (r_{i,t} − Q̂_t(x_i, a_{i,≤t})) + W_{i,t−1} V̂_t(x_i, a_{i,<t})],

    V̂_t(x, a_{<t}) = Σ_a π_e(a | x, a_{<t}) Q̂_t(x, a_{<t}, a), W_{−1} = 1. Unbiased under the cascade reward
    for any Q̂ (with V̂ consistent with it), and of lower variance than RIPS when Q̂ is good. ``lambda_``
    clips W_t as in ``dr``.
    """

    name = "cascade_dr"
    default_on = ("slate",)
