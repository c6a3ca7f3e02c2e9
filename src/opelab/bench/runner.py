"""Grid expansion and the work of one cell.

A cell is (task, dataset index). ``run_cell`` runs the whole loop for it:

    collect → candidates' ground truth → estimators' inputs → every estimator (+ intervals) → assessment

The fits made while the inputs are built (neural FQE, DICE weights, MQL) are recorded
(``opelab.ope.minimax.record_fits``) and their convergence signals become the cell's ``nuisances`` rows.

Estimators whose inputs a task does not provide (the marginal ones without marginal weights, say) are
left out of that task's cells.

and returns a ``CellResult`` of tidy tables ready for the store. It depends only on the config and the
cell: every random draw comes from ``numpy.random.SeedSequence(config.seed, spawn_key=(task key, dataset,
stream))`` (``cell_seed``), where the task key is a hash of the task id. So a cell is reproducible alone,
bit for bit, whichever executor, worker or order runs it. The candidate subset (when sampled) comes from
the task-level stream ``(task key,)``: every dataset of a task assesses the same candidates.

``execute_cell`` wraps ``run_cell`` for executors: it never raises, it reports the error as one line of text
(``describe_error``: ``Type: message``, never empty). ``cell_memory`` estimates a cell's peak memory from the
config alone, so a run that cannot fit is refused before it starts (``opelab.resources``).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from opelab.bench.config import BenchmarkConfig, EstimatorConfig, TaskConfig
from opelab.bench.tasks import TaskShape, find_family
from opelab.resources import DataSize, dataset_bytes, evaluate_bytes

__all__ = [
    "STAGES",
    "Cell",
    "CellOutcome",
    "CellResult",
    "cell_memory",
    "cell_seed",
    "describe_error",
    "execute_cell",
    "expand",
    "make_estimator",
    "nuisance_frame",
    "pending_cells",
    "run_cell",
]

#: Seed streams of a cell, one per random consumer.
COLLECT, INPUTS, INTERVALS, TRUTH = 0, 1, 2, 3
STAGES = ("collect", "truth", "inputs", "estimate", "assess")


@dataclass(frozen=True, order=True)
class Cell:
    """One unit of work: a task (by id) and the index of its dataset."""

    task: str
    dataset: int


def expand(config: BenchmarkConfig) -> list[Cell]:
    """Every cell of the grid, task by task, dataset by dataset (the order results are reported in)."""
    return [Cell(task.id, d) for task in config.tasks for d in range(config.n_datasets)]


def _task_key(task_id: str) -> int:
    """A stable 64-bit integer for a task id (Python's ``hash`` of a string changes between processes)."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "little")


def cell_seed(seed: int, cell: Cell, stream: int) -> int:
    """A 63-bit seed for one random consumer (``stream``) of a cell, from the config seed and the cell."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_task_key(cell.task), cell.dataset, stream))
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def task_rng(seed: int, task_id: str) -> np.random.Generator:
    """The task-level stream (draws shared by every dataset of a task, e.g. a sampled candidate subset)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_task_key(task_id),)))


def make_estimator(spec: EstimatorConfig):  # type: ignore[no-untyped-def]
    """An estimator instance from its config, named by its label (``EstimateTable`` names rows by the
    estimator's ``name``)."""
    from opelab.ope.estimators import ESTIMATORS

    estimator = ESTIMATORS[spec.name](**dict(spec.options))
    if spec.label != spec.name:
        object.__setattr__(estimator, "name", spec.label)  # an instance attribute: the class keeps its registered name
    return estimator


