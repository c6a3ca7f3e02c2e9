"""Sequential recommendation with latent user preferences, boredom and churn: a synthetic, vectorized task.

Written from the published descriptions of recommender simulators used for RL and OPE: users with latent
preference vectors whose interest drifts with what they consume (RecSim's interest evolution, Ie et al.,
2019; RecoGym, Rohde et al., 2018) and the recommendation simulator of Kiyohara et al. (2021), where the
reward is a sigmoid of user preference · item embedding and users tire of repeated content.

Items j = 0..J−1 have embeddings e_j ~ U[−1, 1]^d and categories c(j) = j mod C (fixed by ``item_seed``).
A user's state is (u, f): preferences u ∈ R^d, drawn N(0, I/d)·``preference_scale`` at the start, and
fatigue f ∈ R^C, 0 at the start. Recommending item a gives
    engagement r = σ(α u·e_a + β − φ f_{c(a)} + η ε),  ε ~ N(0, 1)          reward, in (0, 1)
    f' = ρ f + 1{category c(a)}                                              boredom builds, then decays
    u' = u + κ r (e_a − u)                                                   interest drifts to what engages
and the user leaves after the step with probability q (1 − r) (terminal): bored users churn, so episodes
have different lengths and good recommendations are worth more than their immediate reward.

State = observation = [u | f], d + C floats (the task is fully observed, so it is an MDP).
``Recommendation`` recommends an item index (discrete). ``RecommendationContinuous`` takes a vector in
[−1, 1]^d, an item-embedding-like action, and recommends the item whose embedding is nearest (Euclidean).
"""

from __future__ import annotations

import numpy as np

from opelab.data import ActionSpace
from opelab.envs.gym_tasks import BatchTask


class _RecommenderUsers(BatchTask):
    def __init__(
        self,
        *,
        horizon: int,
        gamma: float,
        n_items: int,
        n_categories: int,
        dim: int,
        preference_scale: float,
        affinity: float,
        bias: float,
        fatigue_weight: float,
        fatigue_decay: float,
        drift: float,
        churn: float,
        noise: float,
        item_seed: int,
    ) -> None:
        super().__init__(horizon, gamma)
        for field, value in (("n_items", n_items), ("n_categories", n_categories), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field}: expected a positive int, found {value!r}")
        if n_categories > n_items:
            raise ValueError(f"n_categories: expected at most n_items = {n_items}, found {n_categories}")
        for field, value in (("fatigue_decay", fatigue_decay), ("drift", drift), ("churn", churn)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field}: expected a float in [0, 1], found {value!r}")
        scales = (("preference_scale", preference_scale), ("fatigue_weight", fatigue_weight), ("noise", noise))
        for field, value in scales:
            if not value >= 0:
                raise ValueError(f"{field}: expected a non-negative float, found {value!r}")
        self.n_items, self.n_categories, self.dim = int(n_items), int(n_categories), int(dim)
        self.preference_scale, self.affinity, self.bias = float(preference_scale), float(affinity), float(bias)
        self.fatigue_weight, self.fatigue_decay = float(fatigue_weight), float(fatigue_decay)
        self.drift, self.churn, self.noise = float(drift), float(churn), float(noise)
        self.item_seed = int(item_seed)
        self.items = np.random.default_rng(item_seed).uniform(-1.0, 1.0, size=(n_items, dim))  # (J, d)
        self.categories = np.arange(n_items) % n_categories  # (J,)
        self.obs_shape = (dim + n_categories,)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        states = np.zeros((n, self.dim + self.n_categories))
        states[:, : self.dim] = rng.standard_normal((n, self.dim)) * (self.preference_scale / np.sqrt(self.dim))
        return states

    def items_of(self, actions: np.ndarray) -> np.ndarray:
        """The recommended item index of each action, shape (batch,)."""
        raise NotImplementedError

    def expected_logits(self, states: np.ndarray) -> np.ndarray:
        """α u·e_j + β − φ f_{c(j)} for every item j, shape (batch, n_items): the noiseless engagement logit."""
        u, f = states[:, : self.dim], states[:, self.dim :]
        return self.affinity * u @ self.items.T + self.bias - self.fatigue_weight * f[:, self.categories]

    def step(self, states, actions, rng):
        items = self.items_of(self.check_actions(actions, len(states)))
        b, d = len(states), self.dim
        u, f = states[:, :d], states[:, d:]
        rows = np.arange(b)
        e = self.items[items]  # (b, d)
        cat = self.categories[items]
        logit = self.affinity * np.einsum("bd,bd->b", u, e) + self.bias - self.fatigue_weight * f[rows, cat]
        engagement = 1.0 / (1.0 + np.exp(-(logit + self.noise * rng.standard_normal(b))))
        nxt = np.empty_like(states)
        nxt[:, :d] = u + self.drift * engagement[:, None] * (e - u)
        nxt[:, d:] = self.fatigue_decay * f
        nxt[rows, d + cat] += 1.0
        leaves = rng.random(b) < self.churn * (1.0 - engagement)
        return nxt, engagement, leaves


_DEFAULTS = dict(
    n_items=20,
    n_categories=5,
    dim=5,
    preference_scale=2.0,
    affinity=2.0,
    bias=0.0,
    fatigue_weight=0.7,
    fatigue_decay=0.7,
    drift=0.1,
    churn=0.2,
    noise=0.5,
    item_seed=0,
)


class Recommendation(_RecommenderUsers):
    """Recommend one of ``n_items`` items per step (discrete); see the module docstring for the user model.

    Defaults: 20 items in 5 categories, d = 5, α = 2, φ = 0.7, ρ = 0.7, κ = 0.1, q = 0.2, η = 0.5,
    horizon 20, γ = 0.95.
    """

    name = "recsys"

    def __init__(self, *, horizon: int = 20, gamma: float = 0.95, **options) -> None:
        super().__init__(horizon=horizon, gamma=gamma, **{**_DEFAULTS, **options})
        self.action_space = ActionSpace.discrete(self.n_items)

    def items_of(self, actions: np.ndarray) -> np.ndarray:
        return actions

    def action_values(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """The expected-engagement logits (batch, n_items): a myopic base for greedy/softmax heads."""
        return self.expected_logits(observations)

    @property
    def n_actions(self) -> int:
        return self.n_items


class RecommendationContinuous(_RecommenderUsers):
    """Recommend with a vector in [−1, 1]^d mapped to the item with the nearest embedding (continuous)."""

    name = "recsys_continuous"

    def __init__(self, *, horizon: int = 20, gamma: float = 0.95, **options) -> None:
        super().__init__(horizon=horizon, gamma=gamma, **{**_DEFAULTS, **options})
        self.action_space = ActionSpace.continuous(self.dim, low=(-1.0,) * self.dim, high=(1.0,) * self.dim)

    def items_of(self, actions: np.ndarray) -> np.ndarray:
        sq = (actions**2).sum(axis=1)[:, None] - 2 * actions @ self.items.T + (self.items**2).sum(axis=1)
        return np.argmin(sq, axis=1)

    def greedy_action(self, observations: np.ndarray) -> np.ndarray:
        """The embedding of the item with the highest expected-engagement logit, shape (batch, dim)."""
        return self.items[np.argmax(self.expected_logits(observations), axis=1)]
