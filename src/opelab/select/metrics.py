"""Metrics for assessing off-policy evaluation (OPE) and off-policy selection (OPS).

Every public function compares the true policy values ``true_values`` (J, one entry
per candidate policy, length P) with the OPE estimates ``estimates`` (Ĵ, same length).

Ties in the estimates
---------------------
The top-k metrics (regret@k, normalised regret@k, best/worst/mean/std@k, SharpeRatio@k,
:func:`topk_metrics`) depend on which policies fill the top-k when estimates are tied
at the k boundary. Their argument ``ties`` chooses the rule; ties mean exactly equal
estimates (no tolerance):

- ``"average"`` (the default): the expectation of the metric over a uniformly random
  order of the tied policies, i.e. over a uniformly random choice of which r of the t
  policies tied at the boundary fill the remaining slots. It is the expectation of the
  metric, not the metric of an expected set (SharpeRatio@k is a ratio), and it does not
  depend on the order in which the policies are listed. best@k, worst@k and regret@k
  are exact, from the order statistics of a uniformly random r-subset, and mean@k is
  exact (it is linear: each tied policy is in with probability r / t, see
  :func:`top_k_inclusion`). std@k and SharpeRatio@k are exact when enumerating costs at
  most ``MAX_ENUMERATED`` (2²⁰) entries: the N distinct multisets of true values the r slots
  can hold (at most C(t, r), far fewer when tied policies share true values) times
  min(d, r) entries each (d distinct tied values), enumerated with their multivariate
  hypergeometric weights (tens of MB and well under a second at the limit). Beyond that
  they are a Monte Carlo mean over ``MC_DRAWS`` (10⁵) uniformly random orders of the tied
  policies, of which only the first r slots are drawn (without replacement), with a fixed
  seed (0), so the result is deterministic but not exact: its standard error is the
  metric's standard deviation over random subsets / √MC_DRAWS, i.e. a relative error of
  about CV / 316 for a coefficient of variation CV (0.2-0.4 % measured on std@k and
  SharpeRatio@k for a 9-policy group; much more for SharpeRatio@k when two tied true
  values are very close, since 1 / std@k is then heavy-tailed). An infinite SharpeRatio@k
  (below) is detected exactly on both paths, however unlikely the subset that causes it.
  Under "average", SharpeRatio@k is +inf whenever *any* boundary subset has std@k = 0 with
  a positive numerator (e.g. k = 2 and two tied policies with equal true values above
  J(π_b)), even if that subset is unlikely, so means of SharpeRatio@k across datasets
  become inf more often than under "first" or "last".
  Across k, every random order gives nested top-k sets; the value at each k is the
  expectation at that k, so e.g. E[best@k] is non-decreasing and E[worst@k]
  non-increasing in k, but no single set realises all ks at once.
- ``"first"``: the tied policy listed first ranks higher (``argsort(-Ĵ, kind="stable")``).
- ``"last"``: the tied policy listed last ranks higher (the order of
  ``argsort(Ĵ, kind="stable")[::-1]``, the order of the reference implementation of
  Kiyohara et al.; numpy's default sort is not stable beyond 16 elements).

``"first"`` and ``"last"`` give top-k sets nested in k. Without ties the three rules
agree. Example (the toy example of Kiyohara et al., ICLR 2024): J = 1, 3, 4, 5, 6, 7,
8, 9, 10, 12, estimates Ĵ = 1, 11, 11, 5, 6, 7, 8, 9, 10, 12 and J(π_b) = 8. The top-2
holds the policy with J = 12 and one of the two tied at Ĵ = 11 (J = 3 or J = 4):
SharpeRatio@2 = 4 / std(12, 3) = 0.6285 with ``"first"``, 4 / std(12, 4) = 0.7071 with
``"last"`` and their mean 0.6678 with ``"average"``.

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

import functools
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "MAX_ENUMERATED",
    "MC_DRAWS",
    "TIE_RULES",
    "TieRule",
    "TopKMetrics",
    "TypeErrors",
    "nmse",
    "normalized_regret_at_k",
    "rank_correlation",
    "regret_at_k",
    "sharpe_ratio_at_k",
    "top_k_inclusion",
    "top_k_indices",
    "topk_metrics",
    "type_errors",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_Arr = TypeVar("_Arr", bound=np.ndarray)

TieRule = Literal["first", "last", "average"]
TIE_RULES: tuple[str, ...] = ("first", "last", "average")
MAX_ENUMERATED = 1 << 20  # "average": enumerate while N multisets × min(d, r) entries fit in this
MC_DRAWS = 100_000  # "average": Monte Carlo subsets for std@k / SharpeRatio@k beyond that
_MC_SEED = 0


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
    ties: str | None


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


_UNSET = object()  # "not asked for", distinct from a ``ties=None`` passed by a caller


def _as_ties(ties: object, allowed: tuple[str, ...]) -> str:
    """Check that ``ties`` names one of the ``allowed`` tie rules."""
    if not isinstance(ties, str) or ties not in allowed:
        expected = ", ".join(repr(rule) for rule in allowed)
        raise ValueError(f"ties: expected one of {expected}, found {ties!r}")
    return ties


def _check(
    true_values: ArrayLike | None,
    estimates: ArrayLike,
    *,
    k: object = None,
    ks: object = None,
    scalars: dict[str, object] | None = None,
    ties: object = _UNSET,
    tie_rules: tuple[str, ...] = TIE_RULES,
) -> _Checked:
    """Validate every input of the public functions in one place.

    ``true_values`` may be ``None`` (only :func:`top_k_indices` and
    :func:`top_k_inclusion` do so); ``k`` and ``ks`` are checked against
    P = len(estimates) when given; ``scalars`` maps argument names to values that must
    be finite real numbers; ``ties``, when given, must be one of ``tie_rules``.
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

    ties_out = None if ties is _UNSET else _as_ties(ties, tie_rules)
    return _Checked(j_true, j_hat, k_out, ks_out, scalars_out, ties_out)


