"""``evaluate``: run estimators on a dataset and its inputs, and the ``EstimateTable`` it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import EstimationContext, PointEstimator, get_estimator
from opelab.ope.estimators.base import data_kind, default_estimators
from opelab.ope.inputs import OPEInput
from opelab.ope.intervals import IntervalSpec, confidence_intervals


@dataclass(frozen=True, eq=False)
class EstimateTable:
    """Estimates of every estimator for every policy: ``estimates[e, p]``.

    ``behavior_value`` is the dataset's mean discounted logged return, the default J(π_b) for assessment.
    With intervals, ``lower``/``upper`` (E, P) hold the bounds, ``interval`` the method and ``alpha`` the
    level 1 − α.
    """

    policy_names: tuple[str, ...]
    estimator_names: tuple[str, ...]
    estimates: np.ndarray  # (E, P)
    behavior_value: float
    lower: np.ndarray | None = None  # (E, P)
    upper: np.ndarray | None = None  # (E, P)
    interval: str | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        shape = (len(self.estimator_names), len(self.policy_names))
        for name in ("estimates", "lower", "upper"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, found {value.shape}")
        if (self.lower is None) != (self.upper is None) or (self.lower is None) != (self.interval is None):
            raise ValueError("lower, upper, interval: expected all three or none")

    def bounds(self, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        """Interval bounds of one estimator for every policy, two arrays of shape (P,)."""
        if self.lower is None or self.upper is None:
            raise ValueError("bounds: this table has no intervals; pass interval=... to evaluate")
        e = self._index(estimator)
        return self.lower[e], self.upper[e]

    def estimate(self, estimator: str) -> np.ndarray:
        """Estimates of one estimator for every policy, shape (P,)."""
        return self.estimates[self._index(estimator)]

    def _index(self, estimator: str) -> int:
        try:
            return self.estimator_names.index(estimator)
        except ValueError:
            raise KeyError(f"estimator: expected one of {list(self.estimator_names)}, found {estimator!r}") from None

    def to_pandas(self) -> pd.DataFrame:
        """Long table with columns ``policy, estimator, estimate`` (and ``lower, upper`` with intervals)."""
        E, P = self.estimates.shape
        columns = {
            "policy": np.tile(np.array(self.policy_names, dtype=object), E),
            "estimator": np.repeat(np.array(self.estimator_names, dtype=object), P),
            "estimate": self.estimates.reshape(-1),
        }
        if self.lower is not None and self.upper is not None:
            columns["lower"] = self.lower.reshape(-1)
            columns["upper"] = self.upper.reshape(-1)
        return pd.DataFrame(columns)


def evaluate(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator] | None = None,
    *,
    interval: str | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    value_range: tuple[float, float] | None = None,
    resampling: str = "multinomial",
) -> EstimateTable:
    """Estimate every policy's value with each estimator.

    By default every registered estimator meant for this kind of data runs whose inputs are present (e.g.
    the marginal estimators only when ``inputs`` carry marginal weights; on one-step logs ``ipw``/``snipw``
    instead of their trajectory names ``tis``/``pdis``/``sntis``/``snpdis``, see ``default_estimators``);
    named estimators whose inputs are missing are an error.

    Estimators share one ``EstimationContext``, so ratios and their cumulative products are computed once.
    ``interval`` (``"bootstrap"``, ``"t"``, ``"hoeffding"`` or ``"bernstein"``; see ``opelab.ope.intervals``)
    adds ``lower``/``upper`` bounds at level 1 − ``alpha``; ``n_bootstrap`` and ``seed`` drive the bootstrap
    (every estimator sees the same resamples; ``resampling="poisson"`` draws them as the streaming
    ``opelab.ope.streaming.evaluate_stream`` does), ``value_range`` is the a-priori range of per-trajectory values
    that makes Hoeffding and Bernstein bounds guarantees.
    """
    spec = None if interval is None else IntervalSpec(interval, alpha, n_bootstrap, seed, value_range, resampling)
    inputs.check_dataset(dataset)
    if estimators is None:  # every registered estimator whose inputs are present
        chosen = default_estimators(data_kind(dataset.info, dataset.horizon), lambda e: all(getattr(inputs, r) is not None for r in e.requires))
    else:
        chosen = [get_estimator(e) for e in estimators]
    names = tuple(e.name for e in chosen)
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: expected distinct names, found {list(names)}")
    ctx = EstimationContext(dataset, inputs)
    empty = np.empty((0, inputs.n_policies))
    estimates = np.stack(_estimates(chosen, ctx, keep_all=spec is not None)) if chosen else empty
    lower = upper = None
    if spec is not None:
        bounds = confidence_intervals(chosen, ctx, spec)
        lower = np.stack([b[0] for b in bounds]) if chosen else empty
        upper = np.stack([b[1] for b in bounds]) if chosen else empty
    return EstimateTable(
        policy_names=inputs.policy_names,
        estimator_names=names,
        estimates=estimates,
        behavior_value=dataset.mean_return(),
        lower=lower,
        upper=upper,
        interval=interval,
        alpha=None if spec is None else alpha,
    )


def _estimates(chosen: Sequence[PointEstimator], ctx: EstimationContext, keep_all: bool) -> list[np.ndarray]:
    """Each estimator's estimate in turn; without a second pass (intervals), weights that no later estimator
    shares (``weight_key``) are freed after their last use."""
    keys = [e.weight_key() if hasattr(e, "weight_key") else None for e in chosen]
    out = []
    for i, estimator in enumerate(chosen):
        out.append(estimator.estimate(ctx))
        if not keep_all:
            ctx.forget(set(keys[i + 1 :]))
    return out
