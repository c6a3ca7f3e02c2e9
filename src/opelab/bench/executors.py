"""Where cells run, and the driver that feeds them and writes the store.

- ``InProcessExecutor``: cells one after another in this process (``local`` with one worker; debuggable).
- ``LocalExecutor``: N worker processes with task affinity, started by a fork server that imported opelab
  once (``spawn`` where there is none): no state inherited from the driver, and no per-worker import cost.
  Every cell of a task that trains (``TaskShape.learned``, or sizes unknown) goes to the same worker, so
  what the task trains and its ground truth (minutes of d3rlpy, cached per process:
  ``opelab.bench.learned``) are computed in one process, not in each; the cells of a task that trains
  nothing (tabular, bandit) are placed one by one. ``plan_workers`` assigns these units (a training task
  with all its cells, or one cell): with at least as many units as workers, each in config order to the
  worker with the fewest cells so far, one ``ProcessPoolExecutor`` of one process per worker; with fewer,
  one pool per unit and the spare workers to the training tasks with the most cells per process, so that
  no worker idles while a task has cells waiting (the price: such a task trains once per process of its
  pool). Workers beyond the cells idle. Work stealing (``steal``, on by default): each pool gets one cell
  per process at a time and the rest wait in the driver, so a worker that finished its cells can take a
  waiting cell of another worker, training that task again, when the costs measured so far in the run say
  the run ends sooner that way (``steal_choice``).
- ``RayExecutor``: Ray tasks of one CPU each, on an existing cluster (``address``) or a local one started
  with ``ray.init(num_cpus=workers)``. ``ray`` is imported only here, only when chosen (the ``[ray]`` extra).

Workers compute; only the driver (``run_benchmark``) writes, one transaction per finished cell. A failed
attempt is resubmitted up to ``retries`` times (to its task's worker), then recorded as failed with its
error (one line, never empty; a dead worker is described by its signal); the other cells go on. A dead
worker breaks only its own pool: the cells running there fail that attempt, and a fresh pool takes the
rest. Worker processes run single-threaded numerical libraries (OMP_NUM_THREADS=1,
torch.set_num_threads(1)): parallelism comes from the cells, and N workers × M threads each would
oversubscribe the cores.

Before any cell starts, ``run_benchmark`` compares an estimate of the memory the run needs (the largest
cell, ``runner.cell_memory``, times the cells that run at once) with the memory available
(``opelab.resources.check_memory``; override with ``memory_limit`` or ``OPELAB_MEMORY_LIMIT``). Cells on a
Ray cluster given by ``address`` run on its machines and are not checked here.

No orphans: a pool worker watches the driver (its pid and start time, every ``WATCHDOG_INTERVAL_S``) and
exits when it is gone, even after a SIGKILL that let no cleanup run; on Linux it also dies with its parent
(``PR_SET_PDEATHSIG``). The workers hold the fork server's and the resource tracker's pipes, so once they
are gone those two see end-of-file and exit too. A local Ray cluster started by ``ray.init`` shares the
driver's fate through Ray's own mechanism: its GCS, raylet and task workers exit within seconds of a
SIGKILL, its dashboard and runtime-env agents about a minute later, when they notice the raylet is gone
(measured with Ray 2.60; nothing to add here). A cluster given by ``address`` outlives the driver, and Ray
cancels the dead driver's tasks there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opelab.bench.config import BenchmarkConfig
from opelab.bench.runner import Cell, CellOutcome, cell_memory, describe_error, execute_cell, expand
from opelab.bench.tasks import find_family
from opelab.resources import THREAD_VARIABLES, ResourceError, check_memory, format_bytes, single_threaded_children

__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "LocalExecutor",
    "RayExecutor",
    "RunSummary",
    "check_benchmark_memory",
    "make_executor",
    "plan_workers",
    "run_benchmark",
    "steal_choice",
]


def limit_threads() -> None:
    """One thread for the numerical libraries of this (worker) process: env vars for those not loaded yet,
    torch if loaded, and the BLAS pools through threadpoolctl when it is installed."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


