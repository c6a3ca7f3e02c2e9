"""Learning policies with d3rlpy (``pip install 'opelab[rl]'``; torch and d3rlpy are imported on first use).

- ``TaskEnv``: any batched opelab task as a single-episode ``gymnasium.Env`` (for d3rlpy's online training).
- ``train_online``: DoubleDQN (discrete) or SAC (continuous) base policies trained on a task.
- ``train_offline``: DiscreteCQL, DiscreteBCQ, CQL, IQL, TD3+BC, BCQ (and DoubleDQN, SAC) on a
  ``LoggedDataset``, optionally with return-weighted trajectory sampling (Hong et al., 2023).
- ``LearnedPolicy``: a trained algorithm with Q-values for the discrete heads and μ(s) for the continuous
  ones; saved as one safetensors file that cannot run code when opened (``opelab.learn.policy_file``);
  ``ModelFileError`` / ``UnsafeModelError`` (a pickle such as d3rlpy's ``.d3``, read only when trusted).
- ``candidate_policies`` / ``apply_heads``: candidate families of algorithms × network sizes × noise levels.
"""

from opelab.learn.algorithms import ALGORITHMS, AlgorithmSpec
from opelab.learn.candidates import LearnedGreedyPolicy, apply_heads, candidate_policies
from opelab.learn.env import TaskEnv
from opelab.learn.policy import LearnedPolicy
from opelab.learn.policy_file import ModelFileError, UnsafeModelError
from opelab.learn.train import train_offline, train_online
from opelab.learn.weighting import return_weighted_resample, return_weights

__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "LearnedGreedyPolicy",
    "LearnedPolicy",
    "ModelFileError",
    "TaskEnv",
    "UnsafeModelError",
    "apply_heads",
    "candidate_policies",
    "return_weighted_resample",
    "return_weights",
    "train_offline",
    "train_online",
]
