"""Confidence intervals for the point estimators, at level 1 − α.

Each point estimate is a mean of per-trajectory values X_i (``PointEstimator.trajectory_values``). With
n trajectories, sample mean X̄, sample standard deviation s (ddof = 1), sample variance V_n and range
R = b − a of the values:

- ``t`` (Student): X̄ ± t_{1−α/2, n−1} s / √n. Asymptotically exact.
- ``bootstrap`` (percentile; Efron & Tibshirani, 1993): resample whole trajectories B times, recompute the
  estimate on each resample (self-normalised estimators renormalise inside every resample), and take the
  α/2 and 1 − α/2 quantiles of the B estimates. Resamples draw n trajectories with replacement
  (``resampling="multinomial"``) or give each trajectory a Poisson(1) count (``"poisson"``, the form a
  stream can draw; ``PoissonCounts``). The fitted models (Q̂, marginal weights) are not refit per
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

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from opelab.ope.estimators.base import EstimationContext, PointEstimator

INTERVAL_METHODS = ("bootstrap", "t", "hoeffding", "bernstein")
RESAMPLING = ("multinomial", "poisson")
_BOOTSTRAP_CHUNK_ELEMENTS = 8_000_000  # counts held at once: B_chunk · n (64 MB of float64)


@dataclass(frozen=True)
class IntervalSpec:
    """How to compute intervals: the method, α, and the method's options."""

    method: str
    alpha: float = 0.05
    n_bootstrap: int = 1000
    seed: int = 0
    value_range: tuple[float, float] | None = None
    resampling: str = "multinomial"  # the bootstrap's: "multinomial" (n draws) or "poisson" (``PoissonCounts``)

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLING:
            raise ValueError(f"resampling: expected one of {list(RESAMPLING)}, found {self.resampling!r}")
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
    resample = poisson_bootstrap_estimates if spec.resampling == "poisson" else bootstrap_estimates
    for resampled in resample(estimators, ctx, spec.n_bootstrap, spec.seed):
        lower, upper = np.quantile(resampled, [spec.alpha / 2, 1 - spec.alpha / 2], axis=1)
        out.append((lower, upper))
    return out


def unique_terms(estimators: Sequence[PointEstimator], ctx: EstimationContext) -> Iterator[tuple[Hashable, np.ndarray]]:
    """(key, term) of every estimator's ``resampling_terms``, each shared key once, one estimator at a time
    (a consumer that copies a term and lets it go never holds every estimator's terms at once)."""
    seen: set[Hashable] = set()
    for estimator in estimators:
        ctx.require(estimator.name, *estimator.requires)
        for key, term in estimator.resampling_terms(ctx).items():
            if key not in seen:
                seen.add(key)
                yield key, term


def term_columns(
    terms: Iterable[tuple[Hashable, np.ndarray]], n: int, P: int
) -> list[tuple[np.ndarray, list[tuple[Hashable, int, int]]]]:
    """Resampling terms (``unique_terms``) of n trajectories and P policies as matrix columns: a list of
    (T (n, K), [(key, first column, m)]), m = 0 for a (P, n) term (P columns) and m steps for a (P, n, m) term
    (columns p·m + t). One matrix per per-step term, one for all (P, n) terms."""
    blocks: list[tuple[np.ndarray, list[tuple[Hashable, int, int]]]] = []
    small: dict[Hashable, np.ndarray] = {}  # (P, n) terms, stacked into one matrix at the end
    for key, term in terms:
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
    return blocks


def split_sums(flat: np.ndarray, layout: list[tuple[Hashable, int, int]], P: int) -> dict[Hashable, np.ndarray]:
    """Sums (B, K) of one column matrix back into key -> (P, B) or (P, B, m)."""
    size = len(flat)
    sums = {}
    for key, first, m in layout:
        if m == 0:
            sums[key] = flat[:, first : first + P].T  # (P, B)
        else:
            sums[key] = flat[:, first : first + P * m].reshape(size, P, m).transpose(1, 0, 2)  # (P, B, m)
    return sums


def bootstrap_estimates(
    estimators: Sequence[PointEstimator], ctx: EstimationContext, n_bootstrap: int, seed: int
) -> list[np.ndarray]:
    """Every estimator's estimates on the same ``n_bootstrap`` resamples: one (P, B) array per estimator.

    Equal, up to float rounding, to ``estimator.resampled_estimates(ctx, counts)`` on the counts of
    ``bootstrap_counts``, but computed at once for all estimators: the per-trajectory terms of every
    estimator (``PointEstimator.resampling_terms``; a term that several estimators share, such as the
    weights W_t that SNPDIS and SNDR divide by, only once) are laid out as the columns of a few matrices
    T (n, K) (``term_columns``), so that each chunk of counts (B_c, n) costs one matrix product counts @ T
    per matrix. Memory: the terms (K · n floats, about the size of the estimators' inputs) plus, per chunk,
    the counts and the sums: the chunks keep B_c · n ≤ ``_BOOTSTRAP_CHUNK_ELEMENTS`` whatever ``n_bootstrap``.
    """
    n = ctx.dataset.n_trajectories
    P = ctx.inputs.n_policies
    blocks = term_columns(unique_terms(estimators, ctx), n, P)
    out = [np.empty((P, n_bootstrap)) for _ in estimators]
    done = 0
    for counts in bootstrap_counts(n, n_bootstrap, seed):
        size = len(counts)
        sums: dict[Hashable, np.ndarray] = {}
        for columns, layout in blocks:
            sums.update(split_sums(counts @ columns, layout, P))
        totals = counts.sum(axis=1)
        for estimator, resampled in zip(estimators, out):
            resampled[:, done : done + size] = estimator.estimates_from_sums(sums, totals)
        done += size
        del counts, sums  # before the next chunk is drawn: one chunk of counts alive at a time
    return out


