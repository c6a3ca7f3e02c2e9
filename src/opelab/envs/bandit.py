"""Synthetic contextual bandits and ranking (slate) bandits with exact ground truth.

The design follows the facts of OBP's synthetic data (Saito et al., 2021, "Open Bandit Dataset and
Pipeline", ``SyntheticBanditDataset`` / ``SyntheticSlateBanditDataset``): contexts x, a linear score per
action, binary rewards through a logistic link or continuous ones with Gaussian noise, a softmax behavior
policy, optional categorical action embeddings (Saito & Joachims, 2022, "Off-Policy Evaluation for Large
Action Spaces via Embeddings") and Plackett–Luce rankings. One choice differs on purpose:

**Contexts come from a finite set.** ``n_contexts`` vectors x_1..x_K are drawn once (with the task's
``seed``) together with their probabilities p_k, and every round draws x = x_k with probability p_k. The
value of any policy that acts on the context is then an exact finite sum, with no Monte Carlo error::

    V(π) = Σ_k p_k Σ_a π(a | x_k) q(x_k, a)                                   (bandit)
    V(π) = Σ_k p_k Σ_σ π(σ | x_k) Σ_t E[r_t | x_k, σ]                          (slate, σ a ranking)

just as ``opelab.envs.tabular`` gives exact values by dynamic programming.

Bandit (``synthetic_bandit`` → ``SyntheticBandit``)
    score       f(x, a) = xᵀ W_{e(a)} + b_{e(a)}, W ~ N(0, 1/d), b ~ N(0, 1/4); e(a) = a, or with
                ``n_embedding_categories`` = C the category of action a (several actions share one, every
                category has ⌊A/C⌋ or ⌈A/C⌉ actions), so q depends on the action only through its embedding
                (logged in ``info.action_context`` as one column of category ids)
    reward      binary: r ~ Bernoulli(q), q(x, a) = σ(f(x, a)) (OBP's logistic reward function);
                continuous: r = q + N(0, reward_noise²), q(x, a) = f(x, a) (OBP's linear reward function)
    positions   with ``len_list`` = L each round shows its one item at a slot l drawn uniformly from
                0..L−1, independently of the action; the expected reward is multiplied by the examination
                probability 1/(1 + l) (a position-based click model, Craswell et al., 2008). Policies do
                not see the slot, so V(π) = mean_l 1/(1 + l) · Σ_k p_k Σ_a π(a | x_k) q(x_k, a)
    behavior    softmax of the linear score, π_b(a | x) ∝ exp(β f(x, a)) (OBP's softmax behavior policy)
    candidates  heads over the scores f (greedy on f is optimal): ε-greedy, softmax at temperatures,
                uniform and ε-greedy on the worst action (``opelab.policies.candidate_family``)

Slate (``synthetic_slate`` → ``SyntheticSlate``)
    items i = 0..I−1 with attractiveness α(x, i) = σ(f(x, i)); a ranking σ = (σ_0, .., σ_{L−1}) of L
    distinct items from a Plackett–Luce model (Plackett, 1975; Luce, 1959), π(σ | x) = Π_t
    exp(β f(x, σ_t)) / Σ_{j ∉ σ_<t} exp(β f(x, j)) ("softmax without replacement")
    "independent"  click at slot t ~ Bernoulli(α(x, σ_t) / (1 + t)), slots independent
    "cascade"      the user scans top-down, clicks slot t with probability α(x, σ_t) and stops after the
                   first click (cascade model, Craswell et al., 2008): E[r_t | σ] = α(x, σ_t) Π_{s<t} (1 − α(x, σ_s))
    The log is a ranking ``LoggedDataset`` (``info.slate``): one trajectory per round, step t = slot t, the
    context observed at every step, ``behavior_pscore`` π_b(σ_t | x, σ_<t) (so cumulative products are the
    joint propensities), ``behavior_marginal_pscore`` π_b(σ_t at slot t | x) by enumerating the slates.
    ``slate_inputs`` builds what the slate estimators (``sips``, ``iips``, ``rips``, ``cascade_dr``) read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import freeze
from opelab.policies import (
    CallableActionValues,
    CategoricalPolicy,
    DiscretePolicy,
    candidate_family,
    sample_from_cdf,
)

if TYPE_CHECKING:
    from opelab.envs.returns import ReturnDistribution
    from opelab.ope.inputs import OPEInput

__all__ = [
    "MAX_SLATES",
    "Q_MODELS",
    "PlackettLucePolicy",
    "ScoreSoftmaxPolicy",
    "SyntheticBandit",
    "SyntheticSlate",
    "bandit_inputs",
    "enumerate_slates",
    "slate_inputs",
    "synthetic_bandit",
    "synthetic_slate",
]

RewardType = Literal["binary", "continuous"]
RewardStructure = Literal["independent", "cascade"]
#: Rankings a slate task may enumerate (I! / (I − L)!): its exact value and marginals are sums over them.
MAX_SLATES = 10_000
_CHUNK = 65_536  # observation rows matched against the contexts at once


def _positive_int(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, found {value!r}")
    return int(value)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, found {value!r}")
    return float(value)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # σ(z) without overflow warnings


def position_bias(len_list: int) -> np.ndarray:
    """Examination probability of slot l = 0..L−1: 1 / (1 + l), shape (L,)."""
    return 1.0 / (1.0 + np.arange(len_list, dtype=np.float64))


def _contexts(rng: np.random.Generator, n_contexts: int, dim_context: int) -> tuple[np.ndarray, np.ndarray]:
    """K context vectors ~ N(0, I_d) and their probabilities ~ Dirichlet(1, .., 1)."""
    return rng.standard_normal((n_contexts, dim_context)), rng.dirichlet(np.ones(n_contexts))


def _context_ids(contexts: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """The index k of each observation row in ``contexts`` (rows must be exact copies), shape (m,)."""
    obs = np.asarray(observations, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != contexts.shape[1]:
        raise ValueError(f"observations: expected shape (m, {contexts.shape[1]}) (context vectors), found {obs.shape}")
    ids = np.empty(len(obs), dtype=np.int64)
    norms = (contexts**2).sum(axis=1)
    for lo in range(0, len(obs), _CHUNK):
        rows = obs[lo : lo + _CHUNK]
        distance = norms[None, :] - 2.0 * rows @ contexts.T  # ||x − c||² − ||x||²: the argmin is the same
        ids[lo : lo + _CHUNK] = np.argmin(distance, axis=1)
    if not np.array_equal(contexts[ids], obs):
        bad = int(np.flatnonzero((contexts[ids] != obs).any(axis=1))[0])
        raise ValueError(f"observations: expected the task's context vectors, found row {bad} matching none of its {len(contexts)} contexts")
    return ids


def _policy_table(policy: DiscretePolicy, contexts: np.ndarray, n_actions: int) -> np.ndarray:
    """π(· | x_k) on every context, shape (K, A), checked."""
    if getattr(policy, "n_actions", None) != n_actions:
        raise ValueError(f"policy {getattr(policy, 'name', policy)!r}: expected n_actions = {n_actions}, found {getattr(policy, 'n_actions', None)!r}")
    probs = np.asarray(policy.action_probs(contexts, np.zeros(len(contexts), dtype=np.int64)), dtype=np.float64)
    if probs.shape != (len(contexts), n_actions):
        raise ValueError(f"policy {policy.name!r}: action_probs expected shape {(len(contexts), n_actions)}, found {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-9):
        raise ValueError(f"policy {policy.name!r}: action_probs rows must be non-negative and sum to 1")
    return probs


class ScoreSoftmaxPolicy(CategoricalPolicy):
    """π(a | x) ∝ exp(β · score(x, a)) for any real β (β = 0: uniform; β < 0 prefers low scores)."""

    def __init__(self, scores: Any, beta: float, name: str | None = None) -> None:
        super().__init__(scores.n_actions, name or f"softmax(beta={beta:g})")
        self.scores = scores
        self.beta = _finite("beta", beta)

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        logits = self.beta * self.scores.action_values(observations, steps)
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return weights / weights.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- #
# contextual bandit
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class SyntheticBandit:
    """A contextual bandit over a finite context set with a known expected reward (module docstring).

    It is also a horizon-1 ``VectorTask`` (``reset``/``observe``/``step``), so ``opelab.envs.collect`` and
    ``rollout_values`` run on it too; ``collect`` here is the same law and also logs the slots.
    """

    contexts: np.ndarray  # (K, d)
    context_probs: np.ndarray  # (K,)
    weights: np.ndarray  # (d, E): one column per action, or per embedding category
    biases: np.ndarray  # (E,)
    n_actions: int
    reward_type: RewardType = "binary"
    reward_noise: float = 1.0  # continuous rewards: standard deviation of the Gaussian noise
    action_categories: np.ndarray | None = None  # (A,) category e(a) of each action, or None (e(a) = a)
    len_list: int | None = None  # slots of the list one item is shown in (positions), or None
    behavior_beta: float = 1.0  # the default behavior policy's inverse temperature
    name: str = "bandit"
    horizon: int = field(default=1, init=False)
    gamma: float = field(default=1.0, init=False)

    def __post_init__(self) -> None:
        contexts = np.array(self.contexts, dtype=np.float64)
        K = len(contexts)
        probs = np.array(self.context_probs, dtype=np.float64)
        if contexts.ndim != 2 or K < 1 or not np.isfinite(contexts).all():
            raise ValueError(f"contexts: expected a finite (n_contexts, dim_context) array, found shape {contexts.shape}")
        if len(np.unique(contexts, axis=0)) != K:
            raise ValueError("contexts: expected distinct context vectors")
        if probs.shape != (K,) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0, atol=1e-9):
            raise ValueError(f"context_probs: expected a probability vector of shape ({K},), found shape {probs.shape}")
        A = _positive_int("n_actions", self.n_actions, 2)
        categories = None if self.action_categories is None else np.array(self.action_categories, dtype=np.int64)
        n_columns = A if categories is None else int(categories.max()) + 1
        if categories is not None and (categories.shape != (A,) or categories.min() < 0):
            raise ValueError(f"action_categories: expected {A} non-negative category ids, found shape {categories.shape}")
        weights, biases = np.array(self.weights, dtype=np.float64), np.array(self.biases, dtype=np.float64)
        if weights.shape != (contexts.shape[1], n_columns) or biases.shape != (n_columns,):
            raise ValueError(
                f"weights, biases: expected shapes {(contexts.shape[1], n_columns)} and ({n_columns},), "
                f"found {weights.shape} and {biases.shape}"
            )
        if self.reward_type not in ("binary", "continuous"):
            raise ValueError(f"reward_type: expected 'binary' or 'continuous', found {self.reward_type!r}")
        if not (math.isfinite(self.reward_noise) and self.reward_noise >= 0):
            raise ValueError(f"reward_noise: expected a non-negative number, found {self.reward_noise!r}")
        if self.len_list is not None:
            object.__setattr__(self, "len_list", _positive_int("len_list", self.len_list))
        object.__setattr__(self, "behavior_beta", _finite("behavior_beta", self.behavior_beta))
        object.__setattr__(self, "n_actions", A)
        arrays = {"contexts": contexts, "context_probs": probs, "weights": weights, "biases": biases, "action_categories": categories}
        for key, value in arrays.items():
            object.__setattr__(self, key, None if value is None else freeze(value))

    # ------------------------------------------------------------------ description
    @property
    def action_space(self) -> ActionSpace:
        return ActionSpace.discrete(self.n_actions)

    @property
    def n_contexts(self) -> int:
        return int(self.contexts.shape[0])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (int(self.contexts.shape[1]),)

    @property
    def position_bias(self) -> np.ndarray | None:
        """1 / (1 + l) for the slots l = 0..L−1, or None without positions."""
        return None if self.len_list is None else position_bias(self.len_list)

    @property
    def action_context(self) -> np.ndarray | None:
        """(A, 1) float category id of each action (``info.action_context``), or None without embeddings."""
        return None if self.action_categories is None else self.action_categories[:, None].astype(np.float64)

    def reward_scores(self, observations: np.ndarray) -> np.ndarray:
        """f(x, a) = xᵀ W_{e(a)} + b_{e(a)} for each observation row, shape (m, A)."""
        scores = np.asarray(observations, dtype=np.float64) @ self.weights + self.biases  # (m, E)
        return scores if self.action_categories is None else scores[:, self.action_categories]

    def expected_reward(self, observations: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """q(x, a) (× the examination probability 1 / (1 + slot) when ``slots`` are given), shape (m, A)."""
        f = self.reward_scores(observations)
        q = _sigmoid(f) if self.reward_type == "binary" else f
        if slots is not None:
            if self.len_list is None:
                raise ValueError("slots: given, but the task has no positions (len_list is None)")
            q = q * position_bias(self.len_list)[np.asarray(slots)][:, None]
        return q

    @cached_property
    def q_table(self) -> np.ndarray:
        """q(x_k, a) on every context (averaged over the uniform slot when positions are on), (K, A)."""
        factor = 1.0 if self.len_list is None else float(position_bias(self.len_list).mean())
        return freeze(self.expected_reward(self.contexts) * factor)

    @property
    def score_values(self) -> CallableActionValues:
        """The scores f as ``ActionValues``: the base of the behavior and candidate heads (greedy on f is optimal)."""
        return CallableActionValues(self.reward_scores, self.n_actions)

    # ------------------------------------------------------------------ policies
    def behavior_policy(self, beta: float | None = None, name: str | None = None) -> ScoreSoftmaxPolicy:
        """π_b(a | x) ∝ exp(β f(x, a)), β = ``behavior_beta`` unless given."""
        beta = self.behavior_beta if beta is None else beta
        return ScoreSoftmaxPolicy(self.score_values, beta, name=name or f"behavior(softmax, beta={beta:g})")

    def candidates(
        self,
        *,
        epsilons: Sequence[float] = (0.0, 0.1, 0.3, 0.6),
        temperatures: Sequence[float] = (0.2, 1.0),
        include_uniform: bool = True,
        adversarial_epsilons: Sequence[float] = (0.1, 0.5),
    ) -> list[CategoricalPolicy]:
        """Evaluation policies: ε-greedy and softmax heads over f, uniform, ε-greedy on the worst action."""
        return candidate_family(
            self.score_values, epsilons=epsilons, temperatures=temperatures, include_uniform=include_uniform,
            adversarial_epsilons=adversarial_epsilons,
        )  # fmt: skip

    # ------------------------------------------------------------------ exact values
    def policy_table(self, policy: DiscretePolicy) -> np.ndarray:
        """π(a | x_k) for every context, shape (K, A)."""
        return _policy_table(policy, self.contexts, self.n_actions)

    def policy_value(self, policy: DiscretePolicy) -> float:
        """Exact V(π) = Σ_k p_k Σ_a π(a | x_k) q(x_k, a) (× mean slot examination with positions)."""
        return float(self.context_probs @ (self.policy_table(policy) * self.q_table).sum(axis=1))

    def policy_values(self, policies: Sequence[DiscretePolicy]) -> np.ndarray:
        """Exact values of several policies, shape (P,)."""
        return np.array([self.policy_value(p) for p in policies])

    def optimal_value(self) -> float:
        """max_π V(π) = Σ_k p_k max_a q(x_k, a)."""
        return float(self.context_probs @ self.q_table.max(axis=1))

    def return_distribution(self, policy: DiscretePolicy) -> ReturnDistribution:
        """The exact law of one round's reward: Bernoulli(V(π)) for binary rewards; for continuous ones the
        mixture Σ_{k,a,l} p_k π(a | x_k) / L · N(q(x_k, a) / (1 + l), σ²)."""
        from opelab.envs.returns import ReturnDistribution

        if self.reward_type == "binary":
            value = self.policy_value(policy)
            return ReturnDistribution(means=np.array([0.0, 1.0]), probs=np.array([1.0 - value, value]), lengths=np.ones(2, dtype=np.int64))
        joint = self.context_probs[:, None] * self.policy_table(policy)  # (K, A)
        q = self.expected_reward(self.contexts)
        bias = np.ones(1) if self.len_list is None else position_bias(self.len_list)
        means = (q[:, :, None] * bias).reshape(-1)
        probs = np.repeat(joint.reshape(-1) / len(bias), len(bias))
        return ReturnDistribution(means=means, probs=probs, lengths=np.ones(len(means), dtype=np.int64), reward_noise=self.reward_noise)

    # ------------------------------------------------------------------ data
    def context_ids(self, observations: np.ndarray) -> np.ndarray:
        """The context index k of each observation row (exact copies of the task's contexts), shape (m,)."""
        return _context_ids(self.contexts, observations)

    def _rewards(self, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.reward_type == "binary":
            return rng.binomial(1, np.clip(means, 0.0, 1.0)).astype(np.float64)
        return means + self.reward_noise * rng.standard_normal(len(means))

    def collect(self, policy: DiscretePolicy, n_rounds: int, seed: int) -> LoggedDataset:
        """``n_rounds`` logged rounds of ``policy``: horizon 1, observations (n, 1, d), behavior distribution,
        slots in ``positions`` (with ``info.len_list``) when positions are on, action embeddings in
        ``info.action_context``. Vectorized; the same seed gives the same dataset."""
        n = _positive_int("n_rounds", n_rounds)
        rng = np.random.default_rng(seed)
        table = self.policy_table(policy)  # (K, A): a policy acts on the context only
        ids = rng.choice(self.n_contexts, size=n, p=self.context_probs)
        actions = sample_from_cdf(np.cumsum(table, axis=1)[ids], rng)
        slots = None if self.len_list is None else rng.integers(self.len_list, size=n)
        means = self.expected_reward(self.contexts)[ids, actions]
        if slots is not None:
            means = means * position_bias(self.len_list)[slots]
        rewards = self._rewards(means, rng)
        probs = table[ids]
        context = self.action_context
        info = DatasetInfo(
            task=self.name, gamma=1.0, action_space=self.action_space, behavior_policy=policy.name, seed=int(seed),
            len_list=self.len_list, action_context=None if context is None else context,
        )  # fmt: skip
        return LoggedDataset(
            observations=freeze(self.contexts[ids][:, None, :]),
            actions=freeze(actions[:, None]),
            rewards=freeze(rewards[:, None]),
            terminals=freeze(np.ones((n, 1), dtype=bool)),
            mask=freeze(np.ones((n, 1), dtype=bool)),
            behavior_pscore=freeze(probs[np.arange(n), actions][:, None]),
            behavior_action_probs=freeze(probs[:, None, :]),
            positions=None if slots is None else freeze(slots.astype(np.int64)[:, None]),
            info=info,
        )

    # ------------------------------------------------------------------ VectorTask (opelab.envs.collect)
    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Context ids of ``n`` rounds, shape (n,) int64."""
        return rng.choice(self.n_contexts, size=n, p=self.context_probs).astype(np.int64)

    def observe(self, states: np.ndarray) -> np.ndarray:
        return self.contexts[states]

    def step(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One round: rewards of the actions (at a uniform slot with positions); every round ends."""
        means = self.expected_reward(self.contexts)[states, actions]
        if self.len_list is not None:
            means = means * position_bias(self.len_list)[rng.integers(self.len_list, size=len(states))]
        return states, self._rewards(means, rng), np.ones(len(states), dtype=bool)


def synthetic_bandit(
    n_actions: int = 10,
    dim_context: int = 5,
    n_contexts: int = 20,
    *,
    reward_type: RewardType = "binary",
    reward_noise: float = 1.0,
    n_embedding_categories: int | None = None,
    len_list: int | None = None,
    beta: float = 1.0,
    seed: int = 0,
    name: str = "bandit",
    horizon: int = 1,
    gamma: float = 1.0,
) -> SyntheticBandit:
    """A ``SyntheticBandit`` drawn from ``seed`` (module docstring: scores, rewards, embeddings, positions).

    ``beta`` is the behavior policy's inverse temperature (``task.behavior_policy()``). ``horizon`` and
    ``gamma`` are accepted for ``make(name, horizon=..., gamma=...)`` and must stay 1.
    """
    if horizon != 1 or gamma != 1.0:
        raise ValueError(f"horizon, gamma: a bandit has horizon 1 and gamma 1, found {horizon!r}, {gamma!r}")
    A = _positive_int("n_actions", n_actions, 2)
    d = _positive_int("dim_context", dim_context)
    K = _positive_int("n_contexts", n_contexts)
    if reward_type not in ("binary", "continuous"):
        raise ValueError(f"reward_type: expected 'binary' or 'continuous', found {reward_type!r}")
    categories = None
    rng = np.random.default_rng(seed)
    contexts, probs = _contexts(rng, K, d)
    if n_embedding_categories is not None:
        C = _positive_int("n_embedding_categories", n_embedding_categories)
        if not 2 <= C < A:
            raise ValueError(f"n_embedding_categories: expected an int in [2, n_actions - 1 = {A - 1}] (several actions per category), found {C}")
        categories = rng.permutation(np.arange(A) % C)
    columns = A if categories is None else int(n_embedding_categories)
    weights = rng.standard_normal((d, columns)) / np.sqrt(d)
    biases = 0.5 * rng.standard_normal(columns)
    return SyntheticBandit(
        contexts=contexts, context_probs=probs, weights=weights, biases=biases, n_actions=A, reward_type=reward_type,
        reward_noise=reward_noise, action_categories=categories, len_list=len_list, behavior_beta=beta, name=name,
    )  # fmt: skip


def bandit_inputs(
    task: SyntheticBandit,
    dataset: LoggedDataset,
    policies: Sequence[DiscretePolicy],
    q_model: Literal["regression", "tabular", "true"] | None = "regression",
    ground_truth: Sequence[float] | np.ndarray | None = None,
) -> OPEInput:
    """``OPEInput`` for one-step logs of ``task``: evaluation propensities and action distributions, and a
    reward model Q̂(x, a) with V̂(x) = Σ_a π(a | x) Q̂(x, a).

    ``q_model``:
        ``"regression"``  per action, a ridge least-squares fit of r on [x, 1] over the rounds that logged
                          it (λ = 1; an action never logged predicts the mean reward): fast, and
                          misspecified for binary rewards (the truth is logistic), so DM is biased and the
                          DR forms have something to correct, as with a real reward model;
        ``"tabular"``     tabular FQE at horizon 1 (``fit_tabular_fqe`` on the context ids): the mean reward
                          of each (context, action) cell, empty cells falling back to the context's mean.
                          Fitted on the same data it is saturated, so DR and SNDR equal DM exactly;
        ``"true"``        the exact q(x, a) (× the logged slot's examination probability with positions);
        ``None``          no Q̂ (no DM or DR).
    ``ground_truth`` (e.g. ``task.policy_values(policies)``) is stored with standard error 0.
    """
    from opelab.ope.inputs import OPEInput, evaluation_action_probs, truth_fields
    from opelab.ope.qfunction import fit_tabular_fqe

    if q_model not in Q_MODELS:
        raise ValueError(f"q_model: expected one of {list(Q_MODELS)}, found {q_model!r}")
    if dataset.horizon != 1:
        raise ValueError(f"dataset: expected a one-step bandit log (horizon 1), found horizon {dataset.horizon}")
    probs = evaluation_action_probs(dataset, policies)  # (P, n, 1, A)
    actions = np.asarray(dataset.actions)
    pscore = np.take_along_axis(probs, actions[None, :, :, None], axis=-1)[..., 0]  # (P, n, 1)
    q_hat = v_hat = None
    if q_model is not None:
        ids = task.context_ids(dataset.observations[:, 0])
        if q_model == "regression":
            q = _ridge_reward_model(dataset.observations[:, 0], actions[:, 0], dataset.rewards[:, 0], task.n_actions)
            q_full = np.broadcast_to(q[None, :, None, :], probs.shape)
        elif q_model == "true":
            if task.len_list is not None and dataset.positions is not None:
                q = task.expected_reward(task.contexts, None)[ids] * task.position_bias[dataset.positions[:, 0]][:, None]
            else:  # no logged slots: the reward averaged over the uniform slot
                q = task.q_table[ids]
            q_full = np.broadcast_to(q[None, :, None, :], probs.shape)
        else:
            tables = np.stack([task.policy_table(p) for p in policies])[:, None]  # (P, 1, K, A)
            by_id = replace(dataset, observations=ids[:, None])  # the same log, observed as context ids
            q_full = fit_tabular_fqe(by_id, tables)[:, 0][:, ids][:, :, None, :]  # (P, n, 1, A)
        q_hat = np.take_along_axis(q_full, actions[None, :, :, None], axis=-1)[..., 0]
        v_hat = np.einsum("pnha,pnha->pnh", probs, q_full)
    return OPEInput(
        policy_names=tuple(p.name for p in policies),
        eval_pscore=pscore,
        eval_action_probs=probs,
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=None if v_hat is None else v_hat[:, :, 0],
        **truth_fields(ground_truth, None, len(policies)),
    )


Q_MODELS = ("regression", "tabular", "true", None)


def _ridge_reward_model(contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, n_actions: int, ridge: float = 1.0) -> np.ndarray:
    """Q̂(x_i, a) for every logged row and action, (n, A): per action θ_a = (ZᵀZ + λI)⁻¹ Zᵀ r over its rounds,
    Z = [x, 1]; an action without rounds predicts the overall mean reward."""
    design = np.concatenate([contexts, np.ones((len(contexts), 1))], axis=1)  # (n, d + 1)
    out = np.full((len(contexts), n_actions), float(rewards.mean()))
    for a in range(n_actions):
        rows = actions == a
        if rows.any():
            z = design[rows]
            theta = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ rewards[rows])
            out[:, a] = design @ theta
    return out


# --------------------------------------------------------------------------- #
# slates
# --------------------------------------------------------------------------- #
def enumerate_slates(n_items: int, len_list: int) -> np.ndarray:
    """Every ranking of ``len_list`` distinct items out of ``n_items``, lexicographic, shape (S, L) int64,
    S = I! / (I − L)!; refused above ``MAX_SLATES``."""
    I = _positive_int("n_items", n_items, 2)
    L = _positive_int("len_list", len_list)
    if L > I:
        raise ValueError(f"len_list: expected at most n_items = {I} (a slate shows distinct items), found {L}")
    count = math.perm(I, L)
    if count > MAX_SLATES:
        raise ValueError(
            f"n_items, len_list: expected at most {MAX_SLATES} slates to enumerate for the exact value, found "
            f"{I}!/({I}-{L})! = {count} (lower n_items or len_list)"
        )
    return np.array(list(itertools.permutations(range(I), L)), dtype=np.int64).reshape(count, L)


def _slot_conditionals(logits: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Plackett–Luce π(· | x, items above slot t) for every slot: logits (m, I), items (m, L) -> (m, L, I),
    0 on the items already shown."""
    m, L = items.shape
    used = np.zeros(logits.shape, dtype=bool)
    out = np.empty((m, L, logits.shape[1]))
    rows = np.arange(m)
    for t in range(L):
        masked = np.where(used, -np.inf, logits)
        weights = np.exp(masked - masked.max(axis=1, keepdims=True))
        out[:, t] = weights / weights.sum(axis=1, keepdims=True)
        used[rows, items[:, t]] = True
    return out


class PlackettLucePolicy:
    """A ranking policy: Plackett–Luce over items with logits β · score(x, i) ("softmax without
    replacement"): π(σ | x) = Π_t exp(β s(x, σ_t)) / Σ_{j ∉ σ_<t} exp(β s(x, j)).

    What the slate estimators need on a ranking log (contexts at ``observations[:, 0]``, logged rankings
    in ``actions``) comes from ``logged_pscore`` (π(a_t | x, a_<t), for ``eval_pscore``),
    ``logged_marginal_pscore`` (π(a_t at slot t | x), by enumeration) and ``slot_action_probs``
    (π(· | x, a_<t), for V̂ with a reward model).
    """

    def __init__(self, scores: Any, beta: float, len_list: int, name: str | None = None) -> None:
        self.scores = scores
        self.n_items = int(scores.n_actions)
        self.len_list = _positive_int("len_list", len_list)
        self.beta = _finite("beta", beta)
        self.name = name or f"plackett_luce(beta={beta:g})"

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """β · score(x, ·), shape (m, I)."""
        return self.beta * np.asarray(self.scores.action_values(contexts), dtype=np.float64)

    @cached_property
    def slates(self) -> np.ndarray:
        return enumerate_slates(self.n_items, self.len_list)

    def slate_conditionals(self, contexts: np.ndarray) -> np.ndarray:
        """π(σ_t | x, σ_<t) for every enumerated slate σ and slot, shape (m, S, L)."""
        slates = self.slates
        S, L = slates.shape
        logits = self.logits(contexts)  # (m, I)
        m = len(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(shifted)  # (m, I)
        out = np.empty((m, S, L))
        available = np.ones((S, self.n_items), dtype=bool)
        for t in range(L):
            denominator = weights @ available.T  # Σ_{j ∉ σ_<t} w_j, (m, S): a sum, never a difference
            out[:, :, t] = weights[:, slates[:, t]] / denominator
            available[np.arange(S), slates[:, t]] = False
        return out

    def slate_probs(self, contexts: np.ndarray) -> np.ndarray:
        """π(σ | x) of every enumerated slate, shape (m, S)."""
        return self.slate_conditionals(contexts).prod(axis=-1)

    def marginal_probs(self, contexts: np.ndarray) -> np.ndarray:
        """π(item i at slot t | x) = Σ_σ π(σ | x) 1{σ_t = i}, shape (m, L, I)."""
        probs = self.slate_probs(contexts)  # (m, S)
        onehot = np.zeros((len(self.slates), self.len_list, self.n_items))
        for t in range(self.len_list):
            onehot[np.arange(len(self.slates)), t, self.slates[:, t]] = 1.0
        return np.einsum("ms,sli->mli", probs, onehot)

    # ------------------------------------------------------------------ on a ranking log
    def _log(self, dataset: LoggedDataset) -> tuple[np.ndarray, np.ndarray]:
        if not dataset.info.slate or dataset.horizon != self.len_list or dataset.action_space.n_actions != self.n_items:
            raise ValueError(
                f"dataset: expected a ranking log of {self.len_list} slots over {self.n_items} items (info.slate), found "
                f"slate={dataset.info.slate}, horizon {dataset.horizon}, {dataset.action_space.n_actions} actions"
            )
        if not dataset.mask.all():
            raise ValueError("dataset: expected every slot of every round logged (no padding)")
        return np.asarray(dataset.observations[:, 0], dtype=np.float64), np.asarray(dataset.actions)

    def slot_action_probs(self, dataset: LoggedDataset) -> np.ndarray:
        """π(· | x, a_<t) given the logged items above each slot, shape (n, L, I)."""
        contexts, items = self._log(dataset)
        return _slot_conditionals(self.logits(contexts), items)

    def logged_pscore(self, dataset: LoggedDataset) -> np.ndarray:
        """π(a_t | x, a_<t) of the logged items, shape (n, L) (their products are the cascade / joint ratios' numerators)."""
        _, items = self._log(dataset)
        return np.take_along_axis(self.slot_action_probs(dataset), items[..., None], axis=-1)[..., 0]

    def logged_marginal_pscore(self, dataset: LoggedDataset) -> np.ndarray:
        """π(a_t at slot t | x) of the logged items, shape (n, L), by enumerating the slates per distinct context."""
        contexts, items = self._log(dataset)
        unique, inverse = np.unique(contexts, axis=0, return_inverse=True)
        marginals = self.marginal_probs(unique)  # (U, L, I)
        return marginals[inverse.reshape(-1)[:, None], np.arange(self.len_list)[None, :], items]


@dataclass(frozen=True, eq=False)
class SyntheticSlate:
    """A ranking bandit over a finite context set with exact values by enumerating the slates (module docstring)."""

    contexts: np.ndarray  # (K, d)
    context_probs: np.ndarray  # (K,)
    weights: np.ndarray  # (d, I)
    biases: np.ndarray  # (I,)
    len_list: int
    reward_structure: RewardStructure = "independent"
    behavior_beta: float = 1.0
    name: str = "slate"
    gamma: float = field(default=1.0, init=False)

    def __post_init__(self) -> None:
        contexts = np.array(self.contexts, dtype=np.float64)
        probs = np.array(self.context_probs, dtype=np.float64)
        K = len(contexts)
        if contexts.ndim != 2 or K < 1 or not np.isfinite(contexts).all() or len(np.unique(contexts, axis=0)) != K:
            raise ValueError(f"contexts: expected distinct finite context vectors (n_contexts, dim_context), found shape {contexts.shape}")
        if probs.shape != (K,) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0, atol=1e-9):
            raise ValueError(f"context_probs: expected a probability vector of shape ({K},), found shape {probs.shape}")
        weights, biases = np.array(self.weights, dtype=np.float64), np.array(self.biases, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[0] != contexts.shape[1] or biases.shape != (weights.shape[1],):
            raise ValueError(
                f"weights, biases: expected shapes ({contexts.shape[1]}, n_items) and (n_items,), "
                f"found {weights.shape} and {biases.shape}"
            )
        if self.reward_structure not in ("independent", "cascade"):
            raise ValueError(f"reward_structure: expected 'independent' or 'cascade', found {self.reward_structure!r}")
        enumerate_slates(weights.shape[1], self.len_list)  # sizes checked once, here
        object.__setattr__(self, "len_list", int(self.len_list))
        object.__setattr__(self, "behavior_beta", _finite("behavior_beta", self.behavior_beta))
        for key, value in (("contexts", contexts), ("context_probs", probs), ("weights", weights), ("biases", biases)):
            object.__setattr__(self, key, freeze(value))

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[1])

    @property
    def horizon(self) -> int:
        return self.len_list

    @property
    def n_contexts(self) -> int:
        return int(self.contexts.shape[0])

    @property
    def action_space(self) -> ActionSpace:
        return ActionSpace.discrete(self.n_items)

    @cached_property
    def slates(self) -> np.ndarray:
        """Every ranking, (S, L)."""
        return freeze(enumerate_slates(self.n_items, self.len_list))

    def item_scores(self, observations: np.ndarray) -> np.ndarray:
        """f(x, i) = xᵀ W_i + b_i, shape (m, I)."""
        return np.asarray(observations, dtype=np.float64) @ self.weights + self.biases

    @property
    def score_values(self) -> CallableActionValues:
        return CallableActionValues(self.item_scores, self.n_items)

    def attractiveness(self, observations: np.ndarray) -> np.ndarray:
        """α(x, i) = σ(f(x, i)), shape (m, I)."""
        return _sigmoid(self.item_scores(observations))

    def slot_rewards(self, observations: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """E[r_t | x, σ] for each row's slate: observations (m, d), slates (m, L) -> (m, L)."""
        alpha = np.take_along_axis(self.attractiveness(observations), slates, axis=1)  # (m, L)
        if self.reward_structure == "independent":
            return alpha * position_bias(self.len_list)
        no_click_above = np.cumprod(np.concatenate([np.ones((len(alpha), 1)), 1.0 - alpha[:, :-1]], axis=1), axis=1)
        return alpha * no_click_above

    @cached_property
    def _slate_rewards(self) -> np.ndarray:
        """E[r_t | x_k, σ] for every context and slate, (K, S, L)."""
        K, S = self.n_contexts, len(self.slates)
        rows = np.repeat(self.contexts, S, axis=0)
        return freeze(self.slot_rewards(rows, np.tile(self.slates, (K, 1))).reshape(K, S, self.len_list))

    # ------------------------------------------------------------------ policies
    def _check(self, policy: PlackettLucePolicy) -> None:
        if not isinstance(policy, PlackettLucePolicy) or policy.n_items != self.n_items or policy.len_list != self.len_list:
            raise ValueError(f"policy: expected a PlackettLucePolicy over {self.n_items} items and {self.len_list} slots, found {policy!r}")

    def behavior_policy(self, beta: float | None = None, name: str | None = None) -> PlackettLucePolicy:
        """Plackett–Luce with logits β f(x, ·), β = ``behavior_beta`` unless given."""
        beta = self.behavior_beta if beta is None else beta
        return PlackettLucePolicy(self.score_values, beta, self.len_list, name=name or f"behavior(plackett_luce, beta={beta:g})")

    def candidates(
        self,
        temperatures: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
        adversarial: Sequence[float] = (1.0,),
        include_uniform: bool = True,
    ) -> list[PlackettLucePolicy]:
        """Plackett–Luce over f / τ for each temperature, uniform rankings, and over −f / τ (adversarial)."""
        if any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf for t in (*temperatures, *adversarial)):
            raise ValueError(f"temperatures: expected positive numbers, found {list(temperatures)} and {list(adversarial)}")
        scores, L = self.score_values, self.len_list
        family = [PlackettLucePolicy(scores, 1.0 / t, L, name=f"pl(tau={t:g})") for t in temperatures]
        if include_uniform:
            family.append(PlackettLucePolicy(scores, 0.0, L, name="uniform"))
        family += [PlackettLucePolicy(scores, -1.0 / t, L, name=f"worst_pl(tau={t:g})") for t in adversarial]
        return family

    # ------------------------------------------------------------------ exact values
    def slot_values(self, policy: PlackettLucePolicy) -> np.ndarray:
        """Exact E_π[r_t] per slot: Σ_k p_k Σ_σ π(σ | x_k) E[r_t | x_k, σ], shape (L,)."""
        self._check(policy)
        return np.einsum("k,ks,ksl->l", self.context_probs, policy.slate_probs(self.contexts), self._slate_rewards)

    def policy_value(self, policy: PlackettLucePolicy) -> float:
        """Exact V(π) = Σ_k p_k Σ_σ π(σ | x_k) Σ_t E[r_t | x_k, σ]."""
        return float(self.slot_values(policy).sum())

    def policy_values(self, policies: Sequence[PlackettLucePolicy]) -> np.ndarray:
        return np.array([self.policy_value(p) for p in policies])

    def q_values(self, policy: PlackettLucePolicy) -> list[np.ndarray]:
        """Exact Q_t^π(x_k, σ_≤t) = E_π[Σ_{t' ≥ t} r_t' | x_k, σ_≤t] for every prefix of length t + 1, one
        (K, G_t) array per slot t, the prefixes in the order of ``_prefix_codes(t)``."""
        self._check(policy)
        conditionals = policy.slate_conditionals(self.contexts)  # (K, S, L)
        to_go = np.cumsum(self._slate_rewards[:, :, ::-1], axis=2)[:, :, ::-1]  # G_t = Σ_{t' ≥ t} E[r_t'], (K, S, L)
        K, S, L = conditionals.shape
        out = []
        for t in range(L):
            codes, groups = np.unique(self._codes(self.slates[:, : t + 1]), return_inverse=True)
            later = conditionals[:, :, t + 1 :].prod(axis=2)  # π(σ | σ_≤t), (K, S)
            index = (np.arange(K)[:, None] * len(codes) + groups.reshape(-1)[None, :]).reshape(-1)
            q = np.bincount(index, weights=(later * to_go[:, :, t]).reshape(-1), minlength=K * len(codes))
            out.append(q.reshape(K, len(codes)))
        return out

    def _codes(self, prefixes: np.ndarray) -> np.ndarray:
        """Integer code of each prefix (rows of items): Σ_j item_j · I^j."""
        return (prefixes * self.n_items ** np.arange(prefixes.shape[1])).sum(axis=1)

    # ------------------------------------------------------------------ data
    def context_ids(self, observations: np.ndarray) -> np.ndarray:
        return _context_ids(self.contexts, observations)

    def collect(self, policy: PlackettLucePolicy, n_rounds: int, seed: int) -> LoggedDataset:
        """``n_rounds`` rankings of ``policy`` as a ranking log (module docstring). Vectorized."""
        self._check(policy)
        n = _positive_int("n_rounds", n_rounds)
        rng = np.random.default_rng(seed)
        L, I = self.len_list, self.n_items
        ids = rng.choice(self.n_contexts, size=n, p=self.context_probs)
        logits = policy.logits(self.contexts)[ids]  # (n, I)
        # Plackett–Luce by the Gumbel trick: the L largest of logits + Gumbel noise, in order (Yellott, 1977)
        perturbed = logits + rng.gumbel(size=(n, I))
        items = np.argsort(-perturbed, axis=1, kind="stable")[:, :L]
        contexts = self.contexts[ids]
        probs = _slot_conditionals(logits, items)  # (n, L, I)
        pscore = np.take_along_axis(probs, items[..., None], axis=-1)[..., 0]
        marginal = policy.marginal_probs(self.contexts)[ids[:, None], np.arange(L)[None, :], items]
        means = self.slot_rewards(contexts, items)
        if self.reward_structure == "independent":
            rewards = rng.binomial(1, means).astype(np.float64)
        else:
            clicks = rng.random((n, L)) < np.take_along_axis(self.attractiveness(contexts), items, axis=1)
            first = np.cumsum(clicks, axis=1) == 1
            rewards = (clicks & first).astype(np.float64)
        terminals = np.zeros((n, L), dtype=bool)
        terminals[:, -1] = True
        info = DatasetInfo(
            task=self.name, gamma=1.0, action_space=self.action_space, behavior_policy=policy.name, seed=int(seed), len_list=L, slate=True
        )
        return LoggedDataset(
            observations=freeze(np.repeat(contexts[:, None, :], L, axis=1)),
            actions=freeze(items.astype(np.int64)),
            rewards=freeze(rewards),
            terminals=freeze(terminals),
            mask=freeze(np.ones((n, L), dtype=bool)),
            behavior_pscore=freeze(pscore),
            behavior_action_probs=freeze(probs),
            behavior_marginal_pscore=freeze(marginal),
            info=info,
        )


def synthetic_slate(
    n_items: int = 4,
    len_list: int = 3,
    dim_context: int = 5,
    n_contexts: int = 10,
    *,
    reward_structure: RewardStructure = "independent",
    beta: float = 1.0,
    seed: int = 0,
    name: str = "slate",
) -> SyntheticSlate:
    """A ``SyntheticSlate`` drawn from ``seed``; sizes with more than ``MAX_SLATES`` rankings are refused."""
    enumerate_slates(n_items, len_list)
    d = _positive_int("dim_context", dim_context)
    K = _positive_int("n_contexts", n_contexts)
    rng = np.random.default_rng(seed)
    contexts, probs = _contexts(rng, K, d)
    weights = rng.standard_normal((d, n_items)) / np.sqrt(d)
    biases = 0.5 * rng.standard_normal(n_items)
    return SyntheticSlate(
        contexts=contexts, context_probs=probs, weights=weights, biases=biases, len_list=len_list,
        reward_structure=reward_structure, behavior_beta=beta, name=name,
    )  # fmt: skip


def slate_inputs(
    task: SyntheticSlate,
    dataset: LoggedDataset,
    policies: Sequence[PlackettLucePolicy],
    q_model: Literal["true"] | None = None,
    ground_truth: Sequence[float] | np.ndarray | Literal["exact"] | None = "exact",
) -> OPEInput:
    """``OPEInput`` for a ranking log of ``task`` (P policies, n rounds, L slots):

        eval_pscore        π_e(a_t | x, a_<t)                  (products: the joint / cascade numerators)
        marginal_weights   π_e(a_t at t | x) / π_b(a_t at t | x)   (the item-position weights of ``iips``)
        eval_action_probs  π_e(· | x, a_<t)                     (P, n, L, I)

    ``q_model="true"`` adds the exact reward-to-go of each policy as the reward model, the convention of
    OBP's cascade DR (Kiyohara et al., 2022) and of the per-decision DR on trajectories:
    ``q_hat`` Q_t(x, a_≤t) = E_π[Σ_{t' ≥ t} r_t' | x, a_≤t], ``v_hat`` Σ_a π(a | x, a_<t) Q_t(x, a_<t, a),
    ``initial_v_hat`` V(x). ``ground_truth="exact"`` stores ``task.policy_values(policies)``; None leaves it out.
    """
    from opelab.ope.inputs import OPEInput, truth_fields

    if q_model not in ("true", None):
        raise ValueError(f"q_model: expected 'true' or None, found {q_model!r}")
    if dataset.behavior_marginal_pscore is None:
        raise ValueError("dataset: expected behavior_marginal_pscore (a ranking log from SyntheticSlate.collect)")
    for p in policies:
        task._check(p)
    probs = np.stack([p.slot_action_probs(dataset) for p in policies])  # (P, n, L, I)
    items = np.asarray(dataset.actions)
    pscore = np.take_along_axis(probs, np.broadcast_to(items[None, ..., None], (*probs.shape[:3], 1)), axis=-1)[..., 0]
    marginal = np.stack([p.logged_marginal_pscore(dataset) for p in policies]) / dataset.behavior_marginal_pscore
    q_hat = v_hat = None
    if q_model == "true":
        ids = task.context_ids(dataset.observations[:, 0])
        n, L = items.shape
        I = task.n_items
        q_hat, v_hat = np.zeros(pscore.shape), np.zeros(pscore.shape)
        for p, policy in enumerate(policies):
            tables = task.q_values(policy)
            for t in range(L):
                codes = np.unique(task._codes(task.slates[:, : t + 1]))
                base = task._codes(items[:, :t]) if t else np.zeros(n, dtype=np.int64)
                candidates = base[:, None] + np.arange(I)[None, :] * I**t  # (n, I): prefix a_<t then item a
                shown = np.zeros((n, I), dtype=bool)
                shown[np.arange(n)[:, None], items[:, :t]] = True
                where = np.clip(np.searchsorted(codes, candidates), 0, len(codes) - 1)
                q_all = np.where(shown, 0.0, tables[t][ids[:, None], where])  # (n, I); shown items have π = 0
                q_hat[p, :, t] = q_all[np.arange(n), items[:, t]]
                v_hat[p, :, t] = (probs[p, :, t] * q_all).sum(axis=1)
    truth = task.policy_values(policies) if isinstance(ground_truth, str) and ground_truth == "exact" else ground_truth
    return OPEInput(
        policy_names=tuple(p.name for p in policies),
        eval_pscore=pscore,
        eval_action_probs=probs,
        marginal_weights=marginal,
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=None if v_hat is None else v_hat[:, :, 0],
        **truth_fields(truth, None, len(policies)),
    )
