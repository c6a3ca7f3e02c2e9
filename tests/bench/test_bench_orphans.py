"""No orphans: killing the benchmark driver with SIGKILL (no cleanup runs) leaves no worker, fork server or
resource tracker behind. Linux only (the processes are found through /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

CONFIG = """
imports = ["faulty_cells"]
n_datasets = 4
n_trajectories = 10
estimators = ["dm"]

[executor]
workers = 2

[[tasks]]
name = "faulty_chain"
id = "slow"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }
"""
DRIVER = "import sys; from opelab.bench import load_config, run_benchmark; run_benchmark(load_config(sys.argv[1]), sys.argv[2])"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _in_session(session: int) -> set[int]:
    """Live processes of a session (the driver starts one; its descendants stay in it unless they leave)."""
    return {int(e) for e in os.listdir("/proc") if e.isdigit() and (f := _stat(int(e))) is not None and f[3] == str(session) and f[0] not in "ZX"}


def test_killing_the_driver_leaves_no_process_behind(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(CONFIG)
    started = tmp_path / "started"
    started.mkdir()
    env = {**os.environ, "FAULTY_CELLS_STARTED": str(started), "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(config), str(tmp_path / "slow.duckdb")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    snapshot: set[int] = set()
    try:
        deadline = time.monotonic() + 90  # generous for a loaded machine; ~4 s when idle
        while len(list(started.iterdir())) < 2:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()
            assert time.monotonic() < deadline, "the workers did not start their cells"
            time.sleep(0.1)
        workers = {int(p.name) for p in started.iterdir()}
        snapshot = _descendants(driver.pid)
        assert workers <= snapshot and len(snapshot) >= 4, snapshot  # 2 workers, the fork server, the resource tracker

        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10  # the watchdog polls every 0.5 s
        while (left := {pid for pid in snapshot if _alive(pid)} | _in_session(driver.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"still running after the driver was killed: {sorted(left)}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in snapshot | _in_session(driver.pid):  # never leave our own processes behind, even on failure
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


INTERRUPTED = """
imports = ["faulty_cells"]
n_datasets = 2
n_trajectories = 10
estimators = ["dm"]

[executor]
workers = 2

[[tasks]]
name = "faulty_chain"
id = "fast"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }

[[tasks]]
name = "faulty_chain"
id = "slow"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }
"""


@pytest.mark.parametrize("target", ["driver", "process group"])
def test_an_interrupt_stops_the_run_at_once_and_keeps_the_finished_cells(tmp_path, target):
    """SIGINT to the driver alone, or to its whole process group as Ctrl-C in a terminal does: the driver
    stops its workers instead of waiting for their two-minute cells, says how to resume, exits with 130,
    and leaves no process behind; the cells that finished stay in the store, the interrupted ones are not
    recorded (neither done nor failed), so ``--resume`` runs exactly them."""
    import duckdb

    config = tmp_path / "interrupted.toml"
    config.write_text(INTERRUPTED)
    db = tmp_path / "interrupted.duckdb"
    started = tmp_path / "started"
    started.mkdir()
    env = {**os.environ, "FAULTY_CELLS_STARTED": str(started), "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    progress = tmp_path / "progress.jsonl"  # a line once a cell's transaction committed
    log_path = tmp_path / "driver.log"
    log = log_path.open("w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "opelab.cli", "benchmark", str(config), "--db", str(db), "--progress-file", str(progress)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    snapshot: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        # both workers are in a slow cell and the fast cells are recorded
        while len(list(started.iterdir())) < 2 or not progress.exists() or len(progress.read_text().splitlines()) < 2:
            assert driver.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the workers did not start their slow cells"
            time.sleep(0.1)
        snapshot = _descendants(driver.pid)
        if target == "driver":
            driver.send_signal(signal.SIGINT)
        else:
            os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(timeout=30)  # the slow cells would hold a waiting driver for two minutes
        assert code == 130, log_path.read_text()
        text = " ".join(log_path.read_text().split())
        assert "error: interrupted: the cells that finished are in" in text and "--resume" in text, text
        deadline = time.monotonic() + 10
        while (left := {pid for pid in snapshot if _alive(pid)} | _in_session(driver.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"still running after the interrupt: {sorted(left)}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in snapshot | _in_session(driver.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT task, dataset, status FROM cells ORDER BY task, dataset").fetchall()
    assert rows == [("fast", 0, "done"), ("fast", 1, "done")]
