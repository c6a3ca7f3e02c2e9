"""Finite MDPs with exact ground truth by dynamic programming.

A ``TabularMDP`` has states ``0..S-1``, actions ``0..A-1``, an initial distribution μ₀, transitions
P(s' | s, a), rewards R(s, a) or R(s, a, s') (plus optional Gaussian noise of standard deviation
``reward_noise`` on every logged reward), a horizon H, a discount γ and optional terminal states: entering a
terminal state ends the episode (the transition into it still earns its reward), so episodes have lengths
1..H.

Values are exact, by backward induction over the horizon (Puterman, 1994, §4.5)::

    Q_t(s, a) = R̄(s, a) + γ Σ_s' P(s' | s, a) 1{s' not terminal} V_{t+1}(s'),    V_H ≡ 0
    V_t(s)    = Σ_a π_t(a | s) Q_t(s, a)
    J(π)      = Σ_s μ₀(s) V_0(s)

with R̄(s, a) = Σ_s' P(s' | s, a) R(s, a, s') when rewards depend on the next state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from opelab.data import ActionSpace
from opelab.policies import DiscretePolicy, GreedyPolicy, TabularQ, sample_categorical, sample_from_cdf


@dataclass(frozen=True, eq=False)
class TabularMDP:
    initial: np.ndarray  # (S,)
    transitions: np.ndarray  # (S, A, S)
    rewards: np.ndarray  # (S, A) or (S, A, S)
    horizon: int
    gamma: float
    reward_noise: float = 0.0
    terminal_states: np.ndarray | None = None  # (S,) bool
    name: str = "tabular"
    state_names: tuple[str, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        P = np.asarray(self.transitions, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"transitions: expected shape (n_states, n_actions, n_states), found {P.shape}")
        S, A, _ = P.shape
        if (P < 0).any() or not np.allclose(P.sum(axis=-1), 1.0, atol=1e-9):
            raise ValueError("transitions: expected non-negative rows P(· | s, a) summing to 1")
        mu = np.asarray(self.initial, dtype=np.float64)
        if mu.shape != (S,) or (mu < 0).any() or not np.isclose(mu.sum(), 1.0, atol=1e-9):
            raise ValueError(f"initial: expected a probability vector of shape ({S},), found shape {mu.shape}")
        R = np.asarray(self.rewards, dtype=np.float64)
        if R.shape not in ((S, A), (S, A, S)) or not np.isfinite(R).all():
            raise ValueError(f"rewards: expected finite values of shape ({S}, {A}) or ({S}, {A}, {S}), found {R.shape}")
        term = np.zeros(S, dtype=bool) if self.terminal_states is None else np.asarray(self.terminal_states)
        if term.dtype != np.bool_ or term.shape != (S,):
            raise ValueError(f"terminal_states: expected a bool array of shape ({S},), found {term.dtype} {term.shape}")
        if (mu[term] > 0).any():
            raise ValueError("initial: expected no initial probability on terminal states")
        if isinstance(self.horizon, bool) or not (isinstance(self.horizon, (int, np.integer)) and self.horizon >= 1):
            raise ValueError(f"horizon: expected a positive int, found {self.horizon!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a float in [0, 1], found {self.gamma!r}")
        if not (np.isfinite(self.reward_noise) and self.reward_noise >= 0):
            raise ValueError(f"reward_noise: expected a non-negative float, found {self.reward_noise!r}")
        if self.state_names is not None and len(self.state_names) != S:
            raise ValueError(f"state_names: expected {S} names, found {len(self.state_names)}")
        for name, value in (("transitions", P), ("initial", mu), ("rewards", R), ("terminal_states", term)):
            value = np.array(value, copy=True)  # own the arrays: later edits by the caller cannot reach them
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ description
    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.transitions.shape[1])

    @property
    def action_space(self) -> ActionSpace:
        return ActionSpace.discrete(self.n_actions)

    @property
    def expected_rewards(self) -> np.ndarray:
        """R̄(s, a), shape (S, A)."""
        if self.rewards.ndim == 2:
            return self.rewards
        return np.einsum("sat,sat->sa", self.transitions, self.rewards)

    @property
    def _continuing_transitions(self) -> np.ndarray:
        """P(s' | s, a) with terminal next states zeroed out: the episode stops there."""
        return self.transitions * ~self.terminal_states

    # ------------------------------------------------------------------ exact values
    def policy_table(self, policy: DiscretePolicy) -> np.ndarray:
        """π_t(a | s) for every step and state, shape (H, S, A)."""
        if policy.n_actions != self.n_actions:
            raise ValueError(f"policy.n_actions: expected {self.n_actions}, found {policy.n_actions}")
        S, H = self.n_states, self.horizon
        states = np.tile(np.arange(S), H)
        steps = np.repeat(np.arange(H), S)
        probs = np.asarray(policy.action_probs(states, steps), dtype=np.float64).reshape(H, S, self.n_actions)
        if (probs < 0).any() or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-9):
            raise ValueError(f"policy {policy.name!r}: action_probs rows must be non-negative and sum to 1")
        return probs

    def q_values(self, policy: DiscretePolicy) -> np.ndarray:
        """Exact Q^π_t(s, a) for t = 0..H-1 by backward induction, shape (H, S, A)."""
        pi = self.policy_table(policy)
        R, P = self.expected_rewards, self._continuing_transitions
        q = np.empty((self.horizon, self.n_states, self.n_actions))
        v_next = np.zeros(self.n_states)
        for t in range(self.horizon - 1, -1, -1):
            q[t] = R + self.gamma * P @ v_next
            v_next = (pi[t] * q[t]).sum(axis=-1)
        return q

    def state_values(self, policy: DiscretePolicy) -> np.ndarray:
        """Exact V^π_t(s), shape (H, S)."""
        return (self.policy_table(policy) * self.q_values(policy)).sum(axis=-1)

    def policy_value(self, policy: DiscretePolicy) -> float:
        """Exact J(π) = E[Σ_t γ^t r_t] from the initial distribution."""
        return float(self.initial @ self.state_values(policy)[0])

    def policy_values(self, policies: Sequence[DiscretePolicy]) -> np.ndarray:
        """Exact values of several policies, shape (P,)."""
        return np.array([self.policy_value(p) for p in policies])

    def optimal_q(self) -> np.ndarray:
        """Optimal Q*_t(s, a) by backward induction, shape (H, S, A)."""
        R, P = self.expected_rewards, self._continuing_transitions
        q = np.empty((self.horizon, self.n_states, self.n_actions))
        v_next = np.zeros(self.n_states)
        for t in range(self.horizon - 1, -1, -1):
            q[t] = R + self.gamma * P @ v_next
            v_next = q[t].max(axis=-1)
        return q

    def optimal_policy(self) -> GreedyPolicy:
        """The optimal (time-dependent, deterministic) policy: greedy on Q*_t, ties to the lowest action."""
        return GreedyPolicy(TabularQ(self.optimal_q()), name="optimal")

    # ------------------------------------------------------------------ occupancies
    def expected_transition_counts(self, policy: DiscretePolicy) -> np.ndarray:
        """E[N_t(s, a, s')] per trajectory under ``policy``, shape (H, S+1, A, S+1).

        The layout of ``opelab.ope.weights.transition_counts``: state S is the absorbing end state, entered
        after a transition into a terminal state and kept (with action 0) until the horizon. Summing over
        (a, s') gives d_t(s), the probability of being at s at step t.
        """
        pi = self.policy_table(policy)
        S, A, H = self.n_states, self.n_actions, self.horizon
        P_cont = self._continuing_transitions  # (S, A, S)
        p_end = self.transitions[:, :, self.terminal_states].sum(axis=-1)  # (S, A)
        counts = np.zeros((H, S + 1, A, S + 1))
        d, d_end = self.initial.copy(), 0.0
        for t in range(H):
            pair = d[:, None] * pi[t]  # (S, A)
            counts[t, :S, :, :S] = pair[:, :, None] * P_cont
            counts[t, :S, :, S] = pair * p_end
            counts[t, S, 0, S] = d_end
            d_end += float((pair * p_end).sum())
            d = np.einsum("sa,sat->t", pair, P_cont)
        return counts

    # ------------------------------------------------------------------ simulation (vectorized)
    @cached_property
    def _transition_cdf(self) -> np.ndarray:
        """Σ_{s'' ≤ s'} P(s'' | s, a), shape (S, A, S): sampling next states needs no per-step cumsum."""
        return np.cumsum(self.transitions, axis=-1)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Initial states of ``n`` episodes, shape (n,) int64."""
        return sample_categorical(np.broadcast_to(self.initial, (n, self.n_states)), rng)

    def step(
        self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance a batch: next states, rewards and whether each episode terminated."""
        next_states = sample_from_cdf(self._transition_cdf[states, actions], rng)
        if self.rewards.ndim == 2:
            rewards = self.rewards[states, actions]
        else:
            rewards = self.rewards[states, actions, next_states]
        if self.reward_noise > 0:
            rewards = rewards + self.reward_noise * rng.standard_normal(len(states))
        return next_states, rewards, self.terminal_states[next_states]

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        n_states: int,
        n_actions: int,
        horizon: int,
        gamma: float,
        seed: int,
        *,
        reward_noise: float = 0.0,
        n_terminal: int = 0,
        concentration: float = 1.0,
    ) -> TabularMDP:
        """A random MDP: Dirichlet(concentration) transitions and initial distribution, U(0, 1) rewards.

        With ``n_terminal > 0`` the last ``n_terminal`` states are terminal (episodes of varying length).
        """
        if not 0 <= n_terminal < n_states:
            raise ValueError(f"n_terminal: expected 0 <= n_terminal < n_states ({n_states}), found {n_terminal}")
        rng = np.random.default_rng(seed)
        transitions = rng.dirichlet(np.full(n_states, concentration), size=(n_states, n_actions))
        rewards = rng.uniform(0.0, 1.0, size=(n_states, n_actions))
        terminal = np.zeros(n_states, dtype=bool)
        terminal[n_states - n_terminal :] = True
        initial = rng.dirichlet(np.ones(n_states - n_terminal))
        initial = np.concatenate([initial, np.zeros(n_terminal)])
        return cls(
            initial=initial,
            transitions=transitions,
            rewards=rewards,
            horizon=horizon,
            gamma=gamma,
            reward_noise=reward_noise,
            terminal_states=terminal,
            name=f"random(S={n_states},A={n_actions},H={horizon},seed={seed})",
        )
