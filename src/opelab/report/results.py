"""From pipeline results to report tables, and the folder of files that ``opelab demo`` writes and
``opelab report`` reads back.

Folder layout (CSV for tables people open, JSON for the rest):
    report.json      task, behavior value, safety threshold, dataset summary rows, notes
    candidates.csv   policy, true_value (+ exact CVaR@α, quantiles when known)
    estimates.csv    policy, estimator, estimate (+ lower, upper), true_value
    assessment.csv   estimator, metric columns
    topk.csv         estimator, k, best, worst, mean, std, sharpe_ratio
    picks.csv        metric, estimator, value
    cdfs.csv, true_cdfs.csv, risk.csv, true_risk.csv   (when return distributions were estimated)
    estimated_assessment.csv   method, estimator, estimated metrics with intervals, selected (the assessment
                     estimated from the logs, ``opelab.select.recommend_estimator``; its sentence in report.json)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opelab.data.describe import describe
from opelab.data.validation import json_type, one_line
from opelab.ope.risk import cdf_cvar, cdf_quantile
from opelab.pipeline import LearnedResult, PipelineResult
from opelab.report.html import TaskReport
from opelab.report.validation import KEYS, MissingReportFile, ReportError, has_truth

CVAR_LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))  # α = 1 (the mean) is left to the value
PLOT_POINTS = 200


def task_report(
    result: PipelineResult | LearnedResult, safety_threshold: float | None = None, estimated: Any = None
) -> TaskReport:
    """The report tables of one pipeline run (exact truth, or rollout truth with its standard errors);
    ``estimated``, an ``opelab.select.Recommendation``, adds the assessment estimated from the logs."""
    names = list(result.table.policy_names)
    candidates = pd.DataFrame({"policy": names, "true_value": result.true_values})
    estimates = result.table.to_pandas()
    estimates["true_value"] = np.tile(result.true_values, len(result.table.estimator_names))
    if isinstance(result, LearnedResult):
        candidates["true_se"] = result.true_se
        truth = (
            f"rollout value {result.behavior_true_value:.4g} ± {result.behavior_true_se:.2g} (standard error); "
            f"true values are means of {result.n_rollouts} on-policy episodes per candidate"
        )
    else:
        truth = f"exact value {result.behavior_true_value:.4g}"
    notes = [
        f"Behavior policy {result.dataset.info.behavior_policy}: {truth}; "
        f"SharpeRatio@k uses the logged mean return {result.table.behavior_value:.4g} as J(π_b)."
    ]
    if result.table.interval is not None:
        notes.append(f"Intervals: {result.table.interval}, level {1 - (result.table.alpha or 0):.0%}.")
    cdfs = true_cdfs = risk = true_risk = None
    if result.cdf_table is not None:
        cdfs, risk, plot_grid = _estimated_distribution_tables(result)
        if result.true_distributions is not None:
            true_cdfs, true_risk = _true_distribution_tables(result, plot_grid)
            candidates["true_cvar@0.1"] = [d.cvar(0.1) for d in result.true_distributions]
            candidates["true_iqr"] = [d.interquartile_range() for d in result.true_distributions]
        else:
            notes.append("The exact return distributions have too many atoms to enumerate here: only estimates are shown.")
    return TaskReport(
        task=result.task.name,
        dataset_summary=describe(result.dataset).to_table(),
        candidates=candidates,
        estimates=estimates,
        assessment=result.assessment.summary,
        topk=result.assessment.topk,
        picks=result.assessment.picks(),
        behavior_value=result.assessment.behavior_value,
        safety_threshold=safety_threshold,
        cdfs=cdfs,
        true_cdfs=true_cdfs,
        risk=risk,
        true_risk=true_risk,
        notes=notes,
        estimated_assessment=None if estimated is None else estimated.table,
        estimated_reason=None if estimated is None else estimated.reason,
    )


def evaluation_report(
    dataset: Any,
    table: Any,
    *,
    task: str | None = None,
    true_values: Any = None,
    true_se: Any = None,
    estimated: Any = None,
    notes: list[str] | None = None,
) -> TaskReport:
    """The report of an ``opelab evaluate`` run on a user's logs (``--report-dir``).

    ``table``: the ``EstimateTable``. Without ``true_values`` (the usual case: the user's own logs) the report
    has no assessment against the truth and needs ``estimated`` (an ``opelab.select.Recommendation``), which
    its page opens with; with ``true_values`` (e.g. on-policy rollouts) it is assessed like a demo's, the
    estimated assessment shown beside when given.
    """
    from opelab.select import assess

    names = list(table.policy_names)
    truth = np.full(len(names), np.nan) if true_values is None else np.asarray(true_values, dtype=np.float64)
    candidates = pd.DataFrame({"policy": names, "true_value": truth})
    if true_se is not None:
        candidates["true_se"] = np.asarray(true_se, dtype=np.float64)
    estimates = table.to_pandas()
    estimates["true_value"] = np.tile(truth, len(table.estimator_names))
    notes = list(notes or [])
    assessment = topk = picks = None
    if true_values is not None and len(names) >= 2:
        found = assess(table, truth)
        assessment, topk, picks = found.summary, found.topk, found.picks()
    elif true_values is not None:
        raise ValueError(f"true_values: assessing estimators needs at least 2 candidates, found {len(names)}")
    else:
        notes.append(
            f"No ground truth: J(π_b) is the logged mean return {table.behavior_value:.4g}; every assessment "
            "number on this page is estimated from the logs."
        )
    if table.interval is not None:
        notes.append(f"Intervals: {table.interval}, level {1 - (table.alpha or 0):.0%}.")
    return TaskReport(
        task=task or dataset.info.task or "logged data",
        dataset_summary=describe(dataset).to_table(),
        candidates=candidates,
        estimates=estimates,
        assessment=assessment,
        topk=topk,
        picks=picks,
        behavior_value=float(table.behavior_value),
        notes=notes,
        estimated_assessment=None if estimated is None else estimated.table,
        estimated_reason=None if estimated is None else estimated.reason,
    )


def _estimated_distribution_tables(result: PipelineResult) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    table = result.cdf_table
    assert table is not None
    grid, cdf = table.grid, table.cdf  # (G,), (E, P, G)
    plot_grid = np.linspace(grid[0], grid[-1], PLOT_POINTS)
    position = np.searchsorted(grid, plot_grid, side="right") - 1  # step function: F(y) = cdf[k], grid[k] ≤ y
    E, P, _ = cdf.shape
    sampled = np.where(position >= 0, cdf[..., np.clip(position, 0, None)], 0.0)  # (E, P, PLOT_POINTS)
    cdfs = pd.DataFrame(
        {
            "estimator": np.repeat(table.estimator_names, P * PLOT_POINTS),
            "policy": np.tile(np.repeat(table.policy_names, PLOT_POINTS), E),
            "y": np.tile(plot_grid, E * P),
            "cdf": sampled.reshape(-1),
        }
    )
    levels = np.array(CVAR_LEVELS)
    cvar = cdf_cvar(grid, cdf, levels)  # (E, P, L)
    quartiles = cdf_quantile(grid, cdf, np.array([0.25, 0.5, 0.75]))  # (E, P, 3)
    rows = []
    for e, estimator in enumerate(table.estimator_names):
        for p, policy in enumerate(table.policy_names):
            for j, alpha in enumerate(levels):
                rows.append((estimator, policy, alpha, cvar[e, p, j], *quartiles[e, p]))
    risk = pd.DataFrame(rows, columns=["estimator", "policy", "alpha", "cvar", "q25", "q50", "q75"])
    return cdfs, risk, plot_grid


def _true_distribution_tables(result: PipelineResult, plot_grid: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    assert result.true_distributions is not None
    names = result.table.policy_names
    true_cdfs = pd.DataFrame(
        {
            "policy": np.repeat(names, len(plot_grid)),
            "y": np.tile(plot_grid, len(names)),
            "cdf": np.concatenate([np.asarray(d.cdf(plot_grid), dtype=np.float64) for d in result.true_distributions]),
        }
    )
    rows = []
    for policy, dist in zip(names, result.true_distributions):
        quartiles = [float(dist.quantile(q)) for q in (0.25, 0.5, 0.75)]
        for alpha in CVAR_LEVELS:
            rows.append((policy, alpha, float(dist.cvar(alpha)), *quartiles))
    return true_cdfs, pd.DataFrame(rows, columns=["policy", "alpha", "cvar", "q25", "q50", "q75"])


_TABLES = ("candidates", "estimates", "topk", "picks", "cdfs", "true_cdfs", "risk", "true_risk", "estimated_assessment")


def save_task_report(report: TaskReport, folder: str | Path) -> None:
    """Write the report's tables to ``folder`` (see the module docstring for the layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": 1,
        "task": report.task,
        "behavior_value": report.behavior_value,
        "safety_threshold": report.safety_threshold,
        "dataset_summary": [list(pair) for pair in report.dataset_summary],
        "notes": list(report.notes),
        "estimated_reason": report.estimated_reason,
    }
    (folder / "report.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if report.assessment is not None:
        report.assessment.to_csv(folder / "assessment.csv", index_label="estimator")
    for name in _TABLES:
        frame = getattr(report, name)
        if frame is not None:
            frame.to_csv(folder / f"{name}.csv", index=False)


def load_task_report(folder: str | Path) -> TaskReport:
    """Read a folder written by ``save_task_report`` (``opelab demo`` writes one).

    Everything is checked before anything is rendered: a missing folder or file (``MissingReportFile``, also a
    ``FileNotFoundError``), a report.json that does not parse or lacks a key, a CSV that does not parse or lacks
    a column, and the tables against each other (``opelab.report.validation``) raise one ``ReportError`` line
    naming the file.
    """
    folder = Path(folder)
    expected = "expected a results folder (report.json and its CSV tables, written by `opelab demo`)"
    if not folder.exists():
        raise MissingReportFile(f"{folder}: {expected}, found nothing")
    if not folder.is_dir():
        raise ReportError(f"{folder}: {expected}, found a file")
    meta_path = folder / "report.json"
    meta = _report_json(meta_path)
    frames: dict[str, pd.DataFrame | None] = {}
    required = _REQUIRED_TABLES
    for name in ("candidates", "assessment", *_TABLES[1:]):
        path = folder / f"{name}.csv"
        if not path.is_file():
            if name in required:
                raise MissingReportFile(f"{path}: expected the {name} table of the results folder (written by `opelab demo`), found no such file")
            frames[name] = None
            continue
        frames[name] = _read_table(path)
        if name == "candidates" and not has_truth(frames[name]):  # type: ignore[arg-type]
            required = ("candidates", "estimates")  # a report without truth: the assessment is estimated (validation)
    assessment = frames.pop("assessment")
    if assessment is not None and "estimator" not in assessment.columns:
        raise ReportError(f"{folder / 'assessment.csv'}: expected an estimator column (one row per estimator), found {list(assessment.columns)}")
    picks = frames["picks"]
    if picks is not None and "estimator" in picks.columns:  # an empty cell: the metric picked nothing
        picks["estimator"] = picks["estimator"].astype(object).where(picks["estimator"].notna(), None)
    try:
        return TaskReport(
            task=meta["task"],
            dataset_summary=[tuple(pair) for pair in meta["dataset_summary"]],
            assessment=None if assessment is None else assessment.set_index("estimator"),
            behavior_value=meta["behavior_value"],
            safety_threshold=meta.get("safety_threshold"),
            notes=meta.get("notes", []),
            estimated_reason=meta.get("estimated_reason"),
            **frames,  # type: ignore[arg-type]
        )
    except ReportError as error:  # "table: column: ..." becomes "folder/table.csv: column: ..."
        path = meta_path if error.table is None else folder / f"{error.table}.csv"
        message = str(error).removeprefix(f"{error.table}: ")
        raise type(error)(f"{path}: {message}", error.table) from None


_REQUIRED_TABLES = ("assessment", "candidates", "estimates", "topk", "picks")
_JSON_KEYS = ("format_version", "task", "behavior_value", "dataset_summary")
_OPTIONAL_JSON_KEYS = ("safety_threshold", "notes", "estimated_reason")


def _report_json(path: Path) -> dict[str, Any]:
    """report.json, parsed and checked for its keys (values are checked with the tables)."""
    if not path.is_file():
        raise MissingReportFile(f"{path}: expected the report's metadata (written by `opelab demo`), found no such file")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ReportError(f"{path}: expected UTF-8 JSON, found undecodable bytes at position {error.start}") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: expected a JSON object, found text that does not parse ({error.msg}: line {error.lineno} column {error.colno})") from None
    except OSError as error:
        raise ReportError(f"{path}: expected a readable file, found {one_line(error)}") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object, found {json_type(meta)}")
    missing = [key for key in _JSON_KEYS if key not in meta]
    if missing:
        raise ReportError(f"{path}: expected the key {missing[0]!r}, found keys {sorted(meta)}")
    unknown = sorted(key for key in meta if key not in (*_JSON_KEYS, *_OPTIONAL_JSON_KEYS))
    if unknown:
        raise ReportError(f"{path}: expected only the keys {sorted((*_JSON_KEYS, *_OPTIONAL_JSON_KEYS))}, found unexpected {unknown}")
    version = meta["format_version"]
    if version != 1 or isinstance(version, bool):
        raise ReportError(f"{path}: format_version: expected 1, found {version!r}")
    pairs = meta["dataset_summary"]
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ReportError(f"{path}: dataset_summary: expected a list of [label, value] pairs, found {json_type(pairs)}")
    return meta


def _read_table(path: Path) -> pd.DataFrame:
    """One CSV table; names (policy, estimator, metric) stay strings, only empty cells are missing values."""
    try:
        header = pd.read_csv(path, nrows=0)
        names = {c: str for c in header.columns if c in KEYS}
        return pd.read_csv(path, dtype=names, keep_default_na=False, na_values=[""])  # type: ignore[arg-type]
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: expected a CSV table with a header row, found an empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{path}: expected a CSV table, found one that does not parse ({one_line(error)})") from None
    except OSError as error:
        raise ReportError(f"{path}: expected a readable file, found {one_line(error)}") from None