def _order(estimates: FloatArray, ties: str) -> IntArray:
    """All indices by descending estimate; ties in listing order ("first") or reversed ("last")."""
    if ties == "last":
        return np.argsort(estimates, kind="stable")[::-1].astype(np.int64)
    return np.argsort(-estimates, kind="stable").astype(np.int64)


@dataclass(frozen=True)
class _Split:
    """The top-k by Ĵ, split at the k boundary.

    ``sure``: indices with Ĵ above the k-th largest estimate (in every top-k);
    ``tied``: indices with Ĵ equal to it, of which ``r`` (1..len(tied)) fill the top-k.
    """

    sure: IntArray
    tied: IntArray
    r: int

    @property
    def determined(self) -> bool:
        """True when the top-k set does not depend on the tie rule."""
        return self.r == self.tied.shape[0]


def _split(estimates: FloatArray, k: int) -> _Split:
    """Split the top-k at its boundary (no validation)."""
    boundary = estimates[_order(estimates, "first")[k - 1]]
    sure = np.flatnonzero(estimates > boundary).astype(np.int64)
    tied = np.flatnonzero(estimates == boundary).astype(np.int64)
    return _Split(sure, tied, k - sure.shape[0])


def _top_k(estimates: FloatArray, k: int, ties: str = "first") -> IntArray:
    """Indices of the k largest estimates, descending, ties by rule "first" or "last"."""
    return _order(estimates, ties)[:k]


@dataclass(frozen=True)
class _TiedValues:
    """True values of a boundary tie group as a multiset: sorted distinct ``values`` and ``counts``."""

    values: FloatArray  # (d,) ascending
    counts: IntArray  # (d,)
    r: int

    @property
    def size(self) -> int:
        return int(self.counts.sum())


def _tied_values(true_values: FloatArray, split: _Split) -> _TiedValues:
    values, counts = np.unique(true_values[split.tied], return_counts=True)
    return _TiedValues(values.astype(np.float64), counts.astype(np.int64), split.r)


def _expected_extremes(fixed: FloatArray, tied: _TiedValues) -> tuple[float, float]:
    """Exact E[max] and E[min] of J over fixed ∪ S, S a uniformly random r-subset of the tie group.

    With u_1 < ... < u_d the distinct tied values, M_j the number of tied policies with J ≤ u_j
    (M_0 = 0) and w_j = max(max fixed, u_j): P(max_S ≥ u_j) = 1 − C(M_{j−1}, r) / C(t, r) and
    E[max] = w_1 + Σ_{j≥2} P(max_S ≥ u_j) (w_j − w_{j−1}); E[min] likewise from the top. The tail
    sums of non-negative terms, with correctly rounded probabilities, keep the float results
    monotone in r and inside [w_1, w_d], so regret@k stays >= 0 and best@k non-decreasing in k.
    """
    t, r = tied.size, tied.r
    total = math.comb(t, r)
    below = np.concatenate(([0], np.cumsum(tied.counts))).tolist()  # M_0 = 0, M_1, ..., M_d = t
    d = len(tied.values)
    hi = float(np.max(fixed)) if fixed.shape[0] else -np.inf
    lo = float(np.min(fixed)) if fixed.shape[0] else np.inf
    w_hi = np.maximum(tied.values, hi)  # non-decreasing
    w_lo = np.minimum(tied.values, lo)  # non-decreasing
    best = float(w_hi[0])
    for j in range(1, d):
        p_at_least = (total - math.comb(below[j], r)) / total  # P(max_S >= u_j)
        best += p_at_least * float(w_hi[j] - w_hi[j - 1])
    worst = float(w_lo[-1])
    for j in range(d - 2, -1, -1):
        p_at_most = (total - math.comb(t - below[j + 1], r)) / total  # P(min_S <= u_j)
        worst -= p_at_most * float(w_lo[j + 1] - w_lo[j])
    return min(max(best, float(w_hi[0])), float(w_hi[-1])), min(max(worst, float(w_lo[0])), float(w_lo[-1]))


