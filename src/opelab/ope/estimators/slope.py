"""The ``slope`` point estimator and the pieces of SLOPE it needs (Su, Srinath & Krishnamurthy, "Adaptive
Estimator Selection for Off-Policy Evaluation", ICML 2020): the standard ordered families (``slope_family``)
and Lepski's rule (``lepski_pick``). They live with the estimators so that ``slope`` is registered whenever
the estimators are; ``opelab.select.slope`` has the selection API (``slope``, ``slope_from_table``) and the
method's description.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from opelab.ope.estimators.base import EstimationContext, PointEstimator, get_estimator, register_estimator

# estimator -> (its option, how the option moves along a SLOPE order: widest / least biased first)
FAMILIES: dict[str, tuple[str, str]] = {
    "ipw": ("lambda_", "decreasing"),  # clipping min(w, λ): λ = ∞ unbiased, smaller λ less variance, more bias
    "dr": ("lambda_", "decreasing"),  # clipped DR
    "switch_dr": ("lambda_", "decreasing"),  # τ = ∞ is DR, τ = 0 the direct method
    "dr_os": ("lambda_", "decreasing"),  # λ = ∞ is DR, λ = 0 the direct method
    "sg_ipw": ("lambda_", "increasing"),  # λ = 0 is IPW, λ = 1 the most shrunk
    "sg_dr": ("lambda_", "increasing"),
    "kernel_ipw": ("lambda_", "decreasing"),
    "kernel_dr": ("lambda_", "decreasing"),
    **{name: ("k", "decreasing") for name in ("sam_is", "sam_snis", "sam_dr", "sam_sndr", "sm_is", "sm_snis", "sm_dr", "sm_sndr")},
    # SOPE: k = H is per-decision IS (unbiased), k = 0 the marginal estimator (least variance)
}

# default grids of the ``slope`` point estimator, per option and direction (sorted by ``slope_family``)
DEFAULT_GRIDS: dict[tuple[str, str], tuple[float, ...]] = {
    ("lambda_", "decreasing"): (math.inf, 1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0),
    ("lambda_", "increasing"): (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0),
}



def slope_family(kind: str | tuple[str, str], grid: Sequence[float]) -> list[PointEstimator]:
    """A standard family for SLOPE, in its order (widest intervals, least bias first).

    ``kind`` is an estimator of ``FAMILIES`` (or ``(estimator, option)``, e.g. ``("dr", "lambda_")``); ``grid`` the
    option's values in any order. ``slope_family("dr", [1, 10, 100, math.inf])`` gives clipped DR at λ = ∞, 100,
    10, 1; ``slope_family("sg_dr", [0.1, 0, 1])`` the power-mean λ = 0, 0.1, 1; ``slope_family("sam_dr", [0, 1, 2])``
    the SOPE spectrum ``sam_dr@2, sam_dr@1, sam_dr@0`` (``opelab.ope.estimators.marginal.spectrum``).
    """
    name, option = kind if isinstance(kind, tuple) else (kind, None)
    if name not in FAMILIES:
        raise ValueError(f"kind: expected one of {sorted(FAMILIES)} (or (estimator, option)), found {kind!r}")
    expected_option, direction = FAMILIES[name]
    if option is not None and option != expected_option:
        raise ValueError(f"kind: the SLOPE family of {name} runs over {expected_option!r}, found option {option!r}")
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise ValueError(f"grid: expected a list of {expected_option} values, found {grid!r}")
    values = [_grid_value(name, expected_option, v) for v in grid]
    if len(set(values)) != len(values) or len(values) < 2:
        raise ValueError(f"grid: expected at least 2 distinct {expected_option} values for {name}, found {list(grid)!r}")
    values.sort(reverse=direction == "decreasing")
    if expected_option == "k":
        from opelab.ope.estimators.marginal import spectrum

        return [spectrum(name, int(k)) for k in values]
    return [get_estimator(name, **{expected_option: v}) for v in values]


def _grid_value(name: str, option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or math.isnan(value):
        raise ValueError(f"grid: expected numbers for {name}'s {option}, found {value!r}")
    if option == "k":
        if value < 0 or value != int(value) or math.isinf(value):
            raise ValueError(f"grid: expected non-negative ints for {name}'s k (SOPE spectrum steps), found {value!r}")
        return int(value)
    return float(value)


def lepski_pick(estimates: np.ndarray, half_widths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SLOPE's rule along the first axis: estimates and half-widths (M, ...) in the family's order.

    Returns the index î (...) of the last member whose interval θ̂_i ± 2 w_i meets the intersection of all
    earlier ones, and that intersection's ends (...), (...). A width of ∞ meets everything; closed intervals
    (touching ends meet).
    """
    low = estimates[0] - 2.0 * half_widths[0]
    high = estimates[0] + 2.0 * half_widths[0]
    chosen = np.zeros(np.shape(low), dtype=np.intp)
    alive = np.ones(np.shape(low), dtype=bool)
    for m in range(1, len(estimates)):
        lo = np.maximum(low, estimates[m] - 2.0 * half_widths[m])
        hi = np.minimum(high, estimates[m] + 2.0 * half_widths[m])
        alive &= lo <= hi
        chosen = np.where(alive, m, chosen)
        low, high = np.where(alive, lo, low), np.where(alive, hi, high)
    return chosen, low, high


