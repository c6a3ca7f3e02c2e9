"""What is in a logged dataset: ``describe(dataset) -> DatasetSummary``; ``describe_source(path)`` gives the same
summary for Parquet files (or a folder of them) read a chunk of whole trajectories at a time.

The summary covers size and shape (trajectories, transitions, horizon, episode lengths, share terminated), the
logged returns, how the action space is covered, the behavior propensities, and the two dataset measures of
Schweighofer et al. (2022), "A Dataset Perspective on Offline Reinforcement Learning" (CoLLAs 2022):

TQ, trajectory quality
    ``(mean dataset return − random_return) / (expert_return − random_return)``: 0 for data as good as a random
    policy, 1 for data as good as the expert. As in the paper the returns are undiscounted episodic returns
    (``Σ_t r_t``) by default; ``discounted=True`` uses the discounted returns ``Σ_t γ^t r_t`` instead (then give
    ``random_return``/``expert_return`` on the same scale).

SACo, state-action coverage
    ``unique (s, a) pairs in the dataset / unique (s, a) pairs in a reference dataset``; the paper's reference is
    the replay buffer of an online agent trained on the task. Counts are exact and run over logged steps only
    (``mask``); padding never counts. SACo can exceed 1 when the dataset visits pairs the reference does not.

    Discretisation: integer observations (tabular state ids, any ``obs_shape``) and discrete actions are used as
    they are. Every float component (each observation dimension when observations are floats, each action
    dimension when actions are continuous) is cut into ``bins`` equal-width bins over the range ``[lo, hi]`` of
    that component's logged values in the dataset and the reference together, so both are counted on the same
    grid and the ratio is meaningful. A value x falls in bin ``floor((x − lo) / (hi − lo) · bins)``, bins are
    half-open ``[edge_k, edge_k+1)`` except the last, which includes ``hi``; a component that never varies
    (``hi == lo``) has a single bin. A (state, action) pair is then the tuple of all integer and bin components,
    and ``unique_state_actions`` counts distinct tuples. Without a reference the range is the dataset's own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError

if TYPE_CHECKING:
    from opelab.data.chunks import ParquetSource

SMALL_PSCORE = 0.01
"""Discrete propensities below this are counted in ``DatasetSummary.pscore_share_small``."""

MAX_ACTION_ROWS = 20
"""``DatasetSummary.to_table`` gives one row per action up to this many discrete actions, a summary row above."""


@dataclass(frozen=True)
class DatasetSummary:
    """Statistics of a ``LoggedDataset`` (see ``describe``); plain Python numbers, tuples per action (dimension).

    Fields that do not apply are ``None``: the discrete ones (``action_counts``, ``action_shares``,
    ``n_actions_never_taken``, ``pscore_share_small``) for continuous actions, the continuous ones
    (``action_min/mean/max``, ``action_share_at_low/high``) for discrete actions, the bound shares when the
    action space has no such bound, TQ without both reference returns and SACo without a reference dataset.
    """

    # what and how much
    task: str
    behavior_policy: str
    gamma: float
    n_trajectories: int
    n_transitions: int
    horizon: int
    length_min: int
    length_mean: float
    length_max: int
    terminated_share: float
    # discounted returns Σ_t γ^t r_t per trajectory (percentiles: numpy's linear interpolation; std: ddof=0)
    return_mean: float
    return_std: float
    return_min: float
    return_p5: float
    return_p25: float
    return_median: float
    return_p75: float
    return_p95: float
    return_max: float
    undiscounted_return_mean: float
    # actions
    action_type: str
    n_actions: int | None
    action_dim: int | None
    action_counts: tuple[int, ...] | None
    action_shares: tuple[float, ...] | None
    n_actions_never_taken: int | None
    action_min: tuple[float, ...] | None
    action_mean: tuple[float, ...] | None
    action_max: tuple[float, ...] | None
    action_share_at_low: tuple[float, ...] | None
    action_share_at_high: tuple[float, ...] | None
    # behavior propensities on logged steps
    pscore_min: float
    pscore_median: float
    pscore_max: float
    pscore_share_small: float | None
    pscore_estimated: bool
    # Schweighofer et al. (2022)
    tq: float | None
    tq_discounted: bool
    random_return: float | None
    expert_return: float | None
    unique_state_actions: int
    reference_unique_state_actions: int | None
    saco: float | None
    saco_bins: int | None
    """The ``bins`` used when some component was discretised, else ``None`` (everything counted as it is)."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-serialisable plain types (tuples become lists)."""
        return {key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(self).items()}

    def to_table(self) -> list[tuple[str, str]]:
        """Human-readable ``(label, value)`` rows: counts with thousands separators, other numbers to 3
        significant digits, shares as percentages."""
        rows: list[tuple[str, str]] = [
            ("Task", self.task),
            ("Behavior policy", self.behavior_policy),
            ("Discount γ", f"{self.gamma:g}"),
            ("Trajectories", format_number(self.n_trajectories)),
            ("Transitions", format_number(self.n_transitions)),
            ("Horizon", format_number(self.horizon)),
            ("Episode length (min / mean / max)", _join(self.length_min, self.length_mean, self.length_max)),
            ("Terminated", format_share(self.terminated_share)),
            ("Return, discounted (mean ± std)", f"{_join(self.return_mean)} ± {_join(self.return_std)}"),
            (
                "Return, discounted (min / p5 / p25 / median / p75 / p95 / max)",
                _join(
                    self.return_min,
                    self.return_p5,
                    self.return_p25,
                    self.return_median,
                    self.return_p75,
                    self.return_p95,
                    self.return_max,
                ),
            ),
            ("Return, undiscounted (mean)", format_number(self.undiscounted_return_mean)),
        ]
        if self.action_counts is not None and self.action_shares is not None and self.n_actions is not None:
            rows.append(("Action space", f"discrete, {format_number(self.n_actions)} actions"))
            if self.n_actions <= MAX_ACTION_ROWS:
                for a, (count, share) in enumerate(zip(self.action_counts, self.action_shares)):
                    rows.append((f"Action {a}", f"{format_number(count)} ({format_share(share)})"))
            else:
                shares = np.asarray(self.action_shares)
                rows.append(
                    (
                        "Action share (min / median / max)",
                        " / ".join(format_share(float(x)) for x in (shares.min(), np.median(shares), shares.max())),
                    )
                )
            never = format_number(self.n_actions_never_taken or 0)
            rows.append(("Actions never taken", f"{never} of {format_number(self.n_actions)}"))
        elif self.action_min is not None and self.action_mean is not None and self.action_max is not None:
            dims = self.action_dim or 0
            rows.append(("Action space", f"continuous, {format_number(dims)} dimension{'' if dims == 1 else 's'}"))
            for d, (lo, mean, hi) in enumerate(zip(self.action_min, self.action_mean, self.action_max)):
                rows.append((f"Action dim {d} (min / mean / max)", _join(lo, mean, hi)))
                at_low = None if self.action_share_at_low is None else self.action_share_at_low[d]
                at_high = None if self.action_share_at_high is None else self.action_share_at_high[d]
                if at_low is not None or at_high is not None:
                    low_text = "n/a" if at_low is None else format_share(at_low)
                    high_text = "n/a" if at_high is None else format_share(at_high)
                    rows.append((f"Action dim {d} at bounds (low / high)", f"{low_text} / {high_text}"))
        rows.append(("Pscore (min / median / max)", _join(self.pscore_min, self.pscore_median, self.pscore_max)))
        if self.pscore_share_small is not None:
            rows.append((f"Steps with pscore < {SMALL_PSCORE:g}", format_share(self.pscore_share_small)))
        rows.append(("Pscore estimated", "yes" if self.pscore_estimated else "no"))
        basis = "discounted" if self.tq_discounted else "undiscounted"
        if self.tq is None:
            rows.append(("TQ (trajectory quality)", "n/a (needs random and expert returns)"))
        else:
            rows.append(
                (
                    "TQ (trajectory quality)",
                    f"{format_number(self.tq)} ({basis}; random {format_number(self.random_return or 0.0)}, "
                    f"expert {format_number(self.expert_return or 0.0)})",
                )
            )
        pairs = format_number(self.unique_state_actions)
        if self.saco_bins is not None:
            pairs += f" ({self.saco_bins} bins per float dimension)"
        rows.append(("Unique state-action pairs", pairs))
        if self.saco is None or self.reference_unique_state_actions is None:
            rows.append(("SACo (state-action coverage)", "n/a (needs a reference dataset)"))
        else:
            rows.append(
                (
                    "SACo (state-action coverage)",
                    f"{format_number(self.saco)} "
                    f"(reference: {format_number(self.reference_unique_state_actions)} pairs)",
                )
            )
        return rows


