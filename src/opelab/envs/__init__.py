"""Tasks: tabular MDPs with exact ground truth, a registry, and vectorized data collection."""

from opelab.envs.collect import VectorTask, collect
from opelab.envs.returns import ReturnDistribution, exact_return_distribution
from opelab.envs.tabular import TabularMDP
from opelab.envs.tasks import TASKS, chain, gridworld, make, random_task

__all__ = ["TASKS", "ReturnDistribution", "TabularMDP", "exact_return_distribution", "VectorTask", "chain", "collect", "gridworld", "make", "random_task"]
