"""Confidence intervals for the point estimators, at level 1 − α.

Each point estimate is a mean of per-trajectory values X_i (``PointEstimator.trajectory_values``). With
n trajectories, sample mean X̄, sample standard deviation s (ddof = 1), sample variance V_n and range
R = b − a of the values:

- ``t`` (Student): X̄ ± t_{1−α/2, n−1} s / √n. Asymptotically exact.
- ``bootstrap`` (percentile; Efron & Tibshirani, 1993): resample whole trajectories B times, recompute the
  estimate on each resample (self-normalised estimators renormalise inside every resample), and take the
  α/2 and 1 − α/2 quantiles of the B estimates. The fitted models (Q̂, marginal weights) are not refit per
  resample, so for DM, DR, the marginal estimators and DRL the interval leaves out their fitting error.
- ``hoeffding`` (Hoeffding, 1963): X̄ ± R √(log(2/α) / (2n)). A finite-sample guarantee for values in
  [a, b]; the width shrinks as 1/√n.
- ``bernstein`` (empirical Bernstein; Maurer & Pontil, 2009, Thm. 4, with α/2 per side):
  X̄ ± ( √(2 V_n log(4/α) / n) + 7 R log(4/α) / (3 (n − 1)) ).

The two concentration bounds are guarantees only for a range [a, b] known before seeing the data (for
importance sampling: the largest possible weight times the return bounds); pass it as ``value_range``.
Without it, the observed range of the X_i stands in, which makes the intervals heuristic; the values must
lie within a given range, or the call fails. Self-normalised estimators are ratios of means: the ``t``,
Hoeffding and Bernstein intervals use their linearised per-trajectory values (delta method,
``PointEstimator.interval_values``), so they are asymptotic for them even with a range; the ``t``
interval ignores ``value_range``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from opelab.ope.estimators.base import EstimationContext, PointEstimator

INTERVAL_METHODS = ("bootstrap", "t", "hoeffding", "bernstein")
_BOOTSTRAP_CHUNK_ELEMENTS = 8_000_000  # counts held at once: B_chunk · n (64 MB of float64)


@dataclass(frozen=True)
class IntervalSpec:
    """How to compute intervals: the method, α, and the method's options."""

    method: str
    alpha: float = 0.05
    n_bootstrap: int = 1000
    seed: int = 0
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in INTERVAL_METHODS:
            raise ValueError(f"interval: expected one of {list(INTERVAL_METHODS)}, found {self.method!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha: expected a float in (0, 1), found {self.alpha!r}")
        if self.n_bootstrap < 2:
            raise ValueError(f"n_bootstrap: expected at least 2 resamples, found {self.n_bootstrap}")
        if self.value_range is not None:
            low, high = self.value_range
            if not (np.isfinite(low) and np.isfinite(high) and low <= high):
                raise ValueError(f"value_range: expected finite (low, high) with low <= high, found {self.value_range!r}")


