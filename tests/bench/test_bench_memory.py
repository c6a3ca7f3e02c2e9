"""Memory before heavy work: ``opelab.resources`` (available memory, the check, the estimates) and the
benchmark's refusal of a run that cannot fit, before any cell starts."""

from __future__ import annotations

import re
import time
import tracemalloc

import pytest

from opelab import resources
from opelab.bench import Cell, parse_config, run_benchmark, run_cell
from opelab.bench.executors import check_benchmark_memory
from opelab.bench.runner import cell_memory
from opelab.resources import (
    DataSize,
    ResourceError,
    available_memory,
    check_memory,
    dataset_bytes,
    evaluate_bytes,
    format_bytes,
    memory_limit,
    parse_bytes,
)

GiB, MiB = 2**30, 2**20
CONFIG = """
n_datasets = {n_datasets}
n_trajectories = {n}
[intervals]
method = "bootstrap"
n_bootstrap = {B}
[executor]
workers = {workers}
[[tasks]]
name = "chain"
"""


def config(n: int = 40, B: int = 20, workers: int = 1, n_datasets: int = 1):  # type: ignore[no-untyped-def]
    return parse_config(CONFIG.format(n=n, B=B, workers=workers, n_datasets=n_datasets), source="mem.toml")


@pytest.fixture(autouse=True)
def no_limit_variable(monkeypatch):
    monkeypatch.delenv(resources.MEMORY_LIMIT_VARIABLE, raising=False)


# --------------------------------------------------------------------------- sizes as text
@pytest.mark.parametrize(
    "text, expected",
    [("16G", 16 * GiB), ("512M", 512 * MiB), ("512MiB", 512 * MiB), ("1.5gb", int(1.5 * GiB)), ("2048", 2048), ("4 K", 4096), ("off", None), ("None", None)],
)
def test_sizes_parse_in_binary_units(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "x", "12q", "-1G", "0", "1e9", "G", "ib"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="memory limit: expected"):
        parse_bytes(text)


def test_sizes_print_for_people():
    assert [format_bytes(v) for v in (80, 12 * 1024, 320 * MiB, 1.5 * GiB, 140 * GiB)] == ["80 B", "12.0 KiB", "320 MiB", "1.5 GiB", "140 GiB"]


# --------------------------------------------------------------------------- what is available
def fake_machine(tmp_path, monkeypatch, cgroup: str, files: dict[str, str], available_kib: int = 8_000_000):  # type: ignore[no-untyped-def]
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:   {available_kib} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    monkeypatch.setattr(resources, "_PROC", proc)
    monkeypatch.setattr(resources, "_CGROUP", root)


def test_memavailable_when_no_cgroup_limit(tmp_path, monkeypatch):
    fake_machine(tmp_path, monkeypatch, "0::/user.slice\n", {"user.slice/memory.max": "max\n"})
    assert available_memory() == 8_000_000 * 1024
    assert memory_limit() == (8_000_000 * 1024, "MemAvailable")


def test_a_cgroup_v2_limit_counts_without_reclaimable_page_cache(tmp_path, monkeypatch):
    files = {"app/job/memory.max": f"{2 * GiB}\n", "app/job/memory.current": f"{GiB}\n", "app/job/memory.stat": f"anon 5\ninactive_file {256 * MiB}\n"}
    fake_machine(tmp_path, monkeypatch, "0::/app/job\n", files)
    assert available_memory() == 2 * GiB - (GiB - 256 * MiB)
    assert memory_limit()[1] == "the cgroup memory limit"


def test_the_tightest_ancestor_limit_wins(tmp_path, monkeypatch):
    files = {"app/job/memory.max": f"{4 * GiB}\n", "app/job/memory.current": "0\n", "app/memory.max": f"{GiB}\n", "app/memory.current": f"{512 * MiB}\n"}
    fake_machine(tmp_path, monkeypatch, "0::/app/job\n", files)
    assert available_memory() == 512 * MiB


def test_a_cgroup_v1_limit(tmp_path, monkeypatch):
    files = {
        "memory/docker/abc/memory.limit_in_bytes": f"{3 * GiB}\n",
        "memory/docker/abc/memory.usage_in_bytes": f"{GiB}\n",
        "memory/docker/abc/memory.stat": "total_inactive_file 0\n",
        "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
    }
    fake_machine(tmp_path, monkeypatch, "5:cpu:/\n4:memory:/docker/abc\n", files)
    assert available_memory() == 2 * GiB


def test_a_container_sees_its_own_limit_at_the_mount_root(tmp_path, monkeypatch):
    # /proc/self/cgroup names the host's path, which the container's mount does not have
    files = {"memory/memory.limit_in_bytes": f"{GiB}\n", "memory/memory.usage_in_bytes": "0\n"}
    fake_machine(tmp_path, monkeypatch, "4:memory:/kubepods/pod1/c2\n", files)
    assert available_memory() == GiB


def test_this_machine_reports_some_memory():
    assert available_memory() is None or available_memory() > 0


# --------------------------------------------------------------------------- the check
def test_check_memory_names_both_numbers_and_the_override():
    with pytest.raises(ResourceError) as info:
        check_memory(3 * GiB, "a big job", limit=GiB, advice="make it smaller")
    assert str(info.value) == (
        "memory: expected a big job to fit in 1.0 GiB (the given memory limit), found an estimate of 3.0 GiB; make it smaller; "
        "override with OPELAB_MEMORY_LIMIT=3G (or off to skip the check) if the estimate is too cautious"
    )
    check_memory(GiB, "a job that fits", limit=GiB)
    check_memory(10**18, "anything", limit="off")


