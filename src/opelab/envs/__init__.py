"""Tasks: tabular MDPs with exact ground truth, gymnasium and synthetic batched tasks, a registry, vectorized
data collection and on-policy ground truth."""

from opelab.envs.bandit import (
    PlackettLucePolicy,
    SyntheticBandit,
    SyntheticSlate,
    bandit_inputs,
    slate_inputs,
    synthetic_bandit,
    synthetic_slate,
)
from opelab.envs.collect import VectorTask, collect
from opelab.envs.gym_tasks import (
    Acrobot,
    BatchTask,
    CartPole,
    MountainCar,
    MountainCarContinuous,
    MujocoTask,
    Pendulum,
    mujoco_available,
)
from opelab.envs.recsys import Recommendation, RecommendationContinuous
from opelab.envs.returns import ReturnDistribution, exact_return_distribution
from opelab.envs.rollouts import RolloutValues, rollout_values
from opelab.envs.rtb import RealTimeBidding, RealTimeBiddingContinuous
from opelab.envs.tabular import TabularMDP
from opelab.envs.tasks import (
    ALIASES,
    BANDIT_TASKS,
    REGISTRY,
    SLATE_TASKS,
    TASKS,
    TaskSpec,
    chain,
    gridworld,
    list_tasks,
    make,
    random_task,
)

__all__ = [
    "ALIASES",
    "BANDIT_TASKS",
    "PlackettLucePolicy",
    "REGISTRY",
    "SLATE_TASKS",
    "TASKS",
    "Acrobot",
    "BatchTask",
    "CartPole",
    "MountainCar",
    "MountainCarContinuous",
    "MujocoTask",
    "Pendulum",
    "RealTimeBidding",
    "RealTimeBiddingContinuous",
    "Recommendation",
    "RecommendationContinuous",
    "ReturnDistribution",
    "RolloutValues",
    "SyntheticBandit",
    "SyntheticSlate",
    "TabularMDP",
    "TaskSpec",
    "VectorTask",
    "bandit_inputs",
    "chain",
    "collect",
    "exact_return_distribution",
    "gridworld",
    "list_tasks",
    "make",
    "mujoco_available",
    "random_task",
    "rollout_values",
    "slate_inputs",
    "synthetic_bandit",
    "synthetic_slate",
]
