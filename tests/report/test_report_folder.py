"""Results folders and ``TaskReport``s that break the contract: one ``ReportError`` line naming the file (or
table), checked before anything is rendered."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_cases import small_report

from opelab.report import ReportError, render_report
from opelab.report.results import load_task_report, save_task_report
from opelab.report.validation import MissingReportFile


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    save_task_report(small_report(with_distributions=True), path)
    return path


def load_error(folder: Path, file: str | None = None) -> str:
    """The one-line message ``load_task_report(folder)`` raises, checked to name ``file`` first."""
    with pytest.raises(ReportError) as info:
        load_task_report(folder)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{folder / file if file else folder}: "), message
    return message


def edit_csv(folder: Path, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    path = folder / f"{name}.csv"
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame = edit(frame)
    frame.to_csv(path, index=False)


def without_distributions(folder: Path) -> Path:
    """Drop the optional CDF/risk tables (fewer figures to draw when a test renders the page)."""
    for name in ("cdfs", "true_cdfs", "risk", "true_risk"):
        (folder / f"{name}.csv").unlink()
    return folder


def edit_json(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = folder / "report.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    edit(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")


def test_a_folder_round_trips(folder: Path) -> None:
    loaded = load_task_report(folder)
    original = small_report(with_distributions=True)
    assert loaded.task == original.task and loaded.safety_threshold == 0.0 and loaded.notes == ["a note"]
    pd.testing.assert_frame_equal(loaded.estimates, original.estimates)
    pd.testing.assert_frame_equal(loaded.assessment, original.assessment)
    assert loaded.true_risk is not None


# ---------------------------------------------------------------------------------------------- files
def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingReportFile, match="found nothing$") as info:
        load_task_report(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("{}", encoding="utf-8")
    assert "found a file" in load_error(path)


@pytest.mark.parametrize("name", ["report.json", "candidates.csv", "estimates.csv", "assessment.csv", "topk.csv", "picks.csv"])
def test_missing_files_are_named(folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(MissingReportFile):
        load_task_report(folder)
    assert "found no such file" in load_error(folder, name)


def test_optional_tables_may_be_absent(folder: Path) -> None:
    assert load_task_report(without_distributions(folder)).cdfs is None


@pytest.mark.parametrize(
    "text, found",
    [("", "does not parse (Expecting value: line 1 column 1)"), ("{", "does not parse"), ("[]", "expected a JSON object, found a list")],
    ids=["empty", "cut", "list"],
)
def test_report_json_that_does_not_parse(folder: Path, text: str, found: str) -> None:
    (folder / "report.json").write_text(text, encoding="utf-8")
    assert found in load_error(folder, "report.json")


@pytest.mark.parametrize("key", ["format_version", "task", "behavior_value", "dataset_summary"])
def test_report_json_missing_keys(folder: Path, key: str) -> None:
    edit_json(folder, lambda m: m.pop(key))
    assert f"expected the key {key!r}" in load_error(folder, "report.json")


@pytest.mark.parametrize(
    "edit, found",
    [
        (lambda m: m.update(format_version=2), "format_version: expected 1, found 2"),
        (lambda m: m.update(extra=1), "found unexpected ['extra']"),
        (lambda m: m.update(task=3), "task: expected a non-empty str, found 3"),
        (lambda m: m.update(behavior_value="0.1"), "behavior_value: expected a finite number, found '0.1'"),
        (lambda m: m.update(behavior_value=float("nan")), "behavior_value: expected a finite number, found nan"),
        (lambda m: m.update(safety_threshold=float("inf")), "safety_threshold: expected a finite number or null, found inf"),
        (lambda m: m.update(dataset_summary={"a": 1}), "dataset_summary: expected a list of [label, value] pairs"),
        (lambda m: m.update(dataset_summary=[["a", 1]]), "dataset_summary: expected a list of (label, value) string pairs"),
        (lambda m: m.update(notes="text"), "notes: expected a list of str"),
    ],
    ids=["version", "extra", "task", "behavior-str", "behavior-nan", "threshold-inf", "summary-dict", "summary-int", "notes"],
)
def test_report_json_values(folder: Path, edit, found: str) -> None:  # type: ignore[no-untyped-def]
    edit_json(folder, edit)
    assert found in load_error(folder, "report.json")


def test_an_empty_csv(folder: Path) -> None:
    (folder / "topk.csv").write_text("", encoding="utf-8")
    assert "expected a CSV table with a header row, found an empty file" in load_error(folder, "topk.csv")


@pytest.mark.parametrize(
    "name, column",
    [("estimates", "estimate"), ("candidates", "true_value"), ("topk", "sharpe_ratio"), ("picks", "metric"), ("cdfs", "cdf"), ("true_risk", "cvar")],
)
def test_csv_missing_columns_are_named(folder: Path, name: str, column: str) -> None:
    edit_csv(folder, name, lambda f: f.drop(columns=column))
    assert f"missing [{column!r}]" in load_error(folder, f"{name}.csv")


def test_assessment_without_its_estimator_column(folder: Path) -> None:
    edit_csv(folder, "assessment", lambda f: f.rename(columns={"estimator": "name"}))
    assert "expected an estimator column" in load_error(folder, "assessment.csv")


def test_values_that_are_not_numbers(folder: Path) -> None:
    edit_csv(folder, "estimates", lambda f: f.assign(estimate=["x"] + list(f["estimate"][1:])))
    assert "estimate: expected numbers, found 'x'" in load_error(folder, "estimates.csv")


# ---------------------------------------------------------------------------------------------- tables against each other
def test_picks_naming_an_estimator_without_estimates(folder: Path) -> None:
    """Used to render "trust ghost"."""
    edit_csv(folder, "picks", lambda f: f.assign(estimator=["ghost"] * len(f)))
    message = load_error(folder, "picks.csv")
    assert "estimator: expected names listed in assessment" in message and "found 'ghost'" in message


@pytest.mark.parametrize(
    "name, edit, found",
    [
        ("topk", lambda f: f.assign(estimator="ghost"), "estimator: expected names listed in estimates"),
        ("estimates", lambda f: f.assign(policy="nobody"), "policy: expected names listed in candidates"),
        ("candidates", lambda f: f.assign(policy="same"), "policy: expected each name once, found 'same' twice"),
        ("picks", lambda f: f.assign(metric="nmse"), "metric: expected each name once"),
        ("picks", lambda f: f.assign(metric=[f"m{i}" for i in range(len(f))]), "metric: expected names listed in assessment"),
        ("topk", lambda f: f.assign(k=0.5), "k: expected positive integers, found 0.5 on row 0"),
        ("cdfs", lambda f: f.assign(cdf=1.5), "cdf: expected probabilities in [0, 1], found 1.5 on row 0"),
        ("true_cdfs", lambda f: f.assign(y=np.inf), "y: expected finite returns, found inf on row 0"),
        ("risk", lambda f: f.assign(policy="nobody"), "policy: expected names listed in candidates"),
        ("estimates", lambda f: f.assign(estimator=[None] + list(f["estimator"][1:])), "estimator: expected a name on every row, found none on row 0"),
    ],
    ids=["topk-ghost", "estimates-policy", "candidates-twice", "picks-twice", "picks-metric", "k", "cdf", "y", "risk-policy", "no-name"],
)
def test_contradicting_tables(folder: Path, name: str, edit, found: str) -> None:  # type: ignore[no-untyped-def]
    edit_csv(folder, name, edit)
    assert found in load_error(folder, f"{name}.csv")


def test_truth_all_nan_is_refused(folder: Path) -> None:
    edit_csv(folder, "candidates", lambda f: f.assign(true_value=np.nan))
    assert "expected at least one finite true value" in load_error(folder, "candidates.csv")


def test_infinite_truth_is_refused_and_partial_nan_truth_renders(folder: Path) -> None:
    edit_csv(folder, "candidates", lambda f: f.assign(true_value=[np.inf, 0.5, -0.25]))
    assert "true_value: expected finite values or NaN (unknown), found inf on row 0" in load_error(folder, "candidates.csv")
    edit_csv(folder, "candidates", lambda f: f.assign(true_value=[np.nan, 0.5, -0.25]))
    page = render_report([load_task_report(without_distributions(folder))])
    assert "n/a" in page


def test_non_finite_estimates_and_metrics_render(folder: Path) -> None:
    edit_csv(folder, "estimates", lambda f: f.assign(estimate=[np.nan, np.inf, -np.inf, 1.0, 0.5, 0.0]))
    edit_csv(folder, "assessment", lambda f: f.assign(nmse=[np.nan, np.inf]))
    loaded = load_task_report(without_distributions(folder))
    assert np.isinf(loaded.estimates["estimate"][1]) and np.isnan(loaded.assessment["nmse"].iloc[0])
    page = render_report([loaded])
    assert "∞" in page and "n/a" in page


def test_names_that_look_like_numbers_or_missing_values_stay_names(tmp_path: Path) -> None:
    report = small_report(policies=("1", "NA", "nan"), estimators=("0.5", "None"))
    save_task_report(report, tmp_path / "run")
    loaded = load_task_report(tmp_path / "run")
    assert list(loaded.candidates["policy"]) == ["1", "NA", "nan"]
    assert list(loaded.assessment.index) == ["0.5", "None"]
    assert set(loaded.picks["estimator"]) == {"0.5", "None"}


def test_a_metric_that_picked_nothing_is_kept(folder: Path) -> None:
    edit_csv(folder, "picks", lambda f: f.assign(estimator=[None] + list(f["estimator"][1:]), value=[np.nan] + list(f["value"][1:])))
    assert load_task_report(folder).picks["estimator"].iloc[0] is None


def test_task_reports_built_in_code_are_checked_too() -> None:
    report = small_report()
    with pytest.raises(ReportError, match=r"^picks: estimator: expected names listed in assessment .* found 'ghost'"):
        dataclasses.replace(report, picks=report.picks.assign(estimator="ghost"))
    with pytest.raises(ReportError, match=r"^estimates: expected the columns \['policy', 'estimator', 'estimate'\], missing \['estimate'\]"):
        dataclasses.replace(report, estimates=report.estimates.drop(columns="estimate"))


def _with_estimated(report):  # type: ignore[no-untyped-def]
    """The report with an assessment estimated from the logs (the layout of recommend_estimator's table)."""
    names = list(dict.fromkeys(report.estimates["estimator"]))
    estimated = pd.DataFrame({
        "method": "cv", "estimator": names, "estimated_nmse": np.linspace(0.1, 0.2, len(names)),
        "estimated_nmse_lower": 0.05, "estimated_nmse_upper": 0.3, "selected": [i == 0 for i in range(len(names))],
    })  # fmt: skip
    return dataclasses.replace(report, estimated_assessment=estimated, estimated_reason="the first one, estimated from the logs.")


def test_the_estimated_assessment_round_trips_and_renders_above_the_true_one(tmp_path: Path) -> None:
    report = _with_estimated(small_report())
    save_task_report(report, tmp_path / "run")
    loaded = load_task_report(tmp_path / "run")
    pd.testing.assert_frame_equal(loaded.estimated_assessment, report.estimated_assessment)
    assert loaded.estimated_reason == report.estimated_reason
    page = render_report([loaded])
    assert page.index("Estimated from the logs, without the truth") < page.index("Assessment of each estimator")
    assert "0.1 [0.05, 0.3]" in page and "the first one, estimated from the logs." in page


def test_an_estimated_assessment_naming_an_unknown_estimator_is_refused(tmp_path: Path) -> None:
    report = _with_estimated(small_report())
    save_task_report(report, tmp_path / "run")
    edit_csv(tmp_path / "run", "estimated_assessment", lambda f: f.assign(estimator=["nope"] * len(f)))
    message = load_error(tmp_path / "run", "estimated_assessment.csv")
    assert "nope" in message