def describe(
    dataset: LoggedDataset,
    *,
    random_return: float | None = None,
    expert_return: float | None = None,
    reference: LoggedDataset | None = None,
    bins: int = 10,
    discounted: bool = False,
) -> DatasetSummary:
    """Summarise ``dataset``; TQ and SACo follow Schweighofer et al. (2022) (see the module docstring).

    Args:
        dataset: the logged data.
        random_return, expert_return: returns of a random and of an expert policy on the task, for TQ (``None``
            unless both are given). Undiscounted episodic returns unless ``discounted``.
        reference: a dataset of the same task (same action space and observation shape and kind) whose
            unique state-action count normalises SACo, e.g. an online agent's replay data; ``None`` gives no SACo.
        bins: equal-width bins per float observation/action dimension for the SACo counts.
        discounted: compute TQ from the discounted returns instead of the undiscounted ones.

    Raises:
        ValueError: naming the argument, the expectation and what was found, for a bad argument, an
            ``expert_return`` equal to ``random_return``, or a reference that does not match the dataset.
    """
    if not isinstance(dataset, LoggedDataset):
        raise ValueError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    options = _Options.checked(reference, bins, discounted, random_return, expert_return)
    if reference is not None:
        _check_reference(dataset.action_space, dataset.obs_shape, _obs_is_int(dataset), reference)
    options.check_tq()
    return _summarise(_Chunked.of(dataset, lambda: iter([(None, dataset)])), reference, options)


