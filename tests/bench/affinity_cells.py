"""A task family that tells which process ran what, for the task-affinity tests (imported by the driver
and, through a config's ``imports``, by the workers; its folder must be on ``sys.path``).

Task ``pid_chain`` runs the tabular chain task and, like a learned task, "trains" once per process and
task (its shape says ``learned``, so the executor keeps its cells together; ``pid_chain_free`` is the
same task with a tabular shape, whose cells the executor spreads): the first ``behavior_policy`` of a task id in a process writes ``<LOG>/<id>.train.<pid>``, and every
``collect`` writes ``<LOG>/<id>.cell.<seed>.<pid>``. ``pid_chain_slow`` is ``pid_chain`` whose cells each sleep
``SLOW_S`` seconds in their inputs stage (the cells' own work, not what the task trains), for the
work-stealing test. ``LOG`` is ``opelab-affinity-cells`` in the temporary
folder (the workers' environment is the fork server's, fixed when it started: no variable would reach
them), so tests give their tasks unique ids and remove their files.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from opelab.bench.tasks import TabularFamily, TabularTask, find_family, register_task_family

LOG = Path(tempfile.gettempdir()) / "opelab-affinity-cells"
_TRAINED: set[str] = set()  # task ids this process "trained"
SLOW_S = 1.0


def _write(name: str) -> None:
    LOG.mkdir(exist_ok=True)
    (LOG / name).write_text("")


class PidTask(TabularTask):
    def behavior_policy(self):  # type: ignore[no-untyped-def]
        if self.config.id not in _TRAINED:
            _TRAINED.add(self.config.id)
            _write(f"{self.config.id}.train.{os.getpid()}")
        return super().behavior_policy()

    def collect(self, behavior, n_trajectories, seed):  # type: ignore[no-untyped-def]
        _write(f"{self.config.id}.cell.{seed}.{os.getpid()}")
        return super().collect(behavior, n_trajectories, seed)

    def build_inputs(self, dataset, candidates, truth, seed):  # type: ignore[no-untyped-def]
        if self.config.name == "pid_chain_slow":
            time.sleep(SLOW_S)
        return super().build_inputs(dataset, candidates, truth, seed)


class PidFamily(TabularFamily):
    def names(self) -> tuple[str, ...]:
        return ("pid_chain", "pid_chain_free", "pid_chain_slow")

    def shape(self, task):  # type: ignore[no-untyped-def]
        import dataclasses

        shape = super().shape(dataclasses.replace(task, name="chain"))
        return dataclasses.replace(shape, learned=task.name != "pid_chain_free")

    def create(self, task, inputs, ground_truth_rollouts, seed=0):  # type: ignore[no-untyped-def]
        return PidTask(name="chain", config=task, inputs=inputs)


if find_family("pid_chain") is None:
    register_task_family(PidFamily())