@dataclass(frozen=True, eq=False)
class CellResult:
    """Everything a finished cell stores.

    ``estimates``: ``policy, estimator, estimate, lower, upper`` (bounds NaN without intervals);
    ``ground_truth``: ``policy, value, se``; ``metrics``: ``estimator, metric, value`` (the assessment's
    summary, regret@k and normalised regret@k for every k, and best/worst/mean/std@k of the top-k);
    ``seconds``: wall time per stage (``STAGES``); ``nuisances``: one row per learned nuisance
    (``NUISANCE_FIELDS``: nuisance, policy, n_fits, iterations, steps, last_change, trend, residual,
    residual_sample, converged; see ``nuisance_frame``), empty when every nuisance is exact (tabular tasks);
    ``behavior``: the behavior policy's name (None for a policy without one).
    """

    cell: Cell
    n_trajectories: int
    n_transitions: int
    behavior_value: float  # true J(π_b)
    logged_value: float  # the dataset's mean discounted return, the SharpeRatio baseline
    estimates: pd.DataFrame
    ground_truth: pd.DataFrame
    metrics: pd.DataFrame
    seconds: dict[str, float]
    nuisances: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(NUISANCE_FIELDS)))
    behavior: str | None = None  # the behavior policy's name (with behavior.attempts, the attempt kept)


NUISANCE_FIELDS = (
    "nuisance", "policy", "n_fits", "iterations", "steps", "last_change", "trend", "residual", "residual_sample", "converged",
    "seconds",
)  # fmt: skip
_MINIMAX_NUISANCES = {"weights": "weights", "state_weights": "state_weights", "q": "mql"}


def nuisance_frame(fits: Sequence[object]) -> pd.DataFrame:
    """One row per nuisance (``fqe``, ``weights``, ``state_weights``, ``mql``) of the fits a cell made
    (``opelab.ope.minimax.record_fits``), policy ``all`` (one network serves every policy). Cross-fitted
    nuisances (one fit per fold) keep the worst fold: the largest last_change and residual, the trend of
    largest size, and converged only when every fold converged; n_fits counts the folds; seconds is the
    wall time of all its fits together.

    FQE: iterations and Adam steps per iteration, last_change = ``FQEFit.last_change``, trend NaN, residual
    and its sample (``held-out`` / ``in-sample``). Minimax learners: iterations NULL, steps = Adam steps,
    change, trend and residual of ``MinimaxFit`` (NaN for state weights, which have none)."""
    from opelab.ope.fqe import FQEFit

    rows: dict[str, list[dict[str, object]]] = {}
    for fit in fits:
        if isinstance(fit, FQEFit):
            name, row = "fqe", {
                "iterations": fit.n_iterations, "steps": fit.config.n_steps, "last_change": fit.last_change, "trend": np.nan,
                "residual": fit.residual, "residual_sample": "held-out" if fit.residual_heldout else "in-sample", "converged": fit.converged,
                "seconds": fit.seconds,
            }  # fmt: skip
        else:
            name, row = _MINIMAX_NUISANCES[fit.kind], {  # type: ignore[attr-defined]
                "iterations": None, "steps": fit.n_steps, "last_change": fit.change, "trend": fit.trend,  # type: ignore[attr-defined]
                "residual": fit.residual, "residual_sample": None if np.isnan(fit.residual) else "in-sample",  # type: ignore[attr-defined]
                "converged": fit.converged, "seconds": fit.seconds,  # type: ignore[attr-defined]
            }  # fmt: skip
        rows.setdefault(name, []).append(row)
    out = []
    for name, folds in rows.items():
        worst = lambda key: float(np.nanmax([f[key] for f in folds])) if not all(np.isnan(f[key]) for f in folds) else np.nan  # noqa: E731
        trends = [float(f["trend"]) for f in folds]
        out.append({
            "nuisance": name, "policy": "all", "n_fits": len(folds), "iterations": folds[0]["iterations"],
            "steps": folds[0]["steps"], "last_change": worst("last_change"), "residual": worst("residual"),
            "trend": np.nan if all(np.isnan(trends)) else max((t for t in trends if not np.isnan(t)), key=abs),
            "residual_sample": folds[0]["residual_sample"], "converged": all(bool(f["converged"]) for f in folds),
            "seconds": float(np.sum([f["seconds"] for f in folds])),  # NaN when a fold was not timed
        })  # fmt: skip
    frame = pd.DataFrame(out, columns=list(NUISANCE_FIELDS))
    # FQE's iterations next to the minimax learners' NULL: nullable integers, not floats with NaN
    return frame.astype({"n_fits": "Int64", "iterations": "Int64", "steps": "Int64", "converged": bool})


