"""Policies: the protocol, tabular policies, heads and candidate families."""

from opelab.policies.base import (
    ActionValues,
    CategoricalPolicy,
    DiscretePolicy,
    Policy,
    sample_categorical,
    sample_from_cdf,
)
from opelab.policies.continuous import DeterministicPolicy, GaussianPolicy, TruncatedGaussianPolicy
from opelab.policies.family import candidate_family
from opelab.policies.given import ActionDistribution, ActionDistributionError
from opelab.policies.heads import (
    CallableActionValues,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    SoftmaxPolicy,
    UniformPolicy,
)
from opelab.policies.tabular import TabularPolicy, TabularQ

__all__ = [
    "ActionDistribution",
    "ActionDistributionError",
    "ActionValues",
    "CallableActionValues",
    "CategoricalPolicy",
    "DeterministicPolicy",
    "DiscretePolicy",
    "EpsilonGreedyPolicy",
    "GaussianPolicy",
    "GreedyPolicy",
    "Policy",
    "SoftmaxPolicy",
    "TabularPolicy",
    "TabularQ",
    "TruncatedGaussianPolicy",
    "UniformPolicy",
    "candidate_family",
    "sample_categorical",
    "sample_from_cdf",
]
