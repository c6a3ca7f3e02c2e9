"""Conversion to and from d3rlpy's ``MDPDataset`` and Minari datasets.

Both libraries store episodes as flat sequences of the steps that happened; a ``LoggedDataset`` stores the same
steps padded to ``(n_trajectories, horizon)``. The converters write the logged steps only, trajectory by
trajectory (row-major over ``mask``: trajectory 0's steps, then trajectory 1's, ...); ``logged_pscores`` gives
the behavior propensities in that same order.

d3rlpy (``to_d3rlpy`` / ``from_d3rlpy``)
    ``MDPDataset(observations (N, *obs_shape), actions, rewards (N, 1), terminals, timeouts)`` with the action
    space and size given explicitly (``DISCRETE`` with ``action_size = n_actions``, or ``CONTINUOUS`` with
    ``action_size = action_dim``), so d3rlpy never guesses the action type from the values. A trajectory that
    ended with a terminal flag ends with ``terminals = 1``; one that ended without it (the horizon cut it, or
    the log simply stops) ends with ``timeouts = 1``. Dtypes are kept as they are (d3rlpy casts to float32 only
    when it builds torch tensors), so rewards stay float64 and integer state ids stay integers.

    What d3rlpy cannot hold, and how ``from_d3rlpy`` gets it back:

    * behavior propensities: an ``MDPDataset`` has no place for them, so ``behavior_pscore`` (and optionally
      ``behavior_action_probs``) is an argument, given flat over all steps in the order above (for instance
      ``logged_pscores(dataset)`` saved alongside), as one array per episode, or padded ``(n, H)`` like
      ``LoggedDataset.behavior_pscore``;
    * the ``DatasetInfo`` (task, gamma, behavior policy, seed, action bounds): the ``info`` argument;
    * the padded horizon: the ``horizon`` argument, else the width of a padded ``behavior_pscore`` /
      ``behavior_action_probs``, else the longest episode;
    * scalar observations: d3rlpy's encoders need at least one feature axis, so tabular state ids of shape
      ``(n, H)`` (``obs_shape == ()``) are written as ``(N, 1)``. ``from_d3rlpy`` squeezes an integer
      single-feature observation ``(T, 1)`` back to ``(T,)`` (integer observations are tabular state ids in
      opelab); pass ``obs_shape=(1,)`` to keep the feature axis, or any other ``obs_shape`` to reshape.

    d3rlpy counts ``transition_count = N - (number of timed-out episodes)``: the last step of an episode that
    did not terminate has no next observation, so its Q-learning transition is dropped. The steps themselves
    (``sum(episode.size())``) are all kept and all come back.

Minari (``to_minari`` / ``from_minari``)
    A local dataset made with ``minari.create_dataset_from_buffers`` under ``MINARI_DATASETS_PATH`` (never
    downloaded). Spaces: actions ``Discrete(n_actions)`` or ``Box(low, high, (action_dim,))`` (unbounded when the
    ``ActionSpace`` has no bounds); observations ``Discrete(S)`` (``S = max id + 1``) for non-negative integer
    state ids of shape ``()``, else a ``Box`` of the observations' shape and dtype. Each episode has
    ``terminations`` (the terminal flag on the last step) and ``truncations`` (True on the last step of a
    trajectory that ended without one).

    Minari episodes hold ``T + 1`` observations (the last one is the observation after the final step) and so
    do their ``infos``. A ``LoggedDataset`` does not record that final observation: ``to_minari`` repeats the
    last logged observation in its place, and ``from_minari`` drops it. ``infos["behavior_pscore"][t]`` is
    π_b(a_t | s_t), aligned with ``observations[t]`` (likewise ``infos["behavior_action_probs"][t]``); the extra
    final entry is padding (pscore 1, probabilities 0), dropped on reading. The dataset metadata carries the
    ``DatasetInfo`` as JSON (``opelab_info``), the horizon (``opelab_horizon``) and the original dtypes of
    observations and actions (``opelab_dtypes``), so ``from_minari(to_minari(ds, ...))`` equals ``ds`` exactly.
"""