def _metrics_frame(assessment, truth: np.ndarray, table) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    from opelab.select.metrics import normalized_regret_at_k, regret_at_k

    summary = assessment.summary
    rows = []
    for estimator in summary.index:
        for metric in summary.columns:
            rows.append((estimator, metric, float(summary.loc[estimator, metric])))
        est = table.estimate(estimator)
        for k in assessment.ks:
            if k != 1:
                rows.append((estimator, f"regret@{k}", float(regret_at_k(truth, est, k, ties=assessment.ties))))
                rows.append((estimator, f"normalized_regret@{k}", float(normalized_regret_at_k(truth, est, k, ties=assessment.ties))))
    for row in assessment.topk.itertuples(index=False):
        for stat in ("best", "worst", "mean", "std"):
            rows.append((row.estimator, f"{stat}@{int(row.k)}", float(getattr(row, stat))))
    return pd.DataFrame(rows, columns=["estimator", "metric", "value"])


def run_cell(config: BenchmarkConfig, cell: Cell) -> CellResult:
    """Run one cell from scratch (see the module docstring). Raises on any failure."""
    from opelab.ope import evaluate
    from opelab.ope.minimax import record_fits
    from opelab.select import assess

    for module in config.imports:
        importlib.import_module(module)
    task_config = config.task(cell.task)
    family = find_family(task_config.name)
    if family is None:
        raise ValueError(f"task: expected a registered task, found {task_config.name!r}")
    task = family.create(task_config, task_config.inputs or config.inputs, config.ground_truth_rollouts, seed=config.seed)
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    behavior = task.behavior_policy()
    candidates = task.candidates(task_rng(config.seed, cell.task))
    dataset = task.collect(behavior, task_config.n_trajectories, cell_seed(config.seed, cell, COLLECT))
    seconds["collect"], clock = time.perf_counter() - clock, time.perf_counter()
    truth = task.ground_truth(behavior, candidates, cell_seed(config.seed, cell, TRUTH))
    seconds["truth"], clock = time.perf_counter() - clock, time.perf_counter()
    with record_fits() as fits:  # the learned nuisances' convergence (tabular tasks fit none)
        inputs = task.build_inputs(dataset, candidates, truth, cell_seed(config.seed, cell, INPUTS))
    seconds["inputs"], clock = time.perf_counter() - clock, time.perf_counter()
    estimators = [make_estimator(e) for e in config.estimators] or None
    if estimators is not None:  # a task whose inputs cannot feed an estimator (e.g. no marginal weights) skips it
        estimators = [e for e in estimators if all(getattr(inputs, field) is not None for field in e.requires)]
    iv = config.intervals
    table = evaluate(
        dataset,
        inputs,
        estimators,
        interval=iv.method,
        alpha=iv.alpha,
        n_bootstrap=iv.n_bootstrap,
        seed=cell_seed(config.seed, cell, INTERVALS),
    )
    seconds["estimate"], clock = time.perf_counter() - clock, time.perf_counter()
    assessment = assess(table, truth.values, ks=config.ks, safety_threshold=config.safety_threshold, ties=config.ties)
    metrics = _metrics_frame(assessment, truth.values, table)
    seconds["assess"] = time.perf_counter() - clock

    estimates = table.to_pandas()
    if "lower" not in estimates:
        estimates["lower"], estimates["upper"] = np.nan, np.nan
    ground_truth = pd.DataFrame({"policy": list(inputs.policy_names), "value": truth.values, "se": truth.se})
    return CellResult(
        cell=cell,
        n_trajectories=dataset.n_trajectories,
        n_transitions=dataset.n_transitions,
        behavior_value=truth.behavior_value,
        logged_value=float(table.behavior_value),
        estimates=estimates[["policy", "estimator", "estimate", "lower", "upper"]],
        ground_truth=ground_truth,
        metrics=metrics,
        seconds=seconds,
        nuisances=nuisance_frame(fits),
        behavior=getattr(behavior, "name", None),
    )


