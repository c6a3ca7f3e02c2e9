"""Overlap diagnostics: how well the logged data covers each evaluation policy.

With trajectory weights w_i = Π_t π_e(a_t | s_t) / π_b(a_t | s_t) (``EstimationContext.trajectory_ratio``,
formed in log space when log-propensities are given):

    ess               (Σ_i w_i)² / Σ_i w_i², Kish's (1965) effective sample size of the weighted sample:
                      n when all weights are equal, 1 when one trajectory carries all the weight
    ess_fraction      ess / n
    max_weight        max_i w_i
    mean_weight       (1/n) Σ_i w_i; E_b[w] = 1 when π_b covers π_e (every action π_e takes has π_b > 0),
                      so a mean far from 1 flags missing overlap or wrong propensities
    zero_weight_share #{i: w_i = 0} / n, the trajectories π_e could not have produced

Importance sampling's variance grows like n / ess (Owen, 2013, ch. 9), so a small ``ess_fraction`` says the
IS-based estimates of that policy rest on a few trajectories.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import EstimationContext
from opelab.ope.inputs import OPEInput


def overlap_diagnostics(dataset: LoggedDataset, inputs: OPEInput) -> pd.DataFrame:
    """One row per policy of ``inputs``: ``policy, n, ess, ess_fraction, max_weight, mean_weight,
    zero_weight_share`` (module docstring)."""
    inputs.check_dataset(dataset)
    w = EstimationContext(dataset, inputs).trajectory_ratio  # (P, n)
    n = w.shape[1]
    largest = w.max(axis=1)  # (P,)
    scaled = w / np.where(largest > 0, largest, 1.0)[:, None]  # ess is scale-free: no overflow of w²
    squares = (scaled**2).sum(axis=1)
    ess = np.divide(scaled.sum(axis=1) ** 2, squares, out=np.zeros(len(w)), where=squares > 0)
    return pd.DataFrame(
        {
            "policy": list(inputs.policy_names),
            "n": n,
            "ess": ess,
            "ess_fraction": ess / n,
            "max_weight": largest,
            "mean_weight": w.mean(axis=1),
            "zero_weight_share": (w == 0).mean(axis=1),
        }
    )
