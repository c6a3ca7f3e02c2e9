"""Tasks: tabular MDPs with exact ground truth, a registry, and vectorized data collection."""

from opelab.envs.collect import VectorTask, collect
from opelab.envs.tabular import TabularMDP
from opelab.envs.tasks import TASKS, chain, gridworld, make, random_task

__all__ = ["TASKS", "TabularMDP", "VectorTask", "chain", "collect", "gridworld", "make", "random_task"]
