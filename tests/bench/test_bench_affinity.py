"""Task affinity of the local executor: every cell of a task that trains runs in one worker process, so
what the task trains is trained once per run, whatever the number of workers (with work stealing off);
the cells of a task that trains nothing are spread; an idle worker takes waiting cells of another when the
measured costs say so (work stealing); results do not depend on the number of workers or on stealing."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pandas as pd
import pytest

from opelab.bench import Cell, ResultStore, parse_config, run_benchmark
from opelab.bench.executors import LocalExecutor, make_executor, plan_workers, steal_choice
from opelab.bench.store import TABLES

HERE = Path(__file__).parent
CONFIG = """
imports = ["affinity_cells", "faulty_cells"]
seed = 5
n_datasets = {n_datasets}
n_trajectories = 20
ks = [2]
estimators = ["dm", "pdis"]
[executor]
workers = {workers}
retries = 0
steal = {steal}
{tasks}
"""
TASK = '[[tasks]]\nname = "{name}"\nid = "{id}"\ncandidates = {{ epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }}\n'


@pytest.fixture(autouse=True)
def helpers_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # the driver imports them, and pool workers inherit sys.path


@pytest.fixture
def ids():
    """Unique task ids (the helper's log folder is shared), and their log files removed afterwards."""
    import affinity_cells

    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield [f"{prefix}_{i}" for i in range(4)]
    for path in affinity_cells.LOG.glob(f"{prefix}_*"):
        path.unlink()
    with contextlib.suppress(OSError):
        affinity_cells.LOG.rmdir()  # only when no other run left files


def config(tasks: list[tuple[str, str]], n_datasets: int, workers: int, steal: bool = False):  # type: ignore[no-untyped-def]
    text = "".join(TASK.format(name=name, id=task_id) for name, task_id in tasks)
    return parse_config(CONFIG.format(n_datasets=n_datasets, workers=workers, tasks=text, steal=str(steal).lower()))


def processes(task_id: str, what: str) -> list[int]:
    """The pid of every ``what`` ("train" or "cell") event of a task, one per event."""
    import affinity_cells

    return sorted(int(p.name.rsplit(".", 1)[1]) for p in affinity_cells.LOG.glob(f"{task_id}.{what}.*"))


def stable_tables(db) -> dict[str, pd.DataFrame]:
    with ResultStore(db, read_only=True) as store:
        return {name: store.table(name, stable=True) for name in TABLES}


def test_the_plan_is_greedy_on_cells_in_config_order():
    assert plan_workers({"a": 3, "b": 3, "c": 3}, 2) == ([1, 1], {"a": 0, "b": 1, "c": 0})
    assert plan_workers({"a": 5, "b": 1, "c": 1}, 2) == ([1, 1], {"a": 0, "b": 1, "c": 1})
    assert plan_workers({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}, 3) == ([1, 1, 1], {"a": 0, "b": 1, "c": 2, "d": 0, "e": 1})
    assert plan_workers({"a": 4, "b": 4}, 1) == ([1], {"a": 0, "b": 0})
    assert plan_workers({}, 4) == ([], {})
    cells = {"a": 3, Cell("b", 0): 1, Cell("b", 1): 1, Cell("b", 2): 1, Cell("b", 3): 1}  # b trains nothing
    assert plan_workers(cells, 2) == ([1, 1], {"a": 0, Cell("b", 0): 1, Cell("b", 1): 1, Cell("b", 2): 1, Cell("b", 3): 0})


def test_fewer_tasks_than_workers_split_the_busiest_and_never_beyond_its_cells():
    assert plan_workers({"a": 4}, 2) == ([2], {"a": 0})
    assert plan_workers({"a": 1}, 2) == ([1], {"a": 0})  # the second worker idles
    assert plan_workers({"a": 4, "b": 2}, 5) == ([3, 2], {"a": 0, "b": 1})
    assert plan_workers({"a": 1, "b": 1}, 4) == ([1, 1], {"a": 0, "b": 1})
    assert plan_workers({"a": 2, "b": 2}, 3) == ([2, 1], {"a": 0, "b": 1})  # ties: the first


def test_each_task_trains_in_one_process_and_the_store_matches_one_worker(ids, tmp_path):
    import affinity_cells

    tasks = [("pid_chain", task_id) for task_id in ids[:3]]
    cfg = config(tasks, 3, workers=1)
    one = run_benchmark(cfg, tmp_path / "one.duckdb", memory_limit="off")
    for task_id in ids[:3]:  # in-process: the driver ran everything
        assert len(set(processes(task_id, "train"))) == 1 and len(processes(task_id, "cell")) == 3
        for path in affinity_cells.LOG.glob(f"{task_id}.*"):
            path.unlink()
    two = run_benchmark(cfg.with_executor(workers=2), tmp_path / "two.duckdb", memory_limit="off")  # the same config text
    assert (one.n_done, two.n_done, two.n_failed) == (9, 9, 0)
    trained = {task_id: processes(task_id, "train") for task_id in ids[:3]}
    cells = {task_id: processes(task_id, "cell") for task_id in ids[:3]}
    assert all(len(pids) == 1 for pids in trained.values()), trained  # each task trained once
    assert all(set(cells[t]) == set(trained[t]) and len(cells[t]) == 3 for t in cells), cells  # where it trained
    assert trained[ids[0]] == trained[ids[2]] != trained[ids[1]]  # tasks 0 and 2 on one worker, 1 on the other
    left, right = stable_tables(tmp_path / "one.duckdb"), stable_tables(tmp_path / "two.duckdb")
    for name in TABLES:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=True, obj=name)


