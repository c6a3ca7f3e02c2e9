"""Off-policy evaluation a chunk at a time: data larger than memory, on one machine or a Ray cluster.

``evaluate_stream(source, policies, q_model=None, ...)`` gives the ``EstimateTable`` that ``evaluate`` gives on
the whole dataset with the inputs ``chunk_inputs`` builds, without ever holding more than one chunk of
trajectories (``opelab.data.chunks``) and its inputs.

Why it is exact. Every standard estimator is a function of sums over trajectories of a few per-trajectory
terms (``PointEstimator.resampling_terms``: the trajectory values of a plain average; the per-step
numerators and weights W_t of a self-normalised one; see ``estimates_from_sums``). Sums add across chunks,
so the stream adds each chunk's sums and applies ``estimates_from_sums`` once at the end. Chunks are padded
only to their own longest trajectory plus one absorbed step; an absorbed trajectory's terms are the same at
every later step (reward 0, ratio 1), so a chunk's last column stands for all the steps it does not hold and
per-step sums of chunks of different horizons line up exactly.

Intervals. ``t``, ``hoeffding`` and ``bernstein`` need the count, mean, sample variance and range of the
per-trajectory interval values: plain averages stream them in the same pass (Chan et al.'s pairwise update
of mean and squared deviations); a self-normalised estimator's linearised values (delta method, as
``PointEstimator.interval_values``) depend on the global per-step means, so a second pass computes them once
the first has finished. ``bootstrap`` is the Poisson bootstrap (``opelab.ope.intervals.PoissonCounts``):
each trajectory's count in each resample depends only on its number, so one pass adds count-weighted sums
chunk by chunk; ``evaluate(..., resampling="poisson")`` draws the same resamples in memory.

Work is split into units (runs of row groups, see ``opelab.data.chunks``; or trajectory ranges of a
``LoggedDataset``). Each unit's statistics are computed on their own and combined in unit order, so the
``"local"`` executor and ``"ray"`` (Ray Data: one task per unit) give identical numbers. Within a unit, chunks
are added in order.

Inputs per chunk. Evaluation policies (``DiscretePolicy``) are applied to each chunk; Q̂ comes from a model
fitted beforehand (``q_model``: a callable ``q(observations, steps) -> (P, m, A)``, e.g.
``fqe_action_values(fit_fqe(sample, ...))`` or ``tabular_action_values(q_tables)``) or is left out (the IS
family only). Estimators that need marginal weights cannot stream (their weights are fitted on the whole
data); continuous actions are not supported yet (kernel bandwidths are scaled by the whole data's spread).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import contextlib
import warnings

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.chunks import DEFAULT_MAX_CELLS, ParquetSource, Unit, dataset_chunks, open_source, read_unit
from opelab.ope.estimators import EstimationContext, PointEstimator, get_estimator
from opelab.ope.estimators.base import data_kind, default_estimators
from opelab.ope.estimators.base import safe_ratio
from opelab.ope.estimators.point import PerDecisionFamily, SelfNormalizedTrajectoryIS
from opelab.ope.evaluate import EstimateTable
from opelab.ope.inputs import OPEInput, OPEInputError, _gather, evaluation_action_probs
from opelab.resources import single_threaded_children
from opelab.ope.intervals import (
    IntervalSpec,
    PoissonCounts,
    interval_from_moments,
    poisson_sums,
    term_columns,
    unique_terms,
)

QModel = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (observations (m, ...), steps (m,)) -> Q̂ (P, m, A)
STREAMABLE_INPUTS = ("q_hat", "v_hat", "initial_v_hat")


class StreamError(ValueError):
    """A streaming evaluation that cannot run as asked (an estimator or input a stream cannot compute)."""


# ---------------------------------------------------------------------------------------------- inputs


def tabular_action_values(q_tables: Sequence[np.ndarray] | np.ndarray) -> QModel:
    """A Q-model from tables indexed [t, s, a] (H, S, A) or [s, a] (S, A), one per policy (integer states)."""
    tables = [np.asarray(t, dtype=np.float64) for t in q_tables]
    for p, table in enumerate(tables):
        if table.ndim not in (2, 3):
            raise OPEInputError(f"q_tables[{p}]: expected shape (S, A) or (H, S, A), found {table.shape}")

    def q(observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        s = np.asarray(observations, dtype=np.intp)
        return np.stack([table[s] if table.ndim == 2 else table[np.asarray(steps, dtype=np.intp), s] for table in tables])

    return q


def chunk_inputs(dataset: LoggedDataset, policies: Sequence[Any], q_model: QModel | None = None) -> OPEInput:
    """The inputs of ``policies`` on ``dataset`` (a chunk or a whole dataset): eval pscores and action
    probabilities, and with a Q-model q_hat, v_hat = Σ_a π_e(a | s) Q̂(s, a) and initial_v_hat."""
    probs = evaluation_action_probs(dataset, policies)  # (P, n, H, A), checked
    actions = np.asarray(dataset.actions)
    pscore = np.where(dataset.mask, _gather(probs, actions), 1.0)
    q_hat = v_hat = initial = None
    if q_model is not None:
        traj, step = np.nonzero(dataset.mask)
        q_rows = np.asarray(q_model(np.asarray(dataset.observations)[traj, step], step), dtype=np.float64)
        P, A = len(policies), probs.shape[-1]
        if q_rows.shape != (P, len(traj), A):
            raise OPEInputError(f"q_model: expected Q̂ of shape (P, m, A) = {(P, len(traj), A)}, found {q_rows.shape}")
        rows_probs = probs[:, traj, step]  # (P, m, A)
        q_hat = np.zeros(pscore.shape)
        v_hat = np.zeros(pscore.shape)
        q_hat[:, traj, step] = np.take_along_axis(q_rows, actions[traj, step][None, :, None].repeat(P, 0), -1)[..., 0]
        v_hat[:, traj, step] = np.einsum("pma,pma->pm", rows_probs, q_rows)
        initial = v_hat[:, :, 0]
    return OPEInput(
        policy_names=tuple(p.name for p in policies),
        eval_pscore=pscore,
        eval_action_probs=probs,
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=initial,
    )


# ---------------------------------------------------------------------------------------------- statistics


def _add_steps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b along the last (step) axis, the shorter extended by repeating its last (absorbed) column."""
    h = max(a.shape[-1], b.shape[-1])
    return _extend(a, h) + _extend(b, h)