from __future__ import annotations

import contextlib
import io

import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError

if TYPE_CHECKING:
    import d3rlpy.dataset
    import minari

__all__ = [
    "HORIZON_KEY",
    "OPELAB_DTYPES_KEY",
    "OPELAB_INFO_KEY",
    "PROBS_KEY",
    "PSCORE_KEY",
    "from_d3rlpy",
    "from_minari",
    "logged_pscores",
    "to_d3rlpy",
    "to_minari",
]

OPELAB_INFO_KEY = "opelab_info"
HORIZON_KEY = "opelab_horizon"
OPELAB_DTYPES_KEY = "opelab_dtypes"
PSCORE_KEY = "behavior_pscore"
PROBS_KEY = "behavior_action_probs"

_NO_PSCORE_HINT = (
    "off-policy evaluation needs the behavior policy's propensities pi_b(a_t | s_t): pass behavior_pscore=... "
    "(e.g. logged_pscores(dataset) saved alongside the data), or, for logs without propensities, pass a "
    "placeholder (an array of ones as behavior_pscore) and replace it by an estimate with "
    "opelab.data.estimate_pscores(dataset)"
)

# Minari's create_dataset_from_buffers nags (UserWarning) about every optional metadata field left empty.
_MINARI_NAGS = (
    r"`(code_permalink|author|author_email|algorithm_name|description|eval_env)` is set to None",
    r"env_spec is None",
)


# ---------------------------------------------------------------------------------------------------- imports
def _import_d3rlpy() -> ModuleType:
    """Import d3rlpy lazily, silencing the warnings its import chain emits and the notice the legacy ``gym``
    package (a d3rlpy dependency, unused here) prints to stderr when imported."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import d3rlpy
            import d3rlpy.dataset
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("d3rlpy interop needs d3rlpy: pip install 'opelab[rl]'") from error
    return d3rlpy


def _import_minari() -> ModuleType:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import minari
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("Minari interop needs minari (with h5py): pip install 'minari[hdf5]'") from error
    return minari


# ---------------------------------------------------------------------------------------------------- shared
def logged_pscores(dataset: LoggedDataset) -> np.ndarray:
    """The behavior pscores of the logged steps, flat, trajectory by trajectory (the order the converters write).

    ``from_d3rlpy(to_d3rlpy(ds), behavior_pscore=logged_pscores(ds), info=ds.info, horizon=ds.horizon)`` restores
    ``ds`` (with ``behavior_action_probs=ds.behavior_action_probs`` when it has them).
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    return np.array(dataset.behavior_pscore[dataset.mask])


def _last_steps(dataset: LoggedDataset) -> np.ndarray:
    """Flat positions (in logged-step order) of every trajectory's last step."""
    return np.cumsum(dataset.lengths) - 1


def _per_episode(
    name: str, values: Any, lengths: Sequence[int], trailing: tuple[int, ...]
) -> tuple[list[np.ndarray], int | None]:
    """Split per-step values given flat ``(N, *trailing)``, padded ``(n, H, *trailing)`` or as one array per
    episode into one array per episode; also return the padded width ``H`` when the values were padded."""
    n, total = len(lengths), int(sum(lengths))
    ends = np.cumsum(lengths)
    if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            raise DatasetError(f"{name}: expected numeric values, found dtype {array.dtype}")
        flat_ndim = 1 + len(trailing)
        if array.ndim == flat_ndim:
            if array.shape != (total, *trailing):
                raise DatasetError(
                    f"{name}: expected a flat array of shape {(total, *trailing)} (one row per logged step, "
                    f"{n} episodes), found {array.shape}"
                )
            return [array[end - T : end] for end, T in zip(ends, lengths)], None
        if array.ndim == flat_ndim + 1:
            longest = max(lengths)
            if array.shape[0] != n or array.shape[1] < longest or array.shape[2:] != trailing:
                expected = ", ".join([str(n), f"H >= {longest}", *map(str, trailing)])
                raise DatasetError(
                    f"{name}: expected a padded array of shape ({expected}) (one row per episode), found {array.shape}"
                )
            return [array[i, :T] for i, T in enumerate(lengths)], int(array.shape[1])
        raise DatasetError(
            f"{name}: expected a flat array {(total, *trailing)}, a padded array ({n}, H, *{trailing}) or a list "
            f"of {n} per-episode arrays, found an array of shape {array.shape}"
        )
    if len(values) != n:
        raise DatasetError(f"{name}: expected a list of {n} per-episode arrays (one per episode), found {len(values)}")
    parts = []
    for i, (part, T) in enumerate(zip(values, lengths)):
        array = np.asarray(part)
        if array.dtype.kind not in "iuf":
            raise DatasetError(f"{name}[{i}]: expected numeric values, found dtype {array.dtype}")
        if array.shape != (T, *trailing):
            raise DatasetError(
                f"{name}[{i}]: expected shape {(T, *trailing)} (episode {i} has {T} steps), found {array.shape}"
            )
        parts.append(array)
    return parts, None


