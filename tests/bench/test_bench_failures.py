"""Failed cells say why: the recorded error is one line, never empty (a bare ``MemoryError``, an exception
without a message, a worker killed by a signal), and the first failure is at hand for the command line."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from opelab.bench import ResultStore, parse_config, run_benchmark
from opelab.bench.executors import describe_exit
from opelab.bench.runner import MAX_ERROR_CHARS, describe_error

HERE = Path(__file__).parent
CONFIG = """
imports = ["faulty_cells"]
n_datasets = {n_datasets}
n_trajectories = 20
estimators = ["dm"]
[executor]
workers = {workers}
retries = {retries}
{tasks}
"""
TASK = '[[tasks]]\nname = "faulty_chain"\nid = "{id}"\ncandidates = {{ epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }}\n'


@pytest.fixture(autouse=True)
def faulty_cells_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # the driver imports it, and pool workers inherit sys.path


def config(*ids: str, n_datasets: int = 1, workers: int = 1, retries: int = 0):  # type: ignore[no-untyped-def]
    tasks = "".join(TASK.format(id=i) for i in ids)
    return parse_config(CONFIG.format(n_datasets=n_datasets, workers=workers, retries=retries, tasks=tasks))


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_errors_are_type_and_message_on_one_line():
    assert describe_error(ValueError("n: expected 3,\n  found 4")) == "ValueError: n: expected 3, found 4"
    assert describe_error(MemoryError("Unable to allocate 7.45 GiB for an array")) == "MemoryError: Unable to allocate 7.45 GiB for an array"
    assert len(describe_error(RuntimeError("x" * 10_000))) == MAX_ERROR_CHARS


def test_an_empty_message_is_described():
    assert describe_error(MemoryError()).startswith("MemoryError: out of memory (an allocation failed in the cell; lower n_trajectories")
    text = describe_error(raised(AssertionError()))
    assert text.startswith("AssertionError: (no message) raised at ") and "test_bench_failures.py:" in text and text.endswith("in raised")
    assert describe_error(KeyError()) == "KeyError: (no message)"  # never raised: no traceback to point at


def test_a_dead_worker_is_described_by_its_signal():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL, e.g. by the kernel's out-of-memory killer"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert (describe_exit(3), describe_exit(None), describe_exit(-200)) == ("exit code 3", "an unknown cause", "killed by signal 200")


def test_failed_cells_record_why_and_the_summary_names_the_first(tmp_path):
    db = tmp_path / "f.duckdb"
    summary = run_benchmark(config("fine", "memory", "silent", n_datasets=2), db)
    assert (summary.n_done, summary.n_failed) == (2, 4)
    assert [(cell.task, cell.dataset) for cell, _ in summary.failures] == [("memory", 0), ("memory", 1), ("silent", 0), ("silent", 1)]
    assert summary.first_error is not None and summary.first_error.startswith("memory dataset 0: MemoryError: out of memory (")
    with ResultStore(db, read_only=True) as store:
        cells = store.query("SELECT task, dataset, status, error, traceback FROM cells ORDER BY task, dataset")
    failed = cells[cells.status == "failed"]
    assert failed.error.map(lambda e: bool(e) and ": " in e and "\n" not in e).all()
    assert failed[failed.task == "silent"].error.str.startswith("AssertionError: (no message) raised at ").all()
    assert failed.traceback.str.contains("Traceback").all()
    assert cells[cells.status == "done"].error.isna().all()
    assert run_benchmark(config("fine"), tmp_path / "ok.duckdb").first_error is None


def test_a_worker_killed_by_a_signal_is_recorded_as_such(tmp_path):
    db = tmp_path / "k.duckdb"
    summary = run_benchmark(config("sigkill", workers=2, retries=1), db)
    assert summary.n_failed == 1
    expected = "WorkerDied: the worker process died (killed by SIGKILL, e.g. by the kernel's out-of-memory killer) while this cell was running"
    assert summary.first_error.startswith(f"sigkill dataset 0: {expected}"), summary.first_error
    with ResultStore(db, read_only=True) as store:
        row = store.query("SELECT error, attempts FROM cells").iloc[0]
    assert row.error.startswith(expected) and row.attempts == 2  # retried once on a fresh pool