def test_the_environment_variable_overrides_the_available_memory(monkeypatch):
    monkeypatch.setenv(resources.MEMORY_LIMIT_VARIABLE, "1M")
    with pytest.raises(ResourceError, match=r"fit in 1\.0 MiB \(OPELAB_MEMORY_LIMIT=1M\), found an estimate of 2\.0 MiB"):
        check_memory(2 * MiB, "a job")
    check_memory(2 * MiB, "a job", limit="1G")  # the explicit limit comes first
    monkeypatch.setenv(resources.MEMORY_LIMIT_VARIABLE, "off")
    check_memory(10**18, "anything")
    monkeypatch.setenv(resources.MEMORY_LIMIT_VARIABLE, "lots")
    with pytest.raises(ResourceError, match="OPELAB_MEMORY_LIMIT: memory limit: expected a size"):
        check_memory(1, "a job")


# --------------------------------------------------------------------------- the estimates
def test_the_estimate_of_a_cell_is_within_a_small_factor_of_its_measured_peak():
    cfg = config(n=2000, B=100)
    cell = Cell("chain", 0)
    run_cell(cfg, cell)  # warm the per-process caches (the task, Q*)
    tracemalloc.start()
    try:
        run_cell(cfg, cell)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate, shape = cell_memory(cfg, cfg.tasks[0])
    assert (shape.horizon, shape.n_actions, shape.n_policies) == (20, 2, 9)
    assert peak <= estimate <= 3 * peak, (format_bytes(peak), format_bytes(estimate))


def test_the_estimate_of_evaluate_on_a_dataset_is_within_a_small_factor_of_its_measured_peak():
    from opelab.envs import collect, make
    from opelab.ope import build_inputs, evaluate
    from opelab.policies import EpsilonGreedyPolicy, GreedyPolicy, TabularQ, UniformPolicy, candidate_family

    task = make("gridworld")
    q = TabularQ(task.optimal_q())
    data = collect(task, EpsilonGreedyPolicy(GreedyPolicy(q), 0.3), 1500, seed=1)
    policies = [*candidate_family(q), UniformPolicy(q.n_actions, name="u")]
    tracemalloc.start()
    try:
        evaluate(data, build_inputs(data, policies), interval="bootstrap", n_bootstrap=100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = evaluate_bytes(data, len(policies), n_bootstrap=100)
    assert peak <= estimate <= 3 * peak, (format_bytes(peak), format_bytes(estimate))
    assert dataset_bytes(1500, task) == dataset_bytes(1500, data) == dataset_bytes(1500, DataSize.of(data))


def test_sizes_of_tasks_and_datasets():
    from opelab.envs import make

    assert DataSize.of(make("cartpole"), 10) == DataSize(10, 200, obs_size=4, n_actions=2)
    assert DataSize.of(make("recsys_continuous"), 10) == DataSize(10, 20, obs_size=10, n_actions=None, action_dim=5)
    assert DataSize.of(make("chain"), 10).actions == 2 and DataSize(1, 1).actions == 1


# --------------------------------------------------------------------------- the benchmark refuses before any cell
def test_a_run_whose_cell_cannot_fit_is_refused_before_anything_starts(tmp_path):
    big = config(n=10_000_000)
    db = tmp_path / "big.duckdb"
    start = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        run_benchmark(big, db)
    message = str(info.value)
    assert time.perf_counter() - start < 5 and not db.exists()
    estimate, _ = cell_memory(big, big.tasks[0])
    assert message.startswith("mem.toml: memory: expected 1 cell(s) at once of task 'chain' (about "), message
    assert re.search(r"fit in [\d.]+ [KMGT]iB \((MemAvailable|the cgroup memory limit|free physical pages)\)", message), message
    assert f"found an estimate of {format_bytes(estimate)}; lower n_trajectories, n_bootstrap or the workers" in message
    assert "n_trajectories = 10000000, horizon 20, 9 policies, 2 actions, n_bootstrap = 20" in message and "\n" not in message


def test_workers_multiply_the_estimate_and_a_limit_overrides(tmp_path, monkeypatch):
    small = config(workers=2, n_datasets=3)
    per_cell, _ = cell_memory(small, small.tasks[0])
    assert check_benchmark_memory(small, [Cell("chain", 0)]) == per_cell  # one cell: one at a time
    with pytest.raises(ResourceError, match=r"expected 2 cell\(s\) at once of task 'chain' .* found an estimate of"):
        run_benchmark(small, tmp_path / "a.duckdb", memory_limit=per_cell + 1)
    monkeypatch.setenv(resources.MEMORY_LIMIT_VARIABLE, str(per_cell - 1))
    with pytest.raises(ResourceError):
        run_benchmark(small.with_executor(workers=1), tmp_path / "a.duckdb", memory_limit=None)
    summary = run_benchmark(small.with_executor(workers=1), tmp_path / "a.duckdb", memory_limit=per_cell)  # the argument wins
    assert summary.n_done == 3
    assert check_benchmark_memory(small.with_executor(kind="ray", address="ray://cluster:10001"), [Cell("chain", 0)]) is None


def test_resume_checks_only_the_cells_left(tmp_path):
    cfg = config(workers=2, n_datasets=2)
    per_cell, _ = cell_memory(cfg, cfg.tasks[0])
    run_benchmark(cfg.with_executor(workers=1), tmp_path / "r.duckdb")
    summary = run_benchmark(cfg, tmp_path / "r.duckdb", resume=True, memory_limit=per_cell)  # nothing left to run
    assert (summary.n_skipped, summary.n_done) == (2, 0)


def test_the_bootstrap_chunk_of_the_estimate_is_the_one_the_intervals_draw():
    from opelab import resources
    from opelab.ope import intervals

    assert resources.BOOTSTRAP_CHUNK_ELEMENTS == intervals._BOOTSTRAP_CHUNK_ELEMENTS