def _as_discrete_actions(name: str, actions: np.ndarray) -> np.ndarray:
    if actions.dtype.kind in "iu":
        return actions
    if actions.dtype.kind != "f" or not np.array_equal(actions, np.round(actions)):
        raise DatasetError(
            f"{name}: expected integer action ids for discrete actions, "
            f"found dtype {actions.dtype} with non-integer values"
        )
    return actions.astype(np.int64)


# ---------------------------------------------------------------------------------------------------- d3rlpy
def to_d3rlpy(dataset: LoggedDataset) -> d3rlpy.dataset.MDPDataset:
    """The logged steps as a d3rlpy ``MDPDataset`` (one d3rlpy episode per trajectory, same order).

    Observations ``(N, *obs_shape)`` (``(N, 1)`` for scalar state ids), actions ``(N,)`` ints (d3rlpy stores
    ``(N, 1)``) or ``(N, action_dim)`` floats, rewards ``(N, 1)``, ``terminals``/``timeouts`` on the last steps.
    The behavior propensities are not part of an ``MDPDataset``: keep ``logged_pscores(dataset)`` alongside.
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    d3rlpy = _import_d3rlpy()
    mask = dataset.mask
    observations = np.array(dataset.observations[mask])
    if observations.ndim == 1:  # scalar state ids: d3rlpy's encoders need a feature axis
        observations = observations.reshape(-1, 1)
    actions = np.array(dataset.actions[mask])
    rewards = np.array(dataset.rewards[mask]).reshape(-1, 1)
    n_steps = len(rewards)
    last = _last_steps(dataset)
    ended_terminal = dataset.terminals[np.arange(dataset.n_trajectories), dataset.lengths - 1]
    terminals = np.zeros(n_steps, dtype=np.float32)
    timeouts = np.zeros(n_steps, dtype=np.float32)
    terminals[last[ended_terminal]] = 1.0
    timeouts[last[~ended_terminal]] = 1.0
    space = dataset.action_space
    if space.is_discrete:
        action_space, action_size = d3rlpy.ActionSpace.DISCRETE, space.n_actions
    else:
        action_space, action_size = d3rlpy.ActionSpace.CONTINUOUS, space.action_dim
    return d3rlpy.dataset.MDPDataset(
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminals=terminals,
        timeouts=timeouts,
        action_space=action_space,
        action_size=action_size,
    )


def from_d3rlpy(
    mdp_dataset: d3rlpy.dataset.ReplayBufferBase,
    *,
    behavior_pscore: np.ndarray | Sequence[np.ndarray] | None = None,
    info: DatasetInfo,
    behavior_action_probs: np.ndarray | Sequence[np.ndarray] | None = None,
    horizon: int | None = None,
    obs_shape: tuple[int, ...] | None = None,
) -> LoggedDataset:
    """A ``LoggedDataset`` from a d3rlpy ``MDPDataset`` / ``ReplayBuffer`` (episodes become trajectories).

    ``behavior_pscore`` is required: d3rlpy stores no propensities. Give it flat over all steps in episode
    order (``logged_pscores``), padded ``(n_episodes, H)``, or as a list of per-episode arrays; the same forms
    (with a trailing ``n_actions`` axis) for ``behavior_action_probs``. ``horizon`` defaults to the width of a
    padded ``behavior_pscore``/``behavior_action_probs``, else the longest episode. ``obs_shape`` reshapes
    each observation (default: integer ``(T, 1)`` observations become tabular state ids ``(T,)``, see the
    module docstring). An episode that terminated ends with a terminal flag; a timed-out one without.
    """
    if behavior_pscore is None:
        raise DatasetError(
            "behavior_pscore: expected the behavior propensities of every logged step, found None; "
            f"a d3rlpy dataset carries no behavior propensities and {_NO_PSCORE_HINT}"
        )
    if not isinstance(info, DatasetInfo):
        raise DatasetError(f"info: expected a DatasetInfo, found {type(info).__name__}")
    d3rlpy = _import_d3rlpy()
    for attribute in ("episodes", "dataset_info"):
        if not hasattr(mdp_dataset, attribute):
            raise DatasetError(
                f"mdp_dataset: expected a d3rlpy MDPDataset/ReplayBuffer (with .{attribute}), "
                f"found {type(mdp_dataset).__name__}"
            )
    space = info.action_space
    d3_info = mdp_dataset.dataset_info
    expected_type = d3rlpy.ActionSpace.DISCRETE if space.is_discrete else d3rlpy.ActionSpace.CONTINUOUS
    if d3_info.action_space != expected_type:
        raise DatasetError(
            f"mdp_dataset.dataset_info.action_space: expected {expected_type.name} (info.action_space.type is "
            f"{space.type!r}), found {d3_info.action_space.name}"
        )
    if space.is_discrete and int(d3_info.action_size) > space.n_actions:
        raise DatasetError(
            f"mdp_dataset.dataset_info.action_size: expected at most info.action_space.n_actions = {space.n_actions}, "
            f"found {d3_info.action_size}"
        )
    if not space.is_discrete and int(d3_info.action_size) != space.action_dim:
        raise DatasetError(
            f"mdp_dataset.dataset_info.action_size: expected info.action_space.action_dim = {space.action_dim}, "
            f"found {d3_info.action_size}"
        )
    episodes = list(mdp_dataset.episodes)
    if not episodes:
        raise DatasetError("mdp_dataset.episodes: expected at least one episode, found 0")
    lengths = [int(episode.size()) for episode in episodes]

    pscores, pscore_width = _per_episode("behavior_pscore", behavior_pscore, lengths, ())
    probs: list[np.ndarray] | None = None
    probs_width: int | None = None
    if behavior_action_probs is not None:
        if not space.is_discrete:
            raise DatasetError("behavior_action_probs: expected None for continuous actions, found values")
        probs, probs_width = _per_episode("behavior_action_probs", behavior_action_probs, lengths, (space.n_actions,))

    trajectories: list[dict[str, Any]] = []
    for i, (episode, T) in enumerate(zip(episodes, lengths)):
        if not isinstance(episode.observations, np.ndarray):
            raise DatasetError(
                f"episodes[{i}].observations: expected one array, found {type(episode.observations).__name__} "
                "(tuple observations have no LoggedDataset counterpart)"
            )
        observations = episode.observations
        if observations.shape[0] != T:
            raise DatasetError(
                f"episodes[{i}].observations: expected {T} rows (one per step), found shape {observations.shape}"
            )
        if obs_shape is not None:
            target = tuple(int(d) for d in obs_shape)
            if int(np.prod(target)) != int(np.prod(observations.shape[1:])):
                raise DatasetError(
                    f"obs_shape: expected a shape with {int(np.prod(observations.shape[1:]))} entries like d3rlpy's "
                    f"{observations.shape[1:]}, found {target}"
                )
            observations = observations.reshape(T, *target)
        elif observations.shape[1:] == (1,) and observations.dtype.kind in "iu":
            observations = observations.reshape(T)  # tabular state ids, written as (N, 1) by to_d3rlpy
        actions = np.asarray(episode.actions)
        if space.is_discrete:
            if actions.shape not in ((T,), (T, 1)):
                raise DatasetError(
                    f"episodes[{i}].actions: expected shape ({T}, 1) for discrete actions, found {actions.shape}"
                )
            actions = _as_discrete_actions(f"episodes[{i}].actions", actions.reshape(T))
        elif actions.shape != (T, space.action_dim):
            raise DatasetError(
                f"episodes[{i}].actions: expected shape {(T, space.action_dim)} for continuous actions, "
                f"found {actions.shape}"
            )
        rewards = np.asarray(episode.rewards)
        if rewards.shape not in ((T,), (T, 1)):
            raise DatasetError(f"episodes[{i}].rewards: expected shape ({T}, 1), found {rewards.shape}")
        trajectory: dict[str, Any] = dict(
            observations=observations,
            actions=actions,
            rewards=rewards.reshape(T),
            behavior_pscore=pscores[i],
            terminal=bool(episode.terminated),
        )
        if probs is not None:
            trajectory["behavior_action_probs"] = probs[i]
        trajectories.append(trajectory)

    if horizon is None:
        horizon = pscore_width if pscore_width is not None else probs_width
    return LoggedDataset.from_trajectories(trajectories, info, horizon=horizon)


# ---------------------------------------------------------------------------------------------------- Minari
def _observation_space(dataset: LoggedDataset) -> Any:
    from gymnasium import spaces

    logged = dataset.observations[dataset.mask]
    dtype = dataset.observations.dtype
    if dtype.kind in "iu" and dataset.obs_shape == () and int(logged.min()) >= 0:
        return spaces.Discrete(int(logged.max()) + 1)
    if dtype.kind in "iu":
        bounds = np.iinfo(dtype)
        return spaces.Box(low=bounds.min, high=bounds.max, shape=dataset.obs_shape, dtype=dtype)
    return spaces.Box(low=-np.inf, high=np.inf, shape=dataset.obs_shape, dtype=dtype)


def _action_space(dataset: LoggedDataset) -> Any:
    from gymnasium import spaces

    space = dataset.action_space
    if space.is_discrete:
        return spaces.Discrete(space.n_actions)
    low = np.full(space.action_dim, -np.inf) if space.low is None else np.asarray(space.low)
    high = np.full(space.action_dim, np.inf) if space.high is None else np.asarray(space.high)
    return spaces.Box(low=low, high=high, shape=(space.action_dim,), dtype=dataset.actions.dtype)


def to_minari(
    dataset: LoggedDataset,
    dataset_id: str,
    *,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
    data_format: str | None = None,
) -> minari.MinariDataset:
    """Write ``dataset`` as a new local Minari dataset ``dataset_id`` (``(namespace/)name-v<version>``).

    It lands under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``); nothing is uploaded or downloaded.
    ``data_format`` is Minari's storage format (``"hdf5"``, its default, ``"arrow"`` or ``"parquet"``). The
    behavior pscores (and action probabilities) ride in each step's ``infos``; the ``DatasetInfo``, horizon and
    dtypes in the dataset metadata (see the module docstring for the layout).
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    minari = _import_minari()
    from minari.data_collector import EpisodeBuffer

    info = dataset.info
    probs = dataset.behavior_action_probs
    buffers = []
    for i, T in enumerate(int(T) for T in dataset.lengths):
        observations = np.array(dataset.observations[i, :T])
        observations = np.concatenate([observations, observations[-1:]])  # the unknown final observation
        truncations = np.zeros(T, dtype=bool)
        truncations[-1] = not bool(dataset.terminals[i, T - 1])
        # A list of floats (not a 1-D array): Minari's Arrow storage cannot decode 1-D info arrays.
        infos: dict[str, Any] = {PSCORE_KEY: [*dataset.behavior_pscore[i, :T].tolist(), 1.0]}
        if probs is not None:
            infos[PROBS_KEY] = np.concatenate([probs[i, :T], np.zeros((1, probs.shape[-1]), dtype=probs.dtype)])
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=observations,
                actions=np.array(dataset.actions[i, :T]),
                rewards=np.array(dataset.rewards[i, :T]),
                terminations=np.array(dataset.terminals[i, :T]),
                truncations=truncations,
                infos=infos,
            )
        )
    if description is None:
        description = (
            f"opelab LoggedDataset of task {info.task!r} (gamma {info.gamma}, behavior policy "
            f"{info.behavior_policy!r}), written by opelab.data.interop.to_minari"
        )
    with warnings.catch_warnings():
        for message in _MINARI_NAGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        created = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            action_space=_action_space(dataset),
            observation_space=_observation_space(dataset),
            algorithm_name=info.behavior_policy,
            author=author,
            author_email=author_email,
            code_permalink=code_permalink,
            description=description,
            data_format=data_format,
        )
    created.storage.update_metadata(
        {
            OPELAB_INFO_KEY: info.to_json(),
            HORIZON_KEY: dataset.horizon,
            OPELAB_DTYPES_KEY: {"observations": str(dataset.observations.dtype), "actions": str(dataset.actions.dtype)},
        }
    )
    return created