def _extend(a: np.ndarray, h: int) -> np.ndarray:
    if a.shape[-1] == h:
        return a
    return np.concatenate([a, np.repeat(a[..., -1:], h - a.shape[-1], axis=-1)], axis=-1)


def _add_sums(into: dict[Hashable, np.ndarray], sums: dict[Hashable, np.ndarray], per_step: set[Hashable]) -> None:
    for key, value in sums.items():
        if key not in into:
            into[key] = value
        elif key in per_step:
            into[key] = _add_steps(into[key], value)
        else:
            into[key] = into[key] + value


@dataclass
class Moments:
    """Count, mean, sum of squared deviations, minimum and maximum of values (P,) each; ``merge`` is exact
    up to rounding (Chan, Golub & LeVeque, 1979)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        mean = values.mean(axis=1)
        return cls(values.shape[1], mean, ((values - mean[:, None]) ** 2).sum(axis=1), values.min(axis=1), values.max(axis=1))

    def merge(self, other: Moments) -> Moments:
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Moments(n, mean, m2, np.minimum(self.low, other.low), np.maximum(self.high, other.high))

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / (self.n - 1)


@dataclass
class StreamStatistics:
    """Additive statistics of some trajectories: counts, term sums, moments and Poisson-bootstrap sums."""

    n: int = 0
    n_steps: int = 0
    return_sum: float = 0.0
    sums: dict[Hashable, np.ndarray] = field(default_factory=dict)  # key -> (P,) or (P, h)
    moments: dict[str, Moments] = field(default_factory=dict)  # estimator name -> moments of its interval values
    boot: dict[Hashable, np.ndarray] = field(default_factory=dict)  # key -> (P, B) or (P, B, h)
    boot_totals: np.ndarray | None = None  # (B,)
    per_step: set[Hashable] = field(default_factory=set)
    first: int | None = None  # global number of the first trajectory
    stop: int | None = None  # one past the last

    def merge(self, other: StreamStatistics) -> StreamStatistics:
        """These statistics followed by ``other``'s (trajectories in order)."""
        if self.stop is not None and other.first is not None and other.first != self.stop:
            raise StreamError(f"trajectories: expected statistics of consecutive trajectories, found {other.first} after {self.stop}")
        self.per_step |= other.per_step
        self.n += other.n
        self.n_steps += other.n_steps
        self.return_sum += other.return_sum
        _add_sums(self.sums, other.sums, self.per_step)
        for name, moments in other.moments.items():
            self.moments[name] = moments if name not in self.moments else self.moments[name].merge(moments)
        _add_sums(self.boot, other.boot, self.per_step)
        if other.boot_totals is not None:
            self.boot_totals = other.boot_totals if self.boot_totals is None else self.boot_totals + other.boot_totals
        self.first = other.first if self.first is None else self.first
        self.stop = other.stop if other.stop is not None else self.stop
        return self


