"""Candidate families: a good base policy, noisier versions of it, and deliberately bad ones.

Off-policy selection is only interesting when candidates differ: the family spans near-optimal, mediocre and
harmful policies so that a wrong ranking costs something.
"""

from __future__ import annotations

from collections.abc import Sequence

from opelab.policies.base import ActionValues, CategoricalPolicy
from opelab.policies.heads import EpsilonGreedyPolicy, GreedyPolicy, SoftmaxPolicy, UniformPolicy


class _NegatedValues:
    """−Q: the greedy policy of this picks the worst action."""

    def __init__(self, values: ActionValues) -> None:
        self.values = values
        self.n_actions = values.n_actions

    def action_values(self, observations, steps=None):  # type: ignore[no-untyped-def]
        return -self.values.action_values(observations, steps)


def candidate_family(
    values: ActionValues,
    *,
    prefix: str = "optimal",
    epsilons: Sequence[float] = (0.0, 0.1, 0.3, 0.6),
    temperatures: Sequence[float] = (0.2, 1.0),
    include_uniform: bool = True,
    adversarial_epsilons: Sequence[float] = (0.1, 0.5),
) -> list[CategoricalPolicy]:
    """Policies built from action values ``values`` (e.g. the optimal Q-function of a task).

    Returns, in order: ε-greedy heads over the greedy policy for each ε (ε = 0 is the greedy policy itself),
    softmax heads for each temperature, the uniform random policy, and ε-greedy heads over the *worst*
    action (greedy on −Q) for each adversarial ε. Names are unique and describe the policy.
    """
    greedy = GreedyPolicy(values, name=prefix)
    family: list[CategoricalPolicy] = []
    for eps in epsilons:
        family.append(greedy if eps == 0 else EpsilonGreedyPolicy(greedy, eps, name=f"{prefix}+eps{eps:g}"))
    for tau in temperatures:
        family.append(SoftmaxPolicy(values, tau, name=f"{prefix}+softmax{tau:g}"))
    if include_uniform:
        family.append(UniformPolicy(values.n_actions))
    worst = GreedyPolicy(_NegatedValues(values), name="worst")
    for eps in adversarial_epsilons:
        family.append(EpsilonGreedyPolicy(worst, eps, name=f"worst+eps{eps:g}"))
    names = [p.name for p in family]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names: expected unique names, found {names}")
    return family