def bootstrap_counts(n: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Multinomial resampling counts (B_chunk, n), in chunks that together make ``n_bootstrap`` resamples.

    Resample b draws n trajectory indices uniformly with replacement (``rng.integers(0, n, n)``) and counts
    them. The same seed gives the same resamples, so every estimator sees the same bootstrap draws; the
    draws do not depend on the chunk size (the generator's stream is the same whether it draws a chunk's
    indices at once or a resample at a time). Each chunk holds at most ``_BOOTSTRAP_CHUNK_ELEMENTS`` counts.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    done = 0
    while done < n_bootstrap:
        counts = np.empty((min(chunk, n_bootstrap - done), n))
        for row in counts:  # one resample at a time: no (B_chunk, n) array of indices next to the counts
            row[:] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        yield counts
        done += len(counts)
        del counts  # a consumer that let go of the chunk frees it before the next one is allocated


def confidence_intervals(
    estimators: Sequence[PointEstimator], ctx: EstimationContext, spec: IntervalSpec
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Lower and upper bounds of each estimator for every policy: a (P,), (P,) pair per estimator.

    The bootstrap draws its resamples once and hands the same ones to every estimator.
    """
    if spec.method != "bootstrap":
        out = []
        for estimator in estimators:
            values = estimator.interval_values(ctx)  # (P, n)
            out.append(mean_interval(values, spec.method, spec.alpha, spec.value_range, name=estimator.name))
        return out
    out = []
    for resampled in bootstrap_estimates(estimators, ctx, spec.n_bootstrap, spec.seed):
        lower, upper = np.quantile(resampled, [spec.alpha / 2, 1 - spec.alpha / 2], axis=1)
        out.append((lower, upper))
    return out


def bootstrap_estimates(
    estimators: Sequence[PointEstimator], ctx: EstimationContext, n_bootstrap: int, seed: int
) -> list[np.ndarray]:
    """Every estimator's estimates on the same ``n_bootstrap`` resamples: one (P, B) array per estimator.

    Equal, up to float rounding, to ``estimator.resampled_estimates(ctx, counts)`` on the counts of
    ``bootstrap_counts``, but computed at once for all estimators: the per-trajectory terms of every
    estimator (``PointEstimator.resampling_terms``; a term that several estimators share, such as the
    weights W_t that SNPDIS and SNDR divide by, only once) are laid out as the columns of a few matrices
    T (n, K), so that each chunk of counts (B_c, n) costs one matrix product counts @ T per matrix. Memory:
    the terms (K · n floats, about the size of the estimators' inputs) plus, per chunk, the counts and the
    sums: the chunks keep B_c · n ≤ ``_BOOTSTRAP_CHUNK_ELEMENTS`` whatever ``n_bootstrap``.
    """
    n = ctx.dataset.n_trajectories
    P = ctx.inputs.n_policies
    blocks: list[tuple[np.ndarray, list[tuple[Hashable, int, int]]]] = []  # (T (n, K), [(key, first column, m)])
    small: dict[Hashable, np.ndarray] = {}  # (P, n) terms, stacked into one matrix at the end
    seen: set[Hashable] = set()
    for estimator in estimators:
        ctx.require(estimator.name, *estimator.requires)
        for key, term in estimator.resampling_terms(ctx).items():
            if key in seen:
                continue
            seen.add(key)
            if term.ndim == 2:
                small[key] = term
            else:  # (P, n, m) -> columns p·m + t, one matrix per term (no second copy of every term at once)
                m = term.shape[-1]
                blocks.append((np.ascontiguousarray(term.transpose(1, 0, 2)).reshape(n, P * m), [(key, 0, m)]))
    if small:
        columns = np.empty((n, P * len(small)))
        layout = []
        for j, (key, term) in enumerate(small.items()):
            columns[:, j * P : (j + 1) * P] = term.T
            layout.append((key, j * P, 0))  # m = 0: a (P, n) term
        blocks.append((columns, layout))
    out = [np.empty((P, n_bootstrap)) for _ in estimators]
    done = 0
    for counts in bootstrap_counts(n, n_bootstrap, seed):
        size = len(counts)
        sums: dict[Hashable, np.ndarray] = {}
        for columns, layout in blocks:
            flat = counts @ columns  # (B_c, K)
            for key, first, m in layout:
                if m == 0:
                    sums[key] = flat[:, first : first + P].T  # (P, B_c)
                else:
                    sums[key] = flat[:, first : first + P * m].reshape(size, P, m).transpose(1, 0, 2)  # (P, B_c, m)
        totals = counts.sum(axis=1)
        for estimator, resampled in zip(estimators, out):
            resampled[:, done : done + size] = estimator.estimates_from_sums(sums, totals)
        done += size
        del counts, flat, sums  # before the next chunk is drawn: one chunk of counts alive at a time
    return out


def mean_interval(
    values: np.ndarray,
    method: str,
    alpha: float,
    value_range: tuple[float, float] | None = None,
    name: str = "values",
) -> tuple[np.ndarray, np.ndarray]:
    """``t``, ``hoeffding`` or ``bernstein`` interval for the mean of each row of ``values`` (P, n)."""
    P, n = values.shape
    if n < 2:
        raise ValueError(f"{name}: an interval needs at least 2 trajectories, found {n}")
    mean = values.mean(axis=1)
    if method == "t":
        from scipy import stats  # imported here: scipy.stats takes over a second to import

        half = stats.t.ppf(1 - alpha / 2, n - 1) * values.std(axis=1, ddof=1) / np.sqrt(n)
        return mean - half, mean + half
    if value_range is None:
        width = values.max(axis=1) - values.min(axis=1)
    else:
        low, high = value_range
        if values.min() < low or values.max() > high:
            raise ValueError(
                f"value_range: expected every per-trajectory value of {name} in [{low}, {high}], "
                f"found [{values.min():.6g}, {values.max():.6g}]"
            )
        width = np.full(P, high - low)
    if method == "hoeffding":
        half = width * np.sqrt(np.log(2 / alpha) / (2 * n))
    elif method == "bernstein":
        log_term = np.log(4 / alpha)
        half = np.sqrt(2 * values.var(axis=1, ddof=1) * log_term / n) + 7 * width * log_term / (3 * (n - 1))
    else:
        raise ValueError(f"interval: expected one of {list(INTERVAL_METHODS)}, found {method!r}")
    return mean - half, mean + half
