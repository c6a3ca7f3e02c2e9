"""Marginal importance sampling: per-step weights of the visited state (or state-action pair) instead of
the product of all past ratios (Liu et al., 2018; Uehara et al., 2020; Xie et al., 2019).

With the state-action weight w_t(s, a) and the state weight w_t(s) (``opelab.ope.weights``), the
"marginal pair weight" of step t is m_t = w_t(s_t, a_t) (SAM) or m_t = w_t(s_t) π_e(a_t|s_t)/π_b(a_t|s_t)
(SM). The spectrum of Yuan et al. (2021, "SOPE") blends in per-decision ratios for the last k steps:

    W_t^(k) = m_{t−k} · Π_{t' = t−k+1}^{t} w_t'     (t ≥ k),      W_t^(k) = Π_{t' ≤ t} w_t'   (t < k),

so k = 0 is pure marginal IS and k ≥ H is PDIS. Every W^(k) has E_D[W_t^(k) f(s_t, a_t)] = E_π[f(s_t, a_t)]
with exact weights, so the IS and DR forms (see ``point.py``) stay unbiased along the spectrum; larger k
trades the weights' model error for per-decision variance.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from opelab.ope.estimators.base import EstimationContext, register_estimator
from opelab.ope.estimators.point import PerDecisionFamily


def spectrum_weights(pair_weight: np.ndarray, step_ratio: np.ndarray, cumulative_ratio: np.ndarray, k: int) -> np.ndarray:
    """W_t^(k) from the marginal pair weights m_t, step ratios w_t and their cumulative products, (P, n, H)."""
    if k == 0:
        return pair_weight
    H = pair_weight.shape[-1]
    out = np.array(cumulative_ratio, copy=True)  # steps t < k use the full product
    if k < H:
        blended = pair_weight[..., : H - k].copy()
        for j in range(1, k + 1):
            blended *= step_ratio[..., j : H - k + j]
        out[..., k:] = blended
    return out


@dataclass(frozen=True)
class _Marginal(PerDecisionFamily):
    """Shared body of the SM and SAM estimators; ``k`` is the SOPE spectrum's number of per-decision steps."""

    k: int = 0
    default_on: ClassVar[tuple[str, ...]] = ("trajectories",)
    kind: ClassVar[str] = "sam"  # "sam": w_t(s, a); "sm": w_t(s) · w_t

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 0:
            raise ValueError(f"k: expected a non-negative int (per-decision steps of the spectrum), found {self.k!r}")

    def weight_key(self) -> Hashable:
        return (self.kind, self.k)

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        if self.kind == "sam":
            pair = ctx.inputs.marginal_weights
        else:
            pair = ctx.memo(("sm", 0), lambda: ctx.inputs.state_marginal_weights * ctx.step_ratio)
        return spectrum_weights(pair, ctx.step_ratio, ctx.cumulative_ratio, self.k)


_SAM = ("marginal_weights",)
_SM = ("state_marginal_weights",)
_QV = ("q_hat", "v_hat")


@register_estimator
@dataclass(frozen=True)
class StateActionMarginalIS(_Marginal):
    """SAM-IS: V̂ = (1/n) Σ_i Σ_t γ^t w_t(s_{i,t}, a_{i,t}) r_{i,t}."""

    name = "sam_is"
    requires = _SAM


@register_estimator
@dataclass(frozen=True)
class StateActionMarginalSNIS(_Marginal):
    """Self-normalised SAM-IS: w_t divided by its mean over trajectories at each step."""

    name = "sam_snis"
    requires = _SAM
    self_normalized = True


@register_estimator
@dataclass(frozen=True)
class StateActionMarginalDR(_Marginal):
    """SAM-DR: Σ_t γ^t [w_t(s_t, a_t)(r_t − Q̂(s_t, a_t)) + w_{t−1}(s_{t−1}, a_{t−1}) V̂(s_t)], w_{−1} = 1."""

    name = "sam_dr"
    form = "dr"
    requires = _SAM + _QV


@register_estimator
@dataclass(frozen=True)
class StateActionMarginalSNDR(_Marginal):
    """Self-normalised SAM-DR."""

    name = "sam_sndr"
    form = "dr"
    requires = _SAM + _QV
    self_normalized = True


@register_estimator
@dataclass(frozen=True)
class StateMarginalIS(_Marginal):
    """SM-IS: V̂ = (1/n) Σ_i Σ_t γ^t w_t(s_{i,t}) (π_e(a|s) / π_b(a|s))_{i,t} r_{i,t}."""

    name = "sm_is"
    kind = "sm"
    requires = _SM


@register_estimator
@dataclass(frozen=True)
class StateMarginalSNIS(_Marginal):
    """Self-normalised SM-IS."""

    name = "sm_snis"
    kind = "sm"
    requires = _SM
    self_normalized = True


@register_estimator
@dataclass(frozen=True)
class StateMarginalDR(_Marginal):
    """SM-DR: the DR form with W_t = w_t(s_t) π_e(a_t|s_t)/π_b(a_t|s_t)."""

    name = "sm_dr"
    kind = "sm"
    form = "dr"
    requires = _SM + _QV


@register_estimator
@dataclass(frozen=True)
class StateMarginalSNDR(_Marginal):
    """Self-normalised SM-DR."""

    name = "sm_sndr"
    kind = "sm"
    form = "dr"
    requires = _SM + _QV
    self_normalized = True


@register_estimator
@dataclass(frozen=True)
class DoubleRL(_Marginal):
    """Double reinforcement learning (Kallus & Uehara, 2020): the SAM-DR form

        V̂ = (1/n) Σ_i Σ_t γ^t [w_t(s_t, a_t)(r_t − Q̂_t(s_t, a_t)) + w_{t−1}(s_{t−1}, a_{t−1}) V̂_t(s_t)],

    with Q̂ and the marginal weights cross-fitted: each fold's values come from models fit on the other
    folds (``build_inputs(..., n_folds=K)``). It is consistent when either nuisance is, and √n-consistent
    and efficient when both converge with the product of their error rates o(n^{-1/2}), without Donsker
    conditions on the models.
    """

    name = "drl"
    form = "dr"
    requires = _SAM + _QV + ("cross_fit_folds",)


def spectrum(estimator: str, k: int) -> _Marginal:
    """A marginal estimator with the SOPE spectrum option, e.g. ``spectrum("sam_dr", 2)``.

    Its name gains the suffix ``@k`` so several points of the spectrum can sit in one table.
    """
    from opelab.ope.estimators.base import ESTIMATORS

    cls = ESTIMATORS.get(estimator)
    if cls is None or not issubclass(cls, _Marginal):
        raise ValueError(f"estimator: expected a marginal estimator (sm_*, sam_*), found {estimator!r}")
    named = type(f"{cls.__name__}Spectrum{k}", (cls,), {"name": f"{estimator}@{k}", "__doc__": cls.__doc__})
    return dataclass(frozen=True)(named)(k=k)