def describe_source(
    source: str | os.PathLike[str] | ParquetSource | LoggedDataset,
    *,
    reference: LoggedDataset | None = None,
    random_return: float | None = None,
    expert_return: float | None = None,
    discounted: bool = False,
    bins: int = 10,
    max_cells: int | None = None,
) -> DatasetSummary:
    """``describe`` of a whole dataset computed a chunk of whole trajectories at a time (``opelab.data.chunks``).

    ``source`` is a Parquet file or a folder of them (``LoggedDataset.to_parquet``), an opened ``ParquetSource``,
    or a ``LoggedDataset`` (cut by ``dataset_chunks``, mostly for tests). The result equals ``describe`` on the
    whole dataset: counts, minima, maxima and the propensity median exactly; sums (returns, action means)
    up to float rounding, since chunks add their terms in another order. ``horizon`` is the padded horizon of
    the whole dataset (the metadata's, the largest over the files of a folder), as ``describe`` reports it.

    Memory: one chunk of at most ``max_cells`` padded steps (``chunks.DEFAULT_MAX_CELLS`` when ``None``; a longer
    trajectory is a chunk of its own), plus a few numbers per trajectory (length, returns: for the exact
    percentiles), one float per logged step (the propensities, for the exact median) and the distinct
    state-action keys. With float components to bin, SACo's grid spans the range over the dataset and the
    reference (module docstring), so the data is read twice: once for the ranges, once for the keys.

    A folder's files agree on the task, discount, action space and observation shape (``open_source`` checks
    it); its behavior policy is the files' names joined by ``" + "`` when they differ, and its propensities
    count as estimated when any file's are. The streamed files' page checksums and, in format 3 files, their
    row-group digests are verified; a format 2 file's content digest is not (it covers the padded dataset at
    once; ``read_parquet`` checks it).

    Raises:
        ValueError: as ``describe``; also for ``max_cells`` that is not a positive int.
        DatasetError: naming the file, for a file that cannot be read (``opelab.data.chunks``).
    """
    from opelab.data.chunks import DEFAULT_MAX_CELLS, ParquetSource, dataset_chunks, open_source, read_unit

    options = _Options.checked(reference, bins, discounted, random_return, expert_return)
    max_cells = DEFAULT_MAX_CELLS if max_cells is None else max_cells
    if isinstance(max_cells, (bool, np.bool_)) or not isinstance(max_cells, (int, np.integer)) or max_cells < 1:
        raise ValueError(f"max_cells: expected a positive int or None, found {max_cells!r}")
    cells = int(max_cells)
    options.check_tq()
    if isinstance(source, LoggedDataset):
        dataset = source
        chunked = _Chunked.of(dataset, lambda: ((None, chunk) for _, chunk in dataset_chunks(dataset, cells)))
    else:
        if isinstance(source, (str, os.PathLike)):
            source = open_source(source)
        if not isinstance(source, ParquetSource):
            raise ValueError(f"source: expected a path, a ParquetSource or a LoggedDataset, found {type(source).__name__}")
        parquet = source
        policies = list(dict.fromkeys(f.info.behavior_policy for f in parquet.files))

        def chunks() -> Iterator[tuple[str | None, LoggedDataset]]:
            for unit in parquet.units:
                for _, chunk in read_unit(unit, cells):
                    yield unit.file.path, chunk

        chunked = _Chunked(
            info=parquet.info,
            behavior_policy=" + ".join(policies),
            pscore_estimated=any(bool(f.info.pscore_estimated) for f in parquet.files),
            horizon=parquet.horizon,
            obs_shape=parquet.obs_shape,
            chunks=chunks,
        )
    return _summarise(chunked, reference, options)


