"""SLOPE: data-driven choice of one member of an ordered family of estimators (Su, Srinath & Krishnamurthy,
"Adaptive Estimator Selection for Off-Policy Evaluation", ICML 2020), an instance of Lepski's method.

The family θ̂_1, ..., θ̂_M is ordered so that the width of the members' confidence intervals decreases
along it while their bias may grow: a clipping level λ decreasing from ∞ (``ipw``, ``dr``), the Switch
threshold τ decreasing (``switch_dr``), the shrinkage λ decreasing (``dr_os``), the power-mean λ increasing
from 0 (``sg_ipw``, ``sg_dr``), the SOPE spectrum's k decreasing (``sam_*``, ``sm_*``). With w_i the half-width
of member i's interval (the paper's CNF(i)), SLOPE forms

    I(i) = [θ̂_i − 2 w_i, θ̂_i + 2 w_i]    and picks    î = max { i : I(1) ∩ I(2) ∩ ... ∩ I(i) ≠ ∅ },

the last member whose interval still meets every earlier one (for intervals on a line, meeting every earlier
one pairwise and a common point of all of them are the same thing). Each policy gets its own pick.

Why it works (the paper's assumption and the argument of its guarantee, in brief): if, on one event,
|θ̂_i − θ| ≤ B(i) + w_i for every i with B increasing and w decreasing along the order, then for i₀ = the last
member with B(i₀) ≤ w_{i₀}, the truth θ lies in I(1), ..., I(i₀), so î ≥ i₀, and I(î) meets I(i₀), so

    |θ̂_î − θ| ≤ |θ̂_î − θ̂_{i₀}| + |θ̂_{i₀} − θ| ≤ (2 w_î + 2 w_{i₀}) + 2 w_{i₀} ≤ 6 w_{i₀} ≤ 6 min_{i ≤ i₀} (B(i) + w_i):

the member that balances bias and width, found without knowing any bias. The event
needs every member's interval at once: intervals at level 1 − α each hold together with probability at
least 1 − Mα (pass ``alpha / M`` for a union bound). Nothing here checks the bias order; it is the
family's design (``slope_family`` builds the standard ones in the right order).

Entry points: ``slope`` (evaluate a family, then pick), ``slope_from_table`` (pick from an ``EstimateTable``
with intervals), ``slope_family``, and the point estimator ``slope`` (``SlopeEstimator``; named only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import PointEstimator, get_estimator
from opelab.ope.estimators.base import data_kind
from opelab.ope.estimators.slope import DEFAULT_GRIDS, FAMILIES, SlopeEstimator, lepski_pick, slope_family  # noqa: F401 (re-exported)
from opelab.ope.evaluate import EstimateTable, evaluate
from opelab.ope.inputs import OPEInput, OPEInputError
from opelab.ope.intervals import INTERVAL_METHODS

ORDERS = ("given", "auto")



# ------------------------------------------------------------------------------------------------ families


# ----------------------------------------------------------------------------------------------- the rule


@dataclass(frozen=True, eq=False)
class SlopeResult:
    """SLOPE's pick for every policy.

    ``table`` holds every member's estimate and interval (rows in the family's given order); ``widths`` (M, P)
    the half-widths w the rule used (with ``monotone_widths``, the enforced ones); ``order`` (P, M) the rows in the
    order SLOPE scanned them for each policy; ``chosen`` (P,) the picked row; ``low``/``high`` (P,) the common
    part of the scanned intervals θ̂ ± 2w up to the pick; ``widths_decrease`` (P,) whether the widths do not
    grow along the scanned order (the rule's guarantee needs it); ``reasons`` one sentence per policy.
    """

    table: EstimateTable
    widths: np.ndarray  # (M, P)
    order: np.ndarray  # (P, M)
    chosen: np.ndarray  # (P,)
    low: np.ndarray  # (P,)
    high: np.ndarray  # (P,)
    widths_decrease: np.ndarray  # (P,)
    reasons: tuple[str, ...]

    @property
    def policy_names(self) -> tuple[str, ...]:
        return self.table.policy_names

    @property
    def member_names(self) -> tuple[str, ...]:
        return self.table.estimator_names

    @property
    def chosen_names(self) -> tuple[str, ...]:
        """The picked member of every policy."""
        return tuple(self.member_names[i] for i in self.chosen)

    @property
    def estimates(self) -> np.ndarray:
        """The picked member's estimate of every policy, (P,)."""
        return self.table.estimates[self.chosen, np.arange(len(self.chosen))]

    def to_pandas(self) -> pd.DataFrame:
        """One row per (policy, member) in scan order: ``policy, position, member, estimate, lower, upper,
        width, chosen`` (``position`` 1-based along the policy's order, ``width`` the half-width used)."""
        rows = []
        for p, policy in enumerate(self.policy_names):
            for position, e in enumerate(self.order[p], start=1):
                rows.append({
                    "policy": policy, "position": position, "member": self.member_names[e],
                    "estimate": self.table.estimates[e, p], "lower": self.table.lower[e, p],  # type: ignore[index]
                    "upper": self.table.upper[e, p], "width": self.widths[e, p], "chosen": e == self.chosen[p],  # type: ignore[index]
                })  # fmt: skip
        return pd.DataFrame(rows)


def slope_from_table(table: EstimateTable, *, order: str = "given", monotone_widths: bool = False) -> SlopeResult:
    """SLOPE on an ``EstimateTable`` with intervals, its estimators being the family (rows in the family's order).

    w_i = (upper_i − lower_i) / 2, and I(i) is centred on the estimate θ̂_i (a bootstrap percentile interval
    need not be). ``order="given"`` scans the rows as they are; ``order="auto"`` sorts each policy's members by
    their measured width, widest first (ties keep the given order). Auto-ordering is valid when the family is
    known to trade bias for variance monotonically along some order, e.g. one estimator over a grid of one
    option, so that measured widths recover that order; it is not for a mix of unrelated estimators (a narrow
    interval, e.g. the direct method's, says nothing about the bias). ``monotone_widths=True`` replaces each
    width by the largest width at or after it in the scan order, w̃_i = max_{j ≥ i} w_j, so the widths used
    decrease (what the authors' experiment code does with noisy widths); it only widens intervals.
    """
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    if table.lower is None or table.upper is None:
        raise ValueError("table: SLOPE needs intervals; evaluate with interval='t' (or bootstrap, hoeffding, bernstein)")
    M, P = table.estimates.shape
    if M < 2:
        raise ValueError(f"family: expected at least 2 estimators to choose from, found {M} ({list(table.estimator_names)})")
    widths = (table.upper - table.lower) / 2.0  # (M, P)
    for what, values in (("estimates", table.estimates), ("interval widths", widths)):
        bad = ~np.isfinite(values) if what == "estimates" else (np.isnan(values) | (values < 0))
        if bad.any():
            e, p = np.argwhere(bad)[0]
            raise ValueError(
                f"{what}: expected finite values{' and lower <= upper' if what != 'estimates' else ''}, found "
                f"{float(values[e, p])!r} for {table.estimator_names[e]} on policy {table.policy_names[p]}"
            )
    if order == "auto":
        scan = np.argsort(-widths.T, axis=1, kind="stable")  # (P, M), widest first
    else:
        scan = np.tile(np.arange(M), (P, 1))
    columns = np.arange(P)
    ordered_estimates = table.estimates[scan.T, columns]  # (M, P) in scan order
    ordered_widths = widths[scan.T, columns]
    decrease = (np.diff(ordered_widths, axis=0) <= 0).all(axis=0)
    if monotone_widths:
        ordered_widths = np.maximum.accumulate(ordered_widths[::-1], axis=0)[::-1]
        widths = np.empty_like(widths)
        widths[scan.T, columns] = ordered_widths
    position, low, high = lepski_pick(ordered_estimates, ordered_widths)
    chosen = scan[columns, position]
    reasons = tuple(
        _reason(table.estimator_names, scan[p], position[p], low[p], high[p], ordered_estimates[:, p], ordered_widths[:, p], decrease[p])
        for p in range(P)
    )
    return SlopeResult(table, widths, scan, chosen, low, high, decrease, reasons)


def _reason(names, scan, position, low, high, estimates, widths, decrease) -> str:
    M = len(scan)
    caveat = "" if decrease else ", though the measured widths do not decrease along this order"
    if position == M - 1:
        return f"picked {names[scan[position]]}, the last of {M} members: all {M} intervals V̂ ± 2w share [{low:.4g}, {high:.4g}]{caveat}."
    nxt = position + 1
    a, b = estimates[nxt] - 2 * widths[nxt], estimates[nxt] + 2 * widths[nxt]
    return (
        f"picked {names[scan[position]]}, member {position + 1} of {M}: the intervals V̂ ± 2w of members 1-{position + 1} "
        f"share [{low:.4g}, {high:.4g}], which member {nxt + 1} ({names[scan[nxt]]}, [{a:.4g}, {b:.4g}]) misses{caveat}."
    )


# ------------------------------------------------------------------------------------------ the entry point


def slope(
    dataset: LoggedDataset,
    inputs: OPEInput,
    family: Sequence[str | PointEstimator],
    *,
    interval: str = "t",
    alpha: float = 0.05,
    n_bootstrap: int = 200,
    seed: int = 0,
    value_range: tuple[float, float] | None = None,
    resampling: str = "multinomial",
    order: str = "given",
    monotone_widths: bool = False,
) -> SlopeResult:
    """Evaluate every member of ``family`` with intervals (``opelab.ope.evaluate``) and pick one per policy by
    SLOPE (Su, Srinath & Krishnamurthy, ICML 2020; module docstring).

    ``family``: estimator names or instances, ordered widest intervals / least bias first (e.g. clipping λ
    decreasing; ``slope_family`` builds the standard ones), or in any order with ``order="auto"``
    (``slope_from_table`` says when that is valid). ``interval``, ``alpha``, ``n_bootstrap``, ``seed``,
    ``value_range`` and ``resampling`` go to ``evaluate``; each member's interval is at level 1 − ``alpha``.
    """
    if interval not in INTERVAL_METHODS:
        raise ValueError(f"interval: expected one of {list(INTERVAL_METHODS)}, found {interval!r}")
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    if isinstance(family, (str, bytes, PointEstimator)) or not isinstance(family, Sequence):
        raise ValueError(f"family: expected a list of estimator names or instances, found {family!r}")
    members = [get_estimator(member) for member in family]
    if len(members) < 2:
        raise ValueError(f"family: expected at least 2 estimators to choose from, found {len(members)} ({[m.name for m in members]})")
    _check_members(members, dataset, inputs)
    try:
        table = evaluate(
            dataset, inputs, members, interval=interval, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed,
            value_range=value_range, resampling=resampling,
        )  # fmt: skip
    except OPEInputError as error:
        raise OPEInputError(f"family: a member cannot run on these inputs: {error}") from error
    return slope_from_table(table, order=order, monotone_widths=monotone_widths)


def _check_members(members: Sequence[PointEstimator], dataset: LoggedDataset, inputs: OPEInput) -> None:
    """Every member that cannot run on this log and these inputs, in one ``OPEInputError``."""
    kind = data_kind(dataset.info, dataset.horizon)
    action_type = "discrete" if dataset.action_space.is_discrete else "continuous"
    problems = []
    for i, member in enumerate(members):
        missing = [r for r in member.requires if getattr(inputs, r) is None]
        if kind not in member.applies_to:
            problems.append(f"family[{i}] {member.name}: expected {' or '.join(member.applies_to)} data, found {kind}")
        elif action_type not in member.action_types:
            problems.append(f"family[{i}] {member.name}: expected {' or '.join(member.action_types)} actions, found {action_type}")
        elif missing:
            problems.append(f"family[{i}] {member.name}: needs {', '.join(missing)} in the OPEInput, found None")
    if problems:
        raise OPEInputError("family: members that cannot run on these inputs: " + "; ".join(problems))