# ---------------------------------------------------------------------------------- the point estimator


@register_estimator
@dataclass(frozen=True)
class SlopeEstimator(PointEstimator):
    """SLOPE as a point estimator (Su, Srinath & Krishnamurthy, ICML 2020): per policy, the estimate of the
    member of ``slope_family(base, grid)`` that SLOPE picks with ``t`` intervals at level 1 − ``alpha``,

        V̂ = θ̂_î,    î = max { i : ∩_{j ≤ i} [θ̂_j − 2 w_j, θ̂_j + 2 w_j] ≠ ∅ },    w_j = t_{n−1, 1−α/2} s_j / √n.

    Default family: clipped IPW at λ = ∞, 1000, 300, 100, 30, 10, 3, 1 (needs no reward model); ``base`` any
    non-self-normalised estimator of ``FAMILIES`` (``grid`` required for the SOPE spectrum's k).

    Its per-trajectory values are the picked member's, so the ``t``, Hoeffding and Bernstein intervals of
    ``evaluate`` are the picked member's intervals and ignore that the pick was made on the same data (they
    are too narrow by the selection's variability). The bootstrap does not lose it: each resample redoes the
    selection (the members' sums and sums of squares give their means and t widths on the resample).
    """

    base: str = "ipw"
    grid: tuple[float, ...] = ()
    alpha: float = 0.05
    name = "slope"
    default_on = ()
    option_names = ("base", "grid", "alpha")

    def __post_init__(self) -> None:
        if self.base not in FAMILIES:
            raise ValueError(f"base: expected one of {sorted(FAMILIES)}, found {self.base!r}")
        option, direction = FAMILIES[self.base]
        if isinstance(self.grid, (str, bytes)) or not isinstance(self.grid, Sequence):
            raise ValueError(f"grid: expected a list of {option} values for {self.base}, found {self.grid!r}")
        object.__setattr__(self, "grid", tuple(self.grid))
        if not self.grid and (option, direction) not in DEFAULT_GRIDS:
            raise ValueError(f"grid: expected the {option} values of the {self.base} family (no default grid), found none")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha: expected a float in (0, 1), found {self.alpha!r}")
        if any(m.self_normalized for m in self.members):  # builds (and checks) the family once
            raise ValueError(f"base: expected an estimator that is a plain average, found the self-normalised {self.base!r}")
        super().__post_init__()

    @cached_property
    def members(self) -> list[PointEstimator]:
        """The family, in SLOPE's order."""
        option, direction = FAMILIES[self.base]
        return slope_family(self.base, self.grid or DEFAULT_GRIDS[(option, direction)])

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(r for m in self.members for r in m.requires))

    def _pick(self, sums: np.ndarray, squares: np.ndarray, totals: np.ndarray) -> np.ndarray:
        """SLOPE's pick (P, B) from the members' sums Σ X and Σ X² (M, P, B) over B (re)samples of sizes (B,)."""
        from scipy import stats  # imported here: scipy.stats takes over a second to import

        N = np.asarray(totals, dtype=np.float64)
        means = sums / N
        variance = np.maximum(squares - sums * means, 0.0) / np.maximum(N - 1.0, 1.0)
        half = stats.t.ppf(1 - self.alpha / 2, np.maximum(N - 1.0, 1.0)) * np.sqrt(variance / N)
        return lepski_pick(means, half)[0]

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        values = np.stack([m.trajectory_values(ctx) for m in self.members])  # (M, P, n)
        n = values.shape[-1]
        if n < 2:
            raise ValueError(f"{self.name}: the t intervals SLOPE compares need at least 2 trajectories, found {n}")
        sums, squares = values.sum(axis=-1)[..., None], np.einsum("mpn,mpn->mp", values, values)[..., None]
        picked = self._pick(sums, squares, np.array([n]))[:, 0]  # (P,)
        return values[picked, np.arange(values.shape[1])]

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, np.ndarray]:
        terms: dict[Hashable, np.ndarray] = {}
        for m in self.members:
            values = m.trajectory_values(ctx)  # (P, n)
            terms[("slope", m, "values")] = values
            terms[("slope", m, "squares")] = values * values
        return terms

    def estimates_from_sums(self, sums: dict[Hashable, np.ndarray], totals: np.ndarray) -> np.ndarray:
        first = np.stack([sums[("slope", m, "values")] for m in self.members])  # (M, P, B)
        second = np.stack([sums[("slope", m, "squares")] for m in self.members])
        picked = self._pick(first, second, totals)  # (P, B)
        means = first / totals
        return np.take_along_axis(means, picked[None], axis=0)[0]