def _info_from_spaces(minari_dataset: Any, metadata: dict[str, Any]) -> DatasetInfo:
    """A ``DatasetInfo`` for a Minari dataset opelab did not write: its id as task, gamma 1 (undiscounted)."""
    from gymnasium import spaces

    space = minari_dataset.action_space
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise DatasetError(f"action_space: expected Discrete actions starting at 0, found start={int(space.start)}")
        action_space = ActionSpace.discrete(int(space.n))
    elif isinstance(space, spaces.Box) and len(space.shape) == 1:
        bounded = bool(np.isfinite(space.low).all() and np.isfinite(space.high).all())
        action_space = ActionSpace.continuous(
            int(space.shape[0]), space.low if bounded else None, space.high if bounded else None
        )
    else:
        raise DatasetError(f"action_space: expected a Discrete or a 1-D Box Minari action space, found {space}")
    return DatasetInfo(
        task=str(metadata.get("dataset_id", "minari")),
        gamma=1.0,
        action_space=action_space,
        behavior_policy=str(metadata.get("algorithm_name", "unknown")),
    )


def _check_action_space(space: ActionSpace, minari_space: Any) -> None:
    from gymnasium import spaces

    if space.is_discrete:
        ok = (
            isinstance(minari_space, spaces.Discrete)
            and int(minari_space.n) == space.n_actions
            and int(minari_space.start) == 0
        )
        expected = f"Discrete({space.n_actions})"
    else:
        ok = isinstance(minari_space, spaces.Box) and tuple(minari_space.shape) == (space.action_dim,)
        expected = f"a Box of shape ({space.action_dim},)"
    if not ok:
        raise DatasetError(
            f"action_space: expected {expected} to match info.action_space ({space.type}), "
            f"found the Minari space {minari_space}"
        )