def _count_multisets(caps: tuple[int, ...], r: int, limit: int) -> int:
    """Number N of count vectors c (0 ≤ c_i ≤ caps_i, Σ c_i = r), saturated at limit + 1."""
    # ways[j]: number of count vectors over the values seen so far summing to j, saturated at
    # limit + 1 (a window sum of saturated terms, saturated again, is still exact below the cap).
    ways = np.zeros(r + 1, dtype=np.int64)
    ways[0] = 1
    j = np.arange(r + 1)
    for cap in caps:
        prefix = np.concatenate(([0], np.cumsum(ways)))
        ways = np.minimum(prefix[j + 1] - prefix[np.maximum(j - cap, 0)], limit + 1)
    return int(ways[r])


def _dense_compositions(caps: IntArray, r: int) -> IntArray:
    """Every count vector c (0 ≤ c_i ≤ caps_i, Σ c_i = r), shape (N, d): one column per distinct value."""
    d = caps.shape[0]
    ways = np.zeros((d + 1, r + 1), dtype=np.int64)  # ways[i, j]: vectors over values i.. summing to j
    ways[d, 0] = 1
    j = np.arange(r + 1)
    for i in range(d - 1, -1, -1):
        prefix = np.concatenate(([0], np.cumsum(ways[i + 1])))
        ways[i] = np.minimum(prefix[j + 1] - prefix[np.maximum(j - caps[i], 0)], 1)  # > 0 is all we need
    # Level by level: every partial vector can be completed, so no level holds more than N.
    left = np.array([r], dtype=np.int64)
    parents: list[IntArray] = []
    chosen: list[IntArray] = []
    for i in range(d):
        parent_parts, count_parts = [], []
        for c in range(min(int(caps[i]), r) + 1):
            rest = left - c
            ok = np.flatnonzero((rest >= 0) & (ways[i + 1, np.maximum(rest, 0)] > 0))
            parent_parts.append(ok)
            count_parts.append(np.full(ok.shape[0], c, dtype=np.int64))
        parent = np.concatenate(parent_parts)
        counts = np.concatenate(count_parts)
        parents.append(parent)
        chosen.append(counts)
        left = left[parent] - counts
    n = chosen[-1].shape[0] if d else 1
    out = np.empty((n, d), dtype=np.int64)
    row = np.arange(n)
    for i in range(d - 1, -1, -1):  # walk back from the complete vectors to the root
        out[:, i] = chosen[i][row]
        row = parents[i][row]
    return out


def _sorted_selections(caps: IntArray, r: int) -> IntArray:
    """Every multiset of r distinct-value indices as a non-decreasing row (index i at most caps_i
    times), shape (N, r): one column per slot, built slot by slot and pruned to completable rows."""
    d = caps.shape[0]
    suffix = np.concatenate((np.cumsum(caps[::-1])[::-1], [0]))  # suffix[i] = Σ_{i' ≥ i} caps_i'
    last = np.array([-1], dtype=np.int64)  # index chosen in the previous slot (-1: none yet)
    run = np.array([0], dtype=np.int64)  # how often it has been chosen
    parents: list[IntArray] = []
    chosen: list[IntArray] = []
    for s in range(1, r + 1):
        need = r - s  # slots left after this one
        # a new index j > last keeps the row completable iff suffix[j] - 1 >= need (suffix decreases)
        jmax = int(np.count_nonzero(suffix[:d] >= need + 1)) - 1
        n_new = np.maximum(jmax - last, 0)
        new_parent = np.repeat(np.arange(last.shape[0]), n_new)
        offset = np.arange(new_parent.shape[0]) - np.repeat(np.cumsum(n_new) - n_new, n_new)
        new_index = last[new_parent] + 1 + offset
        if s > 1:  # the same index again, if it has copies left and the row stays completable
            left_of_last = caps[last] - run - 1
            stay = np.flatnonzero((left_of_last >= 0) & (left_of_last + suffix[last + 1] >= need))
        else:
            stay = np.zeros(0, dtype=np.int64)
        parent = np.concatenate((new_parent, stay))
        last = np.concatenate((new_index, last[stay]))
        run = np.concatenate((np.ones(new_parent.shape[0], dtype=np.int64), run[stay] + 1))
        parents.append(parent.astype(np.int32))
        chosen.append(last.astype(np.int32))
    n = last.shape[0]
    out = np.empty((n, r), dtype=np.int32 if d < 2**31 else np.int64)
    row = np.arange(n)
    for s in range(r - 1, -1, -1):
        out[:, s] = chosen[s][row]
        row = parents[s][row]
    return out