WATCHDOG_INTERVAL_S = 0.5  # how often a worker checks that its driver still runs
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None without one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started (Linux: field 22 of ``/proc/<pid>/stat``, clock ticks since boot), to tell
    it from a later process that reuses its pid; None where there is no ``/proc`` or no such process."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def process_alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` (``process_start_time``) still runs: not
    gone, not a zombie, not another process with its pid."""
    if started is not None:
        fields = _stat_fields(pid)
        return fields is not None and fields[0] not in ("Z", "X", "x") and fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the pid now
        return False
    return True


def _watch_driver(pid: int, started: str | None) -> None:
    while process_alive(pid, started):
        time.sleep(WATCHDOG_INTERVAL_S)
    os._exit(1)  # the driver is gone: nobody will read this worker's results


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent (the fork server, or the driver under spawn) dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def init_worker(driver_pid: int, driver_started: str | None) -> None:
    """A pool worker's initializer: one thread per numerical library, no life after the driver's, and
    SIGINT ignored: Ctrl-C reaches the terminal's whole process group, and the driver alone answers it
    (``Executor.__exit__`` stops the workers), so no cell ends as a failure because the user interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads()
    _die_with_parent()
    watchdog = threading.Thread(target=_watch_driver, args=(driver_pid, driver_started), name="opelab-driver-watchdog", daemon=True)
    watchdog.start()


class Executor(ABC):
    """Runs cells: ``submit`` them, then iterate ``completed()`` for outcomes as they finish (cells
    submitted while iterating are picked up too). Use as a context manager."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # an error or Ctrl-C in the driver: what is running will not be recorded, so do not wait for it
            self.abort()

    def close(self) -> None:
        """Release workers."""

    def abort(self) -> None:
        """Stop the workers without waiting for their running cells (the driver is giving up)."""
        self.close()

    @abstractmethod
    def submit(self, config: BenchmarkConfig, cell: Cell) -> None: ...

    @abstractmethod
    def completed(self) -> Iterator[CellOutcome]: ...


class InProcessExecutor(Executor):
    """Cells run here, in submission order."""

    def __init__(self) -> None:
        self._queue: deque[tuple[BenchmarkConfig, Cell]] = deque()

    def submit(self, config: BenchmarkConfig, cell: Cell) -> None:
        self._queue.append((config, cell))

    def completed(self) -> Iterator[CellOutcome]:
        while self._queue:
            config, cell = self._queue.popleft()
            yield execute_cell(config, cell)


def _failed(cell: Cell, exc: BaseException, description: str | None = None) -> CellOutcome:
    return CellOutcome(cell, None, description or describe_error(exc), None, 0.0)


def describe_exit(exitcode: int | None) -> str:
    """How a worker process ended, for people: "killed by SIGKILL", "exit code 3", "an unknown cause"."""
    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}" + (", e.g. by the kernel's out-of-memory killer" if -exitcode == signal.SIGKILL else "")
    return f"exit code {exitcode}"


def _dead_worker(processes: dict[int, Any]) -> str:
    """Why a broken pool broke: the exit of the worker that died first (the pool terminates the others
    afterwards with SIGTERM). ``processes`` is the pool's process table (a CPython detail: unknown without
    it), read once the pool's manager thread has joined them all: two threads reading a fork-server
    worker's exit status at once garble it."""
    codes = [p.exitcode for p in processes.values()]
    died = [c for c in codes if c not in (None, 0, -signal.SIGTERM)] or [c for c in codes if c == -signal.SIGTERM]
    cause = describe_exit(died[0]) if died else "killed or out of memory"
    return f"WorkerDied: the worker process died ({cause}) while this cell was running or queued; the pool was restarted"


def plan_workers(loads: dict[Hashable, int], workers: int) -> tuple[list[int], dict[Hashable, int]]:
    """Task affinity for ``workers`` processes: the number of processes of each pool, and each unit's pool.

    ``loads``: the cells of each unit (a task that trains, by id; or one cell of a task that trains
    nothing, with load 1), in config order. The cost proxy is the number of cells: a config gives every
    task the same number of datasets, so on a fresh run the training tasks go round robin; on a resumed
    one it counts the cells left. With at least as many units as workers there are ``workers`` pools of
    one process, and each unit in turn goes to the pool with the least load so far (ties: the first). With
    fewer there is one pool per unit, and each spare worker in turn goes to the unit with the most cells
    per process (ties: the first), never more processes than cells: the extra workers of a task split its
    cells and each trains it again, which costs CPU time that would otherwise be idle. Workers beyond
    that idle.
    """
    units = list(loads)
    if not units:
        return [], {}
    if len(units) >= workers:
        sizes, load = [1] * workers, [0] * workers
        group_of: dict[Hashable, int] = {}
        for unit in units:
            group = min(range(workers), key=load.__getitem__)
            group_of[unit] = group
            load[group] += loads[unit]
        return sizes, group_of
    sizes = [1] * len(units)
    for _ in range(workers - len(units)):
        open_ = [g for g, unit in enumerate(units) if sizes[g] < loads[unit]]
        if not open_:
            break
        sizes[max(open_, key=lambda g: loads[units[g]] / sizes[g])] += 1
    return sizes, {unit: g for g, unit in enumerate(units)}


