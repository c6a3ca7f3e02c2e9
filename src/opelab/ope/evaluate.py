"""``evaluate``: run estimators on a dataset and its inputs, and the ``EstimateTable`` it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import ESTIMATORS, EstimationContext, PointEstimator, get_estimator
from opelab.ope.inputs import OPEInput


@dataclass(frozen=True, eq=False)
class EstimateTable:
    """Estimates of every estimator for every policy: ``estimates[e, p]``.

    ``behavior_value`` is the dataset's mean discounted logged return, the default J(π_b) for assessment.
    """

    policy_names: tuple[str, ...]
    estimator_names: tuple[str, ...]
    estimates: np.ndarray  # (E, P)
    behavior_value: float

    def __post_init__(self) -> None:
        shape = (len(self.estimator_names), len(self.policy_names))
        if self.estimates.shape != shape:
            raise ValueError(f"estimates: expected shape {shape}, found {self.estimates.shape}")

    def estimate(self, estimator: str) -> np.ndarray:
        """Estimates of one estimator for every policy, shape (P,)."""
        try:
            return self.estimates[self.estimator_names.index(estimator)]
        except ValueError:
            raise KeyError(f"estimator: expected one of {list(self.estimator_names)}, found {estimator!r}") from None

    def to_pandas(self) -> pd.DataFrame:
        """Long table with columns ``policy, estimator, estimate``."""
        E, P = self.estimates.shape
        return pd.DataFrame(
            {
                "policy": np.tile(np.array(self.policy_names, dtype=object), E),
                "estimator": np.repeat(np.array(self.estimator_names, dtype=object), P),
                "estimate": self.estimates.reshape(-1),
            }
        )


def evaluate(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator] | None = None,
) -> EstimateTable:
    """Estimate every policy's value with each estimator (all registered ones by default).

    Estimators share one ``EstimationContext``, so ratios and their cumulative products are computed once.
    """
    inputs.check_dataset(dataset)
    chosen = [get_estimator(e) for e in (ESTIMATORS if estimators is None else estimators)]
    names = tuple(e.name for e in chosen)
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: expected distinct names, found {list(names)}")
    ctx = EstimationContext(dataset, inputs)
    estimates = np.stack([e.estimate(ctx) for e in chosen]) if chosen else np.empty((0, inputs.n_policies))
    return EstimateTable(
        policy_names=inputs.policy_names,
        estimator_names=names,
        estimates=estimates,
        behavior_value=dataset.mean_return(),
    )