@dataclass(frozen=True, eq=False)
class CellOutcome:
    """A cell's attempt as an executor reports it: the result, or the error (``Type: message``) and its
    traceback. ``wall_s`` is the attempt's duration."""

    cell: Cell
    result: CellResult | None
    error: str | None
    traceback: str | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.result is not None


MAX_ERROR_CHARS = 2000  # a recorded error is one line; its traceback keeps everything


def describe_error(exc: BaseException) -> str:
    """One line, never empty: ``Type: message``. An exception without a message is described instead: a
    ``MemoryError`` as "out of memory (...)", any other by where it was raised."""
    name = type(exc).__name__
    message = " ".join(str(exc).split())
    if not message and isinstance(exc, MemoryError):
        message = "out of memory (an allocation failed in the cell; lower n_trajectories, n_bootstrap or the workers)"
    elif not message:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" raised at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
        message = f"(no message){where}"
    text = f"{name}: {message}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def execute_cell(config: BenchmarkConfig, cell: Cell) -> CellOutcome:
    """``run_cell`` that never raises: what executors call, in any process."""
    start = time.perf_counter()
    try:
        result = run_cell(config, cell)
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the others go on
        return CellOutcome(cell, None, describe_error(exc), traceback.format_exc(), time.perf_counter() - start)
    return CellOutcome(cell, result, None, None, time.perf_counter() - start)


#: A process that trains networks (learned tasks) holds torch, d3rlpy and their buffers besides the arrays.
TORCH_BYTES = 1 << 30


def cell_memory(config: BenchmarkConfig, task: TaskConfig) -> tuple[int, TaskShape] | None:
    """An upper-ish estimate of the peak memory of one cell of ``task`` (bytes) and the sizes it came from;
    None when the task's family cannot tell its sizes before running (``TaskFamily.shape``).

    With the dataset D = ``dataset_bytes`` of the task's n_trajectories, the peak is

        D + max(D / 2 (collection's temporaries), evaluate_bytes(data, P, B, E) (building the inputs, then
                evaluating), 6·P·H·S·A·8 (tabular tasks' tables))  [+ D with n_folds > 1: the folds' subsets]

    (``opelab.resources`` has the formulas). A task that trains networks adds ``TORCH_BYTES``, 4× its
    training dataset (d3rlpy's copies) and 2·D (the torch copies of the data).
    """
    from opelab.ope.estimators import ESTIMATORS

    family = find_family(task.name)
    try:
        shape = None if family is None else family.shape(task)
    except Exception:  # noqa: BLE001 - a family that cannot tell its sizes gets no estimate, not a failed run
        shape = None
    if shape is None:
        return None
    inputs = task.inputs or config.inputs
    size = DataSize(task.n_trajectories, shape.horizon, shape.obs_size, shape.n_actions, shape.action_dim)
    P = shape.n_policies
    data = dataset_bytes(size.n_trajectories, size)
    B = config.intervals.n_bootstrap if config.intervals.method == "bootstrap" else 0
    E = len(config.estimators) or len(ESTIMATORS)
    tables = 6 * P * shape.horizon * shape.n_states * size.actions * 8
    peak = data + max(data // 2, evaluate_bytes(size, P, n_bootstrap=B, n_estimators=E) + tables)
    if inputs.n_folds > 1:
        peak += data
    if shape.learned:
        train = dataset_bytes(task.candidates.train_trajectories or size.n_trajectories, size)
        peak += TORCH_BYTES + 4 * train + 2 * data
    return int(math.ceil(peak)), shape


def pending_cells(config: BenchmarkConfig, done: Sequence[Cell]) -> list[Cell]:
    """The grid's cells not in ``done``, in grid order."""
    finished = set(done)
    return [cell for cell in expand(config) if cell not in finished]

