"""The logged-data contract: ``LoggedDataset`` and its ``DatasetInfo``.

Trajectories of different lengths live together in arrays padded to ``(n_trajectories, horizon)``;
``mask[i, t]`` is True for the steps that happened. Every trajectory is a prefix of the horizon (no holes),
has at least one step, and a terminal flag can only sit on its last step.

Padded steps hold fixed fill values (``observation 0, action 0, reward 0, terminal False, pscore 1,
action probabilities 0``): with them the importance ratio of a padded step is 1 and its reward 0, so
estimators treat a finished trajectory as absorbed without extra masking, and Parquet, which stores only the
steps that happened, round-trips exactly. ``LoggedDataset.from_trajectories`` builds the padding for you.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

from opelab.data.validation import (
    DatasetError,
    check_finite,
    check_keys,
    check_kind,
    check_ndim_prefix,
    first_index,
    format_index,
    freeze,
    one_line,
    owned_readonly,
    reject_json_constant,
)

ActionType = Literal["discrete", "continuous"]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class ActionSpace:
    """Discrete actions ``0..n_actions-1`` or continuous vectors of ``action_dim`` floats.

    ``low``/``high`` are the bounds of a continuous box (``None`` when unbounded).
    """

    type: ActionType
    n_actions: int | None = None
    action_dim: int | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "discrete":
            if not _is_int(self.n_actions) or self.n_actions < 1:
                raise DatasetError(f"action_space.n_actions: expected a positive int for discrete actions, found {self.n_actions!r}")
            object.__setattr__(self, "n_actions", int(self.n_actions))
            if self.action_dim is not None or self.low is not None or self.high is not None:
                raise DatasetError("action_space: discrete actions take n_actions only, found action_dim/low/high set")
        elif self.type == "continuous":
            if not _is_int(self.action_dim) or self.action_dim < 1:
                raise DatasetError(f"action_space.action_dim: expected a positive int for continuous actions, found {self.action_dim!r}")
            object.__setattr__(self, "action_dim", int(self.action_dim))
            if self.n_actions is not None:
                raise DatasetError(f"action_space.n_actions: expected None for continuous actions, found {self.n_actions!r}")
            for name in ("low", "high"):
                bound = getattr(self, name)
                if bound is None:
                    continue
                if not isinstance(bound, tuple) or len(bound) != self.action_dim:
                    raise DatasetError(f"action_space.{name}: expected a tuple of {self.action_dim} floats, found {bound!r}")
        else:
            raise DatasetError(f"action_space.type: expected 'discrete' or 'continuous', found {self.type!r}")

    @classmethod
    def discrete(cls, n_actions: int) -> ActionSpace:
        return cls("discrete", n_actions=n_actions)

    @classmethod
    def continuous(
        cls, action_dim: int, low: Sequence[float] | None = None, high: Sequence[float] | None = None
    ) -> ActionSpace:
        return cls(
            "continuous",
            action_dim=action_dim,
            low=None if low is None else tuple(float(x) for x in low),
            high=None if high is None else tuple(float(x) for x in high),
        )

    @property
    def is_discrete(self) -> bool:
        return self.type == "discrete"


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: the task it came from, its discount, action space and behavior policy.

    ``pscore_estimated`` records that ``behavior_pscore`` was estimated from the data rather than logged.

    What bandit and ranking logs carry besides (all optional; see docs/architecture.md, "Bandit and ranking
    logs"):
        len_list        the number of positions (slots) of a list shown per round: a one-step log with a
                        ``positions`` array, or the length of a slate
        action_context  (n_actions, d) features of the actions (OBP's ``action_context``), e.g. the
                        categorical embeddings that ``mips`` marginalises over
        slate           True for ranking logs: one trajectory per round, step t = slot t of the list, ``gamma``
                        1, ``behavior_pscore`` the probability of slot t's item given the items above it (so
                        cumulative products are the cascade and the joint propensities) and
                        ``behavior_marginal_pscore`` its probability at slot t marginally
    They are written to JSON only when set, so datasets without them keep their digests and files.
    """

    task: str
    gamma: float
    action_space: ActionSpace
    behavior_policy: str = "unknown"
    seed: int | None = None
    pscore_estimated: bool = False
    len_list: int | None = None
    action_context: tuple[tuple[float, ...], ...] | None = None
    slate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.task, str):
            raise DatasetError(f"info.task: expected a str, found {type(self.task).__name__}")
        if not isinstance(self.gamma, (float, int, np.floating, np.integer)) or isinstance(self.gamma, bool):
            raise DatasetError(f"info.gamma: expected a float in [0, 1], found {self.gamma!r}")
        if not (0.0 <= float(self.gamma) <= 1.0):
            raise DatasetError(f"info.gamma: expected a float in [0, 1], found {self.gamma!r}")
        if not isinstance(self.action_space, ActionSpace):
            raise DatasetError(f"info.action_space: expected an ActionSpace, found {type(self.action_space).__name__}")
        if self.seed is not None and not _is_int(self.seed):
            raise DatasetError(f"info.seed: expected an int or None, found {self.seed!r}")
        # numpy scalars are accepted and stored as the Python numbers they equal (JSON needs those)
        object.__setattr__(self, "gamma", float(self.gamma))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))
        if self.len_list is not None:
            if not _is_int(self.len_list) or self.len_list < 1:
                raise DatasetError(f"info.len_list: expected a positive int or None, found {self.len_list!r}")
            object.__setattr__(self, "len_list", int(self.len_list))
        if not isinstance(self.slate, (bool, np.bool_)):
            raise DatasetError(f"info.slate: expected a bool, found {self.slate!r}")
        object.__setattr__(self, "slate", bool(self.slate))
        if self.slate and (self.len_list is None or not self.action_space.is_discrete):
            raise DatasetError("info.slate: expected len_list and discrete actions for a ranking (slate) log, found "
                               f"len_list={self.len_list!r}, action_space={self.action_space.type!r}")
        if self.action_context is not None:
            object.__setattr__(self, "action_context", _action_context(self.action_context, self.action_space))

    @property
    def action_features(self) -> np.ndarray | None:
        """``action_context`` as a read-only (n_actions, d) float64 array, or None."""
        if self.action_context is None:
            return None
        return freeze(np.array(self.action_context, dtype=np.float64))

    def to_json(self) -> str:
        raw = asdict(self)
        for key, default in _OPTIONAL_INFO.items():  # unset bandit keys are left out: older digests stay valid
            if raw[key] == default:
                del raw[key]
        if raw.get("action_context") is not None:
            raw["action_context"] = [list(row) for row in raw["action_context"]]
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetInfo:
        """The inverse of ``to_json``; anything else is a one-line ``DatasetError`` naming the key."""
        try:
            raw = json.loads(text, parse_constant=reject_json_constant)
        except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, non-text
            raise DatasetError(f"info: expected a JSON object, found text that does not parse ({one_line(error)})") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object, where: str = "info") -> DatasetInfo:
        """Strictly from the mapping ``asdict(info)`` gives (``where`` prefixes the key path in errors).

        ``task``, ``gamma`` and ``action_space`` are required; unknown keys, bounds that are not lists of
        numbers and flags that are not booleans are refused, never coerced.
        """
        check_keys(
            raw, where, required=("task", "gamma", "action_space"), optional=("behavior_policy", "seed", "pscore_estimated", *_OPTIONAL_INFO)
        )
        assert isinstance(raw, Mapping)
        space = raw["action_space"]
        check_keys(space, f"{where}.action_space", required=("type",), optional=("n_actions", "action_dim", "low", "high"))
        assert isinstance(space, Mapping)
        bounds = {}
        for key in ("low", "high"):
            bound = space.get(key)
            if bound is not None and (not isinstance(bound, list) or not all(_is_number(x) for x in bound)):
                raise DatasetError(f"{where}.action_space.{key}: expected null or a list of numbers, found {bound!r}")
            bounds[key] = None if bound is None else tuple(float(x) for x in bound)
        for key, kind in (("task", str), ("behavior_policy", str), ("pscore_estimated", bool), ("slate", bool)):
            if key in raw and not isinstance(raw[key], kind):
                raise DatasetError(f"{where}.{key}: expected a {kind.__name__}, found {raw[key]!r}")
        if not _is_number(raw["gamma"]):
            raise DatasetError(f"{where}.gamma: expected a float in [0, 1], found {raw['gamma']!r}")
        for key in ("seed", "len_list"):
            if raw.get(key) is not None and not _is_int(raw[key]):
                raise DatasetError(f"{where}.{key}: expected an int or null, found {raw[key]!r}")
        context = raw.get("action_context")
        if context is not None and (
            not isinstance(context, list) or not all(isinstance(row, list) and all(_is_number(x) for x in row) for row in context)
        ):
            raise DatasetError(f"{where}.action_context: expected null or a list of lists of numbers, found {one_line(repr(context))[:80]}")
        try:
            action_space = ActionSpace(
                type=space["type"], n_actions=space.get("n_actions"), action_dim=space.get("action_dim"), **bounds
            )
            fields = {key: raw[key] for key in ("behavior_policy", "seed", "pscore_estimated", *_OPTIONAL_INFO) if key in raw}
            return cls(task=raw["task"], gamma=raw["gamma"], action_space=action_space, **fields)
        except DatasetError as error:  # the checks name "info.…"/"action_space.…"; say where they sit
            message = str(error)
            raise DatasetError(where + message[4:] if message.startswith("info.") else f"{where}.{message}") from None


