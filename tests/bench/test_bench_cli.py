"""``opelab benchmark`` and ``opelab results`` end to end on a tiny config."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from opelab.cli import app

runner = CliRunner()

CONFIG = """
name = "clitiny"
n_datasets = 2
n_trajectories = 40
ks = [2]
estimators = ["dm", "sndr"]

[[tasks]]
name = "chain"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [0.5] }
"""


def test_benchmark_then_results_summary_sql_and_export(tmp_path):
    config = tmp_path / "clitiny.toml"
    config.write_text(CONFIG)
    db = tmp_path / "out.duckdb"
    result = runner.invoke(app, ["benchmark", str(config), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "run 1: 2 cells, 0 already done, 2 done now, 0 failed" in result.output
    resumed = runner.invoke(app, ["benchmark", str(config), "--db", str(db), "--resume"])
    assert resumed.exit_code == 0 and "2 already done, 0 done now" in resumed.output

    summary = runner.invoke(app, ["results", str(db)], env={"COLUMNS": "200"})
    assert summary.exit_code == 0, summary.output
    for text in ("chain: mean and 95% bootstrap CI across 2 dataset(s)", "nMSE ↓", "rank corr ↑", "regret@2 ↓", "SharpeRatio@2 ↑", "Picks"):
        assert text in summary.output, summary.output

    query = runner.invoke(app, ["results", str(db), "--sql", "SELECT count(*) AS n FROM estimates"])
    assert query.exit_code == 0 and "16" in query.output and "1 row(s)" in query.output

    export = runner.invoke(app, ["results", str(db), "--export", str(tmp_path / "parquet")])
    assert export.exit_code == 0, export.output
    assert len(pd.read_parquet(tmp_path / "parquet" / "estimates.parquet")) == 16
    # schema 2: the nuisances table is exported too (empty here: tabular tasks have exact nuisances)
    assert {p.stem for p in (tmp_path / "parquet").iterdir()} == {"runs", "cells", "estimates", "ground_truth", "metrics", "nuisances"}


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("n_datasets = 2", "n_datasets = -2"))
    result = runner.invoke(app, ["benchmark", str(bad), "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 1
    assert "error: bad.toml:3: n_datasets: expected an integer >= 1, found -2" in " ".join(result.output.split())
    config = tmp_path / "ok.toml"
    config.write_text(CONFIG)
    result = runner.invoke(app, ["benchmark", str(config), "--db", str(tmp_path / "y.duckdb"), "--resume"])
    assert result.exit_code == 1 and "--resume: expected a run of this config" in result.output
    result = runner.invoke(app, ["results", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 1 and "expected a results file" in result.output
