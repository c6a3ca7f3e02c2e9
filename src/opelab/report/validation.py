"""The ``TaskReport`` contract, checked once when a report is built (from a pipeline run or a results folder).

Every defect is one ``ReportError`` line naming the table (``load_task_report`` turns the table into its file),
the column or key, what was expected and what was found. Nothing is coerced or dropped silently.

Non-finite values: estimates, metrics, top-k statistics and pick values may be NaN or ±inf (an estimator can
diverge, SharpeRatio@k is +inf when a portfolio has no spread); the figures draw them as documented in
``opelab.report.plots``. A true value may be NaN (unknown, that candidate is left out of the truth plots with a
note) but not ±inf.

Two kinds of report:
    with truth      at least one candidate has a finite true value; the assessment, top-k and picks tables are
                    required (the estimators are assessed against the truth), the estimated assessment optional
    without truth   every true value is NaN (a user's own logs, ``opelab evaluate --report-dir``); the assessment
                    estimated from the logs (``estimated_assessment`` with its sentence) is required, since it
                    is what such a report opens with, and the assessment, top-k and picks tables must be absent
                    (None): there is nothing true to compute them from, and a table of n/a would look like one
The behavior value and the safety threshold must be finite numbers, CDF values finite and in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from opelab.report.html import TaskReport


class ReportError(ValueError):
    """A report (or results folder) that breaks the ``TaskReport`` contract. ``table``: which table, if one."""

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class MissingReportFile(ReportError, FileNotFoundError):
    """A results folder, or a file it must hold, that is not there."""


KEYS = ("policy", "estimator", "metric", "method")  # string columns: names, never parsed as numbers
COLUMNS: dict[str, tuple[str, ...]] = {
    "candidates": ("policy", "true_value"),
    "estimates": ("policy", "estimator", "estimate"),
    "topk": ("estimator", "k", "best", "worst", "mean", "std", "sharpe_ratio"),
    "picks": ("metric", "estimator", "value"),
    "cdfs": ("estimator", "policy", "y", "cdf"),
    "true_cdfs": ("policy", "y", "cdf"),
    "risk": ("estimator", "policy", "alpha", "cvar", "q25", "q50", "q75"),
    "true_risk": ("policy", "alpha", "cvar", "q25", "q50", "q75"),
    "estimated_assessment": ("method", "estimator", "selected"),  # opelab.select.recommend_estimator's table
}
OPTIONAL = ("cdfs", "true_cdfs", "risk", "true_risk", "estimated_assessment")
ASSESSED = ("assessment", "topk", "picks")  # required with truth, absent without (module docstring)


def has_truth(candidates: pd.DataFrame) -> bool:
    """Whether any candidate has a finite true value (a report with truth; module docstring)."""
    if "true_value" not in candidates.columns:
        return False
    values = pd.to_numeric(candidates["true_value"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return bool(np.isfinite(values).any())


def check_task_report(report: TaskReport) -> None:
    """Raise ``ReportError`` for the first defect of ``report`` (module docstring)."""
    _check_scalars(report)
    _check_frame("candidates", report.candidates, COLUMNS["candidates"])
    truth = _floats("candidates", report.candidates, "true_value")
    if np.isinf(truth).any():
        raise ReportError(f"candidates: true_value: expected finite values or NaN (unknown), found {_first(truth, np.isinf)}", "candidates")
    truthful = bool(np.isfinite(truth).any())
    if not truthful:
        if report.estimated_assessment is None:
            raise ReportError(
                f"candidates: true_value: expected at least one finite true value, or an estimated assessment (the "
                f"report assesses estimators against the truth or against estimates from the logs), found NaN for all "
                f"{len(truth)} candidates and no estimated_assessment",
                "candidates",
            )
        for name in ASSESSED:
            if getattr(report, name) is not None:
                raise ReportError(
                    f"{name}: expected no {name} table in a report without truth (every true_value is NaN), found one "
                    f"with {len(getattr(report, name))} rows",
                    name,
                )
    for name, required in COLUMNS.items():
        frame = getattr(report, name)
        if frame is None and (name in OPTIONAL or (name in ASSESSED and not truthful)):
            continue
        _check_frame(name, frame, required)
    if truthful:
        _check_assessment(report.assessment)

    candidates = report.candidates
    policies = _names("candidates", candidates, "policy", unique=True)
    if len(policies) == 0:
        raise ReportError("candidates: expected at least one candidate policy, found no rows", "candidates")

    estimates = report.estimates
    estimators = set(_names("estimates", estimates, "estimator"))
    _subset("estimates", "policy", _names("estimates", estimates, "policy"), policies, "candidates")
    _floats("estimates", estimates, "estimate")
    has_lower, has_upper = "lower" in estimates.columns, "upper" in estimates.columns
    if has_lower != has_upper:
        raise ReportError(f"estimates: expected both interval columns lower and upper or neither, found only {'lower' if has_lower else 'upper'}", "estimates")
    if has_lower:
        _floats("estimates", estimates, "lower")
        _floats("estimates", estimates, "upper")

    if report.estimated_assessment is not None:
        estimated = report.estimated_assessment
        _names("estimated_assessment", estimated, "method")
        _subset("estimated_assessment", "estimator", _names("estimated_assessment", estimated, "estimator"), sorted(estimators), "estimates")
        for column in estimated.columns:
            if column.startswith("estimated_") or column == "picked_for":
                _floats("estimated_assessment", estimated, column)

    if truthful:
        _check_assessed(report, sorted(estimators))
    _check_distributions(report, policies)


def _check_assessed(report: TaskReport, estimators: list[str]) -> None:
    """The assessment against the truth: the assessment, top-k and picks tables against each other."""
    assessed = [str(name) for name in report.assessment.index]
    _subset("assessment", "estimator", assessed, sorted(estimators), "estimates")
    _subset("topk", "estimator", _names("topk", report.topk, "estimator"), sorted(estimators), "estimates")
    k = _floats("topk", report.topk, "k")
    bad = ~np.isfinite(k) | (k < 1) | (k != np.round(k))
    if bad.any():
        raise ReportError(f"topk: k: expected positive integers, found {_first(k, lambda x: bad)}", "topk")
    for column in ("best", "worst", "mean", "std", "sharpe_ratio"):
        _floats("topk", report.topk, column)

    picks = report.picks
    metrics = _names("picks", picks, "metric", unique=True)
    _subset("picks", "metric", metrics, [str(c) for c in report.assessment.columns], "assessment")
    picked = [str(e) for e in picks["estimator"] if not _missing(e)]
    _subset("picks", "estimator", picked, assessed, "assessment")
    _floats("picks", picks, "value")


def _check_distributions(report: TaskReport, policies: list[str]) -> None:
    for name in ("cdfs", "true_cdfs"):
        frame = getattr(report, name)
        if frame is None:
            continue
        if name == "cdfs":
            _names(name, frame, "estimator")  # CDF estimators (cdf_tis, ...) are not the point estimators
        _subset(name, "policy", _names(name, frame, "policy"), policies, "candidates")
        y = _floats(name, frame, "y")
        if not np.isfinite(y).all():
            raise ReportError(f"{name}: y: expected finite returns, found {_first(y, lambda x: ~np.isfinite(x))}", name)
        cdf = _floats(name, frame, "cdf")
        bad = ~np.isfinite(cdf) | (cdf < 0) | (cdf > 1)
        if bad.any():
            raise ReportError(f"{name}: cdf: expected probabilities in [0, 1], found {_first(cdf, lambda x: bad)}", name)
    for name in ("risk", "true_risk"):
        frame = getattr(report, name)
        if frame is None:
            continue
        if name == "risk":
            _names(name, frame, "estimator")
        _subset(name, "policy", _names(name, frame, "policy"), policies, "candidates")
        for column in ("alpha", "cvar", "q25", "q50", "q75"):
            _floats(name, frame, column)


# ---------------------------------------------------------------------------------------------- pieces
def _check_scalars(report: TaskReport) -> None:
    if not isinstance(report.task, str) or not report.task:
        raise ReportError(f"task: expected a non-empty str, found {report.task!r}")
    for name, value, optional in (("behavior_value", report.behavior_value, False), ("safety_threshold", report.safety_threshold, True)):
        if optional and value is None:
            continue
        if not _is_number(value) or not math.isfinite(float(value)):
            raise ReportError(f"{name}: expected a finite number{' or null' if optional else ''}, found {value!r}")
    pairs = report.dataset_summary
    if not isinstance(pairs, list) or not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        raise ReportError(f"dataset_summary: expected a list of (label, value) string pairs, found {_preview(pairs)}")
    if not isinstance(report.notes, list) or not all(isinstance(note, str) for note in report.notes):
        raise ReportError(f"notes: expected a list of str, found {_preview(report.notes)}")
    if report.estimated_reason is not None and not isinstance(report.estimated_reason, str):
        raise ReportError(f"estimated_reason: expected a str or null, found {_preview(report.estimated_reason)}")


def _check_frame(name: str, frame: object, required: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ReportError(f"{name}: expected a pandas DataFrame, found {type(frame).__name__}", name)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReportError(f"{name}: expected the columns {list(required)}, missing {missing} (found {[str(c) for c in frame.columns]})", name)
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise ReportError(f"{name}: expected each column once, found {sorted(map(str, set(duplicated)))} repeated", name)


def _check_assessment(assessment: object) -> None:
    if not isinstance(assessment, pd.DataFrame):
        raise ReportError(f"assessment: expected a pandas DataFrame, found {type(assessment).__name__}", "assessment")
    names = [str(n) for n in assessment.index]
    if any(_missing(n) for n in assessment.index) or len(set(names)) != len(names):
        raise ReportError(f"assessment: expected one row per estimator (a unique, named index), found {names}", "assessment")
    if len(assessment.columns) == 0:
        raise ReportError("assessment: expected metric columns, found none", "assessment")
    for column in assessment.columns:
        _floats("assessment", assessment, column)


def _names(table: str, frame: pd.DataFrame, column: str, unique: bool = False) -> list[str]:
    values = frame[column]
    missing = [i for i, v in enumerate(values) if _missing(v)]
    if missing and not (table == "picks" and column == "estimator"):
        raise ReportError(f"{table}: {column}: expected a name on every row, found none on row {missing[0]}", table)
    names = [str(v) for v in values if not _missing(v)]
    if unique:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ReportError(f"{table}: {column}: expected each name once, found {name!r} twice", table)
            seen.add(name)
    return names


def _subset(table: str, column: str, names: Iterable[str], allowed: Sequence[str], source: str) -> None:
    known = set(allowed)
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise ReportError(
            f"{table}: {column}: expected names listed in {source} ({_preview(sorted(known))}), found {unknown[0]!r} which is not",
            table,
        )


def _floats(table: str, frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        bad = next((v for v in frame[column] if not _is_number(v) and not _missing(v)), None)
        raise ReportError(f"{table}: {column}: expected numbers, found {bad!r}", table) from None


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _first(values: np.ndarray, test) -> str:  # type: ignore[no-untyped-def]
    bad = np.asarray(test(values), dtype=bool)
    row = int(np.flatnonzero(bad)[0])
    return f"{float(values[row])!r} on row {row}"


def _preview(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