_OPTIONAL_INFO = {"len_list": None, "action_context": None, "slate": False}  # key -> default (left out of JSON)


def _action_context(value: object, space: ActionSpace) -> tuple[tuple[float, ...], ...]:
    """Action features as a tuple of equal-length tuples of finite floats, one row per action."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise DatasetError(f"info.action_context: expected an (n_actions, d) array of numbers, found {type(value).__name__}") from None
    if array.dtype.kind not in "iuf":  # strings, booleans and objects are refused, not coerced
        raise DatasetError(f"info.action_context: expected an (n_actions, d) array of numbers, found dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DatasetError(f"info.action_context: expected an (n_actions, d) array, found shape {array.shape}")
    if not space.is_discrete or array.shape[0] != space.n_actions:
        raise DatasetError(
            f"info.action_context: expected one row per action ({space.n_actions} discrete actions), found {array.shape[0]} rows"
        )
    if not np.isfinite(array).all():
        raise DatasetError(f"info.action_context: expected finite values, found {array[~np.isfinite(array)][0]!r}")
    return tuple(tuple(float(x) for x in row) for row in array)


def _is_number(value: object) -> bool:
    """A JSON number: an int (any size) or a finite float, not a boolean."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


FILL_VALUES: Mapping[str, Any] = {
    "observations": 0,
    "actions": 0,
    "rewards": 0.0,
    "terminals": False,
    "behavior_pscore": 1.0,
    "behavior_action_probs": 0.0,
    "positions": 0,
    "behavior_log_pscore": 0.0,
    "behavior_marginal_pscore": 1.0,
}