def _steps(name: str, values: Any, T: int, padded: bool) -> np.ndarray:
    """Per-step values of an episode of T steps; ``padded`` ones (observations, infos) may hold T + 1 rows."""
    array = np.asarray(values)
    allowed = (T, T + 1) if padded else (T,)
    if array.ndim == 0 or array.shape[0] not in allowed:
        expected = f"{T + 1} (or {T}) rows" if padded else f"{T} rows"
        raise DatasetError(f"{name}: expected {expected} for an episode of {T} steps, found shape {array.shape}")
    return array[:T]


def from_minari(
    minari_dataset_or_id: minari.MinariDataset | str,
    *,
    info: DatasetInfo | None = None,
    horizon: int | None = None,
) -> LoggedDataset:
    """A ``LoggedDataset`` from a local Minari dataset (or its id, loaded with ``download=False``).

    Each episode becomes a trajectory: the final next-observation is dropped, a termination on the last step
    becomes the terminal flag (a truncation, or neither, does not), and ``infos["behavior_pscore"]`` (plus
    ``infos["behavior_action_probs"]`` when present) gives the propensities. ``info`` defaults to the one
    ``to_minari`` saved in the metadata; for other datasets to one built from the spaces (task = dataset id,
    gamma 1.0, behavior policy = the metadata's ``algorithm_name``). ``horizon`` defaults to the saved one,
    else the longest episode.
    """
    minari = _import_minari()
    if isinstance(minari_dataset_or_id, str):
        minari_dataset = minari.load_dataset(minari_dataset_or_id, download=False)
    elif isinstance(minari_dataset_or_id, minari.MinariDataset):
        minari_dataset = minari_dataset_or_id
    else:
        raise DatasetError(
            "minari_dataset_or_id: expected a MinariDataset or a dataset id, "
            f"found {type(minari_dataset_or_id).__name__}"
        )
    metadata = minari_dataset.storage.metadata
    saved_info = metadata.get(OPELAB_INFO_KEY)
    if info is None:
        if saved_info is not None:
            info = DatasetInfo.from_json(saved_info)
        else:
            info = _info_from_spaces(minari_dataset, metadata)
    elif not isinstance(info, DatasetInfo):
        raise DatasetError(f"info: expected a DatasetInfo or None, found {type(info).__name__}")
    space = info.action_space
    _check_action_space(space, minari_dataset.action_space)
    dtypes = metadata.get(OPELAB_DTYPES_KEY) or {}

    trajectories: list[dict[str, Any]] = []
    for i, episode in enumerate(minari_dataset.iterate_episodes()):
        T = len(episode.rewards)
        where = f"episode {episode.id}"
        if T == 0:
            raise DatasetError(f"rewards: expected at least one step per episode, found 0 steps in {where}")
        if not isinstance(episode.observations, np.ndarray):
            raise DatasetError(
                f"observations: expected one array per episode, found {type(episode.observations).__name__} in {where} "
                "(Dict/Tuple observation spaces have no LoggedDataset counterpart)"
            )
        observations = _steps(f"observations ({where})", episode.observations, T, padded=True)
        actions = _steps(f"actions ({where})", episode.actions, T, padded=False)
        if space.is_discrete:
            actions = _as_discrete_actions(f"actions ({where})", actions.reshape(T))
        if "observations" in dtypes and observations.dtype != np.dtype(dtypes["observations"]):
            observations = observations.astype(dtypes["observations"])
        if "actions" in dtypes and actions.dtype != np.dtype(dtypes["actions"]):
            actions = actions.astype(dtypes["actions"])
        terminations = _steps(f"terminations ({where})", episode.terminations, T, padded=False).astype(bool)
        if terminations[:-1].any():
            t = int(np.flatnonzero(terminations[:-1])[0])
            raise DatasetError(
                f"terminations: expected True only on the last step of an episode, found True at step {t} of {where} "
                f"({T} steps); split episodes that continue after a termination first"
            )
        infos = episode.infos or {}
        if PSCORE_KEY not in infos:
            raise DatasetError(
                f"infos: expected the key {PSCORE_KEY!r} (the behavior propensity of each step), found keys "
                f"{sorted(infos)} in {where}; {_NO_PSCORE_HINT}"
            )
        pscore = _steps(f"infos[{PSCORE_KEY!r}] ({where})", infos[PSCORE_KEY], T, padded=True)
        if pscore.ndim == 2 and pscore.shape[1] == 1:
            pscore = pscore.reshape(T)
        trajectory: dict[str, Any] = dict(
            observations=observations,
            actions=actions,
            rewards=np.asarray(episode.rewards),
            behavior_pscore=pscore,
            terminal=bool(terminations[-1]),
        )
        if PROBS_KEY in infos:
            trajectory[PROBS_KEY] = _steps(f"infos[{PROBS_KEY!r}] ({where})", infos[PROBS_KEY], T, padded=True)
        trajectories.append(trajectory)
    if not trajectories:
        raise DatasetError("minari_dataset: expected at least one episode, found 0")

    if horizon is None and metadata.get(HORIZON_KEY) is not None:
        saved = int(metadata[HORIZON_KEY])
        if saved >= max(len(t["rewards"]) for t in trajectories):
            horizon = saved
    return LoggedDataset.from_trajectories(trajectories, info, horizon=horizon)
