"""Per-trajectory reference implementations of the point estimators, written as plain loops.

They follow REFERENCES.md literally, one trajectory at a time over its own steps, with no padding tricks:
a trajectory that has ended keeps its final cumulative weight in the self-normalising means (absorption).
"""

from __future__ import annotations

import numpy as np

from opelab.data import LoggedDataset
from opelab.ope import OPEInput


def _trajectories(ds: LoggedDataset, inputs: OPEInput, p: int):
    for i in range(ds.n_trajectories):
        T = int(ds.lengths[i])
        ratios = [inputs.eval_pscore[p, i, t] / ds.behavior_pscore[i, t] for t in range(T)]
        yield i, T, ratios


def cumulative_weights(ds: LoggedDataset, inputs: OPEInput, p: int) -> np.ndarray:
    """W[i, t] for t < H, carrying the last weight forward after the trajectory ends."""
    W = np.ones((ds.n_trajectories, ds.horizon))
    for i, T, ratios in _trajectories(ds, inputs, p):
        w = 1.0
        for t in range(ds.horizon):
            if t < T:
                w *= ratios[t]
            W[i, t] = w
    return W


def reference_estimate(name: str, ds: LoggedDataset, inputs: OPEInput, p: int) -> float:
    g, n, H = ds.gamma, ds.n_trajectories, ds.horizon
    W = cumulative_weights(ds, inputs, p)
    W_prev = np.concatenate([np.ones((n, 1)), W[:, :-1]], axis=1)
    if name.startswith("sn"):
        W = W / W.mean(axis=0)
        W_prev = W_prev / W_prev.mean(axis=0)
    total = 0.0
    for i in range(n):
        T = int(ds.lengths[i])
        G = sum(g**t * ds.rewards[i, t] for t in range(T))
        if name == "dm":
            total += inputs.initial_v_hat[p, i]
        elif name in ("tis", "sntis"):
            last = W[i, H - 1]
            total += last * G
        elif name in ("pdis", "snpdis"):
            total += sum(g**t * W[i, t] * ds.rewards[i, t] for t in range(T))
        elif name in ("dr", "sndr"):
            total += sum(
                g**t * (W[i, t] * (ds.rewards[i, t] - inputs.q_hat[p, i, t]) + W_prev[i, t] * inputs.v_hat[p, i, t])
                for t in range(T)
            )
        else:
            raise KeyError(name)
    return total / n