@dataclass(frozen=True, eq=False)
class LoggedDataset:
    """Logged trajectories of a behavior policy, padded to ``(n_trajectories, horizon)``.

    Arrays (``n`` trajectories, ``H`` horizon):
        observations           (n, H, *obs_shape)  int (tabular state ids) or float
        actions                (n, H) int for discrete, (n, H, action_dim) float for continuous
        rewards                (n, H) float64
        terminals              (n, H) bool, True on the last step of a trajectory that terminated
        mask                   (n, H) bool, True for steps that happened (a prefix of every row)
        behavior_pscore        (n, H) float64, π_b(a_t | s_t): a probability in (0, 1] (discrete) or a
                               positive density (continuous)
        behavior_action_probs  (n, H, n_actions) float64 or None, π_b(· | s_t) (discrete only)
        positions              (n, H) int64 or None, the slot in [0, info.len_list) at which the action was
                               shown (one-step logs of lists, OBP's ``position``)
        behavior_log_pscore    (n, H) float64 or None, log π_b(a_t | s_t) (≤ 0 for discrete actions): given,
                               it is what the estimators' ratios use, so propensities that underflow float64
                               (a generated sequence, a long slate) work; ``behavior_pscore`` must then equal
                               its exp (and may be 0 where that underflows)
        behavior_marginal_pscore  (n, H) float64 or None, ranking logs: the probability that slot t shows
                               a_t, marginally over the slots above it (``iips``)

    Construction validates everything once and raises ``DatasetError`` naming the field, the expectation,
    the value found and the first bad index. The arrays are read-only views.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    mask: np.ndarray
    behavior_pscore: np.ndarray
    info: DatasetInfo
    behavior_action_probs: np.ndarray | None = None
    positions: np.ndarray | None = None
    behavior_log_pscore: np.ndarray | None = None
    behavior_marginal_pscore: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.info, DatasetInfo):
            raise DatasetError(f"info: expected a DatasetInfo, found {type(self.info).__name__}")
        for name, value in _validate_arrays(self).items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ shape
    @property
    def n_trajectories(self) -> int:
        return int(self.mask.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.mask.shape[1])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.observations.shape[2:])

    @property
    def gamma(self) -> float:
        return float(self.info.gamma)

    @property
    def action_space(self) -> ActionSpace:
        return self.info.action_space

    @cached_property
    def lengths(self) -> np.ndarray:
        """Number of steps of each trajectory, shape (n,)."""
        return self.mask.sum(axis=1)

    @property
    def n_transitions(self) -> int:
        return int(self.lengths.sum())

    # ------------------------------------------------------------------ returns
    @cached_property
    def discounts(self) -> np.ndarray:
        """γ^t on steps that happened, 0 on padding, shape (n, H)."""
        steps = self.gamma ** np.arange(self.horizon, dtype=np.float64)
        return freeze(np.where(self.mask, steps, 0.0))

    @cached_property
    def discounted_rewards(self) -> np.ndarray:
        """γ^t r_t, 0 on padding, shape (n, H)."""
        return freeze(self.discounts * self.rewards)

    @cached_property
    def returns(self) -> np.ndarray:
        """Discounted return G_i = Σ_t γ^t r_t of every trajectory, shape (n,)."""
        return freeze(self.discounted_rewards.sum(axis=1))

    @cached_property
    def content_digest(self) -> str:
        """SHA-256 (hex) of everything ``equals`` compares: the info and every array's dtype, shape and bytes.

        Two datasets that are ``equals`` have the same digest, and different ones (practically surely)
        different digests. Parquet files store it to detect corruption that still decodes; it also seeds
        Monte Carlo draws that must differ between datasets but repeat on the same one.
        """
        digest = hashlib.sha256(b"opelab.LoggedDataset\0")
        digest.update(self.info.to_json().encode())
        for name in ARRAY_FIELDS:
            array = getattr(self, name)
            if array is None:
                if name not in BANDIT_FIELDS:  # added later: an absent one hashes nothing, so old digests hold
                    digest.update(f"\0{name}:none".encode())
                continue
            digest.update(f"\0{name}:{array.dtype.str}:{array.shape}\0".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()

    def mean_return(self) -> float:
        """Mean discounted logged return: the default estimate of the behavior policy's value J(π_b)."""
        return float(self.returns.mean())

    # ------------------------------------------------------------------ constructors & I/O
    @classmethod
    def from_trajectories(
        cls,
        trajectories: Sequence[Mapping[str, Any]],
        info: DatasetInfo,
        horizon: int | None = None,
    ) -> LoggedDataset:
        """Build a dataset from per-trajectory arrays.

        Each trajectory is a mapping with ``observations, actions, rewards, behavior_pscore`` (length T_i on
        the first axis), optional ``terminal`` (bool: did it end in a terminal state, default False) and
        ``behavior_action_probs``. Padding to ``horizon`` (default: the longest trajectory) is filled in.
        """
        if len(trajectories) == 0:
            raise DatasetError("trajectories: expected at least one trajectory, found 0")
        keys = ["observations", "actions", "rewards", "behavior_pscore"]
        optional = ("behavior_action_probs", *BANDIT_FIELDS)
        keys += [key for key in optional if key in trajectories[0]]
        columns: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        lengths = []
        for i, traj in enumerate(trajectories):
            missing = [key for key in keys if key not in traj]
            if missing:
                raise DatasetError(f"trajectories[{i}]: expected keys {keys} like trajectories[0], missing {missing}")
            for key in optional:
                if key in traj and key not in keys:
                    raise DatasetError(f"trajectories[{i}]: has {key} but trajectories[0] has none; give them for all or none")
            for key in keys:
                columns[key].append(np.asarray(traj[key]))
            rewards = columns["rewards"][-1]
            if rewards.ndim != 1:
                raise DatasetError(f"trajectories[{i}].rewards: expected a 1-D array, found shape {rewards.shape}")
            lengths.append(len(rewards))
        H = max(lengths) if horizon is None else int(horizon)
        if max(lengths) > H:
            raise DatasetError(f"horizon: expected >= the longest trajectory ({max(lengths)}), found {H}")
        n = len(trajectories)

        def pad(key: str) -> np.ndarray:
            parts = columns[key]
            trailing = parts[0].shape[1:]
            dtype = np.result_type(*parts)  # promote across trajectories: never truncate a later one
            out = np.full((n, H, *trailing), FILL_VALUES[key], dtype=dtype)
            for i, values in enumerate(parts):
                if values.shape != (lengths[i], *trailing):
                    raise DatasetError(
                        f"trajectories[{i}].{key}: expected shape {(lengths[i], *trailing)}, found {values.shape}"
                    )
                out[i, : lengths[i]] = values
            return out

        mask = np.arange(H)[None, :] < np.asarray(lengths)[:, None]
        terminals = np.zeros((n, H), dtype=bool)
        for i, traj in enumerate(trajectories):
            if lengths[i] > 0 and bool(traj.get("terminal", False)):
                terminals[i, lengths[i] - 1] = True
        return cls(
            observations=pad("observations"),
            actions=pad("actions"),
            rewards=pad("rewards"),
            terminals=terminals,
            mask=mask,
            behavior_pscore=pad("behavior_pscore"),
            info=info,
            **{key: pad(key) if key in columns else None for key in optional},
        )

    def to_parquet(self, path: str | Any, row_group_rows: int | None = None) -> None:
        """Write the dataset to one Parquet file (one row per logged step, row groups of ``row_group_rows``
        rows, default 2^20; see ``opelab.data.io``)."""
        from opelab.data.io import ROW_GROUP_ROWS, write_parquet

        write_parquet(self, path, ROW_GROUP_ROWS if row_group_rows is None else row_group_rows)

    @classmethod
    def read_parquet(cls, path: str | Any) -> LoggedDataset:
        """Read a dataset written by ``to_parquet``; validated like any other construction, checked against its
        page checksums and content digest, and refused with one ``DatasetError`` line naming the file."""
        from opelab.data.io import read_parquet

        return read_parquet(path)

    @classmethod
    def from_scope_rl(
        cls, logged_dataset: Mapping[str, Any], *, gamma: float | None = None, task: str | None = None
    ) -> LoggedDataset:
        """Convert SCOPE-RL's flat ``logged_dataset`` dict (index ``i * H + t``) (see ``opelab.data.scope_rl``)."""
        from opelab.data.scope_rl import dataset_from_scope_rl

        return dataset_from_scope_rl(logged_dataset, gamma=gamma, task=task)

    def to_scope_rl(self) -> dict[str, Any]:
        """SCOPE-RL's flat dict (index ``i * H + t``) (see ``opelab.data.scope_rl``)."""
        from opelab.data.scope_rl import dataset_to_scope_rl

        return dataset_to_scope_rl(self)

    @classmethod
    def from_obp(
        cls,
        bandit_feedback: Mapping[str, Any],
        *,
        task: str | None = None,
        behavior_policy: str | None = None,
        len_list: int | None = None,
    ) -> LoggedDataset:
        """Convert the Open Bandit Pipeline's ``bandit_feedback`` dict, standard (a horizon-1 log) or slate (a
        ranking log) (see ``opelab.data.obp``)."""
        from opelab.data.obp import dataset_from_obp

        return dataset_from_obp(bandit_feedback, task=task, behavior_policy=behavior_policy, len_list=len_list)

    def to_obp(self) -> dict[str, Any]:
        """The Open Bandit Pipeline's ``bandit_feedback`` dict of a one-step or ranking log (see ``opelab.data.obp``)."""
        from opelab.data.obp import dataset_to_obp

        return dataset_to_obp(self)

    def equals(self, other: LoggedDataset) -> bool:
        """Exact equality of every array (dtype, shape and values) and of the info."""
        if not isinstance(other, LoggedDataset) or self.info != other.info:
            return False
        for name in ARRAY_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            if a is not None and (a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b)):
                return False
        return True

    def subset(self, indices: Sequence[int] | np.ndarray) -> LoggedDataset:
        """The trajectories at ``indices`` (repeats allowed), same horizon and info."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) == 0:
            raise DatasetError(f"indices: expected a non-empty 1-D array of trajectory indices, found {idx.dtype} {idx.shape}")
        if idx.min() < -self.n_trajectories or idx.max() >= self.n_trajectories:
            raise DatasetError(f"indices: expected values in [0, {self.n_trajectories - 1}], found range [{idx.min()}, {idx.max()}]")
        arrays = {name: (None if getattr(self, name) is None else getattr(self, name)[idx]) for name in ARRAY_FIELDS}
        return LoggedDataset(info=self.info, **arrays)

    def with_info(self, **changes: Any) -> LoggedDataset:
        """A copy with some ``DatasetInfo`` fields replaced (arrays shared, not copied)."""
        return replace(self, info=replace(self.info, **changes))

    def __repr__(self) -> str:
        return (
            f"LoggedDataset(task={self.info.task!r}, n_trajectories={self.n_trajectories}, "
            f"horizon={self.horizon}, n_transitions={self.n_transitions}, "
            f"action_space={self.action_space.type}, gamma={self.gamma})"
        )


ARRAY_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "terminals",
    "mask",
    "behavior_pscore",
    "behavior_action_probs",
    "positions",
    "behavior_log_pscore",
    "behavior_marginal_pscore",
)
BANDIT_FIELDS = ("positions", "behavior_log_pscore", "behavior_marginal_pscore")  # optional, for bandit/ranking logs


def _check_padding(name: str, array: np.ndarray, mask: np.ndarray) -> None:
    padded = ~mask
    if not padded.any():
        return
    fill = FILL_VALUES[name]
    extra_axes = tuple(range(2, array.ndim))
    wrong = array != fill
    if extra_axes:
        wrong = wrong.any(axis=extra_axes)
    bad = wrong & padded
    if bad.any():
        idx = first_index(bad)
        raise DatasetError(
            f"{name}: expected the fill value {fill!r} on padded steps (mask False), found "
            f"{array[idx]!r} at index {format_index(idx)}; build padded data with LoggedDataset.from_trajectories"
        )


def _canonical_padding(name: str, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The array with −0.0 on padded steps replaced by +0.0 (a copy only when there is one): −0.0 equals the
    fill value 0.0, but the content digest hashes bytes and a file stores no padding, so a reader would
    rebuild +0.0 and see a different digest (e.g. ``rewards * mask`` with negative rewards)."""
    if array.dtype.kind != "f" or mask.all():
        return array
    padded = ~mask
    negative_zero = np.signbit(array) & (array == 0)
    if array.ndim > 2:
        negative_zero = negative_zero.any(axis=tuple(range(2, array.ndim)))
    if not (negative_zero & padded).any():
        return array
    out = array.copy()
    out[padded] = FILL_VALUES[name]
    return out


