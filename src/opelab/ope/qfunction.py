"""Q-function estimation for the direct and doubly robust estimators.

``fit_tabular_fqe``: fitted Q evaluation (Le, Voloshin & Yue, 2019) in its tabular, finite-horizon form.
Going backwards from the last step, it regresses the target

    y_{i,t} = r_{i,t} + γ · 1{step t+1 logged} · V̂_{t+1}(s_{i,t+1}),   V̂_t(s) = Σ_a π_e(a | s) Q̂_t(s, a),

on the logged (s_t, a_t) of step t. With one-hot features the least-squares fit is the cell mean of y over
the logged steps with that (t, s, a). It uses only the data (never the true model), and it runs for all
P policies at once: the targets have a leading policy axis.

Cells without data fall back, in order, to the mean target of the state at that step (an action the
behavior policy did not take there gets the value of behaving like the data), then to the mean target of
the step (a state not seen at that step, e.g. in a held-out fold). A step without any data gets 0.
Terminal and last logged steps have no continuation, so their target is r_t.
"""

from __future__ import annotations

import numpy as np

from opelab.data import LoggedDataset


def fit_tabular_fqe(dataset: LoggedDataset, policy_tables: np.ndarray) -> np.ndarray:
    """Q̂_t(s, a) for every policy, step, state and action: shape (P, H, S, A).

    ``policy_tables`` (P, H, S, A) holds π_t(a | s) on every state id (S must exceed every logged id).
    """
    states = np.asarray(dataset.observations)
    if states.dtype.kind not in "iu" or states.ndim != 2 or states.min() < 0:
        raise ValueError(
            "observations: tabular FQE needs non-negative integer state ids of shape (n, H), "
            f"found dtype {states.dtype} and shape {states.shape}; pass q_tables or use a neural Q-function"
        )
    P, H, S, A = policy_tables.shape
    if H != dataset.horizon or states.max() >= S:
        raise ValueError(f"policy_tables: expected shape (P, {dataset.horizon}, > {states.max()}, A), found {policy_tables.shape}")
    actions, rewards, mask = np.asarray(dataset.actions), dataset.rewards, dataset.mask
    q = np.zeros((P, H, S, A))
    v_next = np.zeros((P, S))  # V̂_{t+1}(s) on every state
    for t in range(H - 1, -1, -1):
        rows = np.flatnonzero(mask[:, t])
        if len(rows):
            target = np.broadcast_to(rewards[rows, t], (P, len(rows))).copy()
            if t + 1 < H:
                target += dataset.gamma * mask[rows, t + 1] * v_next[:, states[rows, t + 1]]
            s, a = states[rows, t], actions[rows, t]
            cell = _group_means(target, s * A + a, S * A).reshape(P, S, A)  # nan where a cell has no data
            by_state = _group_means(target, s, S)[:, :, None]
            by_step = target.mean(axis=1)[:, None, None]
            q[:, t] = np.where(np.isnan(cell), np.where(np.isnan(by_state), by_step, by_state), cell)
        v_next = (policy_tables[:, t] * q[:, t]).sum(axis=-1)
    return q


def q_on_logged_steps(dataset: LoggedDataset, q_tables: np.ndarray) -> np.ndarray:
    """Q(s_t, ·) on every logged step from tables (P, H, S, A), shape (P, n, H, A); 0 on padding."""
    states = np.asarray(dataset.observations)
    steps = np.broadcast_to(np.arange(dataset.horizon), states.shape)
    return np.where(dataset.mask[..., None], q_tables[:, steps, states], 0.0)


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