def test_a_single_task_uses_every_worker(ids, tmp_path):
    summary = run_benchmark(config([("pid_chain", ids[0])], 4, workers=2), tmp_path / "s.duckdb", memory_limit="off")
    assert summary.n_done == 4
    assert len(processes(ids[0], "cell")) == 4 and len(set(processes(ids[0], "train"))) in (1, 2)  # 2 when both got a cell


def test_the_cells_of_a_task_that_trains_nothing_are_spread(ids, tmp_path):
    summary = run_benchmark(config([("pid_chain_free", ids[0])], 4, workers=2), tmp_path / "f.duckdb", memory_limit="off")
    assert summary.n_done == 4
    free = processes(ids[0], "cell")
    assert [free.count(pid) for pid in sorted(set(free))] == [2, 2]  # one by one, to the worker with fewer cells
    tasks = [("pid_chain", ids[1]), ("pid_chain_free", ids[2])]
    summary = run_benchmark(config(tasks, 4, workers=2), tmp_path / "m.duckdb", memory_limit="off")
    assert summary.n_done == 8
    trained, free = processes(ids[1], "cell"), processes(ids[2], "cell")
    assert len(set(trained)) == 1 and len(set(free)) == 1 and set(trained) != set(free)  # 4 cells each


def test_a_dead_worker_fails_only_the_cells_of_its_pool(ids, tmp_path):
    summary = run_benchmark(config([("pid_chain", ids[0]), ("faulty_chain", "sigkill")], 2, workers=2), tmp_path / "d.duckdb", memory_limit="off")
    assert (summary.n_done, summary.n_failed) == (2, 2)
    assert [(cell.task, error.split(":")[0]) for cell, error in summary.failures] == [("sigkill", "WorkerDied")] * 2
    assert len(set(processes(ids[0], "train"))) == 1


def test_cells_submitted_while_iterating_are_picked_up_and_a_late_task_is_placed(ids):
    cfg = config([("pid_chain", task_id) for task_id in ids[:3]], 2, workers=2)
    seen: list[Cell] = []
    with LocalExecutor(2) as executor:
        executor.submit(cfg, Cell(ids[0], 0))
        executor.submit(cfg, Cell(ids[1], 0))
        for outcome in executor.completed():
            assert outcome.ok, outcome.error
            seen.append(outcome.cell)
            if outcome.cell == Cell(ids[0], 0):
                executor.submit(cfg, Cell(ids[0], 1))  # a retry, say: its task's worker
                executor.submit(cfg, Cell(ids[2], 0))  # a task the plan did not know
        assert executor.assignment == {ids[0]: 0, ids[1]: 1, ids[2]: executor.assignment[ids[2]]}
    assert sorted(seen) == sorted([Cell(ids[0], 0), Cell(ids[1], 0), Cell(ids[0], 1), Cell(ids[2], 0)])
    assert len(set(processes(ids[0], "cell"))) == 1


