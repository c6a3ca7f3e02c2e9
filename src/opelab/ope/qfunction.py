"""Q-function estimation for the direct and doubly robust estimators.

``tabular_fqe``: fitted Q evaluation (Le, Voloshin & Yue, 2019) in its tabular, finite-horizon form. Going
backwards from the last step, it regresses the target

    y_{i,t} = r_{i,t} + γ · 1{step t+1 logged} · V̂_{t+1}(s_{i,t+1}),   V̂_t(s) = Σ_a π_e(a | s) Q̂_t(s, a),

on the logged (s_t, a_t) of step t. With one-hot features the least-squares fit is the cell mean of y over
the logged steps with that (t, s, a). It uses only the data (never the true model), and it runs for all
P policies at once: the targets have a leading policy axis.

A cell (t, s, a) that has no data while s was logged at step t (an action the behavior policy did not
take there) gets the mean target over all logged actions in (t, s): the value of behaving like the data
at that state. Terminal and last logged steps have no continuation, so their target is r_t.
"""

from __future__ import annotations

import numpy as np

from opelab.data import LoggedDataset


def tabular_fqe(dataset: LoggedDataset, eval_action_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q̂(s_t, a_t) and V̂(s_t) on every logged step for every policy: two arrays of shape (P, n, H).

    ``eval_action_probs`` (P, n, H, A) is π_e(· | s_t) on the logged steps.
    """
    states = np.asarray(dataset.observations)
    if states.dtype.kind not in "iu" or states.ndim != 2:
        raise ValueError(
            "observations: tabular FQE needs integer state ids of shape (n, H), "
            f"found dtype {states.dtype} and shape {states.shape}; pass q_tables or use a neural Q-function"
        )
    P, n, H, A = eval_action_probs.shape
    S = int(states.max()) + 1
    actions, rewards, mask = np.asarray(dataset.actions), dataset.rewards, dataset.mask
    q_hat = np.zeros((P, n, H))
    v_hat = np.zeros((P, n, H))
    for t in range(H - 1, -1, -1):
        rows = np.flatnonzero(mask[:, t])
        if len(rows) == 0:
            continue
        target = np.broadcast_to(rewards[rows, t], (P, len(rows))).copy()
        if t + 1 < H:
            target += dataset.gamma * mask[rows, t + 1] * v_hat[:, rows, t + 1]
        s, a = states[rows, t], actions[rows, t]
        cell = s * A + a
        cell_mean = _group_means(target, cell, S * A)  # (P, S*A), nan where a cell has no data
        state_mean = _group_means(target, s, S)  # (P, S)
        q_table = cell_mean.reshape(P, S, A)
        q_table = np.where(np.isnan(q_table), state_mean[:, :, None], q_table)
        q_logged_states = q_table[:, s, :]  # (P, m, A)
        q_hat[:, rows, t] = q_table[:, s, a]
        v_hat[:, rows, t] = (eval_action_probs[:, rows, t, :] * q_logged_states).sum(axis=-1)
    return q_hat, v_hat


def _group_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of ``values`` (P, m) within each group id of ``groups`` (m,); nan for empty groups."""
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sums = np.zeros((values.shape[0], n_groups))
    sums[:, sorted_groups[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts
