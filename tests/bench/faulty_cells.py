"""A task family whose cells fail on purpose, for the failure, memory and orphan tests (imported by the
driver and, through a config's ``imports``, by the workers; its folder must be on ``sys.path``).

Task ``faulty_chain`` runs the tabular chain task, except that collection misbehaves by task id:
``memory`` raises a bare ``MemoryError()``, ``silent`` an ``AssertionError()`` without a message, ``sigkill``
kills its own process, ``slow`` writes ``$FAULTY_CELLS_STARTED/<pid>`` and sleeps for two minutes. Any
other id runs normally.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from opelab.bench.tasks import TabularFamily, TabularTask, find_family, register_task_family


class FaultyTask(TabularTask):
    def collect(self, behavior, n_trajectories, seed):  # type: ignore[no-untyped-def]
        fault = self.config.id
        if fault == "memory":
            raise MemoryError()
        if fault == "silent":
            raise AssertionError()
        if fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "slow":
            folder = Path(os.environ["FAULTY_CELLS_STARTED"])
            (folder / str(os.getpid())).write_text("started")
            time.sleep(120)
        return super().collect(behavior, n_trajectories, seed)


class FaultyFamily(TabularFamily):
    def names(self) -> tuple[str, ...]:
        return ("faulty_chain",)

    def shape(self, task):  # type: ignore[no-untyped-def]
        return super().shape(_as_chain(task))

    def create(self, task, inputs, ground_truth_rollouts, seed=0):  # type: ignore[no-untyped-def]
        return FaultyTask(name="chain", config=task, inputs=inputs)


def _as_chain(task):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(task, name="chain")


if find_family("faulty_chain") is None:
    register_task_family(FaultyFamily())
