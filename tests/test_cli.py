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
    assert {p.name for p in out.iterdir()} == {"dataset.parquet", "estimates.csv", "assessment.csv", "topk.csv", "picks.csv"}
    ds = LoggedDataset.read_parquet(out / "dataset.parquet")
    assert ds.n_trajectories == 200 and ds.info.seed == 3 and ds.info.task == "gridworld"
    estimates = pd.read_csv(out / "estimates.csv", index_col="policy")
    assert len(estimates) == 10
    assert {"true_value", "dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr"} <= set(estimates.columns)
    assessment = pd.read_csv(out / "assessment.csv", index_col="estimator")
    assert [f"sharpe_ratio@{k}" for k in range(2, 11)] == [c for c in assessment.columns if c.startswith("sharpe")]
    picks = pd.read_csv(out / "picks.csv")
    assert set(picks.metric) >= {"nmse", "rank_correlation", "regret@1", "sharpe_ratio@2"}


@pytest.mark.parametrize("task", ["chain", "random"])
def test_demo_on_other_tasks(tmp_path, task):
    result = runner.invoke(app, ["demo", "--task", task, "-n", "100", "--out", str(tmp_path / task)])
    assert result.exit_code == 0, result.output


def test_demo_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "-n", "50", "--out", str(out)])
    assert result.exit_code == 1
    assert "error:" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "mine"
    assert runner.invoke(app, ["demo", "-n", "50", "--out", str(out), "--force"]).exit_code == 0


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
        assert runner.invoke(app, ["demo", "-n", "50"]).exit_code == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(name.startswith("opelab-demo-") for name in folders)
