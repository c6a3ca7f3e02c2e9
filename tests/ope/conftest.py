from __future__ import annotations

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.envs import collect


@pytest.fixture(scope="module")
def variable_length_case():
    task = small_task()
    behavior, evals = policies_for(task)
    ds = collect(task, behavior, 60, seed=11)
    assert len(np.unique(ds.lengths)) > 2, "the fixture must hold trajectories of several lengths"
    return task, behavior, evals, ds
