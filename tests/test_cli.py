"""``opelab demo`` end to end, and the CLI's error behaviour."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.data import LoggedDataset

runner = CliRunner()


def test_demo_runs_end_to_end_and_writes_its_files(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["demo", "-n", "200", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("Estimates vs exact value", "Assessment of each estimator", "SharpeRatio@2", "each metric picks"):
        assert text in result.output
    written = {p.name for p in out.iterdir()}
    assert {"dataset.parquet", "report.html", "report.json", "candidates.csv", "estimates.csv", "assessment.csv", "topk.csv", "picks.csv"} <= written
    assert {"cdfs.csv", "risk.csv", "true_cdfs.csv", "true_risk.csv"} <= written
    assert "report.html" in result.output
    ds = LoggedDataset.read_parquet(out / "dataset.parquet")
    assert ds.n_trajectories == 200 and ds.info.seed == 3 and ds.info.task == "gridworld"
    estimates = pd.read_csv(out / "estimates.csv")
    assert list(estimates.columns) == ["policy", "estimator", "estimate", "lower", "upper", "true_value"]
    assert set(estimates.estimator) == {"dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sam_snis", "sam_sndr"}
    assert estimates.policy.nunique() == 10
    assessment = pd.read_csv(out / "assessment.csv", index_col="estimator")
    assert [f"sharpe_ratio@{k}" for k in range(2, 11)] == [c for c in assessment.columns if c.startswith("sharpe")]
    picks = pd.read_csv(out / "picks.csv")
    assert set(picks.metric) >= {"nmse", "rank_correlation", "regret@1", "sharpe_ratio@2"}


@pytest.mark.parametrize("task", ["chain", "random"])
def test_demo_on_other_tasks(tmp_path, task):
    result = runner.invoke(app, ["demo", "--task", task, "-n", "100", "--no-report", "--out", str(tmp_path / task)])
    assert result.exit_code == 0, result.output


def test_demo_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "-n", "50", "--no-report", "--out", str(out)])
    assert result.exit_code == 1
    assert "error:" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "mine"
    assert runner.invoke(app, ["demo", "-n", "50", "--no-report", "--out", str(out), "--force"]).exit_code == 0


def test_errors_print_one_line_and_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["demo", "--task", "nope", "--out", str(tmp_path / "a")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: task: expected one of")
    debug = subprocess.run(
        [sys.executable, "-m", "opelab.cli", "demo", "--task", "nope", "--out", str(tmp_path / "b"), "--debug"],
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_default_out_is_a_fresh_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert runner.invoke(app, ["demo", "-n", "50", "--no-report"]).exit_code == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(name.startswith("opelab-demo-") for name in folders)


def test_report_and_describe_commands(tmp_path):
    run = tmp_path / "run"
    assert runner.invoke(app, ["demo", "-n", "100", "--task", "chain", "--no-report", "--out", str(run)]).exit_code == 0
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(run), str(run), "--out", str(page), "--title", "two runs"])
    assert result.exit_code == 0, result.output
    assert "Report written to" in result.output
    text = page.read_text(encoding="utf-8")
    assert text.count('<section class="task"') == 2 and "<title>two runs</title>" in text
    again = runner.invoke(app, ["report", str(run), "--out", str(page)])
    assert again.exit_code == 1 and "--force" in again.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")])
    assert missing.exit_code == 1 and "report.json" in missing.output
    described = runner.invoke(app, ["describe", str(run / "dataset.parquet")])
    assert described.exit_code == 0, described.output
    assert "Trajectories" in described.output and "100" in described.output
