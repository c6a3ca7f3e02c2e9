"""Running benchmarks: determinism across reruns and executors, retries and failed cells, crash-safe resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from opelab.bench import Cell, ResultStore, expand, parse_config, run_benchmark, run_cell
from opelab.bench.store import TABLES

TINY = """
name = "tiny"
seed = 3
n_datasets = {n_datasets}
n_trajectories = {n}
ks = [2, 3]
estimators = {estimators}
{extra}
[intervals]
method = "bootstrap"
n_bootstrap = 20

[executor]
retries = {retries}

[[tasks]]
name = "chain"
behavior = {{ head = "epsilon_greedy", epsilon = 0.3 }}
candidates = {{ epsilons = [0.0, 0.2], temperatures = [0.5], adversarial_epsilons = [0.5] }}

[[tasks]]
name = "random"
candidates = {{ epsilons = [0.0, 0.5], temperatures = [], include_uniform = true, adversarial_epsilons = [] }}
"""


def tiny(n_datasets: int = 2, n: int = 40, retries: int = 1, extra: str = "", estimators: str = '["dm", "pdis", "sndr", "sam_snis"]') -> str:
    return TINY.format(n_datasets=n_datasets, n=n, retries=retries, extra=extra, estimators=estimators)


def stable_tables(db) -> dict[str, pd.DataFrame]:
    with ResultStore(db, read_only=True) as store:
        return {name: store.table(name, stable=True) for name in TABLES}


def assert_same_store(a, b) -> None:
    left, right = stable_tables(a), stable_tables(b)
    for name in TABLES:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=True, obj=name)


def test_a_cell_is_reproducible_alone_and_depends_on_its_coordinates():
    config = parse_config(tiny())
    first, again = run_cell(config, Cell("chain", 1)), run_cell(config, Cell("chain", 1))
    pd.testing.assert_frame_equal(first.estimates, again.estimates, check_exact=True)
    pd.testing.assert_frame_equal(first.metrics, again.metrics, check_exact=True)
    other = run_cell(config, Cell("chain", 0))
    assert not first.estimates.estimate.equals(other.estimates.estimate)
    assert set(first.estimates.estimator) == {"dm", "pdis", "sndr", "sam_snis"}
    assert (first.ground_truth.se == 0).all() and len(first.ground_truth) == 5
    assert {"nmse", "rank_correlation", "regret@1", "regret@3", "sharpe_ratio@2", "sharpe_ratio@3", "std@3"} <= set(first.metrics.metric)


def test_same_config_twice_and_one_or_two_workers_give_identical_stores(tmp_path):
    config = parse_config(tiny())
    one = run_benchmark(config, tmp_path / "a.duckdb")
    run_benchmark(config, tmp_path / "b.duckdb")
    two = run_benchmark(config.with_executor(workers=2), tmp_path / "c.duckdb")
    assert (one.n_cells, one.n_done, one.n_failed, two.n_done) == (4, 4, 0, 4)
    assert_same_store(tmp_path / "a.duckdb", tmp_path / "b.duckdb")
    assert_same_store(tmp_path / "a.duckdb", tmp_path / "c.duckdb")
    tables = stable_tables(tmp_path / "a.duckdb")
    assert len(tables["cells"]) == 4 and (tables["cells"].status == "done").all()
    assert len(tables["estimates"]) == 2 * 4 * (5 + 3)  # datasets × estimators × (chain: 5, random: 3 candidates)
    assert tables["estimates"][["lower", "upper"]].notna().all().all()
    assert tables["runs"].config_text[0] == config.text and "numpy" in json.loads(tables["runs"].versions[0])


def test_a_resumed_complete_run_adds_nothing_and_a_fresh_run_gets_a_new_id(tmp_path):
    config = parse_config(tiny(n_datasets=1))
    db = tmp_path / "r.duckdb"
    run_benchmark(config, db)
    again = run_benchmark(config, db, resume=True)
    assert (again.run_id, again.n_skipped, again.n_done) == (1, 2, 0)
    assert run_benchmark(config, db).run_id == 2
    with pytest.raises(ValueError, match="--resume: expected a run of this config"):
        run_benchmark(parse_config(tiny(n_datasets=1, n=41)), db, resume=True)


PLUGIN = '''
from dataclasses import dataclass
from opelab.ope.estimators import PointEstimator, register_estimator

@register_estimator
@dataclass(frozen=True)
class FailsOnChain(PointEstimator):
    """Test-only: the direct method's values, except that it raises on the chain task."""

    name = "bench_test_fails_on_chain"

    def trajectory_values(self, ctx):
        if ctx.dataset.info.task == "chain":
            raise RuntimeError("injected failure")
        return ctx.inputs.initial_v_hat
