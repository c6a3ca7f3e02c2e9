"""`opelab report STORE.duckdb`: the SharpeRatio@k paper's views of a benchmark store, the agreement table on a
hand-built store, and the page in headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from opelab.bench import ResultStore, parse_config, run_benchmark
from opelab.cli import app
from opelab.report.store import read_store_report, render_store_report

from test_report_html import dom_attributes

CONFIG = """
name = "store-report"
n_datasets = 3
n_trajectories = 60
estimators = ["dm", "snpdis", "sndr"]
[[tasks]]
name = "chain"
candidates = { epsilons = [0.0, 0.2, 0.4, 0.6, 0.8], temperatures = [], adversarial_epsilons = [] }
[[tasks]]
name = "gridworld"
candidates = { epsilons = [0.0, 0.2, 0.4, 0.6, 0.8], temperatures = [], adversarial_epsilons = [] }
"""


@pytest.fixture(scope="module")
def store_file(tmp_path_factory):
    db = tmp_path_factory.mktemp("store") / "results.duckdb"
    run_benchmark(parse_config(CONFIG), db)
    return db


def test_every_view_of_a_small_store(store_file):
    with ResultStore(store_file, read_only=True) as store:
        report = read_store_report(store, k=4)
        metrics = store.query("SELECT task, dataset, estimator, metric, value FROM metrics")
    assert report.name == "store-report" and report.run_id == 1
    assert set(report.summary.task) == {"chain", "gridworld"} and set(report.trials.task) == {"chain", "gridworld"}
    assert len(report.trials) == 6 and list(report.cells.done) == [3, 3]
    # the most efficient estimator is the highest mean SharpeRatio@4 across the datasets, from the raw metrics
    for row in report.efficient.itertuples(index=False):
        means = metrics[(metrics.task == row.task) & (metrics.metric == "sharpe_ratio@4")].groupby("estimator").value.mean()
        assert row.estimator == means.idxmax() and getattr(row, "_2") == pytest.approx(means.max())
    # agreement counts are between 0 and the number of trials, one column per task and a total
    counts = report.agreement_counts
    assert list(counts.columns) == ["comparison", "chain", "gridworld", "total"] and len(counts) == 4
    for task in ("chain", "gridworld"):
        assert all(0 <= agree <= n == 3 for agree, n in counts[task])
    page = render_store_report(report)
    for view in ("SharpeRatio@k against k", "Top-k portfolio statistics", "nMSE, rank correlation and regret",
                 "Agreement of SharpeRatio@4 with the other metrics", "most efficient by SharpeRatio@4",
                 "every nuisance of this run is exact (tabular)", "Every cell finished."):  # fmt: skip
        assert view in page, view
    assert page.count('<figure class="opelab-figure') == 6  # three per task
    # each task's behavior policy by the name its cells recorded (schema 4)
    assert report.behavior.policy.tolist() == ["behavior(softmax(optimal, temperature=1))"] * 2
    assert page.count("Behavior policy behavior(softmax(optimal, temperature=1)): true value") == 2


def _hand_built(path):
    """Two tasks x two datasets x three estimators with picks set by hand (docstring of the test below)."""
    values = {
        # (task, dataset): {metric: (e1, e2, e3)}
        ("a", 0): {"sharpe_ratio@4": (3, 1, 1), "nmse": (0.1, 0.2, 0.3), "rank_correlation": (0.9, 0.9, 0.1), "normalized_regret@4": (0.5, 0.5, 0.0)},
        ("a", 1): {"sharpe_ratio@4": (2, 2, 1), "nmse": (0.1, 0.2, 0.3), "rank_correlation": (0.1, 0.9, 0.9), "normalized_regret@4": (0.0, 0.1, 0.1)},
        ("b", 0): {"sharpe_ratio@4": (1, 1, 1), "nmse": (0.3, 0.2, 0.1), "rank_correlation": (0.5, np.nan, 0.2), "normalized_regret@4": (0.0, 0.0, 0.0)},
        ("b", 1): {"sharpe_ratio@4": (1, np.inf, 2), "nmse": (0.3, 0.1, 0.2), "rank_correlation": (0.5, 0.6, 0.7), "normalized_regret@4": (0.2, 0.1, 0.0)},
    }  # fmt: skip
    with ResultStore(path) as store:
        store.con.execute("INSERT INTO runs VALUES (1, 'hand', 'h', '', 0, '{}', now())")
        for (task, dataset), rows in values.items():
            store.con.execute(
                "INSERT INTO cells (run_id, task, dataset, status, attempts, behavior_value, logged_value) VALUES (1, ?, ?, 'done', 1, 0.5, 0.4)",
                [task, dataset],
            )
            for metric, triple in rows.items():
                for estimator, value in zip(("e1", "e2", "e3"), triple):
                    store.con.execute("INSERT INTO metrics VALUES (1, ?, ?, ?, ?, ?)", [task, dataset, estimator, metric, float(value)])
        store.con.execute("INSERT INTO cells (run_id, task, dataset, status, error, attempts) VALUES (1, 'b', 2, 'failed', 'RuntimeError: boom', 2)")
        # task a's cells learned FQE and weights: dataset 1's weights did not converge
        for dataset, nuisance, converged in ((0, "fqe", True), (0, "weights", True), (1, "fqe", True), (1, "weights", False)):
            store.con.execute(
                "INSERT INTO nuisances VALUES (1, 'a', ?, ?, 'all', 1, NULL, 300, 0.001, 0.0, ?, 'in-sample', ?, 2.5)",
                [dataset, nuisance, 0.05 if converged else 1.5, converged],
            )


def test_the_agreement_table_on_a_hand_built_store(tmp_path):
    """SharpeRatio@4 picks, and each metric's (tied) picks, per trial:
    a/0: S {e1};       nMSE {e1} -> 1;   rank {e1, e2} -> 1/2;   nRegret {e3} -> 0
    a/1: S {e1, e2};   nMSE {e1} -> 1/2; rank {e2, e3} -> 1/4;   nRegret {e1} -> 1/2
    b/0: S {e1,e2,e3}; nMSE {e3} -> 1/3; rank {e1} (NaN left out) -> 1/3; nRegret {e1,e2,e3} -> 3/9
    b/1: S {e2} (+inf is the best SharpeRatio); nMSE {e2} -> 1; rank {e3} -> 0; nRegret {e3} -> 0
    """
    db = tmp_path / "hand.duckdb"
    _hand_built(db)
    with ResultStore(db, read_only=True) as store:
        report = read_store_report(store, k=4, n_bootstrap=200)
    counts = report.agreement_counts.set_index("comparison")
    expected = {
        "SharpeRatio@4 pick = nMSE pick": {"a": 1.5, "b": 1 / 3 + 1, "total": 1.5 + 4 / 3},
        "SharpeRatio@4 pick = rank correlation pick": {"a": 0.75, "b": 1 / 3, "total": 0.75 + 1 / 3},
        "SharpeRatio@4 pick = normalised regret@4 pick": {"a": 0.5, "b": 1 / 3, "total": 0.5 + 1 / 3},
        "SharpeRatio@4 pick tied between estimators": {"a": 1.0, "b": 1.0, "total": 2.0},
    }
    for comparison, row in expected.items():
        for column, value in row.items():
            agree, n = counts.loc[comparison, column]
            assert agree == pytest.approx(value) and n == (4 if column == "total" else 2), (comparison, column)
    assert report.trials.set_index(["task", "dataset"]).loc[("b", 1), "sharpe_ratio@4"] == "e2"
    assert report.cells.set_index("task").loc["b", "failed"] == 1
    page = render_store_report(report)
    assert "1 cell(s) failed and are left out: b: 1 (RuntimeError: boom)" in page
    assert "1.5 of 2" in page and "2.833 of 4" in page
    summary = report.convergence_summary.set_index("task")
    assert summary.loc["a"].tolist() == [2, 1] and summary.loc["b"].tolist() == [0, 0]
    assert report.convergence[["task", "dataset", "nuisance"]].values.tolist() == [["a", 1, "weights"]]
    assert "1 cell(s) hold a learned nuisance (FQE, marginal weights, MQL) that did not converge" in page


def test_a_task_without_a_finite_sharpe_ratio_is_named_as_such(tmp_path):
    """Every candidate with the same true value: SharpeRatio@4 is undefined for every estimator (NaN), the
    summary says so instead of naming a pick."""
    db = tmp_path / "flat.duckdb"
    with ResultStore(db) as store:
        store.con.execute("INSERT INTO runs VALUES (1, 'flat', 'h', '', 0, '{}', now())")
        store.con.execute("INSERT INTO cells (run_id, task, dataset, status, attempts, behavior_value, logged_value) VALUES (1, 'flat', 0, 'done', 1, -1, -1)")
        for estimator in ("e1", "e2"):
            for metric, value in (("sharpe_ratio@4", np.nan), ("nmse", 0.1), ("rank_correlation", np.nan), ("normalized_regret@4", 0.0)):
                store.con.execute("INSERT INTO metrics VALUES (1, 'flat', 0, ?, ?, ?)", [estimator, metric, value])
    with ResultStore(db, read_only=True) as store:
        report = read_store_report(store, k=4, n_bootstrap=50)
    page = render_store_report(report)
    assert "flat: no estimator has a finite SharpeRatio@4." in page and "is <b>nan</b>" not in page


def test_a_schema_1_store_says_it_records_no_convergence(tmp_path):
    import duckdb

    db = tmp_path / "old.duckdb"
    _hand_built(db)
    with duckdb.connect(str(db)) as con:  # what a store written before schema 2 holds
        con.execute("DROP TABLE nuisances; UPDATE opelab_store SET value = '1' WHERE key = 'schema_version'")
    with ResultStore(db, read_only=True) as store:
        report = read_store_report(store, k=4, n_bootstrap=200)
    assert report.convergence is None and report.convergence_summary is None
    assert "Nuisance convergence: this store does not record it" in render_store_report(report)


def test_the_cli_reads_a_store_and_names_bad_requests(store_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "bench.html"
    result = runner.invoke(app, ["report", str(store_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Benchmark report written to" in result.stdout and "opelab benchmark: store-report (run 1)" in out.read_text(encoding="utf-8")
    for args, start in (
        (["--k", "9"], "error: --k: expected a k the run's metrics hold (SharpeRatio@k for k in [2, 3, 4, 5, 6]), found 9"),
        (["--run", "7"], "error: --run: expected a run in results.duckdb, found 7"),
    ):
        result = runner.invoke(app, ["report", str(store_file), "--out", str(tmp_path / "x.html"), *args])
        assert result.exit_code == 1 and result.stdout.startswith(start), result.output
    (tmp_path / "notes.txt").write_text("not a store")
    result = runner.invoke(app, ["report", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "y.html")])
    assert result.exit_code == 1 and result.stdout.startswith("error: RESULTS: expected result folders or one benchmark store"), result.output

    attributes = dom_attributes(out)
    assert attributes.get("errors") == "" and attributes["figures"] == "6" and attributes["sized-figures"] == "6"