# ---------------------------------------------------------------------------------------------- the statistics
@dataclass(frozen=True)
class _Options:
    """The checked options shared by ``describe`` and ``describe_source``."""

    bins: int
    discounted: bool
    random_return: float | None
    expert_return: float | None

    @classmethod
    def checked(
        cls, reference: object, bins: object, discounted: object, random_return: object, expert_return: object
    ) -> _Options:
        if reference is not None and not isinstance(reference, LoggedDataset):
            raise ValueError(f"reference: expected a LoggedDataset or None, found {type(reference).__name__}")
        if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins: expected a positive int, found {bins!r}")
        if not isinstance(discounted, (bool, np.bool_)):
            raise ValueError(f"discounted: expected a bool, found {discounted!r}")
        random_value = _optional_real("random_return", random_return)  # type: ignore[arg-type]
        expert_value = _optional_real("expert_return", expert_return)  # type: ignore[arg-type]
        return cls(int(bins), bool(discounted), random_value, expert_value)

    def check_tq(self) -> None:
        if self.random_return is not None and self.expert_return == self.random_return:
            raise ValueError(
                f"expert_return: expected a value different from random_return ({self.random_return!r}), "
                f"found {self.expert_return!r}"
            )


@dataclass(frozen=True)
class _Chunked:
    """A dataset as a re-iterable sequence of ``(file or None, chunk of whole trajectories)``, in order."""

    info: DatasetInfo
    behavior_policy: str
    pscore_estimated: bool
    horizon: int
    obs_shape: tuple[int, ...]
    chunks: Callable[[], Iterator[tuple[str | None, LoggedDataset]]]

    @classmethod
    def of(cls, dataset: LoggedDataset, chunks: Callable[[], Iterator[tuple[str | None, LoggedDataset]]]) -> _Chunked:
        """An in-memory dataset read as ``chunks``."""
        info = dataset.info
        return cls(info, info.behavior_policy, bool(info.pscore_estimated), dataset.horizon, dataset.obs_shape, chunks)