def _step_floats(name: str, value: Any, n: int, H: int) -> np.ndarray:
    """A per-step float array, checked: a float dtype, shape (n, H), finite; widened to float64."""
    array = np.asarray(value)
    check_kind(name, array, "f")
    if array.shape != (n, H):
        raise DatasetError(f"{name}: expected shape {(n, H)}, found {array.shape}")
    array = array.astype(np.float64, copy=False)
    check_finite(name, array)
    return array


def _validate_arrays(ds: LoggedDataset) -> dict[str, np.ndarray | None]:
    """Check every array against the contract; return read-only (possibly dtype-widened) views."""
    space = ds.info.action_space
    out: dict[str, np.ndarray | None] = {}

    mask = np.asarray(ds.mask)
    if mask.dtype != np.bool_:
        raise DatasetError(f"mask: expected dtype bool, found {mask.dtype}")
    if mask.ndim != 2:
        raise DatasetError(f"mask: expected shape (n_trajectories, horizon), found {mask.shape}")
    n, H = mask.shape
    if n == 0 or H == 0:
        raise DatasetError(f"mask: expected at least one trajectory and one step, found shape {mask.shape}")
    empty = ~mask.any(axis=1)
    if empty.any():
        raise DatasetError(f"mask: expected every trajectory to have at least one step, found an empty trajectory at index {first_index(empty)[0]}")
    holes = mask[:, 1:] & ~mask[:, :-1]
    if holes.any():
        i, t = first_index(holes)
        raise DatasetError(
            f"mask: expected each trajectory's steps to be a prefix (no holes), found step {t + 1} "
            f"logged after a missing step {t} at index ({i}, {t + 1})"
        )
    out["mask"] = mask

    observations = np.asarray(ds.observations)
    check_kind("observations", observations, "iuf")
    check_ndim_prefix("observations", observations, (n, H), "(n_trajectories, horizon, *obs_shape)")
    check_finite("observations", observations)
    out["observations"] = observations

    actions = np.asarray(ds.actions)
    if space.is_discrete:
        check_kind("actions", actions, "iu", "an integer dtype for discrete actions")
        if actions.shape != (n, H):
            raise DatasetError(f"actions: expected shape {(n, H)} for discrete actions, found {actions.shape}")
        bad = (actions < 0) | (actions >= space.n_actions)
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(
                f"actions: expected integers in [0, {space.n_actions - 1}], found {actions[idx]} at index {format_index(idx)}"
            )
    else:
        check_kind("actions", actions, "f", "a float dtype for continuous actions")
        if actions.shape != (n, H, space.action_dim):
            raise DatasetError(
                f"actions: expected shape {(n, H, space.action_dim)} for continuous actions, found {actions.shape}"
            )
        check_finite("actions", actions)
        for bound, outside in ((space.low, np.less), (space.high, np.greater)):
            if bound is None:
                continue
            # compare in the actions' dtype: float32 actions clipped to a bound of 0.4 hold float32(0.4), which
            # exceeds the float 0.4; a bound beyond the dtype's range becomes ±inf (no overflow warning)
            with np.errstate(over="ignore"):
                limit = np.asarray(bound, dtype=np.float64).astype(actions.dtype)
            bad = mask & outside(actions, limit).any(axis=-1)
            if bad.any():
                idx = first_index(bad)
                raise DatasetError(
                    f"actions: expected values within the action space's bounds low={space.low}, high={space.high}, "
                    f"found {actions[idx]!r} at index {format_index(idx)}"
                )
    out["actions"] = actions

    rewards = np.asarray(ds.rewards)
    check_kind("rewards", rewards, "iuf")
    if rewards.shape != (n, H):
        raise DatasetError(f"rewards: expected shape {(n, H)}, found {rewards.shape}")
    rewards = rewards.astype(np.float64, copy=False)  # lossless for the float and small-int rewards we accept
    check_finite("rewards", rewards)
    out["rewards"] = rewards

    terminals = np.asarray(ds.terminals)
    if terminals.dtype != np.bool_:
        raise DatasetError(f"terminals: expected dtype bool, found {terminals.dtype}")
    if terminals.shape != (n, H):
        raise DatasetError(f"terminals: expected shape {(n, H)}, found {terminals.shape}")
    last = np.zeros((n, H), dtype=bool)
    last[np.arange(n), mask.sum(axis=1) - 1] = True
    bad = terminals & ~last
    if bad.any():
        idx = first_index(bad)
        raise DatasetError(
            f"terminals: expected True only on the last logged step of a trajectory, found True at index {format_index(idx)}"
        )
    out["terminals"] = terminals

    pscore = _step_floats("behavior_pscore", ds.behavior_pscore, n, H)
    log_pscore = ds.behavior_log_pscore
    if log_pscore is not None:
        log_pscore = _step_floats("behavior_log_pscore", log_pscore, n, H)
        if space.is_discrete and (log_pscore > 0).any():
            idx = first_index(log_pscore > 0)
            raise DatasetError(f"behavior_log_pscore: expected log-probabilities <= 0, found {log_pscore[idx]!r} at index {format_index(idx)}")
        with np.errstate(under="ignore"):
            linear = np.exp(log_pscore)
        bad = np.abs(pscore - linear) > 1e-9 * linear + 1e-300
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(
                f"behavior_pscore: expected exp(behavior_log_pscore) = {linear[idx]!r}, found {pscore[idx]!r} at index {format_index(idx)}"
            )
    out["behavior_log_pscore"] = log_pscore
    low_ok = (pscore == 0) & (log_pscore is not None)  # exp of a log-propensity that underflows float64
    if space.is_discrete:
        bad = ((pscore <= 0) & ~low_ok) | (pscore > 1)
        expected = "probabilities in (0, 1]"
    else:
        bad = (pscore <= 0) & ~low_ok
        expected = "positive densities"
    if bad.any():
        idx = first_index(bad)
        raise DatasetError(f"behavior_pscore: expected {expected}, found {pscore[idx]!r} at index {format_index(idx)}")
    out["behavior_pscore"] = pscore

    probs = ds.behavior_action_probs
    if probs is not None:
        if not space.is_discrete:
            raise DatasetError("behavior_action_probs: expected None for continuous actions, found an array")
        probs = np.asarray(probs)
        check_kind("behavior_action_probs", probs, "f")
        if probs.shape != (n, H, space.n_actions):
            raise DatasetError(
                f"behavior_action_probs: expected shape {(n, H, space.n_actions)}, found {probs.shape}"
            )
        probs = probs.astype(np.float64, copy=False)
        check_finite("behavior_action_probs", probs)
        bad = (probs < 0) | (probs > 1)
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(f"behavior_action_probs: expected probabilities in [0, 1], found {probs[idx]!r} at index {format_index(idx)}")
        sums = probs.sum(axis=-1)
        bad = mask & (np.abs(sums - 1.0) > 1e-6)
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(
                f"behavior_action_probs: expected rows summing to 1 on logged steps, found {sums[idx]!r} at index {format_index(idx)}"
            )
        logged = np.take_along_axis(probs, actions[..., None].astype(np.intp), axis=-1)[..., 0]
        bad = mask & (np.abs(logged - pscore) > 1e-9 * np.maximum(1.0, pscore))
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(
                f"behavior_pscore: expected behavior_action_probs[..., action] ({logged[idx]!r}), found {pscore[idx]!r} "
                f"at index {format_index(idx)}"
            )
    out["behavior_action_probs"] = probs

    positions = ds.positions
    if positions is not None:
        positions = np.asarray(positions)
        check_kind("positions", positions, "iu", "an integer dtype")
        if positions.shape != (n, H):
            raise DatasetError(f"positions: expected shape {(n, H)}, found {positions.shape}")
        if ds.info.len_list is None:
            raise DatasetError("positions: given, but info.len_list (the number of slots) is None")
        bad = mask & ((positions < 0) | (positions >= ds.info.len_list))
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(
                f"positions: expected integers in [0, {ds.info.len_list - 1}] (info.len_list = {ds.info.len_list}), "
                f"found {positions[idx]} at index {format_index(idx)}"
            )
        positions = positions.astype(np.int64, copy=False)
    out["positions"] = positions

    marginal = ds.behavior_marginal_pscore
    if marginal is not None:
        if not ds.info.slate:
            raise DatasetError("behavior_marginal_pscore: given, but the dataset is not a ranking log (info.slate is False)")
        marginal = _step_floats("behavior_marginal_pscore", marginal, n, H)
        bad = (marginal <= 0) | (marginal > 1)
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(f"behavior_marginal_pscore: expected probabilities in (0, 1], found {marginal[idx]!r} at index {format_index(idx)}")
    out["behavior_marginal_pscore"] = marginal
    if ds.info.slate and H > ds.info.len_list:
        raise DatasetError(f"mask: expected at most info.len_list = {ds.info.len_list} slots per ranking-log round, found horizon {H}")

    for name in ("observations", "actions", "rewards", "terminals", "behavior_pscore", "behavior_action_probs", *BANDIT_FIELDS):
        if out[name] is not None:
            _check_padding(name, out[name], mask)
            out[name] = _canonical_padding(name, out[name], mask)

    return {name: (None if value is None else owned_readonly(value)) for name, value in out.items()}