@dataclass(frozen=True)
class _Layout:
    """Every distinct multiset of r tied true values, independent of the values themselves.

    ``weights``: multivariate hypergeometric probabilities Π_i C(m_i, c_i) / C(t, r) (N,), which may
    underflow to 0 for very unlikely multisets; ``lo`` / ``hi``: index of the smallest / largest
    distinct value held (N,). Either ``counts`` (N, d), how often each distinct value is held, or
    ``index`` (N, r), the held distinct-value indices in ascending order (whichever is smaller).
    """

    weights: FloatArray
    lo: IntArray
    hi: IntArray
    counts: IntArray | None
    index: IntArray | None

    @property
    def size(self) -> int:
        arr = self.counts if self.counts is not None else self.index
        assert arr is not None
        return int(arr.size)


def _normalised(log_w: FloatArray) -> FloatArray:
    w = np.exp(log_w - np.max(log_w))
    return w / np.sum(w)  # the exact weights sum to 1; normalising removes the rounding of the logs


def _build_layout(caps_key: tuple[int, ...], r: int) -> _Layout:
    caps = np.asarray(caps_key, dtype=np.int64)
    d = caps.shape[0]
    log_binom = [
        np.array([math.lgamma(m + 1) - math.lgamma(x + 1) - math.lgamma(m - x + 1) for x in range(min(m, r) + 1)])
        for m in caps_key
    ]
    if d <= r:
        counts = _dense_compositions(caps, r)
        log_w = np.zeros(counts.shape[0])
        for i in range(d):
            log_w += log_binom[i][counts[:, i]]
        present = counts > 0
        lo = np.argmax(present, axis=1)
        hi = d - 1 - np.argmax(present[:, ::-1], axis=1)
        return _Layout(_normalised(log_w), lo, hi, counts, None)
    index = _sorted_selections(caps, r)
    if np.all(caps == 1):
        log_w = np.zeros(index.shape[0])  # r distinct values: every subset equally likely
    else:
        held = np.zeros(index.shape[0], dtype=np.int64)  # Σ_i log C(m_i, c_i) from the run lengths
        log_w = np.zeros(index.shape[0])
        for s in range(r):
            if s:
                same = index[:, s] == index[:, s - 1]
                held = np.where(same, held + 1, 1)
            else:
                held[:] = 1
            m = caps[index[:, s]]
            log_w += np.log((m - held + 1) / held)  # C(m, c) / C(m, c - 1) = (m - c + 1) / c
    return _Layout(_normalised(log_w), index[:, 0].astype(np.int64), index[:, -1].astype(np.int64), None, index)


_CACHED_LAYOUT_SIZE = 1 << 15  # layouts with at most this many entries are cached (≤ 64 of them)


@functools.lru_cache(maxsize=64)
def _cached_layout(caps_key: tuple[int, ...], r: int) -> _Layout:
    return _build_layout(caps_key, r)


@functools.lru_cache(maxsize=1024)
def _cached_count(caps_key: tuple[int, ...], r: int, limit: int) -> int:
    return _count_multisets(caps_key, r, limit)


def _layout(tied: _TiedValues, budget: int) -> _Layout | None:
    """The enumeration of the tie group's r-multisets, or None when it would cost more than
    ``budget`` entries (N multisets × min(d, r) columns)."""
    caps_key = tuple(tied.counts.tolist())
    width = min(len(caps_key), tied.r)
    limit = budget // width
    n = _cached_count(caps_key, tied.r, limit) if len(caps_key) <= 256 else _count_multisets(caps_key, tied.r, limit)
    if n > limit:
        return None
    if n * width <= _CACHED_LAYOUT_SIZE:
        return _cached_layout(caps_key, tied.r)
    return _build_layout(caps_key, tied.r)