class _Tally:
    """Running sums, counts and extremes over chunks; per-trajectory values and the propensities are kept
    (concatenated at the end) for the exact percentiles and median."""

    def __init__(self, space: ActionSpace) -> None:
        self.space = space
        self.lengths: list[np.ndarray] = []  # (n_c,) per chunk
        self.returns: list[np.ndarray] = []
        self.undiscounted: list[np.ndarray] = []
        self.terminated: list[np.ndarray] = []
        self.pscores: list[np.ndarray] = []  # (N_c,) logged steps
        self.small = 0
        self.counts = np.zeros(space.n_actions if space.is_discrete else 0, dtype=np.int64)
        dims = 0 if space.is_discrete else int(space.action_dim or 0)
        self.a_sum = np.zeros(dims)
        self.a_min = np.full(dims, np.inf)
        self.a_max = np.full(dims, -np.inf)
        self.at_low = np.zeros(dims, dtype=np.int64)
        self.at_high = np.zeros(dims, dtype=np.int64)

    def add(self, chunk: LoggedDataset) -> None:
        mask = chunk.mask
        self.lengths.append(chunk.lengths)
        self.returns.append(np.asarray(chunk.returns, dtype=np.float64))
        self.undiscounted.append(np.where(mask, chunk.rewards, 0.0).sum(axis=1))
        self.terminated.append(chunk.terminals.any(axis=1))
        pscore = chunk.behavior_pscore[mask]
        self.pscores.append(pscore)
        actions = chunk.actions[mask]  # (N_c,) discrete or (N_c, action_dim) continuous
        space = self.space
        if space.is_discrete:
            self.counts += np.bincount(actions.astype(np.intp), minlength=space.n_actions)
            self.small += int((pscore < SMALL_PSCORE).sum())
            return
        values = actions.astype(np.float64)
        self.a_sum = self.a_sum + values.sum(axis=0)
        self.a_min = np.minimum(self.a_min, values.min(axis=0))
        self.a_max = np.maximum(self.a_max, values.max(axis=0))
        if space.low is not None:
            self.at_low += np.isclose(values, np.asarray(space.low), rtol=1e-6, atol=1e-12).sum(axis=0)
        if space.high is not None:
            self.at_high += np.isclose(values, np.asarray(space.high), rtol=1e-6, atol=1e-12).sum(axis=0)


class _UniqueRows:
    """Distinct rows of integer key arrays added chunk by chunk: per-chunk uniques, merged with ``np.unique``
    whenever the unmerged ones outgrow the merged set (and ``min_rows``), so the work stays near-linear."""

    def __init__(self, min_rows: int = 1 << 18) -> None:
        self.min_rows = min_rows
        self.merged: np.ndarray | None = None
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, keys: np.ndarray) -> None:
        unique = np.unique(keys, axis=0)
        self.pending.append(unique)
        self.pending_rows += len(unique)
        if self.pending_rows > max(self.min_rows, 0 if self.merged is None else len(self.merged)):
            self._merge()

    def _merge(self) -> None:
        parts = self.pending if self.merged is None else [self.merged, *self.pending]
        self.merged = np.unique(np.concatenate(parts), axis=0)
        self.pending, self.pending_rows = [], 0

    def count(self) -> int:
        if self.pending:
            self._merge()
        return 0 if self.merged is None else int(self.merged.shape[0])