def task_trains(config: BenchmarkConfig, task_id: str) -> bool:
    """Whether a task trains what its cells share (``TaskShape.learned``), so that its cells belong in one
    process; True when its family cannot tell (no shape)."""
    try:
        task = config.task(task_id)
        family = find_family(task.name)
        shape = None if family is None else family.shape(task)
    except Exception:  # noqa: BLE001 - unknown: keep the task's cells together
        return True
    return shape is None or shape.learned


def steal_choice(
    backlogs: Sequence[Sequence[tuple[Hashable, str | None]]],
    busy_s: Sequence[float],
    sizes: Sequence[int],
    thief: int,
    ran: Collection[Hashable],
    cell_s: Mapping[str, float],
    train_s: Mapping[str, float],
) -> tuple[int, int] | None:
    """The waiting cell an idle pool ``thief`` should take from another pool: (pool, position in its
    backlog), or None to take nothing.

    ``backlogs[h]``: the (unit, task id) of each cell waiting for pool h, in order; ``busy_s[h]``: the
    seconds its running cells still need (estimated); ``ran``: the units the thief's processes have run
    (what they trained is cached there); ``cell_s`` and ``train_s``: the measured seconds of one cell of a
    task (without what it trains) and of what a training task trains. Pool h would finish its work in
    R_h = (busy_s[h] + Σ cell_s of its backlog) / sizes[h] seconds; the thief finishes a cell of task t in
    cell_s[t], plus train_s[t] when its unit is a training task it has not run. The choice is the cell
    with the largest R_h minus that cost, if positive: taking it can only bring the end of the run closer.
    Among a backlog's cells of one unit the last is taken (and of equal gains, the later cell); a task with
    no finished cell (unknown cost), or given as None, is never taken (and adds nothing to R_h).
    """
    best, choice = 0.0, None
    for h, backlog in enumerate(backlogs):
        if h == thief or not backlog:
            continue
        remaining = (busy_s[h] + sum(cell_s.get(task, 0.0) for _, task in backlog)) / sizes[h]
        last = {unit: i for i, (unit, _) in enumerate(backlog)}
        for unit, i in sorted(last.items(), key=lambda item: -item[1]):  # ties: the later cell
            task = backlog[i][1]
            if task not in cell_s:
                continue
            cost = cell_s[task] + (0.0 if unit in ran else train_s.get(task, 0.0))
            if remaining - cost > best:
                best, choice = remaining - cost, (h, i)
    return choice


