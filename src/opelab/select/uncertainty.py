"""Uncertainty on the assessment itself: is "estimator X is best" more than noise?

An ``Assessment`` scores every estimator on *one* dataset. Run the same benchmark on several datasets
(seeds, environments, logging policies) and each metric becomes a sample across datasets. This module
turns a collection of assessments into a tidy table (``assessment_frame``), summarises each
(estimator, metric) pair with a bootstrap confidence interval of its mean across datasets
(``summarize_across_datasets``), compares two estimators *paired* by dataset (``compare_estimators``)
and answers, per metric, which estimator wins and whether the win is separated from the runner-up
(``best_estimator_table``).

Conventions
-----------
- **Datasets are the unit of resampling.** Values of different estimators on the same dataset are
  correlated (they share the logged data), so comparisons are paired: the differences
  d_i = x_{a,i} − x_{b,i} are resampled, not the two columns separately. Pairing removes the
  between-dataset spread, which usually dominates (Efron & Tibshirani 1993, §16).
- **Direction.** Lower is better for metrics starting with ``LOWER_IS_BETTER`` (``nmse``, ``regret@``,
  ``normalized_regret@``, ``type_i``, ``type_ii``), higher for the rest (rank correlation,
  SharpeRatio@k), as in ``Assessment.picks``.
- **NaN values** (SharpeRatio@1, the rank correlation of a constant ranking, ...) carry no information
  and are dropped; they are counted in ``n_nan``.
- **Infinite values** (SharpeRatio@k with std@k = 0 is +inf; an overflowing nMSE is +inf) are *not*
  averaged: a single ±inf would make the mean ±inf and the interval meaningless, hiding every other
  dataset. They are left out of ``mean``, ``std``, ``lower``, ``upper`` and of paired comparisons, and
  counted by sign in ``n_posinf`` / ``n_neginf`` next to the statistics, so a reader sees at once that
  the mean describes only the ``n_datasets`` finite values. Note that +inf is the *best* possible
  SharpeRatio but the *worst* nMSE: leaving them out can flatter or penalise an estimator, which is
  why the counts are reported rather than silently dropped.
- **Determinism.** The resampling of m datasets is drawn from ``np.random.default_rng([seed, m, 0])``
  (sign flips from ``[seed, m, 1]``), so the output depends only on ``seed`` and the data, and every
  group with the same number of finite values is resampled with the same index matrix (common random
  numbers): adding an estimator to the frame does not change the intervals of the others.

References
----------
- B. Efron, R. J. Tibshirani. *An Introduction to the Bootstrap.* Chapman & Hall, 1993.
  (percentile interval, ch. 13; paired / two-sample comparisons, ch. 15–16)
- R. A. Fisher. *The Design of Experiments.* Oliver & Boyd, 1935. (paired sign-flip randomisation test)
- B. Phipson, G. K. Smyth. "Permutation P-values Should Never Be Zero." *Stat. Appl. Genet. Mol. Biol.*
  9(1), 2010. (p = (count + 1)/(draws + 1) for Monte-Carlo permutation tests)
- R. Agarwal, M. Schwarzer, P. S. Castro, A. Courville, M. G. Bellemare. "Deep Reinforcement Learning
  at the Edge of the Statistical Precipice." NeurIPS 2021. (interval estimates across runs)
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from opelab.select.assess import LOWER_IS_BETTER, Assessment

__all__ = [
    "EXACT_MAX_DATASETS",
    "Comparison",
    "assessment_frame",
    "best_estimator_table",
    "compare_estimators",
    "metric_direction",
    "sign_flip_p_value",
    "summarize_across_datasets",
]

FloatArray = NDArray[np.float64]
Direction = Literal["lower", "higher"]
Verdict = Literal["a better", "b better", "no clear difference"]

#: The sign-flip test enumerates all 2^m sign vectors exactly when m ≤ this (2^14 = 16384 vectors).
EXACT_MAX_DATASETS = 14

FRAME_COLUMNS = ("dataset", "estimator", "metric", "value")
SUMMARY_COLUMNS = (
    "estimator",
    "metric",
    "better",
    "n_datasets",
    "n_nan",
    "n_posinf",
    "n_neginf",
    "mean",
    "std",
    "lower",
    "upper",
)
BEST_COLUMNS = (
    "metric",
    "better",
    "best",
    "best_mean",
    "runner_up",
    "runner_up_mean",
    "n_datasets",
    "mean_difference",
    "lower",
    "upper",
    "p_value",
    "separated",
    "n_infinite",
)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def metric_direction(metric: str) -> Direction:
    """``"lower"`` when a smaller value of ``metric`` is better (``LOWER_IS_BETTER`` prefixes), else ``"higher"``."""
    return "lower" if str(metric).startswith(LOWER_IS_BETTER) else "higher"


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha: expected a real number in (0, 1), found {alpha!r}")
    return float(alpha)


def _check_n_bootstrap(n_bootstrap: int, name: str = "n_bootstrap") -> int:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 1:
        raise ValueError(f"{name}: expected a positive integer, found {n_bootstrap!r}")
    return int(n_bootstrap)


def _check_seed(seed: int | None) -> int:
    """A non-negative integer seed; ``None`` draws fresh OS entropy (the result is then not reproducible)."""
    if seed is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        return entropy
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer or None, found {seed!r}")
    return int(seed)


@dataclass(frozen=True, eq=False)
class _Long:
    """A validated long table as integer codes (first-appearance order) and float values."""

    dataset: NDArray[np.int64]
    estimator: NDArray[np.int64]
    metric: NDArray[np.int64]
    values: FloatArray
    n_datasets: int
    estimator_names: list[Hashable]
    metric_names: list[Hashable]


def _plain(value: object) -> object:
    """A numpy scalar as the Python scalar it holds (for readable error messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _check_frame(frame: pd.DataFrame) -> _Long:
    """Validate a long table ``dataset, estimator, metric, value`` (one value per key) and encode it."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame: expected a pandas DataFrame (see assessment_frame), found {type(frame).__name__}")
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"frame: expected columns {list(FRAME_COLUMNS)}, found {list(map(str, frame.columns))} "
            f"(missing {missing})"
        )
    if len(frame) == 0:
        raise ValueError("frame: expected at least one row, found an empty table")
    try:
        values = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"frame: expected a numeric 'value' column, found dtype {frame['value'].dtype} ({exc})"
        ) from None
    ds, ds_names = pd.factorize(frame["dataset"], sort=False, use_na_sentinel=False)
    est, est_names = pd.factorize(frame["estimator"], sort=False, use_na_sentinel=False)
    met, met_names = pd.factorize(frame["metric"], sort=False, use_na_sentinel=False)
    ds, est, met = (np.asarray(c, dtype=np.int64) for c in (ds, est, met))
    key = (ds * len(est_names) + est) * len(met_names) + met
    uniq, count = np.unique(key, return_counts=True)
    if uniq.shape[0] != key.shape[0]:
        i = int(np.flatnonzero(key == uniq[count > 1][0])[1])
        ds_i, est_i, met_i = (_plain(frame[c].iloc[i]) for c in ("dataset", "estimator", "metric"))
        raise ValueError(
            "frame: expected one value per (dataset, estimator, metric), found duplicates, e.g. "
            f"dataset={ds_i!r}, estimator={est_i!r}, metric={met_i!r}"
        )
    return _Long(
        dataset=ds,
        estimator=est,
        metric=met,
        values=values,
        n_datasets=len(ds_names),
        estimator_names=[_plain(e) for e in est_names],
        metric_names=[_plain(m) for m in met_names],
    )


def _resample_indices(m: int, n_bootstrap: int, seed: int) -> NDArray[np.int64]:
    """Bootstrap index matrix I ∈ {0..m−1}^{B×m}, uniform, from ``default_rng([seed, m, 0])``."""
    return np.random.default_rng([seed, m, 0]).integers(0, m, size=(n_bootstrap, m))


def _percentile_interval(boot_means: FloatArray, alpha: float) -> tuple[float, float]:
    """Percentile interval [θ*_(α/2), θ*_(1−α/2)] of bootstrap replicates (Efron & Tibshirani 1993, §13.3)."""
    lo, hi = np.quantile(boot_means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _mean_std(x: FloatArray) -> tuple[float, float]:
    """Mean and sample std (ddof=1) without warnings: (nan, nan) for no value, std nan for one."""
    m = x.shape[0]
    if m == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(x))
    if m == 1:
        return mean, float("nan")
    if np.all(x == x[0]):
        return float(x[0]), 0.0  # exact, without the mean's round-off
    return mean, float(np.std(x, ddof=1))


def _to_frame(rows: list[dict[str, object]], columns: tuple[str, ...], names: tuple[str, ...]) -> pd.DataFrame:
    """Rows to a DataFrame; the ``names`` columns keep their objects as they are (None stays None)."""
    data = {c: [row[c] for row in rows] for c in columns}
    return pd.DataFrame({c: pd.Series(v, dtype=object) if c in names else v for c, v in data.items()}, columns=columns)


class _Resampler:
    """Per-call cache of bootstrap index matrices, one per number of finite values m."""

    def __init__(self, n_bootstrap: int, seed: int) -> None:
        self.n_bootstrap, self.seed = n_bootstrap, seed
        self._cache: dict[int, NDArray[np.int64]] = {}

    def indices(self, m: int) -> NDArray[np.int64]:
        if m not in self._cache:
            self._cache[m] = _resample_indices(m, self.n_bootstrap, self.seed)
        return self._cache[m]

    def mean_interval(self, x: FloatArray, alpha: float) -> tuple[float, float]:
        """Percentile-bootstrap interval of mean(x): quantiles of x[I].mean(axis=1); (nan, nan) for m < 2."""
        m = x.shape[0]
        if m < 2:
            return float("nan"), float("nan")
        if np.all(x == x[0]):
            return float(x[0]), float(x[0])  # every resample has the same mean; skip the round-off
        return _percentile_interval(x[self.indices(m)].mean(axis=1), alpha)


# --------------------------------------------------------------------------- #
# 1. tidy table
# --------------------------------------------------------------------------- #
def assessment_frame(assessments: Sequence[Assessment] | Mapping[Hashable, Assessment]) -> pd.DataFrame:
    """Stack the ``summary`` tables of several assessments into one long table.

    Returns columns ``dataset, estimator, metric, value``: one row per dataset × estimator × metric of
    each ``Assessment.summary``. ``dataset`` is the mapping key, or the position 0, 1, ... for a sequence.
    Assessments may have different estimators or metrics (e.g. different ks); missing combinations have
    no row. Values are floats and are kept as they are (NaN and ±inf included).
    """
    if isinstance(assessments, Mapping):
        items = list(assessments.items())
    elif isinstance(assessments, Sequence) and not isinstance(assessments, (str, bytes)):
        items = list(enumerate(assessments))
    else:
        raise ValueError(
            f"assessments: expected a sequence or mapping of Assessment, found {type(assessments).__name__}"
        )
    if not items:
        raise ValueError("assessments: expected at least one Assessment, found none")
    parts = []
    for key, assessment in items:
        if not isinstance(assessment, Assessment):
            raise ValueError(f"assessments[{key!r}]: expected an Assessment, found {type(assessment).__name__}")
        summary = assessment.summary
        n_est, n_met = summary.shape
        parts.append(
            pd.DataFrame(
                {
                    "dataset": pd.Series([key] * (n_est * n_met), dtype=object),
                    "estimator": np.repeat(np.asarray(summary.index, dtype=object), n_met),
                    "metric": np.tile(np.asarray(summary.columns, dtype=object), n_est),
                    "value": summary.to_numpy(dtype=np.float64).reshape(-1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- #
# 2. summary across datasets
# --------------------------------------------------------------------------- #
def summarize_across_datasets(
    frame: pd.DataFrame,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Mean of every (estimator, metric) across datasets, with a percentile-bootstrap interval.

    For the finite values x_1..x_m of one (estimator, metric) pair (one per dataset):

    - ``mean`` = x̄ = (1/m) Σ x_i and ``std`` = sample std (ddof=1) across datasets;
    - ``lower``, ``upper``: the (1 − α) percentile-bootstrap interval of the mean (Efron & Tibshirani
      1993, §13.3): draw B resamples of the m datasets with replacement, x̄*_r = (1/m) Σ_i x_{I_{r,i}},
      and take the α/2 and 1 − α/2 quantiles of x̄*_1..x̄*_B. The resampled means of a group are
      ``x[I].mean(axis=1)`` for one (B, m) index matrix I, shared by all groups with the same m
      (identical values give the degenerate interval [x_1, x_1]);
    - ``n_datasets`` = m; ``n_nan`` values that were NaN; ``n_posinf`` / ``n_neginf`` values that were
      +inf / −inf. NaN and infinite values are all left out of the statistics (see the module docstring:
      a ±inf would swamp the mean; the signed counts show what was left out);
    - ``better``: ``"lower"`` or ``"higher"`` (``metric_direction``).

    With a single finite value, ``mean`` is that value and ``std``, ``lower``, ``upper`` are NaN; with
    none, all four are NaN. The percentile interval under-covers slightly for few datasets: it behaves
    like x̄ ± z·σ̂₀/√m with σ̂₀ the ddof=0 std, so for normal data its coverage is about
    P(|t_{m−1}| ≤ z·√((m−1)/m)) = 93.6 % instead of 95 % at m = 30 (90.4 % at m = 10); treat it as
    approximate below m ≈ 20.

    Rows are ordered by the first appearance of the estimator, then of the metric, in ``frame``.
    ``seed=None`` draws fresh entropy (not reproducible).
    """
    data = _check_frame(frame)
    alpha = _check_alpha(alpha)
    resampler = _Resampler(_check_n_bootstrap(n_bootstrap), _check_seed(seed))
    n_met = len(data.metric_names)
    # Groups (estimator, metric) in first-appearance order; datasets in first-appearance order inside.
    order = np.lexsort((data.dataset, data.metric, data.estimator))
    group = data.estimator[order] * n_met + data.metric[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    rows = []
    for s, e in zip(starts, ends):
        x_all = data.values[order[s:e]]
        x = x_all[np.isfinite(x_all)]
        mean, std = _mean_std(x)
        lower, upper = resampler.mean_interval(x, alpha)
        metric = data.metric_names[int(group[s]) % n_met]
        rows.append(
            {
                "estimator": data.estimator_names[int(group[s]) // n_met],
                "metric": metric,
                "better": metric_direction(str(metric)),
                "n_datasets": int(x.shape[0]),
                "n_nan": int(np.count_nonzero(np.isnan(x_all))),
                "n_posinf": int(np.count_nonzero(x_all == np.inf)),
                "n_neginf": int(np.count_nonzero(x_all == -np.inf)),
                "mean": mean,
                "std": std,
                "lower": lower,
                "upper": upper,
            }
        )
    return _to_frame(rows, SUMMARY_COLUMNS, ())


# --------------------------------------------------------------------------- #
# 3. paired comparison
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Comparison:
    """Paired comparison of estimators ``a`` and ``b`` on ``metric`` over the datasets where both are finite.

    ``mean_difference`` = (1/m) Σ (a_i − b_i) with [``lower``, ``upper``] its (1 − ``alpha``)
    percentile-bootstrap interval; ``p_value`` the two-sided paired sign-flip test of "no difference";
    ``exact``: whether all 2^m sign vectors were enumerated (else ``n_permutations`` random ones);
    ``mean_a`` / ``mean_b`` the means over the same paired datasets; ``verdict`` ``"a better"``,
    ``"b better"`` or ``"no clear difference"`` (see ``compare_estimators``).
    """

    a: str
    b: str
    metric: str
    better: Direction
    n_datasets: int
    mean_a: float
    mean_b: float
    mean_difference: float
    lower: float
    upper: float
    p_value: float
    alpha: float
    exact: bool
    n_permutations: int
    verdict: Verdict

    @property
    def separated(self) -> bool:
        """True when the verdict names a winner."""
        return self.verdict != "no clear difference"


def _sign_matrix(m: int) -> FloatArray:
    """All 2^m sign vectors in {−1, +1}^m, one per row (row 0 is all −1, the last all +1)."""
    bits = (np.arange(2**m, dtype=np.int64)[:, None] >> np.arange(m, dtype=np.int64)) & 1
    return (2 * bits - 1).astype(np.float64)


def sign_flip_p_value(differences: ArrayLike, n_random: int, seed: int | None = 0) -> tuple[float, bool, int]:
    """Two-sided paired sign-flip (randomisation) test of H0: the differences are symmetric about 0.

    Statistic T(s) = |Σ_i s_i d_i| for signs s ∈ {−1, +1}^m; the observed value is T(1). Under H0 every
    sign vector is equally likely (Fisher 1935), so

    - m ≤ ``EXACT_MAX_DATASETS``: p = #{s : T(s) ≥ T(1)} / 2^m over all 2^m sign vectors (exact; the
      smallest attainable p is 2/2^m, e.g. 0.125 for m = 4, 0.031 for m = 6);
    - otherwise: p = (#{r : T(s_r) ≥ T(1)} + 1) / (R + 1) with R = ``n_random`` uniform sign vectors from
      ``default_rng([seed, m, 1])``, the observed statistic counted once (Phipson & Smyth 2010).

    Ties are counted with a relative tolerance of 1e-12 · Σ|d_i| against round-off. Returns
    ``(p, exact, number of sign vectors)``; (nan, True, 0) for m = 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"differences: expected a 1-D array, found shape {d.shape}")
    n_random = _check_n_bootstrap(n_random, "n_random")
    seed = _check_seed(seed)
    m = d.shape[0]
    if m == 0:
        return float("nan"), True, 0
    observed = abs(float(np.sum(d)))
    tol = 1e-12 * float(np.sum(np.abs(d)))
    if m <= EXACT_MAX_DATASETS:
        null = np.abs(_sign_matrix(m) @ d)
        return float(np.count_nonzero(null >= observed - tol)) / null.shape[0], True, int(null.shape[0])
    rng = np.random.default_rng([seed, m, 1])
    signs = (2 * rng.integers(0, 2, size=(n_random, m)) - 1).astype(np.float64)
    null = np.abs(signs @ d)
    return (float(np.count_nonzero(null >= observed - tol)) + 1.0) / (n_random + 1.0), False, n_random


def _check_name(name: Hashable, available: list[Hashable], what: str) -> int:
    """Position of ``name`` in ``available``; ValueError listing the available names otherwise."""
    try:
        return available.index(name)
    except ValueError:
        raise ValueError(f"{what}: expected one of {available}, found {name!r}") from None


def _paired(data: _Long, a: int, b: int, metric: int) -> tuple[FloatArray, FloatArray]:
    """Values of estimators a and b (codes) on the datasets where both are finite, in dataset order."""
    xs = []
    for code, arg in ((a, "a"), (b, "b")):
        rows = (data.estimator == code) & (data.metric == metric)
        if not rows.any():
            raise ValueError(
                f"{arg}: expected an estimator with values for metric {data.metric_names[metric]!r}, "
                f"found none for {data.estimator_names[code]!r}"
            )
        x = np.full(data.n_datasets, np.nan)
        x[data.dataset[rows]] = data.values[rows]
        xs.append(x)
    keep = np.isfinite(xs[0]) & np.isfinite(xs[1])
    return xs[0][keep], xs[1][keep]


def _compare(
    data: _Long, a: int, b: int, metric: int, alpha: float, n_bootstrap: int, seed: int, resampler: _Resampler
) -> Comparison:
    xa, xb = _paired(data, a, b, metric)
    d = xa - xb
    m = int(d.shape[0])
    metric_name = data.metric_names[metric]
    direction = metric_direction(str(metric_name))
    lower, upper = resampler.mean_interval(d, alpha)
    p, exact, n_perm = sign_flip_p_value(d, n_bootstrap, seed)
    verdict: Verdict = "no clear difference"
    if m >= 2 and p <= alpha:
        a_smaller, a_larger = upper < 0.0, lower > 0.0
        if a_smaller or a_larger:
            a_wins = a_smaller if direction == "lower" else a_larger
            verdict = "a better" if a_wins else "b better"
    return Comparison(
        a=cast(str, data.estimator_names[a]),
        b=cast(str, data.estimator_names[b]),
        metric=cast(str, metric_name),
        better=direction,
        n_datasets=m,
        mean_a=_mean_std(xa)[0],
        mean_b=_mean_std(xb)[0],
        mean_difference=_mean_std(d)[0],
        lower=lower,
        upper=upper,
        p_value=p,
        alpha=alpha,
        exact=exact,
        n_permutations=n_perm,
        verdict=verdict,
    )


def compare_estimators(
    frame: pd.DataFrame,
    a: str,
    b: str,
    metric: str,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int | None = 0,
) -> Comparison:
    """Paired comparison of estimators ``a`` and ``b`` on ``metric`` across datasets.

    Uses the m datasets where both values are finite, d_i = a_i − b_i:

    - ``mean_difference`` = d̄ = (1/m) Σ d_i; [``lower``, ``upper``] the (1 − α) percentile-bootstrap
      interval of d̄, resampling datasets (paired bootstrap: the pairs (a_i, b_i) stay together,
      Efron & Tibshirani 1993). NaN for m < 2;
    - ``p_value``: two-sided paired sign-flip test of "no difference" (``sign_flip_p_value``): exact
      enumeration of the 2^m sign vectors for m ≤ 14, else ``n_bootstrap`` random sign flips;
    - ``verdict``: a winner is named only when *both* the interval excludes 0 *and* p ≤ α; the direction
      then follows the metric (lower-is-better: d̄ < 0 means ``"a better"``). Requiring both guards
      against the percentile interval's under-coverage with few datasets (with m = 3 all-positive
      differences it excludes 0, while the exact test cannot go below p = 0.25); in particular at
      least 6 datasets are needed for a verdict at α = 0.05 (2/2^5 = 0.0625 > 0.05 ≥ 2/2^6).

    Raises ``ValueError`` for an unknown estimator or metric (listing the available ones), for
    ``a == b`` and when ``a`` or ``b`` has no value for ``metric``.
    """
    data = _check_frame(frame)
    alpha = _check_alpha(alpha)
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    seed_int = _check_seed(seed)
    ia = _check_name(a, data.estimator_names, "a")
    ib = _check_name(b, data.estimator_names, "b")
    im = _check_name(metric, data.metric_names, "metric")
    if ia == ib:
        raise ValueError(f"b: expected an estimator different from a ({a!r}), found {b!r}")
    return _compare(data, ia, ib, im, alpha, n_bootstrap, seed_int, _Resampler(n_bootstrap, seed_int))


# --------------------------------------------------------------------------- #
# 4. winners per metric
# --------------------------------------------------------------------------- #
def _finite_mean(data: _Long, estimator: int, metric: int) -> float:
    """Mean of one estimator's finite values on one metric, bit for bit as ``summarize_across_datasets``."""
    rows = np.flatnonzero((data.estimator == estimator) & (data.metric == metric))
    x = data.values[rows[np.argsort(data.dataset[rows], kind="stable")]]
    return _mean_std(x[np.isfinite(x)])[0]


def best_estimator_table(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Per metric: the estimator with the best mean across datasets and whether it beats the runner-up.

    Estimators are ranked by the mean of their finite values (as in ``summarize_across_datasets``; the
    metric's direction decides best; ties go to the estimator listed first in ``frame``). The best and the
    second best are then compared with ``compare_estimators`` (paired over the datasets where both are
    finite). Columns:

    ``metric, better, best, best_mean, runner_up, runner_up_mean`` (means over each estimator's own finite
    values), ``n_datasets, mean_difference, lower, upper, p_value`` (the paired comparison best − runner-up),
    ``separated`` (True when the comparison's verdict is ``"a better"``: the win is beyond noise) and
    ``n_infinite`` (±inf values of this metric, over all estimators, that were left out of the means; when
    non-zero, look at ``summarize_across_datasets`` before trusting the ranking).

    A metric with no finite value has ``best`` None; with a single estimator with finite values,
    ``runner_up`` is None, the comparison columns are NaN and ``separated`` False.
    """
    data = _check_frame(frame)
    alpha = _check_alpha(alpha)
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    seed_int = _check_seed(seed)
    if metrics is None:
        chosen = list(range(len(data.metric_names)))
    elif isinstance(metrics, str):
        raise ValueError(f"metrics: expected a sequence of metric names, found the string {metrics!r}")
    else:
        chosen = [_check_name(metric, data.metric_names, "metrics") for metric in metrics]
    resampler = _Resampler(n_bootstrap, seed_int)
    rows = []
    for im in chosen:
        metric = data.metric_names[im]
        direction = metric_direction(str(metric))
        on_metric = data.metric == im
        # Mean of the finite values per estimator (skipping those with none); ties keep first-appearance order.
        present = np.unique(data.estimator[on_metric & np.isfinite(data.values)])
        means = np.array([_finite_mean(data, int(e), im) for e in present], dtype=np.float64)
        ranked = present[np.argsort(means if direction == "lower" else -means, kind="stable")]
        row: dict[str, object] = {
            "metric": metric,
            "better": direction,
            "best": None,
            "best_mean": np.nan,
            "runner_up": None,
            "runner_up_mean": np.nan,
            "n_datasets": 0,
            "mean_difference": np.nan,
            "lower": np.nan,
            "upper": np.nan,
            "p_value": np.nan,
            "separated": False,
            "n_infinite": int(np.count_nonzero(np.isinf(data.values[on_metric]))),
        }
        if ranked.shape[0] >= 1:
            best = int(ranked[0])
            row.update(best=data.estimator_names[best], best_mean=_finite_mean(data, best, im))
        if ranked.shape[0] >= 2:
            best, runner = int(ranked[0]), int(ranked[1])
            comp = _compare(data, best, runner, im, alpha, n_bootstrap, seed_int, resampler)
            row.update(
                runner_up=data.estimator_names[runner],
                runner_up_mean=_finite_mean(data, runner, im),
                n_datasets=comp.n_datasets,
                mean_difference=comp.mean_difference,
                lower=comp.lower,
                upper=comp.upper,
                p_value=comp.p_value,
                separated=comp.verdict == "a better",
            )
        rows.append(row)
    return _to_frame(rows, BEST_COLUMNS, ("metric", "best", "runner_up"))