def _summarise(source: _Chunked, reference: LoggedDataset | None, options: _Options) -> DatasetSummary:
    """``DatasetSummary`` of all of ``source``'s chunks: one pass for everything but the binned SACo keys, a
    second for those when a float component needs the range of the whole data (module docstring)."""
    info = source.info
    space = info.action_space
    tally = _Tally(space)
    obs_int: bool | None = None
    bin_obs = bin_actions = False
    ranges: list[tuple[np.ndarray, np.ndarray] | None] = [None, None]  # (lo, hi) of obs, actions columns
    unique = _UniqueRows()

    def check_kind(where: str | None, chunk: LoggedDataset) -> None:
        if _obs_is_int(chunk) != obs_int:
            kind = "integer" if obs_int else "float"
            prefix = f"{where}: " if where else ""
            raise DatasetError(f"{prefix}observations: expected {kind} observations like the first file's, found dtype {chunk.observations.dtype}")

    for where, chunk in source.chunks():
        if obs_int is None:
            obs_int = _obs_is_int(chunk)
            bin_obs, bin_actions = not obs_int, not space.is_discrete
            if reference is not None:
                _check_reference(space, source.obs_shape, obs_int, reference)
        check_kind(where, chunk)
        tally.add(chunk)
        columns = _logged_columns(chunk)
        if bin_obs or bin_actions:
            for k, (values, binned) in enumerate(zip(columns, (bin_obs, bin_actions))):
                if binned:
                    ranges[k] = _widen(ranges[k], values)
        else:
            unique.add(_state_action_keys(columns, (None, None), options.bins))
    assert obs_int is not None  # a dataset holds at least one trajectory

    ref_unique: int | None = None
    if bin_obs or bin_actions:
        ref_columns = None if reference is None else _logged_columns(reference)
        if ref_columns is not None:
            ranges = [None if r is None else _widen(r, values) for r, values in zip(ranges, ref_columns)]
        for where, chunk in source.chunks():
            check_kind(where, chunk)
            unique.add(_state_action_keys(_logged_columns(chunk), ranges, options.bins))
        if ref_columns is not None:
            ref_unique = _count_unique(_state_action_keys(ref_columns, ranges, options.bins))
    elif reference is not None:
        ref_unique = _count_unique(_state_action_keys(_logged_columns(reference), (None, None), options.bins))
    n_unique = unique.count()

    lengths = np.concatenate(tally.lengths)
    returns = np.concatenate(tally.returns)
    undiscounted = np.concatenate(tally.undiscounted)
    pscore = np.concatenate(tally.pscores)
    p5, p25, p50, p75, p95 = (float(x) for x in np.percentile(returns, [5, 25, 50, 75, 95]))
    n_steps = int(lengths.sum())

    counts: tuple[int, ...] | None = None
    shares: tuple[float, ...] | None = None
    never: int | None = None
    a_min: tuple[float, ...] | None = None
    a_mean: tuple[float, ...] | None = None
    a_max: tuple[float, ...] | None = None
    at_low: tuple[float, ...] | None = None
    at_high: tuple[float, ...] | None = None
    small: float | None = None
    if space.is_discrete:
        counts = tuple(int(c) for c in tally.counts)
        shares = tuple(float(c) / n_steps for c in tally.counts)
        never = int((tally.counts == 0).sum())
        small = tally.small / n_steps
    else:
        a_min, a_max = _floats(tally.a_min), _floats(tally.a_max)
        a_mean = _floats(tally.a_sum / n_steps)
        if space.low is not None:
            at_low = _floats(tally.at_low / n_steps)
        if space.high is not None:
            at_high = _floats(tally.at_high / n_steps)

    tq: float | None = None
    if options.random_return is not None and options.expert_return is not None:
        mean = float(returns.mean()) if options.discounted else float(undiscounted.mean())
        tq = (mean - options.random_return) / (options.expert_return - options.random_return)

    return DatasetSummary(
        task=info.task,
        behavior_policy=source.behavior_policy,
        gamma=float(info.gamma),
        n_trajectories=len(lengths),
        n_transitions=n_steps,
        horizon=source.horizon,
        length_min=int(lengths.min()),
        length_mean=float(lengths.mean()),
        length_max=int(lengths.max()),
        terminated_share=float(np.concatenate(tally.terminated).mean()),
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        return_min=float(returns.min()),
        return_p5=p5,
        return_p25=p25,
        return_median=p50,
        return_p75=p75,
        return_p95=p95,
        return_max=float(returns.max()),
        undiscounted_return_mean=float(undiscounted.mean()),
        action_type=space.type,
        n_actions=space.n_actions,
        action_dim=space.action_dim,
        action_counts=counts,
        action_shares=shares,
        n_actions_never_taken=never,
        action_min=a_min,
        action_mean=a_mean,
        action_max=a_max,
        action_share_at_low=at_low,
        action_share_at_high=at_high,
        pscore_min=float(pscore.min()),
        pscore_median=float(np.median(pscore)),
        pscore_max=float(pscore.max()),
        pscore_share_small=small,
        pscore_estimated=source.pscore_estimated,
        tq=tq,
        tq_discounted=options.discounted,
        random_return=options.random_return,
        expert_return=options.expert_return,
        unique_state_actions=n_unique,
        reference_unique_state_actions=ref_unique,
        saco=None if ref_unique is None else n_unique / ref_unique,
        saco_bins=options.bins if (bin_obs or bin_actions) else None,
    )