class LocalExecutor(Executor):
    """``workers`` processes with task affinity (``plan_workers``): one process pool per group of workers,
    every cell of a task that trains in its group's pool; a pool broken by a dying worker is replaced.

    Cells submitted before ``completed()`` is first iterated are planned together (their tasks and cell
    counts); a unit first submitted later goes to the pool with the fewest cells submitted so far. A cell
    submitted again (a retry) goes to the pool of its first attempt's unit.

    Each pool is handed only as many cells as it has processes; the rest wait here, in order. With
    ``steal`` (the default), an idle pool of one process that has run out of cells takes a waiting cell of
    another pool when the costs measured so far in the run say it finishes sooner (``steal_choice``): the
    task then trains again in the thief's process, which pays off when its waiting cells outlast that
    training. Costs: a cell that trained (the first of its unit in a process) counts its collect and truth
    stages as the task's training and the rest as its own work; any other cell counts its whole wall time.
    Never stolen: cells of a task whose worker died (they could take the thief's pool down with them).
    Results do not depend on where a cell runs (every seed is the cell's). ``stolen`` lists the cells
    taken, with the pool that took each.
    """

    def __init__(self, workers: int, steal: bool = True) -> None:
        import multiprocessing

        self.workers = workers
        self.steal = steal
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if self._context.get_start_method() == "forkserver":  # import once in the server, fork workers from it
            self._context.set_forkserver_preload(["opelab.bench.runner"])
        self._waiting: list[tuple[BenchmarkConfig, Cell]] = []  # submitted before the plan
        self._sizes: list[int] = []  # processes per pool, once planned
        self._pools: list[ProcessPoolExecutor | None] = []
        self._group_of: dict[Hashable, int] = {}  # unit (a training task's id, or a cell) -> pool index
        self._trains: dict[str, bool] = {}  # task id -> task_trains
        self._submitted: list[int] = []  # cells submitted to each pool
        self._backlog: list[deque[tuple[BenchmarkConfig, Cell]]] = []  # cells waiting for each pool
        self._running: list[int] = []  # cells each pool is running
        self._ran: list[Counter[Hashable]] = []  # cells of each unit started in each pool's current processes
        self._futures: dict[Future[CellOutcome], tuple[Cell, int, ProcessPoolExecutor, float, bool]] = {}
        self._deadly: set[str] = set()  # tasks with a cell whose worker died
        self._broken: dict[ProcessPoolExecutor, str] = {}  # broken pools and why they broke
        self._cell_s: dict[str, list[float]] = {}  # task id -> seconds of its finished cells, without training
        self._train_s: dict[str, float] = {}  # training task id -> seconds of its training (collect + truth)
        self.stolen: list[tuple[Cell, int]] = []

    @property
    def assignment(self) -> dict[Hashable, int]:
        """Each placed unit's pool index: a training task by id, a cell of any other task by itself (empty
        before the plan). Cells taken by another pool (``stolen``) keep their unit's entry."""
        return dict(self._group_of)

    def _unit(self, config: BenchmarkConfig, cell: Cell) -> Hashable:
        if cell.task not in self._trains:
            self._trains[cell.task] = task_trains(config, cell.task)
        return cell.task if self._trains[cell.task] else cell

    def _plan(self) -> None:
        waiting, self._waiting = self._waiting, []
        loads = Counter(self._unit(config, cell) for config, cell in waiting)  # in submission (config) order
        self._sizes, self._group_of = plan_workers(dict(loads), self.workers)
        self._pools = [None] * len(self._sizes)
        self._submitted = [0] * len(self._sizes)
        self._backlog = [deque() for _ in self._sizes]
        self._running = [0] * len(self._sizes)
        self._ran = [Counter() for _ in self._sizes]
        for config, cell in waiting:
            self._dispatch(config, cell)

    def _pool(self, group: int) -> ProcessPoolExecutor:
        pool = self._pools[group]
        if pool is None:
            driver = (os.getpid(), process_start_time(os.getpid()))
            pool = ProcessPoolExecutor(self._sizes[group], mp_context=self._context, initializer=init_worker, initargs=driver)
            self._pools[group] = pool
        return pool

    def _dispatch(self, config: BenchmarkConfig, cell: Cell) -> None:
        unit = self._unit(config, cell)
        group = self._group_of.get(unit)
        if group is None:  # a unit first submitted after the plan
            group = self._group_of[unit] = min(range(len(self._sizes)), key=self._submitted.__getitem__)
        self._backlog[group].append((config, cell))
        self._submitted[group] += 1
        self._fill(group)

    def _fill(self, group: int) -> None:
        while self._running[group] < self._sizes[group] and self._backlog[group]:
            config, cell = self._backlog[group].popleft()
            if not self._start(group, config, cell):
                self._backlog[group].appendleft((config, cell))
                break

    def _start(self, group: int, config: BenchmarkConfig, cell: Cell) -> bool:
        """Submit ``cell`` to ``group``'s pool; False (nothing submitted) when that pool broke and its
        failed cells have not come back yet: they will, and the pool's replacement takes the cell then."""
        unit = self._unit(config, cell)
        # the first cells of a unit in a pool, one per process, train it there
        first = self._trains[cell.task] and self._ran[group][unit] < self._sizes[group]
        pool = self._pool(group)
        if getattr(pool, "_broken", False):
            return False
        try:
            with single_threaded_children():  # workers start on submit
                future = pool.submit(execute_cell, config, cell)
        except BrokenProcessPool:
            return False
        self._futures[future] = (cell, group, pool, time.monotonic(), first)
        self._running[group] += 1
        self._ran[group][unit] += 1
        return True

    def _measure(self, outcome: CellOutcome, first: bool) -> None:
        """Record a finished cell's cost (the class docstring): a cell that trained counts its collect and
        truth stages (where the task's training and ground truth land, with its own small collection) as
        the task's training, and the rest as its own work; any other cell its whole wall time."""
        if outcome.result is None:
            return
        task = outcome.cell.task
        shared = 0.0
        if first:
            seconds = outcome.result.seconds
            shared = float(seconds.get("collect", 0.0) + seconds.get("truth", 0.0))
            self._train_s[task] = max(self._train_s.get(task, 0.0), shared)
        self._cell_s.setdefault(task, []).append(max(0.0, outcome.wall_s - shared))

    def _rebalance(self) -> None:
        """Let every idle one-process pool with nothing waiting take one cell from the others (``steal``)."""
        if not self.steal:
            return
        cell_s = {task: sum(times) / len(times) for task, times in self._cell_s.items()}
        now = time.monotonic()
        for thief in range(len(self._sizes)):
            # one process, idle: nothing else of the thief's can fail with a stolen cell or wait behind it
            if self._sizes[thief] != 1 or self._running[thief] or self._backlog[thief]:
                continue
            busy = [0.0] * len(self._sizes)
            for cell, group, _, started, first in self._futures.values():
                expected = cell_s.get(cell.task, 0.0) + (self._train_s.get(cell.task, 0.0) if first else 0.0)
                busy[group] += max(0.0, expected - (now - started))
            backlogs = [
                [(self._unit(config, cell), cell.task if cell.task not in self._deadly else None) for config, cell in queue]
                for queue in self._backlog
            ]  # a task whose worker died has no cost to go by: never taken
            choice = steal_choice(backlogs, busy, self._sizes, thief, set(self._ran[thief]), cell_s, self._train_s)
            if choice is None:
                continue
            victim, position = choice
            config, cell = self._backlog[victim][position]
            del self._backlog[victim][position]
            if self._start(thief, config, cell):
                self.stolen.append((cell, thief))
            else:  # the thief's pool broke: the cell stays where it was
                self._backlog[victim].insert(position, (config, cell))

    def submit(self, config: BenchmarkConfig, cell: Cell) -> None:
        if not self._sizes:
            self._waiting.append((config, cell))
        else:
            self._dispatch(config, cell)

    def completed(self) -> Iterator[CellOutcome]:
        if not self._sizes and self._waiting:
            self._plan()
        while self._futures:
            done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
            for future in done:
                cell, group, pool, _, first = self._futures.pop(future)
                self._running[group] -= 1
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory): new pool for its group
                    if pool not in self._broken:
                        processes = dict(getattr(pool, "_processes", None) or {})
                        pool.shutdown(wait=True, cancel_futures=True)  # its manager thread joins every worker
                        self._broken[pool] = _dead_worker(processes)
                        if self._pools[group] is pool:
                            self._pools[group] = None
                            self._ran[group] = Counter()  # the new pool's processes have trained nothing
                    self._deadly.add(cell.task)
                    outcome = _failed(cell, exc, self._broken[pool])
                else:
                    self._measure(outcome, first)
                self._fill(group)
                self._rebalance()
                yield outcome

    def close(self) -> None:
        self._broken.clear()
        self._waiting.clear()
        for queue in self._backlog:
            queue.clear()
        for group, pool in enumerate(self._pools):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                self._pools[group] = None

    def abort(self) -> None:
        """Terminate every worker (SIGTERM), then release the pools: their running cells are lost, which
        is what the driver wants when it is interrupted (finished cells are already in the store).

        A worker killed halfway through sending a result would leave the pool's manager thread waiting
        for the rest of it forever (the driver holds a copy of the result pipe's writing end), and the
        shutdown with it; closing the driver's copy (a CPython detail, like ``_processes``) turns that
        wait into end-of-file, which the pool handles as a broken pool once the workers are gone."""
        for pool in self._pools:
            if pool is None:
                continue
            for process in list((getattr(pool, "_processes", None) or {}).values()):  # a CPython detail
                if process.is_alive():
                    process.terminate()
            writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
            if writer is not None:
                try:
                    writer.close()
                except OSError:
                    pass
        self._futures.clear()
        self.close()


