"""Reports on a user's own logs, with no ground truth: `opelab evaluate --report-dir` writes a results folder that
opens with the assessment estimated from the logs, and `opelab report` reads it back."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.envs import bandit_inputs, make
from opelab.ope import evaluate
from opelab.policies import ActionDistribution
from opelab.policies.given import write_action_dist
from opelab.report import render_report
from opelab.report.results import evaluation_report, load_task_report, save_task_report
from opelab.report.validation import ReportError
from opelab.select import recommend_estimator

from test_report_html import dom_attributes


@pytest.fixture(scope="module")
def logs():
    task = make("bandit")
    ds = task.collect(task.behavior_policy(), 1500, seed=3)
    policies = task.candidates()[:5]
    inputs = bandit_inputs(task, ds, policies, q_model="true")
    table = evaluate(ds, inputs, ["dm", "ipw", "snipw", "dr"], interval="t")
    found = recommend_estimator(ds, inputs, list(table.estimator_names), method="cv", n_splits=4, seed=0)
    return task, ds, policies, table, found


def test_a_report_without_truth_opens_with_the_estimated_assessment(logs, tmp_path):
    _, ds, _, table, found = logs
    report = evaluation_report(ds, table, estimated=found)
    assert not report.has_truth and report.assessment is None and report.topk is None and report.picks is None
    save_task_report(report, tmp_path)
    assert not (tmp_path / "assessment.csv").exists() and not (tmp_path / "topk.csv").exists()
    back = load_task_report(tmp_path)
    assert not back.has_truth
    pd.testing.assert_frame_equal(back.estimated_assessment, report.estimated_assessment, check_dtype=False)
    page = render_report([back])
    summary = page[page.index('<section class="summary">') : page.index("</section>")]
    assert "no ground truth; estimated from the logs" in summary and found.reason in summary.replace("&#x27;", "'")
    section = page[page.index('<section class="task"') :]
    # the estimated assessment comes first, then the warning that nothing is measured against the truth
    assert section.index("Estimated from the logs, without the truth") < section.index("No ground truth: these logs")
    assert "Assessment of each estimator" not in page and "Which estimator each metric would pick" not in page
    assert page.count('<figure class="opelab-figure') == 1  # the estimates per policy; nothing drawn against a truth


def test_a_report_without_truth_must_carry_an_estimated_assessment(logs):
    _, ds, _, table, found = logs
    with pytest.raises(ReportError, match="expected at least one finite true value, or an estimated assessment"):
        evaluation_report(ds, table)
    report = evaluation_report(ds, table, estimated=found)
    from dataclasses import replace

    truthful = evaluation_report(ds, table, true_values=np.arange(5.0), estimated=found)
    with pytest.raises(ReportError, match=r"assessment: expected no assessment table in a report without truth .* found one with 4 rows"):
        replace(report, assessment=truthful.assessment)


def test_with_truth_the_report_shows_both_assessments(logs):
    task, ds, policies, table, found = logs
    report = evaluation_report(ds, table, true_values=task.policy_values(policies), estimated=found)
    assert report.has_truth and set(report.assessment.index) == set(table.estimator_names)
    page = render_report([report])
    assert page.index("Estimated from the logs, without the truth") < page.index("Assessment of each estimator")
    assert "to compare with the assessment against the truth below" in page


def test_a_folder_without_truth_and_without_its_estimate_is_refused_naming_the_file(logs, tmp_path):
    _, ds, _, table, found = logs
    save_task_report(evaluation_report(ds, table, estimated=found), tmp_path)
    (tmp_path / "estimated_assessment.csv").unlink()
    with pytest.raises(ReportError, match=r"candidates\.csv: true_value: expected at least one finite true value"):
        load_task_report(tmp_path)


def test_evaluate_writes_a_report_folder_that_opelab_report_reads(logs, tmp_path):
    _, ds, policies, _, _ = logs
    ds.to_parquet(tmp_path / "d.parquet")
    obs = ds.observations[:, 0]
    given = [ActionDistribution(p.name, np.asarray(p.action_probs(obs, np.zeros(len(obs), dtype=int)))) for p in policies]
    write_action_dist(tmp_path / "pi.parquet", given, ds)
    runner = CliRunner()
    folder = tmp_path / "results"
    args = ["evaluate", str(tmp_path / "d.parquet"), "--action-dist", str(tmp_path / "pi.parquet"), "--q-function", "none",
            "--estimators", "ipw,snipw", "--report-dir", str(folder)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # no --recommend: the report's estimated assessment comes from cross-validation, printed as well
    assert "Which estimator to trust: estimated from the logs" in result.stdout and "Results and report written to" in result.stdout
    assert {"report.html", "report.json", "candidates.csv", "estimates.csv", "estimated_assessment.csv"} <= {p.name for p in folder.iterdir()}
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and again.stdout.startswith("error: --report-dir:") and "pass --force" in again.stdout
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no ground truth; estimated from the logs" in out.read_text(encoding="utf-8")

    attributes = dom_attributes(out)
    assert attributes.get("errors") == "" and attributes["figures"] == "1" and attributes["sized-figures"] == "1"
