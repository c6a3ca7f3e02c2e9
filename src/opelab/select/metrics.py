"""Metrics for assessing off-policy evaluation (OPE) and off-policy selection (OPS).

Every public function compares the true policy values ``true_values`` (J, one entry
per candidate policy, length P) with the OPE estimates ``estimates`` (Ĵ, same length).

References
----------
- H. Kiyohara, R. Kishimoto, K. Kawakami, K. Kobayashi, K. Nakata, Y. Saito.
  "Towards Assessing and Benchmarking Risk-Return Tradeoff of Off-Policy Evaluation."
  ICLR 2024. (top-k metrics and SharpeRatio@k)
- J. Fu, M. Norouzi, O. Nachum, G. Tucker, Z. Wang, A. Novikov, M. Yang, M. R. Zhang,
  Y. Chen, A. Kumar, C. Paduraru, S. Levine, T. L. Paine.
  "Benchmarks for Deep Off-Policy Evaluation." ICLR 2021. (normalised regret@k)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "TopKMetrics",
    "TypeErrors",
    "nmse",
    "normalized_regret_at_k",
    "rank_correlation",
    "regret_at_k",
    "sharpe_ratio_at_k",
    "top_k_indices",
    "topk_metrics",
    "type_errors",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_Arr = TypeVar("_Arr", bound=np.ndarray)


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Checked:
    """Validated inputs (fields that were not asked for are ``None``)."""

    true_values: FloatArray | None
    estimates: FloatArray
    k: int | None
    ks: IntArray | None
    scalars: dict[str, float]


def _as_vector(name: str, values: ArrayLike, length: int | None, ref: str) -> FloatArray:
    """Convert ``values`` to a finite, non-empty 1-D float array (of ``length`` if given)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name}: expected a 1-D array of real numbers, found {type(values).__name__} "
            f"that cannot be converted to float ({exc})"
        ) from None
    if length is None:
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D array, found shape {arr.shape}")
    elif arr.shape != (length,):
        raise ValueError(
            f"{name}: expected a 1-D array of the same length as {ref} ({length}), "
            f"found shape {arr.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: expected finite values, found {arr[i]!r} at index {i}"
        )
    return arr


