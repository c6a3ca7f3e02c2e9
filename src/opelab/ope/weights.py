"""Marginal importance weights: how much more (or less) often π_e visits a state, or a state-action pair,
at step t than the data does.

For a finite horizon the weights are per step (Liu et al., 2018; Uehara et al., 2020; Kallus & Uehara,
2020):

    w_t(s)    = d_t^π(s) / d_t^D(s),        w_t(s, a) = d_t^π(s, a) / d_t^D(s, a),

with d_t the probability of being at s (and taking a) at step t. A finished trajectory sits in an extra
*absorbing* state, so d_t sums to 1 at every step and E_D[w_t] = 1 over all n trajectories, which is what
the self-normalised estimators need (the same absorption convention as the per-decision estimators).
With these weights Σ_t γ^t w_t(s_t, a_t) r_t is an unbiased estimate of J(π).

``tabular_marginal_weights`` estimates them from data by the forward flow of the empirical model:

    d̂_0^π = d̂_0^D,   d̂_t^π(s, a) = d̂_t^π(s) π_t(a | s),
    d̂_{t+1}^π(s') = Σ_{s,a} d̂_t^π(s, a) N_t(s, a, s') / N_t(s, a),

where N_t counts logged transitions at step t. On a tabular, time-indexed function class this is the
solution of the minimax weight-learning objective (MWL, Uehara et al., 2020) and of the unregularised DICE
objectives (DualDICE, GenDICE; the unified Lagrangian of Yang et al., 2020): all of them ask for the
occupancy of π under the data's own transition frequencies, divided by the data's distribution. The
weights are identified only on the data's support: mass that π_e sends to pairs the data never took at
step t cannot be followed and is dropped (the estimate is then biased, as with any estimator).

``solve_flow_weights`` runs the same recursion on any non-negative counts, so handing it the *expected*
counts n · d_t^D(s, a) P(s' | s, a) of a known model gives the exact weights (used in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opelab.data import LoggedDataset


@dataclass(frozen=True)
class FlowWeights:
    """Per-step marginal weights on the (S + 1) states (the last one absorbing) and A actions.

    ``state`` (P, H, S+1), ``state_action`` (P, H, S+1, A); zero where the data has no support.
    """

    state: np.ndarray
    state_action: np.ndarray


def transition_counts(dataset: LoggedDataset, n_states: int | None = None) -> np.ndarray:
    """N_t(s, a, s') of the logged data, shape (H, S+1, A, S+1); state S is the absorbing end state.

    A trajectory that ended at step t moves to the absorbing state at t + 1 and stays there with action 0.
    ``n_states`` defaults to the largest logged state id + 1.
    """
    states, actions, mask = _tabular(dataset)
    n, H = mask.shape
    S, A = (int(states.max()) + 1 if n_states is None else n_states), dataset.action_space.n_actions
    if states.max() >= S:
        raise ValueError(f"n_states: expected more than the largest logged state id {states.max()}, found {S}")
    s = np.where(mask, states, S)
    a = np.where(mask, actions, 0)
    s_next = np.concatenate([s[:, 1:], np.full((n, 1), S)], axis=1)
    t = np.broadcast_to(np.arange(H), (n, H))
    flat = ((t * (S + 1) + s) * A + a) * (S + 1) + s_next
    return np.bincount(flat.ravel(), minlength=H * (S + 1) * A * (S + 1)).reshape(H, S + 1, A, S + 1).astype(np.float64)


def solve_flow_weights(counts: np.ndarray, policy_probs: np.ndarray) -> FlowWeights:
    """Forward flow of the empirical model given transition counts and evaluation policies.

    ``counts`` (H, S+1, A, S+1) as from ``transition_counts`` (any non-negative weights work);
    ``policy_probs`` (P, H, S+1, A): π_t(a | s) on every state (the absorbing row is ignored: there the
    only action is 0).
    """
    H, S1, A, _ = counts.shape
    pi = np.array(policy_probs, dtype=np.float64)
    pi[:, :, -1, :] = 0.0
    pi[:, :, -1, 0] = 1.0
    pair = counts.sum(axis=-1)  # N_t(s, a), (H, S+1, A)
    state = pair.sum(axis=-1)  # N_t(s), (H, S+1)
    total = state[0].sum()
    d_data = state / total
    with np.errstate(invalid="ignore", divide="ignore"):
        step_model = np.where(pair[..., None] > 0, counts / pair[..., None], 0.0)  # P̂_t(s' | s, a)
    P = pi.shape[0]
    w_state = np.zeros((P, H, S1))
    w_pair = np.zeros((P, H, S1, A))
    d_pi = np.broadcast_to(d_data[0], (P, S1)).copy()
    for t in range(H):
        d_pi_pair = d_pi[:, :, None] * pi[:, t]  # (P, S+1, A)
        w_state[:, t] = _ratio(d_pi, d_data[t])
        w_pair[:, t] = _ratio(d_pi_pair, pair[t] / total)
        d_pi_pair = np.where(pair[t] > 0, d_pi_pair, 0.0)  # unsupported pairs cannot be followed
        d_pi = np.einsum("psa,sat->pt", d_pi_pair, step_model[t])
    return FlowWeights(state=w_state, state_action=w_pair)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape), where=denominator > 0)


def tabular_marginal_weights(
    dataset: LoggedDataset, policy_probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """State and state-action marginal weights on every logged step, two arrays of shape (P, n, H).

    ``policy_probs`` (P, H, S, A) is π_t(a | s) of each evaluation policy on every state id that occurs in
    the data (``S = observations.max() + 1``). Padded steps get the absorbing state's weight.
    """
    counts = transition_counts(dataset)
    H, S1, A, _ = counts.shape
    probs = np.asarray(policy_probs, dtype=np.float64)
    if probs.ndim != 4 or probs.shape[1:] != (H, S1 - 1, A):
        raise ValueError(f"policy_probs: expected shape (P, {H}, {S1 - 1}, {A}), found {probs.shape}")
    padded = np.concatenate([probs, np.zeros((probs.shape[0], H, 1, A))], axis=2)
    return on_logged_steps(dataset, solve_flow_weights(counts, padded))


def on_logged_steps(dataset: LoggedDataset, weights: FlowWeights) -> tuple[np.ndarray, np.ndarray]:
    """Look up per-step weights at the logged (s_t, a_t); padded steps read the absorbing state."""
    states, actions, mask = _tabular(dataset)
    S = weights.state.shape[2] - 1
    if states.max() >= S:
        raise ValueError(f"weights: cover {S} states, but the data holds state {states.max()}")
    s = np.where(mask, states, S)
    a = np.where(mask, actions, 0)
    t = np.broadcast_to(np.arange(dataset.horizon), s.shape)
    return weights.state[:, t, s], weights.state_action[:, t, s, a]


def _tabular(dataset: LoggedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    states = np.asarray(dataset.observations)
    if states.dtype.kind not in "iu" or states.ndim != 2 or not dataset.action_space.is_discrete or states.min() < 0:
        raise ValueError(
            "observations: tabular marginal weights need non-negative integer state ids of shape (n, H) and discrete actions, "
            f"found dtype {states.dtype}, shape {states.shape}, {dataset.action_space.type} actions"
        )
    return states, np.asarray(dataset.actions), dataset.mask