def test_steal_choice_takes_a_cell_only_when_the_measured_costs_say_the_run_ends_sooner():
    cell_s, train_s = {"a": 10.0, "b": 1.0}, {"a": 30.0}
    four_a = [("a", "a")] * 4
    # pool 0 needs 5 + 4 x 10 = 45 s more; the idle pool 1 trains a (30 s) and runs a cell (10 s): 40 < 45
    assert steal_choice([four_a, []], [5.0, 0.0], [1, 1], 1, set(), cell_s, train_s) == (0, 3)  # the last cell
    assert steal_choice([four_a[:3], []], [5.0, 0.0], [1, 1], 1, set(), cell_s, train_s) is None  # 35 s < 40 s
    assert steal_choice([four_a[:1], []], [5.0, 0.0], [1, 1], 1, {"a"}, cell_s, train_s) == (0, 0)  # trained: 15 > 10
    assert steal_choice([four_a, []], [5.0, 0.0], [2, 1], 1, set(), cell_s, train_s) is None  # two processes: 22.5 s
    assert steal_choice([[("c", "c")] * 9, []], [0.0, 0.0], [1, 1], 1, set(), cell_s, train_s) is None  # unknown cost
    assert steal_choice([[], []], [99.0, 0.0], [1, 1], 1, set(), cell_s, train_s) is None  # nothing waits
    # the largest gain wins: a cell of a task that trains nothing (its unit a cell, no training) over a's
    mixed = [("a", "a"), ("a", "a"), (Cell("b", 0), "b"), (Cell("b", 1), "b")]
    assert steal_choice([mixed, []], [40.0, 0.0], [1, 1], 1, set(), cell_s, train_s) == (0, 3)
    assert steal_choice([[], four_a], [0.0, 50.0], [1, 1], 0, set(), cell_s, train_s) == (1, 3)  # any pool steals
    assert steal_choice([[("a", None)] * 9, []], [50.0, 0.0], [1, 1], 1, set(), cell_s, train_s) is None  # a deadly task


def test_an_idle_worker_steals_waiting_cells_and_the_store_does_not_change(ids, tmp_path):
    """Two tasks of four cells on two workers: the fast one (pid_chain) finishes first, while the slow one
    (each cell sleeps 1 s in its inputs stage) still has cells waiting: the idle worker trains the slow task
    too and takes its last cell(s). The store is the same as without stealing."""
    tasks = [("pid_chain_slow", ids[0]), ("pid_chain", ids[1])]
    cfg = config(tasks, 4, workers=2, steal=True)
    with make_executor(cfg) as executor:
        assert isinstance(executor, LocalExecutor) and executor.steal
    summary = run_benchmark(cfg, tmp_path / "steal.duckdb", memory_limit="off")
    assert (summary.n_done, summary.n_failed) == (8, 0)
    slow, fast = processes(ids[0], "cell"), processes(ids[1], "cell")
    assert len(set(fast)) == 1
    assert len(set(slow)) == 2 and len(set(processes(ids[0], "train"))) == 2, slow  # trained again where stolen
    assert set(fast) <= set(slow)  # the fast task's worker took some of the slow task's cells
    import affinity_cells

    for path in affinity_cells.LOG.glob(f"{ids[0]}.*"):
        path.unlink()
    still = run_benchmark(cfg.with_executor(steal=False), tmp_path / "still.duckdb", memory_limit="off")  # the same text
    assert still.n_done == 8 and len(set(processes(ids[0], "cell"))) == 1
    left, right = stable_tables(tmp_path / "steal.duckdb"), stable_tables(tmp_path / "still.duckdb")
    for name in TABLES:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=True, obj=name)


def test_a_pool_that_broke_while_a_cell_finished_takes_no_new_cell_until_it_is_replaced(monkeypatch):
    """One wait() returns a finished cell and a cell whose worker died: the finished one is handled first
    and its pool (already broken) must not be handed the next waiting cell, which would raise; the cell
    waits for the replacement pool instead. No cell is lost, none runs twice."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    import opelab.bench.executors as ex
    from opelab.bench.runner import CellOutcome

    pools = []

    class FakePool:  # the first pool: cell 0 finishes, cell 1's worker dies; later pools finish everything
        def __init__(self, processes, **_):
            self._broken, self._processes, self.cells = False, {}, []
            pools.append(self)

        def submit(self, fn, config, cell):
            if self._broken:
                raise BrokenProcessPool("submit to a broken pool")
            future = Future()
            self.cells.append(cell.dataset)
            if len(pools) == 1 and cell.dataset == 1:
                self._broken = True
                future.set_exception(BrokenProcessPool("a worker died"))
            else:
                future.set_result(CellOutcome(cell, SimpleNamespace(seconds={"collect": 0.0, "truth": 0.0}), None, None, 1.0))
            return future

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    monkeypatch.setattr(ex, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(ex, "task_trains", lambda config, task: True)
    executor = ex.LocalExecutor(2)
    for dataset in range(4):
        executor.submit(None, Cell("a", dataset))
    outcomes = {o.cell.dataset: o.ok for o in executor.completed()}
    assert outcomes == {0: True, 1: False, 2: True, 3: True}
    assert [pool.cells for pool in pools] == [[0, 1], [2, 3]]