# ---------------------------------------------------------------------------------------------- formatting
def format_number(value: float | int) -> str:
    """A number for people: integers exact with thousands separators, other numbers rounded to 3 significant
    digits (``12,300``, ``4.57``, ``0.0123``, trailing zeros dropped), scientific outside ``[1e-4, 1e15)``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x == 0.0:
        return "0"
    magnitude = abs(x)
    if magnitude < 1e-4 or magnitude >= 1e15:
        return f"{x:.2e}"
    decimals = 2 - math.floor(math.log10(magnitude))
    rounded = round(x, decimals)
    if decimals <= 0:
        return f"{int(rounded):,}"
    text = f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_share(share: float) -> str:
    """A share in [0, 1] as a percentage to 3 significant digits: ``0.125 -> "12.5%"``."""
    return f"{format_number(100.0 * float(share))}%"


def _join(*values: float | int) -> str:
    return " / ".join(format_number(v) for v in values)


# ---------------------------------------------------------------------------------------------- helpers
def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _optional_real(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a finite real number or None, found {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name}: expected a finite real number or None, found {value!r}")
    return float(value)


def _obs_is_int(ds: LoggedDataset) -> bool:
    return ds.observations.dtype.kind in "iu"


def _check_reference(space: ActionSpace, obs_shape: tuple[int, ...], obs_int: bool, reference: LoggedDataset) -> None:
    """``reference`` has the dataset's action space, observation shape and kind (integer or float)."""
    if reference.action_space != space:
        raise ValueError(f"reference: expected the dataset's action space {space}, found {reference.action_space}")
    if reference.obs_shape != obs_shape:
        raise ValueError(
            f"reference: expected observations of the dataset's shape {obs_shape}, found {reference.obs_shape}"
        )
    if _obs_is_int(reference) != obs_int:
        kind = "integer" if obs_int else "float"
        raise ValueError(
            f"reference: expected {kind} observations like the dataset's, found dtype {reference.observations.dtype}"
        )


def _logged_columns(ds: LoggedDataset) -> tuple[np.ndarray, np.ndarray]:
    """Observations and actions of the logged steps as 2-D arrays (N, components)."""
    mask = ds.mask
    n_steps = int(mask.sum())
    obs = ds.observations[mask].reshape(n_steps, -1)
    actions = ds.actions[mask].reshape(n_steps, -1)
    return obs, actions


def _widen(bounds: tuple[np.ndarray, np.ndarray] | None, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (lo, hi) of ``values`` (as float64) together with ``bounds``."""
    floats = values.astype(np.float64)
    lo, hi = floats.min(axis=0), floats.max(axis=0)
    return (lo, hi) if bounds is None else (np.minimum(bounds[0], lo), np.maximum(bounds[1], hi))


def _bin_columns(values: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], bins: int) -> np.ndarray:
    """Equal-width bin indices per column over ``[lo, hi]``: ``floor((x − lo) / (hi − lo) · bins)`` clipped to
    the last bin (which holds ``hi``); a column with ``hi == lo`` has one bin."""
    lo, hi = bounds
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    return np.clip(np.floor((values.astype(np.float64) - lo) / safe * bins), 0, bins - 1).astype(np.int64)


def _state_action_keys(
    columns: tuple[np.ndarray, np.ndarray], bounds: Sequence[tuple[np.ndarray, np.ndarray] | None], bins: int
) -> np.ndarray:
    """Integer (state, action) keys (N, components): components with ``bounds`` binned on that grid, the
    others (integer observations, discrete actions) as they are."""
    parts = [values.astype(np.int64) if grid is None else _bin_columns(values, grid, bins) for values, grid in zip(columns, bounds)]
    return np.concatenate(parts, axis=1)


def _count_unique(keys: np.ndarray) -> int:
    return int(np.unique(keys, axis=0).shape[0])