@dataclass(frozen=True)
class StreamPlan:
    """What each unit computes (picklable: it travels to Ray workers)."""

    policies: tuple[Any, ...]
    q_model: QModel | None
    estimators: tuple[PointEstimator, ...]
    spec: IntervalSpec | None
    max_cells: int
    second_pass: bool = False  # the moments of self-normalised estimators' linearised values
    means: dict[Hashable, np.ndarray] | None = None  # global sums / n, for the second pass


def chunk_statistics(plan: StreamPlan, first: int, chunk: LoggedDataset, counts: PoissonCounts | None) -> StreamStatistics:
    """The statistics of one chunk whose first trajectory has global number ``first``."""
    inputs = chunk_inputs(chunk, plan.policies, plan.q_model)
    ctx = EstimationContext(chunk, inputs)
    stats = StreamStatistics(n=chunk.n_trajectories, n_steps=chunk.n_transitions, first=first, stop=first + chunk.n_trajectories)
    terms = dict(unique_terms(plan.estimators, ctx))
    stats.per_step = {key for key, term in terms.items() if term.ndim == 3}
    if plan.second_pass:
        assert plan.means is not None
        for estimator in plan.estimators:
            if estimator.self_normalized:
                stats.moments[estimator.name] = Moments.of(linearized_values(estimator, terms, plan.means, chunk.n_trajectories))
        return stats
    stats.return_sum = float(chunk.returns.sum())
    stats.sums = {key: term.sum(axis=1) for key, term in terms.items()}
    if plan.spec is not None and plan.spec.method != "bootstrap":
        for estimator in plan.estimators:
            if not estimator.self_normalized:
                stats.moments[estimator.name] = Moments.of(terms[(estimator, "values")])
    if counts is not None:
        columns = term_columns(terms.items(), chunk.n_trajectories, inputs.n_policies)  # the terms above, not recomputed
        stats.boot, stats.boot_totals = poisson_sums(columns, inputs.n_policies, first, counts)
    return stats