def _as_k(name: str, k: object, n: int) -> int:
    """Check that ``k`` is an integer in 1..n."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name}: expected an integer in 1..{n}, found {k!r}")
    k_int = int(k)
    if not 1 <= k_int <= n:
        raise ValueError(f"{name}: expected an integer in 1..{n}, found {k_int}")
    return k_int


def _check(
    true_values: ArrayLike | None,
    estimates: ArrayLike,
    *,
    k: object = None,
    ks: object = None,
    scalars: dict[str, object] | None = None,
) -> _Checked:
    """Validate every input of the public functions in one place.

    ``true_values`` may be ``None`` (only :func:`top_k_indices` does so); ``k`` and
    ``ks`` are checked against P = len(estimates) when given; ``scalars`` maps argument
    names to values that must be finite real numbers.
    """
    j_true: FloatArray | None = None
    if true_values is not None:
        j_true = _as_vector("true_values", true_values, None, "")
        j_hat = _as_vector("estimates", estimates, j_true.shape[0], "true_values")
    else:
        j_hat = _as_vector("estimates", estimates, None, "")
    n = j_hat.shape[0]

    k_out = None if k is None else _as_k("k", k, n)

    ks_out: IntArray | None = None
    if ks is not None:
        if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
            raise ValueError(f"ks: expected an iterable of integers in 1..{n}, found {ks!r}")
        items = list(ks)
        if not items:
            raise ValueError(f"ks: expected a non-empty iterable of integers in 1..{n}, found none")
        checked = [_as_k(f"ks[{i}]", item, n) for i, item in enumerate(items)]
        seen: set[int] = set()
        for i, item in enumerate(checked):
            if item in seen:
                raise ValueError(f"ks: expected distinct values, found duplicate {item} at position {i}")
            seen.add(item)
        ks_out = np.asarray(checked, dtype=np.int64)

    scalars_out: dict[str, float] = {}
    for name, value in (scalars or {}).items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}: expected a finite real number, found {value!r}")
        fvalue = float(value)
        if not np.isfinite(fvalue):
            raise ValueError(f"{name}: expected a finite real number, found {fvalue!r}")
        scalars_out[name] = fvalue

    return _Checked(j_true, j_hat, k_out, ks_out, scalars_out)


def _top_k(estimates: FloatArray, k: int) -> IntArray:
    """Indices of the k largest estimates, stable descending order (no validation)."""
    return np.argsort(-estimates, kind="stable")[:k].astype(np.int64)


def _sample_std(values: FloatArray) -> float:
    """Sample std (ddof=1); exactly 0.0 for identical values, nan for a single value."""
    if values.shape[0] < 2:
        return float("nan")
    if np.all(values == values[0]):
        return 0.0  # avoid round-off in the mean producing a tiny positive spread
    return float(np.std(values, ddof=1))


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def top_k_indices(estimates: ArrayLike, k: int) -> IntArray:
    """Indices of the k policies with the largest estimates Ĵ, in descending order of Ĵ.

    Ties are broken in favour of the policy listed first (stable descending sort,
    ``argsort(-Ĵ, kind="stable")[:k]``), so the top-k sets are nested in k.
    """
    c = _check(None, estimates, k=k)
    assert c.k is not None
    return _top_k(c.estimates, c.k)


def nmse(true_values: ArrayLike, estimates: ArrayLike) -> float:
    """Normalised mean squared error, NMSE = mean((Ĵ − J)²) / mean(J²).

    Returns nan when mean(J²) == 0 (all true values are zero), where the
    normalisation is undefined. Computed on J and Ĵ divided by max|J| to avoid overflow.
    """
    c = _check(true_values, estimates)
    assert c.true_values is not None
    scale = float(np.max(np.abs(c.true_values)))
    if scale == 0.0:
        return float("nan")
    # Dividing numerator and denominator by scale² leaves the ratio unchanged and keeps
    # mean(J²) from overflowing; a numerator that still overflows is reported as inf.
    with np.errstate(over="ignore"):
        num = float(np.mean(((c.estimates - c.true_values) / scale) ** 2))
    return num / float(np.mean((c.true_values / scale) ** 2))


def _average_ranks(values: FloatArray) -> FloatArray:
    """Ranks 1..P with tied values sharing their average rank (what Spearman's ρ needs)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    group_rank = (starts + ends + 1) / 2.0  # mean of the 1-based positions starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def rank_correlation(true_values: ArrayLike, estimates: ArrayLike) -> float:
    """Spearman rank correlation between J and Ĵ.

    ρ = Σ (r_i − r̄)(s_i − s̄) / sqrt(Σ (r_i − r̄)² · Σ (s_i − s̄)²), with r = rank(J),
    s = rank(Ĵ) and tied values given their average rank (Pearson correlation on the
    ranks). Returns nan, without any warning, when P < 2 or either ranking is constant.
    """
    c = _check(true_values, estimates)
    assert c.true_values is not None
    if c.estimates.shape[0] < 2:
        return float("nan")
    r = _average_ranks(c.true_values)
    s = _average_ranks(c.estimates)
    r -= r.mean()
    s -= s.mean()
    srr = float(np.dot(r, r))
    sss = float(np.dot(s, s))
    if srr == 0.0 or sss == 0.0:
        return float("nan")
    rho = float(np.dot(r, s)) / float(np.sqrt(srr * sss))
    return float(min(1.0, max(-1.0, rho)))


def regret_at_k(true_values: ArrayLike, estimates: ArrayLike, k: int) -> float:
    """Regret@k = max_i J_i − max_{i ∈ top-k(Ĵ)} J_i  (always >= 0).

    The loss in true value from deploying the best of the k policies ranked highest
    by the estimator instead of the truly best policy (Fu et al., 2021, DOPE).
    """
    c = _check(true_values, estimates, k=k)
    assert c.true_values is not None and c.k is not None
    chosen = c.true_values[_top_k(c.estimates, c.k)]
    return float(np.max(c.true_values) - np.max(chosen))


def normalized_regret_at_k(true_values: ArrayLike, estimates: ArrayLike, k: int) -> float:
    """Normalised regret@k = Regret@k / |max_i J_i|  (Fu et al., 2021, DOPE).

    Returns nan when max_i J_i == 0, where the normalisation is undefined.
    """
    c = _check(true_values, estimates, k=k)
    assert c.true_values is not None and c.k is not None
    best = float(np.max(c.true_values))
    if best == 0.0:
        return float("nan")
    chosen = c.true_values[_top_k(c.estimates, c.k)]
    return (best - float(np.max(chosen))) / abs(best)


@dataclass(frozen=True)
class TypeErrors:
    """Error rates of the safe/unsafe classification J >= threshold by Ĵ >= threshold."""

    type_i: float
    type_ii: float


def type_errors(true_values: ArrayLike, estimates: ArrayLike, threshold: float) -> TypeErrors:
    """Type I and Type II error rates of classifying policies as safe (value >= threshold).

    Type I  = #{J_i >= t, Ĵ_i < t} / #{J_i >= t}   (safe policies rejected),
    Type II = #{J_i < t, Ĵ_i >= t} / #{J_i < t}    (unsafe policies accepted),
    cf. Kiyohara et al. (ICLR 2024). A rate whose denominator is 0 is nan.
    """
    c = _check(true_values, estimates, scalars={"threshold": threshold})
    assert c.true_values is not None
    t = c.scalars["threshold"]
    true_safe = c.true_values >= t
    est_safe = c.estimates >= t
    n_safe = int(np.count_nonzero(true_safe))
    n_unsafe = true_safe.shape[0] - n_safe
    type_i = (
        float(np.count_nonzero(true_safe & ~est_safe)) / n_safe if n_safe else float("nan")
    )
    type_ii = (
        float(np.count_nonzero(~true_safe & est_safe)) / n_unsafe if n_unsafe else float("nan")
    )
    return TypeErrors(type_i=type_i, type_ii=type_ii)


def _sharpe(top_values: FloatArray, behavior_value: float, clip: bool) -> float:
    """SharpeRatio of already-selected true values (conventions of sharpe_ratio_at_k)."""
    if top_values.shape[0] < 2:
        return float("nan")
    numerator = float(np.max(top_values)) - behavior_value
    if clip:
        numerator = max(numerator, 0.0)
    if numerator == 0.0:
        return 0.0
    std = _sample_std(top_values)
    if std == 0.0:
        return float("inf") if numerator > 0.0 else float("-inf")
    with np.errstate(over="ignore"):
        return float(np.float64(numerator) / np.float64(std))


def sharpe_ratio_at_k(
    true_values: ArrayLike,
    estimates: ArrayLike,
    behavior_value: float,
    k: int,
    clip: bool = True,
) -> float:
    """SharpeRatio@k of the top-k portfolio (Kiyohara et al., ICLR 2024).

    SharpeRatio@k = (best@k − J(π_b))₊ / std@k, where best@k and std@k (ddof=1) are the
    max and sample std of J over the k policies with the largest Ĵ, J(π_b) is
    ``behavior_value`` and (·)₊ clips at 0 (only when ``clip=True``, as in the
    reference implementation).

    Conventions (checked in this order):

    - k = 1 -> nan (std@1 with ddof=1 is undefined);
    - numerator == 0 -> 0.0: a portfolio that does not beat the behavior policy earns
      zero whatever its spread, even when std@k == 0;
    - std@k == 0 (identical true values in the top-k) -> inf for a positive numerator,
      -inf for a negative one (only possible with ``clip=False``).

    No numpy warning is emitted in any of these cases.
    """
    c = _check(true_values, estimates, k=k, scalars={"behavior_value": behavior_value})
    assert c.true_values is not None and c.k is not None
    top = np.sort(c.true_values[_top_k(c.estimates, c.k)])  # order-free: same set, same bits
    return _sharpe(top, c.scalars["behavior_value"], bool(clip))


def _readonly(arr: _Arr) -> _Arr:
    """Mark ``arr`` read-only and return it."""
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class TopKMetrics:
    """Top-k risk-return metrics (Kiyohara et al., ICLR 2024), one entry per k in ``ks``.

    Arrays are read-only. ``eq=False`` because element-wise array comparison has no
    single truth value.
    """

    ks: IntArray
    best: FloatArray
    worst: FloatArray
    mean: FloatArray
    std: FloatArray
    sharpe_ratio: FloatArray

    def to_pandas(self) -> pd.DataFrame:
        """DataFrame with columns ``k, best, worst, mean, std, sharpe_ratio``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "k": np.array(self.ks),
                "best": np.array(self.best),
                "worst": np.array(self.worst),
                "mean": np.array(self.mean),
                "std": np.array(self.std),
                "sharpe_ratio": np.array(self.sharpe_ratio),
            }
        )


def topk_metrics(
    true_values: ArrayLike,
    estimates: ArrayLike,
    behavior_value: float,
    ks: Iterable[int],
) -> TopKMetrics:
    """Top-k statistics of J over the k policies with the largest Ĵ, for each k in ``ks``.

    With T_k = top-k(Ĵ): best@k = max_{T_k} J, worst@k = min_{T_k} J,
    mean@k = mean_{T_k} J, std@k = sample std (ddof=1, nan for k = 1) and
    sharpe_ratio = SharpeRatio@k as in :func:`sharpe_ratio_at_k` with ``clip=True``
    (Kiyohara et al., ICLR 2024). ``ks`` must hold distinct integers in 1..P; the
    output keeps the order of ``ks``.
    """
    c = _check(true_values, estimates, ks=ks, scalars={"behavior_value": behavior_value})
    assert c.true_values is not None and c.ks is not None
    order = _top_k(c.estimates, c.estimates.shape[0])
    n_k = c.ks.shape[0]
    best = np.empty(n_k)
    worst = np.empty(n_k)
    mean = np.empty(n_k)
    std = np.empty(n_k)
    sharpe = np.empty(n_k)
    b = c.scalars["behavior_value"]
    for i, k in enumerate(c.ks):
        top = np.sort(c.true_values[order[: int(k)]])  # sorted: the same set gives bit-identical statistics
        best[i] = np.max(top)
        worst[i] = np.min(top)
        mean[i] = np.mean(top)
        std[i] = _sample_std(top)
        sharpe[i] = _sharpe(top, b, clip=True)
    return TopKMetrics(
        ks=_readonly(c.ks.copy()),
        best=_readonly(best),
        worst=_readonly(worst),
        mean=_readonly(mean),
        std=_readonly(std),
        sharpe_ratio=_readonly(sharpe),
    )
