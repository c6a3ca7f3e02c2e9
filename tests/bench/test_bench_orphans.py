"""No orphans: killing the benchmark driver with SIGKILL (no cleanup runs) leaves no worker, fork server or
resource tracker behind. Linux only (the processes are found through /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


class Driver:
    """A benchmark driver started in a session of its own, with the faulty cells' folder on its path; as a
    context manager, killed with everything it started on the way out, even when the test fails."""

    def __init__(self, command: list[str], tmp_path: Path) -> None:
        self.started = tmp_path / "started"  # a slow cell writes its worker's pid here
        self.started.mkdir()
        self.log_path = tmp_path / "driver.log"
        env = {**os.environ, "FAULTY_CELLS_STARTED": str(self.started), "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.snapshot: set[int] = set()  # its processes, once taken

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 90  # generous for a loaded machine; ~4 s when idle
        while not ready():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, what
            time.sleep(0.1)
        self.snapshot = _descendants(self.process.pid)

    def leftovers(self) -> set[int]:
        """Its processes still alive 10 s from now at the latest (the watchdog polls every 0.5 s)."""
        deadline = time.monotonic() + 10
        while (left := {pid for pid in self.snapshot if _alive(pid)} | _in_session(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.snapshot | _in_session(self.process.pid):  # never leave our own processes behind, even on failure
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def test_killing_the_driver_leaves_no_process_behind(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(CONFIG)
    with Driver([sys.executable, "-c", DRIVER, str(config), str(tmp_path / "slow.duckdb")], tmp_path) as d:
        d.wait_until(lambda: len(list(d.started.iterdir())) >= 2, "the workers did not start their cells")
        workers = {int(p.name) for p in d.started.iterdir()}
        assert workers <= d.snapshot and len(d.snapshot) >= 4, d.snapshot  # 2 workers, the fork server, the resource tracker

        d.process.send_signal(signal.SIGKILL)
        d.process.wait(timeout=10)
        assert not (left := d.leftovers()), f"still running after the driver was killed: {sorted(left)}"


#: Two fast cells, then two slow ones (config order: the fast ones run first, one per worker).
INTERRUPTED = CONFIG.replace("n_datasets = 4", "n_datasets = 2").replace('id = "slow"', 'id = "fast"') + CONFIG.split("\n\n")[-1]


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
    progress = tmp_path / "progress.jsonl"  # a line once a cell's transaction committed
    command = [sys.executable, "-m", "opelab.cli", "benchmark", str(config), "--db", str(db), "--progress-file", str(progress)]
    with Driver(command, tmp_path) as d:
        recorded = lambda: progress.exists() and len(progress.read_text().splitlines()) >= 2  # noqa: E731
        d.wait_until(lambda: len(list(d.started.iterdir())) >= 2 and recorded(), "the fast cells were not recorded or the slow ones did not start")
        if target == "driver":
            d.process.send_signal(signal.SIGINT)
        else:
            os.killpg(d.process.pid, signal.SIGINT)
        code = d.process.wait(timeout=30)  # the slow cells would hold a waiting driver for two minutes
        text = " ".join(d.log_path.read_text().split())
        assert code == 130, text
        resume = f"`opelab benchmark {config} --db {db} --resume --progress-file {progress}` runs the rest"
        assert f"error: interrupted: the cells that finished are in {db}; {resume}" in text, text
        assert not (left := d.leftovers()), f"still running after the interrupt: {sorted(left)}"
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT task, dataset, status FROM cells ORDER BY task, dataset").fetchall()
    assert rows == [("fast", 0, "done"), ("fast", 1, "done")]