def linearized_values(estimator: PointEstimator, terms: dict[Hashable, np.ndarray], means: dict[Hashable, np.ndarray], n: int) -> np.ndarray:
    """A self-normalised estimator's linearised per-trajectory values (P, n) on a chunk, from its terms and the
    global means of the terms (sums / N): the influence values of ``PointEstimator.interval_values``.

    For μ_t = m(a_t) / m(b_t) the influence of trajectory i is (a_it − μ_t b_it) / m(b_t) + μ_t (0 where
    m(b_t) = 0); per-step forms add these over all steps, the chunk's last column standing for the steps
    beyond it, and the DR form adds its baseline V̂(s_0).
    """
    if isinstance(estimator, SelfNormalizedTrajectoryIS):
        a, b = terms[(estimator, "WG")], terms[("trajectory_ratio", "W")]
        ma, mb = means[(estimator, "WG")], means[("trajectory_ratio", "W")]
        mu = safe_ratio(ma, mb)[:, None]
        return _ratio(a - mu * b, mb[:, None]) + mu
    if isinstance(estimator, PerDecisionFamily) and estimator.self_normalized:
        num_key, w_key = (estimator, "numerator"), (estimator.weight_key(), "W")
        a, b = terms[num_key], terms[w_key]  # (P, n, h)
        ma, mb = means[num_key], means[w_key]  # (P, H)
        h = a.shape[-1]
        mu = safe_ratio(ma, mb)
        # divide, never multiply by 1 / m(b): a subnormal mean would overflow (see ``self_normalize``)
        values = _ratio(a - mu[:, None, :h] * b, mb[:, None, :h]).sum(axis=-1) + mu[:, :h].sum(axis=1)[:, None]
        H = mb.shape[-1]
        if H > h:  # steps beyond the chunk: every trajectory holds its last column there
            rest = slice(h, None)
            a_tail, b_tail = a[..., -1:], b[..., -1:]  # (P, n, 1)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                scale = safe_ratio(np.ones_like(mb[:, rest]), mb[:, rest])
                suffix = a_tail[..., 0] * scale.sum(axis=1)[:, None] - b_tail[..., 0] * (mu[:, rest] * scale).sum(axis=1)[:, None]
            if np.isfinite(scale).all() and (mb[:, rest][mb[:, rest] > 0] > 1e-290).all() and np.isfinite(suffix).all():
                values += suffix  # suffix sums: O(n) per chunk whatever the horizon
            else:  # tiny means: step by step, in blocks of steps, as the in-memory form divides
                block = max(1, (1 << 20) // max(1, a.shape[0] * a.shape[1]))
                for lo in range(h, H, block):
                    steps = slice(lo, min(H, lo + block))
                    values += _ratio(a_tail - mu[:, None, steps] * b_tail, mb[:, None, steps]).sum(axis=-1)
            values += mu[:, rest].sum(axis=1)[:, None]
        if estimator.form == "dr":
            values += terms[(estimator, "baseline")]
        return values
    raise StreamError(f"{estimator.name}: a stream cannot compute the linearised values of this self-normalised estimator")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator broadcast, 0 where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    return safe_ratio(np.ascontiguousarray(numerator, dtype=np.float64), denominator)


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class DatasetUnit:
    """Trajectories start..stop − 1 of an in-memory dataset."""

    index: int
    start: int
    stop: int


def _unit_chunks(source: Any, unit: Any, max_cells: int) -> Iterator[tuple[int, LoggedDataset]]:
    if isinstance(unit, DatasetUnit):
        return dataset_chunks(source, max_cells, extra_steps=1, start=unit.start, stop=unit.stop)
    return read_unit(unit, max_cells, extra_steps=1)


def _poisson_counts(plan: StreamPlan) -> PoissonCounts | None:
    if plan.spec is not None and plan.spec.method == "bootstrap" and not plan.second_pass:
        return PoissonCounts(plan.spec.n_bootstrap, plan.spec.seed)
    return None


def unit_statistics(plan: StreamPlan, source: Any, unit: Any, counts: PoissonCounts | None = None) -> StreamStatistics:
    """The statistics of one unit: its chunks' in order (``source`` is the dataset for a ``DatasetUnit``).
    ``counts`` (the plan's Poisson counts) may be shared between units: they are a pure function of the seed."""
    counts = counts or _poisson_counts(plan)
    total = StreamStatistics()
    for first, chunk in _unit_chunks(source, unit, plan.max_cells):
        total.merge(chunk_statistics(plan, first, chunk, counts))
    return total


def _run_units(plan: StreamPlan, source: Any, units: Sequence[Any], executor: str, address: str | None) -> StreamStatistics:
    if executor == "ray":  # checked by _runtime: "local" or "ray"
        results = _run_ray(plan, source, units, address)
    else:
        counts = _poisson_counts(plan)  # one generator for all units: its cached block is reused across them
        results = [unit_statistics(plan, source, unit, counts) for unit in units]
    total = StreamStatistics()
    for stats in results:
        total.merge(stats)
    return total


@contextlib.contextmanager
def _runtime(executor: str, address: str | None) -> Iterator[None]:
    """For ``"ray"``: the Ray runtime this process already has, or one started here (connected to ``address``
    or local, workers one-threaded) and shut down afterwards."""
    if executor not in ("local", "ray"):
        raise StreamError(f"executor: expected 'local' or 'ray', found {executor!r}")
    if executor == "local":
        yield
        return
    try:
        import ray
    except ImportError:
        raise StreamError("executor 'ray': needs the [ray] extra (pip install 'opelab[ray]')") from None
    owned = not ray.is_initialized()
    if owned:
        with single_threaded_children():
            ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        if owned:
            ray.shutdown()


def _run_ray(plan: StreamPlan, source: Any, units: Sequence[Any], address: str | None) -> list[StreamStatistics]:
    """One Ray Data task per unit (``ray.data.from_items(...).map``); results put back in unit order."""
    import ray
    from ray import cloudpickle  # by value, like Ray itself: estimators or policies defined in a script travel too

    data_source = None if isinstance(source, ParquetSource) else ray.put(source)

    def compute(row: dict[str, Any]) -> dict[str, Any]:
        unit = units[row["index"]]
        local_source = source if data_source is None else ray.get(data_source)
        # bytes travel as an Arrow column; these are this run's own worker results, not a user's file
        return {"index": row["index"], "stats": cloudpickle.dumps(unit_statistics(plan, local_source, unit))}

    with warnings.catch_warnings():  # Ray Data warns about its own deprecated settings (ray 2.60)
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray.data

        dataset = ray.data.from_items([{"index": i} for i in range(len(units))], override_num_blocks=max(1, len(units)))
        rows = dataset.map(compute).take_all()
    rows.sort(key=lambda row: row["index"])
    return [cloudpickle.loads(row["stats"]) for row in rows]


# ---------------------------------------------------------------------------------------------- evaluate


def _choose_estimators(estimators: Sequence[str | PointEstimator] | None, has_q: bool, kind: str) -> list[PointEstimator]:
    available = set() if not has_q else set(STREAMABLE_INPUTS)
    if estimators is None:
        return default_estimators(kind, lambda e: set(e.requires) <= available and _streamable(e))
    chosen = [get_estimator(e) for e in estimators]
    for estimator in chosen:
        missing = [r for r in estimator.requires if r not in available]
        if missing:
            why = "pass a fitted Q-model (q_model)" if set(missing) <= set(STREAMABLE_INPUTS) else "a stream cannot fit them"
            raise StreamError(f"{estimator.name}: needs {', '.join(missing)}; {why}")
        if not _streamable(estimator):
            raise StreamError(
                f"{estimator.name}: expected an estimator with a streaming form (a plain average of per-trajectory values, or "
                "a self-normalised per-decision / trajectory form), found one whose statistics a stream cannot add up"
            )
    names = [e.name for e in chosen]
    if len(set(names)) != len(names):
        raise StreamError(f"estimators: expected distinct names, found {names}")
    return chosen


def _streamable(estimator: PointEstimator) -> bool:
    """A plain average whose resampling terms are its trajectory values (the moments a stream keeps are of
    those), or a self-normalised form whose linearisation the stream knows."""
    if estimator.self_normalized:
        return isinstance(estimator, (SelfNormalizedTrajectoryIS, PerDecisionFamily))
    return type(estimator).resampling_terms is PointEstimator.resampling_terms or isinstance(estimator, PerDecisionFamily)


def evaluate_stream(
    source: LoggedDataset | ParquetSource | str | Path,
    policies: Sequence[Any],
    q_model: QModel | None = None,
    estimators: Sequence[str | PointEstimator] | None = None,
    *,
    interval: str | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    value_range: tuple[float, float] | None = None,
    max_cells: int = DEFAULT_MAX_CELLS,
    unit_trajectories: int = 1 << 16,
    executor: str = "local",
    address: str | None = None,
    memory_limit: int | str | None = None,
) -> EstimateTable:
    """Estimate every policy's value with each estimator, a chunk of at most ``max_cells`` padded steps at a
    time (module docstring). ``source``: a ``LoggedDataset``, a Parquet file or folder (path), or an
    ``open_source`` result. Equal (to float rounding) to ``evaluate(dataset, chunk_inputs(dataset, policies,
    q_model), ..., resampling="poisson")`` on the whole dataset. ``executor="ray"`` runs one Ray Data task per
    unit (a local Ray unless ``address``); in-memory datasets split into units of ``unit_trajectories``.
    Default estimators: every registered one that a stream can compute from the inputs at hand. Before any
    work the statistics it will hold and one chunk are checked against the available memory (``memory_limit``
    as in ``opelab.resources.check_memory``).
    """
    spec = None if interval is None else IntervalSpec(interval, alpha, n_bootstrap, seed, value_range, "poisson")
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise StreamError(f"max_cells: expected a positive int, found {max_cells!r}")
    if len(policies) == 0:
        raise OPEInputError("policies: expected at least one policy, found 0")
    if isinstance(unit_trajectories, bool) or not isinstance(unit_trajectories, int) or unit_trajectories < 1:
        raise StreamError(f"unit_trajectories: expected a positive int, found {unit_trajectories!r}")
    if isinstance(source, LoggedDataset):
        data: Any = source
        n = source.n_trajectories
        units: list[Any] = [DatasetUnit(k, lo, min(n, lo + unit_trajectories)) for k, lo in enumerate(range(0, n, unit_trajectories))]
    else:
        data = source if isinstance(source, ParquetSource) else open_source(source)
        units = list(data.units)
    chosen = tuple(_choose_estimators(estimators, q_model is not None, data_kind(data.info, data.horizon)))
    _check_stream_memory(data.horizon, len(policies), chosen, spec, max_cells, memory_limit)
    plan = StreamPlan(tuple(policies), q_model, chosen, spec, max_cells)
    with _runtime(executor, address):
        return _evaluate(plan, data, units, executor, address)


def _check_stream_memory(
    horizon: int, P: int, estimators: Sequence[PointEstimator], spec: IntervalSpec | None, max_cells: int, limit: Any
) -> None:
    """Refuse (``ResourceError``) a stream whose held statistics or chunk would not fit: per-step sums are
    (P, H) per term, and with the bootstrap (P, B, H); a chunk holds about P · (A + 8) floats per padded step
    (checked for A = 2; the policies' own arrays come on top)."""
    from opelab.resources import check_memory

    per_step_terms = 1 + sum(2 for e in estimators if e.self_normalized)
    B = spec.n_bootstrap if spec is not None and spec.method == "bootstrap" else 1
    held = 8.0 * P * (B + 1) * horizon * per_step_terms + 8.0 * B * PoissonCounts.BLOCK * (B > 1)
    chunk = 8.0 * P * 10 * max_cells * (2 if spec is not None and spec.method == "bootstrap" else 1)
    check_memory(
        held + chunk, f"streaming {len(estimators)} estimators for {P} policies over horizon {horizon}" + (f" with {B} resamples" if B > 1 else ""),
        limit=limit, advice="lower max_cells (--chunk-steps) or n_bootstrap",
    )  # fmt: skip


def _evaluate(plan: StreamPlan, data: Any, units: list[Any], executor: str, address: str | None) -> EstimateTable:
    policies, q_model, chosen, spec, max_cells = plan.policies, plan.q_model, plan.estimators, plan.spec, plan.max_cells
    stats = _run_units(plan, data, units, executor, address)
    if stats.n != data.n_trajectories:
        raise StreamError(f"trajectories: expected {data.n_trajectories}, found {stats.n}")
    P = len(policies)
    one = np.array([float(stats.n)])
    point = {key: value[:, None] for key, value in stats.sums.items()}  # (P, 1) or (P, 1, h): one "resample"
    estimates = np.stack([e.estimates_from_sums(point, one)[:, 0] for e in chosen]) if chosen else np.empty((0, P))
    lower = upper = None
    if spec is not None and chosen:
        bounds = []
        if spec.method == "bootstrap":
            for estimator in chosen:
                resampled = estimator.estimates_from_sums(stats.boot, stats.boot_totals)
                bounds.append(np.quantile(resampled, [spec.alpha / 2, 1 - spec.alpha / 2], axis=1))
        else:
            if any(e.self_normalized for e in chosen):
                means = {key: value / stats.n for key, value in stats.sums.items()}
                second = StreamPlan(tuple(policies), q_model, chosen, spec, max_cells, second_pass=True, means=means)
                stats.moments.update(_run_units(second, data, units, executor, address).moments)
            for estimator in chosen:
                m = stats.moments[estimator.name]
                bounds.append(
                    interval_from_moments(m.n, m.mean, m.variance, m.low, m.high, spec.method, spec.alpha, spec.value_range, estimator.name)
                )
        lower = np.stack([b[0] for b in bounds])
        upper = np.stack([b[1] for b in bounds])
    elif spec is not None:
        lower = upper = np.empty((0, P))
    return EstimateTable(
        policy_names=tuple(p.name for p in policies),
        estimator_names=tuple(e.name for e in chosen),
        estimates=estimates,
        behavior_value=stats.return_sum / stats.n,
        lower=lower,
        upper=upper,
        interval=None if spec is None else spec.method,
        alpha=None if spec is None else spec.alpha,
    )