def _ray_execute(config: BenchmarkConfig, cell: Cell) -> CellOutcome:
    limit_threads()
    return execute_cell(config, cell)


class RayExecutor(Executor):
    """Ray tasks (one CPU each). Connects to ``address`` when given, reuses a Ray runtime this process
    already started, or starts a local one with ``workers`` CPUs (and shuts down only what it started)."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("executor: expected the ray package for --executor ray (pip install 'opelab[ray]'), found it missing") from None
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, logging_level="WARNING")
            else:
                with single_threaded_children():
                    ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
            self._owned = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
        self._refs: dict[Any, Cell] = {}
        self._config_refs: dict[int, Any] = {}

    def submit(self, config: BenchmarkConfig, cell: Cell) -> None:
        key = id(config)
        if key not in self._config_refs:  # the config travels to the object store once
            self._config_refs[key] = (config, self._ray.put(config))
        self._refs[self._remote.remote(self._config_refs[key][1], cell)] = cell

    def completed(self) -> Iterator[CellOutcome]:
        while self._refs:
            ready, _ = self._ray.wait(list(self._refs), num_returns=1)
            cell = self._refs.pop(ready[0])
            try:
                yield self._ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a dead worker or a lost task is a failed attempt
                yield _failed(cell, exc)

    def close(self) -> None:
        self._config_refs.clear()
        if self._owned:
            self._ray.shutdown()
            self._owned = False

    def abort(self) -> None:
        """Cancel the cells still running or queued, by force (a Ray runtime this executor reuses, or a
        cluster while this driver lives on, would otherwise run them to the end), then release what this
        executor started."""
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone: nothing to stop
                pass
        self._refs.clear()
        self.close()


EXECUTORS = ("local", "ray")


def make_executor(config: BenchmarkConfig) -> Executor:
    """The executor a config asks for (``local`` with one worker runs in-process)."""
    ex = config.executor
    if ex.kind == "ray":
        return RayExecutor(ex.workers, ex.address)
    if ex.kind != "local":
        raise ValueError(f"executor.kind: expected one of {list(EXECUTORS)}, found {ex.kind!r}")
    return InProcessExecutor() if ex.workers == 1 else LocalExecutor(ex.workers, steal=ex.steal)


@dataclass(frozen=True)
class RunSummary:
    """What ``run_benchmark`` did: the run id, cells in the grid, skipped (already done), done, failed, and
    the failed cells with their errors in grid order (``first_error`` is the first one's, for a final line)."""

    run_id: int
    n_cells: int
    n_skipped: int
    n_done: int
    n_failed: int
    wall_s: float
    failures: tuple[tuple[Cell, str], ...] = ()

    @property
    def first_error(self) -> str | None:
        """``task dataset d: Type: message`` of the first failed cell in grid order, or None."""
        if not self.failures:
            return None
        cell, error = self.failures[0]
        return f"{cell.task} dataset {cell.dataset}: {error}"


def check_benchmark_memory(config: BenchmarkConfig, cells: list[Cell], *, limit: int | str | None = None) -> int | None:
    """Refuse (``ResourceError``) a run whose cells cannot fit: the largest per-cell estimate
    (``runner.cell_memory``) among the tasks of ``cells``, times the cells that run at once (workers, at most
    the cells), against ``opelab.resources.check_memory(limit=...)``. Returns the estimate (None: nothing to
    check: no cells, tasks of unknown sizes, or a Ray cluster given by address)."""
    ex = config.executor
    if not cells or (ex.kind == "ray" and ex.address):
        return None
    tasks = {cell.task for cell in cells}
    estimates = {t.id: m for t in config.tasks if t.id in tasks and (m := cell_memory(config, t)) is not None}
    if not estimates:
        return None
    worst = max(estimates, key=lambda task_id: estimates[task_id][0])
    per_cell, shape = estimates[worst]
    concurrent = min(ex.workers, len(cells))
    task = config.task(worst)
    actions = f"{shape.n_actions} actions" if shape.n_actions is not None else f"{shape.action_dim}-dimensional actions"
    bootstrap = f", n_bootstrap = {config.intervals.n_bootstrap}" if config.intervals.method == "bootstrap" else ""
    what = (
        f"{concurrent} cell(s) at once of task {worst!r} (about {format_bytes(per_cell)} each: n_trajectories = "
        f"{task.n_trajectories}, horizon {shape.horizon}, {shape.n_policies} policies, {actions}{bootstrap})"
    )
    try:
        advice = "lower n_trajectories, n_bootstrap or the workers"
        check_memory(concurrent * per_cell, what, limit=limit, advice=advice)
    except ResourceError as exc:
        raise ResourceError(f"{config.source}: {exc}") from None
    return concurrent * per_cell


class _Progress:
    """Rich progress bars (all cells, and one per task) with an ETA; silent when disabled."""

    def __init__(self, config: BenchmarkConfig, pending: list[Cell], console: Any | None, enabled: bool) -> None:
        self.bars: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.total = self.bars.add_task(f"{config.name}: all cells", total=len(pending))
        self.per_task = {t.id: self.bars.add_task(f"  {t.id}", total=sum(c.task == t.id for c in pending)) for t in config.tasks}
        self.failed = 0
        self.bars.start()

    def advance(self, outcome: CellOutcome, final: bool) -> None:
        if self.bars is None or not final:
            return
        if not outcome.ok:
            self.failed += 1
            self.bars.update(self.total, description=f"all cells ({self.failed} failed)")
        self.bars.advance(self.total)
        self.bars.advance(self.per_task[outcome.cell.task])

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()


def run_benchmark(
    config: BenchmarkConfig,
    db: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = False,
    console: Any | None = None,
    progress_file: str | os.PathLike[str] | None = None,
    memory_limit: int | str | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Run every cell of ``config`` and store the results in the DuckDB file ``db``.

    ``resume``: continue the latest run of the same config text in ``db``, skipping its finished (done)
    cells; failed cells run again. Without it a new run is recorded. ``progress`` shows rich progress bars;
    ``progress_file`` gets one JSON line per recorded cell (after its transaction committed), for scripts.
    Before any cell runs (and, for a new run, before ``db`` is touched) the memory estimate is checked
    (``check_benchmark_memory``): ``memory_limit`` (bytes or ``"16G"``; ``"off"``: no check) replaces the
    available memory, as ``OPELAB_MEMORY_LIMIT`` does. ``on_start`` is called once every check has passed
    (the store is opelab's, a resumed run exists, the memory fits), just before the cells are submitted.
    """
    from opelab.bench.store import ResultStore

    start = time.perf_counter()
    if resume and not Path(db).exists():
        raise ValueError(f"--resume: expected a run of this config in {db}, found no such file (run it without --resume)")
    if not resume:
        check_benchmark_memory(config, expand(config), limit=memory_limit)
    with ResultStore(db) as store:
        run_id = store.find_run(config) if resume else None
        if resume and run_id is None:
            raise ValueError(f"--resume: expected a run of this config in {db}, found none (run it without --resume)")
        done = set(store.done_cells(run_id)) if run_id is not None else set()
        pending = [cell for cell in expand(config) if cell not in done]
        if resume:
            check_benchmark_memory(config, pending, limit=memory_limit)
        if run_id is None:
            run_id = store.start_run(config)
        if on_start is not None:
            on_start()
        attempts: dict[Cell, int] = {}
        failures: dict[Cell, str] = {}
        n_done = n_failed = 0
        bars = _Progress(config, pending, console, progress)
        log = open(progress_file, "a", encoding="utf-8") if progress_file is not None else None  # noqa: SIM115
        try:
            with make_executor(config) as executor:
                for cell in pending:
                    attempts[cell] = 1
                    executor.submit(config, cell)
                for outcome in executor.completed():
                    cell = outcome.cell
                    final = outcome.ok or attempts[cell] > config.executor.retries
                    if not final:
                        attempts[cell] += 1
                        executor.submit(config, cell)
                    else:
                        store.record(run_id, outcome, attempts[cell])
                        n_done, n_failed = n_done + outcome.ok, n_failed + (not outcome.ok)
                        if not outcome.ok:
                            failures[cell] = outcome.error or "the cell failed without an error (a bug)"
                        if log is not None:
                            status = "done" if outcome.ok else "failed"
                            log.write(json.dumps({"run_id": run_id, "task": cell.task, "dataset": cell.dataset, "status": status}) + "\n")
                            log.flush()
                    bars.advance(outcome, final)
        finally:
            bars.stop()
            if log is not None:
                log.close()
    return RunSummary(
        run_id=run_id,
        n_cells=len(expand(config)),
        n_skipped=len(done),
        n_done=n_done,
        n_failed=n_failed,
        wall_s=time.perf_counter() - start,
        failures=tuple((cell, failures[cell]) for cell in pending if cell in failures),  # grid order
    )

