"""Off-policy estimators of the whole return distribution F(y) = P_{π_e}(G ≤ y).

Universal off-policy evaluation (Chandak et al., 2021, "Universal Off-Policy Evaluation", NeurIPS) and
off-policy risk assessment (Huang et al., 2021, "Off-Policy Risk Assessment in Contextual Bandits"; Huang
et al., 2022, "Off-Policy Risk Assessment in Markov Decision Processes", AISTATS) estimate the CDF of the
discounted return under π_e from trajectories of π_b; any risk functional (mean, variance, CVaR,
quantiles, IQR: ``opelab.ope.risk``) can then be read off the estimated CDF. With W_i the whole-trajectory
importance ratio (``EstimationContext.trajectory_ratio``), G_i the logged return and F̄(y | s) a model of the
return CDF given the initial state::

    cdf_tis     F̂(y) = (1/n) Σ_i W_i 1{G_i ≤ y}
    cdf_sntis   F̂(y) = Σ_i W_i 1{G_i ≤ y} / Σ_i W_i                          (0 where Σ_i W_i = 0)
    cdf_dm      F̂(y) = (1/n) Σ_i F̄(y | s_i0)
    cdf_tdr     F̂(y) = (1/n) Σ_i W_i (1{G_i ≤ y} − F̄(y | s_i0)) + (1/n) Σ_i F̄(y | s_i0)
    cdf_sntdr   cdf_tdr with W_i / ((1/n) Σ_j W_j) in place of W_i

Every estimate is evaluated on a grid and passed through ``project_cdf`` (least-squares projection onto
non-decreasing values in [0, 1]), so it is a valid CDF on the grid; read it as a step function (see
``opelab.ope.risk``: mass missing at the top, 1 − F̂(grid[-1]), sits on grid[-1]). CDF-TIS and CDF-TDR are
unbiased for F at every y (before projection) when π_b covers π_e; the self-normalised ones are consistent.

All estimators are vectorized over the policy axis: F̂ has shape (P, G).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.data.validation import owned_readonly
from opelab.ope.estimators.base import EstimationContext, Registry, self_normalize
from opelab.ope.inputs import OPEInput
from opelab.ope.risk import (
    cdf_cvar,
    cdf_interquartile_range,
    cdf_mean,
    cdf_quantile,
    cdf_variance,
    project_cdf,
)

#: ``model(grid) -> (P, n, G)``: F̄(grid[k] | s_i0) for every policy p and logged trajectory i.
ReturnCDFModel = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------- helpers
def check_grid(grid: np.ndarray) -> np.ndarray:
    """A grid as a float64 (G,) array; refuses empty, non-finite or not strictly increasing grids."""
    values = np.asarray(grid, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"grid: expected a non-empty 1-D array, found shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("grid: expected finite values, found NaN or infinity")
    if (np.diff(values) <= 0).any():
        k = int(np.flatnonzero(np.diff(values) <= 0)[0])
        raise ValueError(
            f"grid: expected strictly increasing values, found grid[{k}] = {values[k]!r} >= "
            f"grid[{k + 1}] = {values[k + 1]!r}"
        )
    return values


def weighted_step_sums(values: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """S[p, k] = Σ_i weights[p, i] 1{values[p, i] ≤ grid[k]}, shape (P, G).

    ``values`` is (n,) (shared by all policies) or (P, n). Each value is binned once at the first grid point
    not below it (``searchsorted``), the weights are summed per bin and accumulated along the grid: O(P(n + G))
    memory and time, no (P, n, G) indicator array.
    """
    weights = np.asarray(weights, dtype=np.float64)
    P, n = weights.shape
    G = len(grid)
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), (P, n))
    bins = np.searchsorted(grid, values, side="left")  # first k with grid[k] ≥ value; G when above the grid
    flat = (np.arange(P)[:, None] * (G + 1) + bins).reshape(-1)
    totals = np.bincount(flat, weights=weights.reshape(-1), minlength=P * (G + 1)).reshape(P, G + 1)
    return np.cumsum(totals[:, :G], axis=-1)


def return_grid(
    dataset: LoggedDataset,
    bounds: tuple[float, float] | None = None,
    n_points: int = 256,
    *,
    extra_values: np.ndarray | None = None,
) -> np.ndarray:
    """A grid for CDF estimates: every distinct logged return, every ``extra_values`` entry, and ``n_points``
    evenly spaced points spanning all of them and the user's ``bounds = (low, high)``.

    Holding every logged return makes step-function estimates exact on the grid (their risk functionals
    equal those of the estimator's distribution); reaching beyond the logged support to the bounds (e.g.
    the task's known return range) lets the estimate reach its top value inside the grid even when the
    returns of π_e fall outside what π_b logged. ``extra_values`` adds points such as model predictions.
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points: expected an int >= 2, found {n_points!r}")
    returns = np.asarray(dataset.returns, dtype=np.float64)
    parts = [returns]
    if extra_values is not None:
        extra = np.asarray(extra_values, dtype=np.float64).reshape(-1)
        if not np.isfinite(extra).all():
            raise ValueError("extra_values: expected finite values, found NaN or infinity")
        parts.append(extra)
    points = np.concatenate(parts)
    low, high = float(points.min()), float(points.max())
    if bounds is not None:
        if len(bounds) != 2:
            raise ValueError(f"bounds: expected (low, high), found {bounds!r}")
        b_low, b_high = float(bounds[0]), float(bounds[1])
        if not (np.isfinite(b_low) and np.isfinite(b_high) and b_low < b_high):
            raise ValueError(f"bounds: expected finite low < high, found {bounds!r}")
        low, high = min(low, b_low), max(high, b_high)
    even = np.linspace(low, high, int(n_points))
    return np.unique(np.concatenate([points, even]))


# ---------------------------------------------------------------------------------------------- contract
@dataclass(frozen=True)
class CDFEstimator(ABC):
    """An off-policy estimator of the return CDF of every evaluation policy on a grid."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        """The estimate before projection, shape (P, G); may dip or leave [0, 1]."""

    def required_inputs(self) -> tuple[str, ...]:
        """``OPEInput`` fields this estimator needs, given its options."""
        return self.requires

    def estimate_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        """F̂(grid[k]) for every policy, shape (P, G): a valid CDF (``project_cdf``) read as a step function."""
        grid = check_grid(grid)
        ctx.require(self.name, *self.required_inputs())
        raw = np.asarray(self.raw_cdf(ctx, grid), dtype=np.float64)
        expected = (ctx.inputs.n_policies, len(grid))
        if raw.shape != expected:
            raise ValueError(f"{self.name}: expected an estimate of shape {expected}, found {raw.shape}")
        return project_cdf(raw)


CDF_ESTIMATORS = Registry("CDF estimator", CDFEstimator)


def register_cdf_estimator(cls: type[CDFEstimator]) -> type[CDFEstimator]:
    """Class decorator: make a CDF estimator available by its short ``name``."""
    return CDF_ESTIMATORS.register(cls)


def get_cdf_estimator(name_or_estimator: str | CDFEstimator) -> CDFEstimator:
    """A CDF estimator instance from its short name (default options), or the instance itself."""
    return CDF_ESTIMATORS.create(name_or_estimator)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- estimators
@register_cdf_estimator
@dataclass(frozen=True)
class CDFTrajectoryIS(CDFEstimator):
    """CDF-TIS (Chandak et al., 2021): F̂(y) = (1/n) Σ_i W_i 1{G_i ≤ y}.

    Unbiased at every y; its top value is the mean weight, not 1 (projection clips it above 1, and below 1
    the missing mass counts at the top of the grid).
    """

    name = "cdf_tis"

    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        W = ctx.trajectory_ratio
        return weighted_step_sums(ctx.returns, W, grid) / W.shape[-1]


@register_cdf_estimator
@dataclass(frozen=True)
class CDFSelfNormalizedTrajectoryIS(CDFEstimator):
    """Self-normalised CDF-TIS (Chandak et al., 2021; Huang et al., 2021): F̂(y) = Σ_i W_i 1{G_i ≤ y} / Σ_i W_i.

    A proper CDF of the logged returns reweighted by W; 0 everywhere when every W_i is 0 (no logged
    trajectory is possible under π_e), which the risk functionals read as all mass on grid[-1].
    """

    name = "cdf_sntis"

    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        W = self_normalize(ctx.trajectory_ratio, axis=-1)
        return weighted_step_sums(ctx.returns, W, grid) / W.shape[-1]


def _point_mass_model(ctx: EstimationContext, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crude default model F̄(y | s_i0) = 1{V̂(s_i0) ≤ y}.

    Returns the point locations V̂ (P, n) and the DM average (1/n) Σ_i F̄_i on the grid (P, G).
    """
    v0 = ctx.inputs.initial_v_hat  # (P, n)
    n = v0.shape[-1]
    return v0, weighted_step_sums(v0, np.ones_like(v0), grid) / n


def _model_cdf(model: ReturnCDFModel, ctx: EstimationContext, grid: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(model(grid), dtype=np.float64)
    expected = (ctx.inputs.n_policies, ctx.dataset.n_trajectories, len(grid))
    if values.shape != expected:
        raise ValueError(f"{name}.model: expected F̄ of shape (P, n, G) = {expected}, found {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}.model: expected finite values, found NaN or infinity")
    return values


def _doubly_robust_cdf(
    ctx: EstimationContext, grid: np.ndarray, W: np.ndarray, model: ReturnCDFModel | None, name: str
) -> np.ndarray:
    """(1/n) Σ_i W_i (1{G_i ≤ y} − F̄_i(y)) + (1/n) Σ_i F̄_i(y), (P, G)."""
    n = W.shape[-1]
    logged = weighted_step_sums(ctx.returns, W, grid) / n
    if model is None:
        v0, baseline = _point_mass_model(ctx, grid)
        weighted_model = weighted_step_sums(v0, W, grid) / n
    else:
        F_bar = _model_cdf(model, ctx, grid, name)
        baseline = F_bar.mean(axis=1)
        weighted_model = np.einsum("pn,png->pg", W, F_bar) / n
    return logged - weighted_model + baseline


@dataclass(frozen=True)
class _ModelBased(CDFEstimator):
    """Estimators that use a model F̄(y | s_0) of the return CDF given the initial state.

    ``model(grid) -> (P, n, G)`` gives F̄(grid[k] | s_i0) for every policy and logged trajectory. Without
    one, the model is the point mass at the fitted initial value: F̄(y | s) = 1{V̂(s) ≤ y}, from
    ``OPEInput.initial_v_hat`` (as SCOPE-RL does). That is crude: it describes the mean of the return only,
    so the DM estimate is a mixture of point masses whose spread reflects the spread of V̂ over initial
    states, not the randomness of the return, and the doubly robust estimators gain little from it. They
    stay unbiased (TDR) or consistent (SN-TDR) whatever the model.
    """

    model: ReturnCDFModel | None = None

    def required_inputs(self) -> tuple[str, ...]:
        return ("initial_v_hat",) if self.model is None else ()


@register_cdf_estimator
@dataclass(frozen=True)
class CDFDirectMethod(_ModelBased):
    """CDF direct method (Huang et al., 2022): F̂(y) = (1/n) Σ_i F̄(y | s_i0). See ``_ModelBased`` for F̄."""

    name = "cdf_dm"

    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        if self.model is None:
            return _point_mass_model(ctx, grid)[1]
        return _model_cdf(self.model, ctx, grid, self.name).mean(axis=1)


@register_cdf_estimator
@dataclass(frozen=True)
class CDFTrajectoryDR(_ModelBased):
    """CDF trajectory-wise doubly robust (Chandak et al., 2021; Huang et al., 2022):
    F̂(y) = (1/n) Σ_i W_i (1{G_i ≤ y} − F̄(y | s_i0)) + (1/n) Σ_i F̄(y | s_i0). See ``_ModelBased`` for F̄."""

    name = "cdf_tdr"

    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        return _doubly_robust_cdf(ctx, grid, ctx.trajectory_ratio, self.model, self.name)


@register_cdf_estimator
@dataclass(frozen=True)
class CDFSelfNormalizedTrajectoryDR(_ModelBased):
    """Self-normalised CDF-TDR: W_i replaced by W_i / ((1/n) Σ_j W_j) (0 when that mean is 0)."""

    name = "cdf_sntdr"

    def raw_cdf(self, ctx: EstimationContext, grid: np.ndarray) -> np.ndarray:
        W = self_normalize(ctx.trajectory_ratio, axis=-1)
        return _doubly_robust_cdf(ctx, grid, W, self.model, self.name)


# ---------------------------------------------------------------------------------------------- evaluation
def _alpha_label(alpha: float) -> str:
    return f"{alpha:g}"


@dataclass(frozen=True, eq=False)
class CDFTable:
    """Estimated return CDFs of every estimator for every policy on one grid: ``cdf[e, p, k] = F̂(grid[k])``."""

    policy_names: tuple[str, ...]
    estimator_names: tuple[str, ...]
    grid: np.ndarray  # (G,)
    cdf: np.ndarray  # (E, P, G)

    def __post_init__(self) -> None:
        grid = check_grid(self.grid)
        cdf = np.asarray(self.cdf, dtype=np.float64)
        object.__setattr__(self, "policy_names", tuple(self.policy_names))
        object.__setattr__(self, "estimator_names", tuple(self.estimator_names))
        shape = (len(self.estimator_names), len(self.policy_names), len(grid))
        if cdf.shape != shape:
            raise ValueError(f"cdf: expected shape (E, P, G) = {shape}, found {cdf.shape}")
        for name, value in (("grid", grid), ("cdf", cdf)):
            object.__setattr__(self, name, owned_readonly(value))

    def estimate(self, estimator: str) -> np.ndarray:
        """The CDFs of one estimator for every policy, shape (P, G)."""
        try:
            return self.cdf[self.estimator_names.index(estimator)]
        except ValueError:
            raise KeyError(f"estimator: expected one of {list(self.estimator_names)}, found {estimator!r}") from None

    def risk(self, alphas: Sequence[float] = (0.1, 0.25, 0.5)) -> pd.DataFrame:
        """Risk functionals of every estimated CDF (``opelab.ope.risk``), one row per (estimator, policy).

        Columns: ``policy, estimator, mean, variance, cvar@α…, quantile@α…, interquartile_range``.
        """
        levels = np.asarray(alphas, dtype=np.float64)
        if levels.ndim != 1 or levels.size == 0:
            raise ValueError(f"alphas: expected a non-empty sequence of levels, found {alphas!r}")
        E, P, _ = self.cdf.shape
        columns: dict[str, np.ndarray] = {
            "policy": np.tile(np.array(self.policy_names, dtype=object), E),
            "estimator": np.repeat(np.array(self.estimator_names, dtype=object), P),
            "mean": cdf_mean(self.grid, self.cdf).reshape(-1),
            "variance": cdf_variance(self.grid, self.cdf).reshape(-1),
        }
        cvar = cdf_cvar(self.grid, self.cdf, levels).reshape(E * P, -1)
        quantile = cdf_quantile(self.grid, self.cdf, levels).reshape(E * P, -1)
        for j, alpha in enumerate(levels):
            columns[f"cvar@{_alpha_label(alpha)}"] = cvar[:, j]
        for j, alpha in enumerate(levels):
            columns[f"quantile@{_alpha_label(alpha)}"] = quantile[:, j]
        columns["interquartile_range"] = cdf_interquartile_range(self.grid, self.cdf).reshape(-1)
        return pd.DataFrame(columns)


def evaluate_cdf(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | CDFEstimator] | None = None,
    grid: np.ndarray | None = None,
    bounds: tuple[float, float] | None = None,
) -> CDFTable:
    """Estimate the return CDF of every policy with each CDF estimator.

    ``estimators`` defaults to every registered one whose inputs are present (the model-based ones need
    ``initial_v_hat``). Without a ``grid``, ``return_grid(dataset, bounds)`` is used, extended by the
    initial values V̂(s_i0) when present so that the default point-mass model is resolved exactly; give
    ``bounds`` (e.g. the task's return range) or a ``grid``, not both.
    """
    inputs.check_dataset(dataset)
    if grid is not None and bounds is not None:
        raise ValueError(f"bounds: expected None when a grid is given, found {bounds!r}")
    if estimators is None:
        candidates = [cls() for cls in CDF_ESTIMATORS.values()]
        chosen = [e for e in candidates if all(getattr(inputs, f) is not None for f in e.required_inputs())]
    else:
        chosen = [get_cdf_estimator(e) for e in estimators]
    names = tuple(e.name for e in chosen)
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: expected distinct names, found {list(names)}")
    if grid is None:
        grid = return_grid(dataset, bounds, extra_values=inputs.initial_v_hat)
    grid = check_grid(grid)
    ctx = EstimationContext(dataset, inputs)
    if chosen:
        cdf = np.stack([e.estimate_cdf(ctx, grid) for e in chosen])
    else:
        cdf = np.empty((0, inputs.n_policies, len(grid)))
    return CDFTable(policy_names=inputs.policy_names, estimator_names=names, grid=grid, cdf=cdf)
