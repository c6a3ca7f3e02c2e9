"""Return-weighted trajectory sampling (Hong, Agrawal, Tachet des Combes & Laroche, 2023, "Harnessing mixed
offline reinforcement learning datasets via trajectory weighting", ICLR).

In a dataset that mixes many poor trajectories with a few good ones, offline RL stays close to the average
behavior. The paper's return weighting (RW) samples every transition of trajectory i with weight

    w_i ∝ exp(Ĝ_i / α),   Ĝ_i = (G_i − min_j G_j) / (max_j G_j − min_j G_j) ∈ [0, 1],

with G_i the trajectory's undiscounted return Σ_t r_t and temperature α (0.1 in the paper; α → ∞ is uniform
sampling). The best trajectory is weighted e^{1/α} times the worst (e^10 ≈ 22,000 at α = 0.1). Equal returns
(max = min) give uniform weights.

opelab implements RW as a resampled dataset, so it works with any algorithm: ``return_weighted_resample``
draws ``n_samples`` trajectories (default: as many as the dataset has) with replacement with probabilities

    p_i = exp(Ĝ_i / α) / Σ_j exp(Ĝ_j / α),

and returns ``dataset.subset(indices)``. Uniform transition sampling from the resampled data then picks each
transition of trajectory i with expected weight ∝ p_i, the paper's per-transition weight. (A finite resample
holds fewer distinct trajectories than the data; raise ``n_samples`` to keep more of them.)
"""

from __future__ import annotations

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.validation import DatasetError

__all__ = ["DEFAULT_TEMPERATURE", "return_weighted_resample", "return_weights"]

DEFAULT_TEMPERATURE = 0.1
"""α of Hong et al. (2023)."""


def return_weights(dataset: LoggedDataset, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Sampling probabilities p_i of the trajectories (see the module docstring), shape (n,), summing to 1."""
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) or not temperature > 0:
        raise ValueError(f"temperature: expected a positive float, found {temperature!r}")
    returns = dataset.rewards.sum(axis=1)  # undiscounted; padded rewards are 0
    spread = returns.max() - returns.min()
    if spread == 0:
        return np.full(len(returns), 1.0 / len(returns))
    logits = (returns - returns.min()) / spread / float(temperature)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def return_weighted_resample(
    dataset: LoggedDataset,
    seed: int,
    temperature: float = DEFAULT_TEMPERATURE,
    n_samples: int | None = None,
) -> LoggedDataset:
    """``n_samples`` trajectories (default: n) drawn with replacement with probability ``return_weights``."""
    probs = return_weights(dataset, temperature)
    n = dataset.n_trajectories if n_samples is None else n_samples
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_samples: expected a positive int or None, found {n_samples!r}")
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(dataset.n_trajectories, size=int(n), replace=True, p=probs))
    return dataset.subset(indices)