class PoissonCounts:
    """Poisson(1) resampling counts as a pure function of (seed, trajectory number, resample number).

    The Poisson bootstrap (Hanley & MacGibbon, 2006; Chamandy et al., 2012, for data streams) gives each
    trajectory an independent Poisson(1) count in each resample instead of drawing a multinomial of fixed
    size n: the counts of a trajectory do not depend on the others, so a stream (or a cluster) can draw them
    chunk by chunk, knowing only each trajectory's number. Counts are drawn per block of ``BLOCK``
    trajectories and group of ``GROUP`` resamples from a generator seeded by (seed, block, group), so any
    split of the trajectories into chunks, and of the work into units, sees the same counts. The resample
    size Σ_i counts[b, i] varies around n; an estimator averaging over a resample divides by it.
    ``counts(first, count)`` returns (B, count) for trajectories first..first + count − 1; the last block
    drawn is kept, so consecutive chunks that share a block draw it once.
    """

    BLOCK = 1024
    GROUP = 256

    def __init__(self, n_bootstrap: int, seed: int) -> None:
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self._cached: tuple[int, np.ndarray] | None = None

    def block(self, j: int) -> np.ndarray:
        """Counts (B, BLOCK) of the trajectories j·BLOCK .. (j + 1)·BLOCK − 1."""
        if self._cached is not None and self._cached[0] == j:
            return self._cached[1]
        B = self.n_bootstrap
        out = np.empty((B, self.BLOCK))
        for g in range(0, B, self.GROUP):
            rng = np.random.default_rng([self.seed, j, g // self.GROUP])
            rows = min(self.GROUP, B - g)
            out[g : g + rows] = rng.poisson(1.0, size=(self.GROUP, self.BLOCK))[:rows]
        self._cached = (j, out)
        return out

    def slices(self, first: int, count: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """(lo, hi, counts (B, hi − lo)) covering trajectories first + lo .. first + hi − 1, block by block."""
        lo = 0
        while lo < count:
            j, start = divmod(first + lo, self.BLOCK)
            hi = min(count, lo + self.BLOCK - start)
            yield lo, hi, self.block(j)[:, start : start + hi - lo]
            lo = hi


def poisson_sums(
    blocks: list[tuple[np.ndarray, list[tuple[Hashable, int, int]]]], P: int, first: int, counts: PoissonCounts
) -> tuple[dict[Hashable, np.ndarray], np.ndarray]:
    """Count-weighted sums of the term columns of trajectories first.. (``term_columns``) over the Poisson
    resamples, key -> (P, B) or (P, B, m), and the resample sizes (B,)."""
    n = len(blocks[0][0]) if blocks else 0
    flats = [np.zeros((counts.n_bootstrap, columns.shape[1])) for columns, _ in blocks]
    totals = np.zeros(counts.n_bootstrap)
    for lo, hi, c in counts.slices(first, n):
        for (columns, _), flat in zip(blocks, flats):
            flat += c @ columns[lo:hi]
        totals += c.sum(axis=1)
    sums: dict[Hashable, np.ndarray] = {}
    for (_, layout), flat in zip(blocks, flats):
        sums.update(split_sums(flat, layout, P))
    return sums, totals


def poisson_bootstrap_estimates(
    estimators: Sequence[PointEstimator], ctx: EstimationContext, n_bootstrap: int, seed: int
) -> list[np.ndarray]:
    """Every estimator's estimates on ``n_bootstrap`` Poisson resamples (``PoissonCounts``): (P, B) each.
    The same resamples as a stream over the same trajectories draws (``opelab.ope.streaming``)."""
    n, P = ctx.dataset.n_trajectories, ctx.inputs.n_policies
    sums, totals = poisson_sums(term_columns(unique_terms(estimators, ctx), n, P), P, 0, PoissonCounts(n_bootstrap, seed))
    return [estimator.estimates_from_sums(sums, totals) for estimator in estimators]


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
    return interval_from_moments(
        n, values.mean(axis=1), values.var(axis=1, ddof=1), values.min(axis=1), values.max(axis=1),
        method, alpha, value_range, name,
    )  # fmt: skip


def interval_from_moments(
    n: int,
    mean: np.ndarray,
    variance: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    method: str,
    alpha: float,
    value_range: tuple[float, float] | None = None,
    name: str = "values",
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of ``mean_interval`` from the count, mean, sample variance (ddof = 1) and observed
    minimum and maximum of the values (P,) each: what a stream accumulates."""
    if n < 2:
        raise ValueError(f"{name}: an interval needs at least 2 trajectories, found {n}")
    if method == "t":
        from scipy import stats  # imported here: scipy.stats takes over a second to import

        half = stats.t.ppf(1 - alpha / 2, n - 1) * np.sqrt(variance) / np.sqrt(n)
        return mean - half, mean + half
    if value_range is None:
        width = high - low
    else:
        lo, hi = value_range
        if low.min() < lo or high.max() > hi:
            raise ValueError(
                f"value_range: expected every per-trajectory value of {name} in [{lo}, {hi}], "
                f"found [{low.min():.6g}, {high.max():.6g}]"
            )
        width = np.full(len(mean), hi - lo)
    if method == "hoeffding":
        half = width * np.sqrt(np.log(2 / alpha) / (2 * n))
    elif method == "bernstein":
        log_term = np.log(4 / alpha)
        half = np.sqrt(2 * variance * log_term / n) + 7 * width * log_term / (3 * (n - 1))
    else:
        raise ValueError(f"interval: expected one of {list(INTERVAL_METHODS)}, found {method!r}")
    return mean - half, mean + half