def _sharpe_of(best: FloatArray, std: FloatArray, behavior_value: float, clip: bool) -> FloatArray:
    """Element-wise SharpeRatio from best@k and std@k, with the conventions of :func:`_sharpe`."""
    numerator = best - behavior_value
    if clip:
        numerator = np.maximum(numerator, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = numerator / std
    infinite = np.where(numerator > 0.0, np.inf, -np.inf)
    return np.where(numerator == 0.0, 0.0, np.where(std == 0.0, infinite, ratio))


def _expectation(weights: FloatArray, values: FloatArray) -> float:
    """Σ w_n v_n over outcomes that all have positive probability (a weight may have underflowed
    to 0): nan if some v_n is nan or +inf and -inf both occur, else ±inf if some v_n is, decided
    before weighting, so that 0 · inf never turns an infinite expectation into nan."""
    if np.isnan(values).any():
        return float("nan")
    pos, neg = bool(np.any(values == np.inf)), bool(np.any(values == -np.inf))
    if pos and neg:
        return float("nan")
    if pos or neg:
        return float("inf") if pos else float("-inf")
    with np.errstate(over="ignore"):
        return float(np.sum(weights * values))


def _enumerated(
    fixed: FloatArray, tied: _TiedValues, layout: _Layout, behavior_value: float, clip: bool
) -> tuple[float, float]:
    """Exact E[std@k] and E[SharpeRatio@k] over the multisets of ``layout`` (k = len(fixed) + r)."""
    g, r = fixed.shape[0], tied.r
    k = g + r
    if k < 2:
        return float("nan"), float("nan")
    u = tied.values
    hi, lo = u[layout.hi], u[layout.lo]
    if g:
        hi = np.maximum(hi, np.max(fixed))
        lo = np.minimum(lo, np.min(fixed))
    fixed_sum = float(np.sum(fixed))
    fixed_mean = fixed_sum / g if g else 0.0
    fixed_sq = float(np.sum((fixed - fixed_mean) ** 2))  # Σ (f - m)² = fixed_sq + g (mean(f) - m)²
    n = layout.weights.shape[0]
    spread = np.empty(n)
    step = max(1, (1 << 18) // max(1, layout.size // n))  # rows per chunk: temporaries of ~2^18 entries
    for a in range(0, n, step):
        b = min(n, a + step)
        if layout.index is not None:
            x = u[layout.index[a:b]]  # (rows, r)
            mean = (fixed_sum + x.sum(axis=1)) / k
            tied_sq = ((x - mean[:, None]) ** 2).sum(axis=1)
        else:
            assert layout.counts is not None
            counts = layout.counts[a:b]
            mean = (fixed_sum + counts @ u) / k
            tied_sq = (counts * (u[None, :] - mean[:, None]) ** 2).sum(axis=1)
        spread[a:b] = fixed_sq + g * (fixed_mean - mean) ** 2 + tied_sq
    std = np.where(hi == lo, 0.0, np.sqrt(spread / (k - 1)))  # identical values: exactly 0, as _sample_std
    sharpe = _sharpe_of(hi, std, behavior_value, clip)
    return _expectation(layout.weights, std), _expectation(layout.weights, sharpe)


@dataclass(frozen=True)
class _Stats:
    best: float
    worst: float
    mean: float
    std: float
    sharpe: float


def _infinite_sharpe(fixed: FloatArray, tied: _TiedValues, r: int, behavior_value: float, clip: bool) -> float | None:
    """±inf (nan if both) when some r-subset gives std@k = 0 with a non-zero numerator, else None.

    std@k = 0 exactly when fixed ∪ S holds one value v: every fixed value equals v and the tie
    group holds at least r copies of v (any v with r copies when there are no fixed values).
    """
    if fixed.shape[0] + r < 2:
        return None
    if fixed.shape[0]:
        v = fixed[0]
        if not np.all(fixed == v):
            return None
        candidates = tied.values[(tied.values == v) & (tied.counts >= r)]
    else:
        candidates = tied.values[tied.counts >= r]
    numerators = candidates - behavior_value
    if clip:
        numerators = np.maximum(numerators, 0.0)
    pos, neg = bool(np.any(numerators > 0.0)), bool(np.any(numerators < 0.0))
    if pos and neg:
        return float("nan")
    if pos or neg:
        return float("inf") if pos else float("-inf")
    return None


@dataclass(frozen=True)
class _Sampled:
    """Monte Carlo means of std@k and SharpeRatio@k and their standard errors (sample std / √draws;
    0 for a SharpeRatio that is infinite for some subset, which is then returned exactly)."""

    std: float
    sharpe: float
    std_se: float
    sharpe_se: float


def _random_slots(rng: np.random.Generator, values: FloatArray, n: int, slots: int) -> FloatArray:
    """(n, slots) values: each row the first ``slots`` entries of a uniformly random order of ``values``
    (drawn without replacement; only those slots are drawn)."""
    t = values.shape[0]
    if slots * slots <= t:  # rejection: i.i.d. indices, redraw rows with a repeat (P(repeat) ≲ 1/2)
        idx = rng.integers(0, t, size=(n, slots))
        while True:
            srt = np.sort(idx, axis=1)
            bad = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
            if not bad.size:
                return values[idx]
            idx[bad] = rng.integers(0, t, size=(bad.shape[0], slots))
    x = np.tile(values, (n, 1))  # partial Fisher–Yates: swap a uniform later entry into each slot
    rows = np.arange(n)
    for s in range(slots):
        j = rng.integers(s, t, size=n)
        picked = x[rows, j]
        x[rows, j] = x[:, s]
        x[:, s] = picked
    return x[:, :slots]


def _monte_carlo(
    fixed: FloatArray, tied: _TiedValues, rs: list[int], behavior_value: float, clip: bool, draws: int
) -> dict[int, _Sampled]:
    """Monte Carlo E[std@k] and E[SharpeRatio@k] for each r in ``rs``, k = len(fixed) + r.

    Each draw is the first R = max(rs) entries of a uniformly random order of the tied true values
    (seed ``_MC_SEED``), drawn without replacement; its first r entries are a uniformly random
    r-subset, so one set of draws serves every r (common random numbers: the estimates for different
    k come from nested sets). Only the multiset of tied values enters, so the result does not depend
    on the listing order. A SharpeRatio@k that is infinite for some subset (std@k = 0, see
    :func:`_infinite_sharpe`) is returned exactly, however rare that subset.
    """
    if not rs:
        return {}
    values = np.repeat(tied.values, tied.counts)  # (t,) ascending
    t, g = values.shape[0], fixed.shape[0]
    slots = max(rs)
    center = float(np.mean(np.concatenate((fixed, values))))  # shift: sums of squares without cancellation
    fixed_sum = float(np.sum(fixed - center))
    fixed_sq = float(np.sum((fixed - center) ** 2))
    fixed_hi = float(np.max(fixed)) if g else -np.inf
    fixed_lo = float(np.min(fixed)) if g else np.inf
    infinite = {r: _infinite_sharpe(fixed, tied, r, behavior_value, clip) for r in rs}
    rng = np.random.default_rng(_MC_SEED)
    chunk = max(1, (1 << 21) // (t if slots * slots > t else slots))
    totals = {r: np.zeros(4) for r in rs}  # Σ std, Σ std², Σ sharpe, Σ sharpe²
    done = 0
    with np.errstate(invalid="ignore", over="ignore"):
        while done < draws:
            n = min(chunk, draws - done)
            x = _random_slots(rng, values, n, slots)  # (n, slots)
            dev = x - center
            csum = np.cumsum(dev, axis=1)
            csq = np.cumsum(dev * dev, axis=1)
            cmax = np.maximum.accumulate(x, axis=1)
            cmin = np.minimum.accumulate(x, axis=1)
            for r in rs:
                k = g + r
                hi = np.maximum(cmax[:, r - 1], fixed_hi)
                lo = np.minimum(cmin[:, r - 1], fixed_lo)
                total = fixed_sum + csum[:, r - 1]
                spread = np.maximum(fixed_sq + csq[:, r - 1] - total * total / k, 0.0)
                std = np.where(hi == lo, 0.0, np.sqrt(spread / (k - 1)))
                sums = totals[r]
                sums[0] += float(np.sum(std))
                sums[1] += float(np.sum(std * std))
                if infinite[r] is None:
                    sharpe = _sharpe_of(hi, std, behavior_value, clip)
                    sums[2] += float(np.sum(sharpe))
                    sums[3] += float(np.sum(sharpe * sharpe))
            done += n

    def mean_se(total: float, total_sq: float) -> tuple[float, float]:
        mean = total / draws
        var = max(total_sq / draws - mean * mean, 0.0) * draws / max(draws - 1, 1)
        return mean, math.sqrt(var / draws)

    out: dict[int, _Sampled] = {}
    for r, sums in totals.items():
        std_mean, std_se = mean_se(sums[0], sums[1])
        inf_value = infinite[r]
        if inf_value is None:
            sharpe_mean, sharpe_se = mean_se(sums[2], sums[3])
        else:
            sharpe_mean, sharpe_se = inf_value, 0.0
        out[r] = _Sampled(std_mean, sharpe_mean, std_se, sharpe_se)
    return out


def _exact_location(fixed: FloatArray, tied: _TiedValues) -> tuple[float, float, float]:
    """Exact E[best@k], E[worst@k] (order statistics) and E[mean@k] (linear: each tied policy is in
    with probability r / t)."""
    best, worst = _expected_extremes(fixed, tied)
    k = fixed.shape[0] + tied.r
    if k == 1:  # one policy: best = worst = mean, kept bit-identical
        return best, best, best
    mean = (float(np.sum(fixed)) + tied.r * float(tied.counts @ tied.values) / tied.size) / k
    return best, worst, mean


def _set_stats(values: FloatArray, behavior_value: float, clip: bool) -> _Stats:
    """Statistics of one top-k set of true values."""
    top = np.sort(values)  # sorted: the same set gives bit-identical statistics
    return _Stats(
        float(np.max(top)),
        float(np.min(top)),
        float(np.mean(top)),
        _sample_std(top),
        _sharpe(top, behavior_value, clip),
    )


def _top_k_stats(
    true_values: FloatArray,
    estimates: FloatArray,
    ks: list[int],
    ties: str,
    behavior_value: float,
    clip: bool,
    max_enumerated: int | None = None,
    mc_draws: int | None = None,
) -> list[_Stats]:
    """Top-k statistics of J for each k in ``ks`` under the tie rule ``ties`` (no validation).

    For "average" at a k that cuts a tie group: best@k and worst@k by order statistics and
    mean@k by linearity (exact); std@k and SharpeRatio@k over every distinct multiset of the
    tied true values the r open slots can hold, with its hypergeometric weight, when the N
    multisets × min(d, r) entries that takes are at most ``max_enumerated`` (default
    MAX_ENUMERATED), otherwise a Monte Carlo mean over ``mc_draws`` (default MC_DRAWS) draws
    shared by the ks that cut the same group.
    """
    budget = MAX_ENUMERATED if max_enumerated is None else max_enumerated
    draws = MC_DRAWS if mc_draws is None else mc_draws
    out: dict[int, _Stats] = {}
    pending: dict[float, list[int]] = {}  # boundary estimate -> ks left to Monte Carlo
    splits = {k: _split(estimates, k) for k in ks}
    for k in ks:
        split = splits[k]
        if ties != "average" or split.determined:
            out[k] = _set_stats(true_values[_top_k(estimates, k, ties)], behavior_value, clip)
            continue
        tied = _tied_values(true_values, split)
        if tied.values.shape[0] == 1:  # every choice holds the same true values
            out[k] = _set_stats(true_values[_top_k(estimates, k)], behavior_value, clip)
            continue
        fixed = true_values[split.sure]
        layout = _layout(tied, budget)
        if layout is not None:  # exact: every distinct multiset, hypergeometric weights
            std, sharpe = _enumerated(fixed, tied, layout, behavior_value, clip)
            out[k] = _Stats(*_exact_location(fixed, tied), std, sharpe)
        else:
            pending.setdefault(float(estimates[split.tied[0]]), []).append(k)
    for group in pending.values():
        split = splits[group[0]]
        tied = _tied_values(true_values, split)
        fixed = true_values[split.sure]
        rs = [splits[k].r for k in group]
        sampled = _monte_carlo(fixed, tied, [r for r, k in zip(rs, group) if k >= 2], behavior_value, clip, draws)
        for k, r in zip(group, rs):
            std, sharpe = (sampled[r].std, sampled[r].sharpe) if r in sampled else (float("nan"), float("nan"))
            out[k] = _Stats(*_exact_location(fixed, _TiedValues(tied.values, tied.counts, r)), std, sharpe)
    return [out[k] for k in ks]


def _best_at_k(true_values: FloatArray, estimates: FloatArray, k: int, ties: str) -> float:
    """best@k = max J over the top-k (its expectation for "average"; always exact)."""
    split = _split(estimates, k)
    if ties != "average" or split.determined:
        return float(np.max(true_values[_top_k(estimates, k, ties)]))
    best, _ = _expected_extremes(true_values[split.sure], _tied_values(true_values, split))
    return best


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
def top_k_indices(estimates: ArrayLike, k: int, ties: Literal["first", "last"] = "first") -> IntArray:
    """Indices of the k policies with the largest estimates Ĵ, in descending order of Ĵ.

    Ties are broken in favour of the policy listed first (``ties="first"``, the stable
    descending sort ``argsort(-Ĵ, kind="stable")[:k]``) or listed last (``ties="last"``);
    either way the top-k sets are nested in k. One list of indices cannot represent the
    rule ``"average"``: see :func:`top_k_inclusion` for it.
    """
    c = _check(None, estimates, k=k, ties=ties, tie_rules=("first", "last"))
    assert c.k is not None and c.ties is not None
    return _top_k(c.estimates, c.k, c.ties)


def top_k_inclusion(estimates: ArrayLike, k: int, ties: TieRule = "average") -> FloatArray:
    """Probability that each policy is in the top-k by Ĵ under the tie rule, shape (P,).

    1 for a policy whose estimate is above the k-th largest, 0 below it; for the t
    policies tied at the k-th largest, of which r fill the top-k, r / t each with
    ``"average"`` (a uniformly random r-subset) and 0 or 1 with ``"first"`` / ``"last"``.
    The entries sum to k, and Σ_i p_i x_i / k is the (expected) mean@k of any x.
    """
    c = _check(None, estimates, k=k, ties=ties)
    assert c.k is not None and c.ties is not None
    p = np.zeros(c.estimates.shape[0])
    split = _split(c.estimates, c.k)
    if c.ties == "average":
        p[split.sure] = 1.0
        p[split.tied] = split.r / split.tied.shape[0]
    else:
        p[_top_k(c.estimates, c.k, c.ties)] = 1.0
    return p


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


def regret_at_k(true_values: ArrayLike, estimates: ArrayLike, k: int, ties: TieRule = "average") -> float:
    """Regret@k = max_i J_i − max_{i ∈ top-k(Ĵ)} J_i  (always >= 0).

    The loss in true value from deploying the best of the k policies ranked highest
    by the estimator instead of the truly best policy (Fu et al., 2021, DOPE).
    ``ties`` is the rule for estimates tied at the k boundary (module docstring); with
    ``"average"`` the expected max over the tied choice is exact (order statistics).
    """
    c = _check(true_values, estimates, k=k, ties=ties)
    assert c.true_values is not None and c.k is not None and c.ties is not None
    return float(np.max(c.true_values) - _best_at_k(c.true_values, c.estimates, c.k, c.ties))


def normalized_regret_at_k(
    true_values: ArrayLike, estimates: ArrayLike, k: int, ties: TieRule = "average"
) -> float:
    """Normalised regret@k = Regret@k / |max_i J_i|  (Fu et al., 2021, DOPE).

    Returns nan when max_i J_i == 0, where the normalisation is undefined. ``ties`` as in
    :func:`regret_at_k`.
    """
    c = _check(true_values, estimates, k=k, ties=ties)
    assert c.true_values is not None and c.k is not None and c.ties is not None
    best = float(np.max(c.true_values))
    if best == 0.0:
        return float("nan")
    return (best - _best_at_k(c.true_values, c.estimates, c.k, c.ties)) / abs(best)


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
    ties: TieRule = "average",
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

    ``ties`` is the rule for estimates tied at the k boundary (module docstring). With
    ``"average"`` the result is the expected SharpeRatio over the tied choice (inf if
    some choice gives inf, however unlikely; nan if choices give both +inf and −inf,
    only with ``clip=False``).
    """
    c = _check(true_values, estimates, k=k, scalars={"behavior_value": behavior_value}, ties=ties)
    assert c.true_values is not None and c.k is not None and c.ties is not None
    (stats,) = _top_k_stats(c.true_values, c.estimates, [c.k], c.ties, c.scalars["behavior_value"], bool(clip))
    return stats.sharpe


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
    ties: TieRule = "average",
) -> TopKMetrics:
    """Top-k statistics of J over the k policies with the largest Ĵ, for each k in ``ks``.

    With T_k = top-k(Ĵ): best@k = max_{T_k} J, worst@k = min_{T_k} J,
    mean@k = mean_{T_k} J, std@k = sample std (ddof=1, nan for k = 1) and
    sharpe_ratio = SharpeRatio@k as in :func:`sharpe_ratio_at_k` with ``clip=True``
    (Kiyohara et al., ICLR 2024). ``ks`` must hold distinct integers in 1..P; the
    output keeps the order of ``ks``. ``ties`` is the rule for estimates tied at the k
    boundary (module docstring): ``"first"`` / ``"last"`` give nested top-k sets, and
    ``"average"`` gives each statistic's expectation at each k over a uniformly random
    order of the tied policies.
    """
    c = _check(true_values, estimates, ks=ks, scalars={"behavior_value": behavior_value}, ties=ties)
    assert c.true_values is not None and c.ks is not None and c.ties is not None
    n_k = c.ks.shape[0]
    best = np.empty(n_k)
    worst = np.empty(n_k)
    mean = np.empty(n_k)
    std = np.empty(n_k)
    sharpe = np.empty(n_k)
    b = c.scalars["behavior_value"]
    all_stats = _top_k_stats(c.true_values, c.estimates, [int(k) for k in c.ks], c.ties, b, clip=True)
    for i, stats in enumerate(all_stats):
        best[i], worst[i], mean[i], std[i], sharpe[i] = stats.best, stats.worst, stats.mean, stats.std, stats.sharpe
    return TopKMetrics(
        ks=_readonly(c.ks.copy()),
        best=_readonly(best),
        worst=_readonly(worst),
        mean=_readonly(mean),
        std=_readonly(std),
        sharpe_ratio=_readonly(sharpe),
    )