'''


@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    """A module registering an estimator that fails on one task, importable through ``imports``."""
    from opelab.ope.estimators import ESTIMATORS

    (tmp_path / "bench_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "bench_test_plugin"
    ESTIMATORS.pop("bench_test_fails_on_chain", None)
    sys.modules.pop("bench_test_plugin", None)


def test_a_failing_cell_is_retried_then_recorded_failed_while_the_others_finish(tmp_path, failing_plugin):
    extra = f'imports = ["{failing_plugin}"]'
    config = parse_config(tiny(retries=2, extra=extra, estimators='["dm", "bench_test_fails_on_chain"]'))
    db = tmp_path / "f.duckdb"
    summary = run_benchmark(config, db)
    assert (summary.n_done, summary.n_failed) == (2, 2)
    cells = stable_tables(db)["cells"]
    failed = cells[cells.status == "failed"]
    assert list(failed.task) == ["chain", "chain"] and (failed.attempts == 3).all()
    assert (failed.error == "RuntimeError: injected failure").all()
    done = cells[cells.status == "done"]
    assert list(done.task) == ["random", "random"] and (done.attempts == 1).all()
    with ResultStore(db, read_only=True) as store:
        assert store.query("SELECT DISTINCT task FROM estimates").task.tolist() == ["random"]
        assert "injected failure" in store.query("SELECT traceback FROM cells WHERE status = 'failed'").traceback[0]


RESUME_CONFIG = tiny(n_datasets=10, n=100)


def test_a_killed_run_resumes_without_losing_or_duplicating_cells(tmp_path):
    config_path = tmp_path / "resume.toml"
    config_path.write_text(RESUME_CONFIG)
    db, progress = tmp_path / "killed.duckdb", tmp_path / "progress.jsonl"
    command = [sys.executable, "-m", "opelab.cli", "benchmark", str(config_path), "--db", str(db), "--workers", "1", "--progress-file", str(progress)]
    env = {**os.environ, "COLUMNS": "100"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if progress.exists() and len(progress.read_text().splitlines()) >= 3:
                break
            time.sleep(0.01)
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    recorded = len(progress.read_text().splitlines())

    config = parse_config(RESUME_CONFIG)
    resumed = run_benchmark(config, db, resume=True)
    n_cells = len(expand(config))
    assert recorded <= resumed.n_skipped < n_cells and resumed.n_skipped + resumed.n_done == n_cells
    run_benchmark(config, tmp_path / "clean.duckdb")
    assert_same_store(db, tmp_path / "clean.duckdb")
    with ResultStore(db, read_only=True) as store:
        counts = store.query("SELECT task, dataset, count(*) AS n FROM cells GROUP BY ALL")
        assert len(counts) == n_cells and (counts.n == 1).all()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray runtime (2 CPUs) for the whole test session."""
    ray = pytest.importorskip("ray", reason="ray is not installed (the [ray] extra)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_store_as_the_local_executor(tmp_path, ray_cluster):
    config = parse_config(tiny())
    run_benchmark(config, tmp_path / "local.duckdb")
    summary = run_benchmark(config.with_executor(kind="ray", workers=2), tmp_path / "ray.duckdb")
    assert (summary.n_done, summary.n_failed) == (4, 0)
    assert ray_cluster.is_initialized()  # the executor leaves a runtime it did not start running
    assert_same_store(tmp_path / "local.duckdb", tmp_path / "ray.duckdb")


def test_an_aborted_ray_executor_cancels_what_it_submitted():
    """Leaving a Ray executor with an exception (Ctrl-C) cancels its outstanding tasks by force — on a
    cluster it did not start nothing else would stop them — and shuts down only a runtime it started."""
    from opelab.bench.executors import RayExecutor

    class FakeRay:
        def __init__(self):
            self.cancelled, self.shut = [], False

        def cancel(self, ref, force=False):
            if ref == "finished":
                raise ValueError("already finished")
            self.cancelled.append((ref, force))

        def shutdown(self):
            self.shut = True

    for owned in (False, True):
        executor = object.__new__(RayExecutor)
        executor._ray, executor._owned, executor._config_refs = FakeRay(), owned, {}
        executor._refs = {"running": Cell("chain", 0), "finished": Cell("chain", 1), "queued": Cell("chain", 2)}
        with pytest.raises(KeyboardInterrupt), executor:
            raise KeyboardInterrupt
        assert executor._ray.cancelled == [("running", True), ("queued", True)] and not executor._refs
        assert executor._ray.shut is owned
