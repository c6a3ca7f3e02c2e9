"""What is in a logged dataset: ``describe(dataset) -> DatasetSummary``.

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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from opelab.data.dataset import LoggedDataset

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
    if reference is not None and not isinstance(reference, LoggedDataset):
        raise ValueError(f"reference: expected a LoggedDataset or None, found {type(reference).__name__}")
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins: expected a positive int, found {bins!r}")
    if not isinstance(discounted, (bool, np.bool_)):
        raise ValueError(f"discounted: expected a bool, found {discounted!r}")
    random_value = _optional_real("random_return", random_return)
    expert_value = _optional_real("expert_return", expert_return)
    if reference is not None:
        _check_reference(dataset, reference)

    mask = dataset.mask
    space = dataset.action_space
    lengths = dataset.lengths
    returns = np.asarray(dataset.returns, dtype=np.float64)
    undiscounted = np.where(mask, dataset.rewards, 0.0).sum(axis=1)
    p5, p25, p50, p75, p95 = (float(x) for x in np.percentile(returns, [5, 25, 50, 75, 95]))
    n_steps = dataset.n_transitions

    actions = dataset.actions[mask]  # (N,) discrete or (N, action_dim) continuous
    counts: tuple[int, ...] | None = None
    shares: tuple[float, ...] | None = None
    never: int | None = None
    a_min: tuple[float, ...] | None = None
    a_mean: tuple[float, ...] | None = None
    a_max: tuple[float, ...] | None = None
    at_low: tuple[float, ...] | None = None
    at_high: tuple[float, ...] | None = None
    pscore = dataset.behavior_pscore[mask]
    small: float | None = None
    if space.is_discrete:
        assert space.n_actions is not None
        raw = np.bincount(actions.astype(np.intp), minlength=space.n_actions)
        counts = tuple(int(c) for c in raw)
        shares = tuple(float(c) / n_steps for c in raw)
        never = int((raw == 0).sum())
        small = float((pscore < SMALL_PSCORE).mean())
    else:
        values = actions.astype(np.float64)
        a_min = _floats(values.min(axis=0))
        a_mean = _floats(values.mean(axis=0))
        a_max = _floats(values.max(axis=0))
        if space.low is not None:
            at_low = _floats(np.isclose(values, np.asarray(space.low), rtol=1e-6, atol=1e-12).mean(axis=0))
        if space.high is not None:
            at_high = _floats(np.isclose(values, np.asarray(space.high), rtol=1e-6, atol=1e-12).mean(axis=0))

    tq: float | None = None
    if random_value is not None and expert_value is not None:
        if expert_value == random_value:
            raise ValueError(
                f"expert_return: expected a value different from random_return ({random_value!r}), "
                f"found {expert_value!r}"
            )
        mean = float(returns.mean()) if discounted else float(undiscounted.mean())
        tq = (mean - random_value) / (expert_value - random_value)

    keys, ref_keys, binned = _state_action_keys(dataset, reference, int(bins))
    unique = _count_unique(keys)
    ref_unique = None if ref_keys is None else _count_unique(ref_keys)

    return DatasetSummary(
        task=dataset.info.task,
        behavior_policy=dataset.info.behavior_policy,
        gamma=dataset.gamma,
        n_trajectories=dataset.n_trajectories,
        n_transitions=n_steps,
        horizon=dataset.horizon,
        length_min=int(lengths.min()),
        length_mean=float(lengths.mean()),
        length_max=int(lengths.max()),
        terminated_share=float(dataset.terminals.any(axis=1).mean()),
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
        pscore_estimated=bool(dataset.info.pscore_estimated),
        tq=tq,
        tq_discounted=bool(discounted),
        random_return=random_value,
        expert_return=expert_value,
        unique_state_actions=unique,
        reference_unique_state_actions=ref_unique,
        saco=None if ref_unique is None else unique / ref_unique,
        saco_bins=int(bins) if binned else None,
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


def _check_reference(dataset: LoggedDataset, reference: LoggedDataset) -> None:
    if reference.action_space != dataset.action_space:
        raise ValueError(
            f"reference: expected the dataset's action space {dataset.action_space}, found {reference.action_space}"
        )
    if reference.obs_shape != dataset.obs_shape:
        raise ValueError(
            f"reference: expected observations of the dataset's shape {dataset.obs_shape}, found {reference.obs_shape}"
        )
    if _obs_is_int(reference) != _obs_is_int(dataset):
        kind = "integer" if _obs_is_int(dataset) else "float"
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


def _bin_columns(parts: list[np.ndarray], bins: int) -> list[np.ndarray]:
    """Equal-width bin indices per column, over the columns' range across all ``parts`` together."""
    floats = [p.astype(np.float64) for p in parts]
    lo = np.min([f.min(axis=0) for f in floats], axis=0)
    hi = np.max([f.max(axis=0) for f in floats], axis=0)
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    return [np.clip(np.floor((f - lo) / safe * bins), 0, bins - 1).astype(np.int64) for f in floats]


def _state_action_keys(
    dataset: LoggedDataset, reference: LoggedDataset | None, bins: int
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Integer (state, action) keys of the logged steps of ``dataset`` (and ``reference``) on a shared grid."""
    sets = [dataset] if reference is None else [dataset, reference]
    columns = [_logged_columns(ds) for ds in sets]
    obs_parts = [obs for obs, _ in columns]
    act_parts = [act for _, act in columns]
    binned = False
    if _obs_is_int(dataset):
        obs_keys = [o.astype(np.int64) for o in obs_parts]
    else:
        obs_keys = _bin_columns(obs_parts, bins)
        binned = True
    if dataset.action_space.is_discrete:
        act_keys = [a.astype(np.int64) for a in act_parts]
    else:
        act_keys = _bin_columns(act_parts, bins)
        binned = True
    keys = [np.concatenate([o, a], axis=1) for o, a in zip(obs_keys, act_keys)]
    return keys[0], (keys[1] if reference is not None else None), binned


def _count_unique(keys: np.ndarray) -> int:
    return int(np.unique(keys, axis=0).shape[0])
