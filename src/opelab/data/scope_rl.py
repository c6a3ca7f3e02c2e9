"""Conversion to and from SCOPE-RL's ``logged_dataset`` dict.

SCOPE-RL (Kiyohara et al., 2023) stores a dataset as flat arrays (trajectory by trajectory) of length
``size = n_trajectories * step_per_trajectory`` (index ``i * step_per_trajectory + t``) with the keys
``size, n_trajectories, step_per_trajectory, action_type, n_actions, action_dim, state, action, reward, done,
terminal, pscore, behavior_policy, dataset_id``. Its continuous ``pscore`` may be per action dimension,
shape ``(size, action_dim)``; the joint density is their product.

Variable-length trajectories have no place in that fixed-horizon layout, so ``to_scope_rl`` writes a finished
trajectory's remaining steps as absorbing padding: fill values, reward 0, pscore 1, ``done`` and
``terminal`` set. ``from_scope_rl`` reads a trajectory up to its first ``done`` and requires what follows to be
exactly that padding; data that continues after ``done`` (an environment reset inside one trajectory) is
refused with a ``DatasetError`` rather than silently glued into one trajectory.

Fields without a SCOPE-RL key travel as follows: ``dataset_id`` carries the seed (0 when there is none),
``behavior_action_probs``, ``positions``, ``behavior_log_pscore`` and ``behavior_marginal_pscore`` (when present)
ride along under those extra keys, and the whole ``DatasetInfo``
(task, gamma, action bounds, ``pscore_estimated``) under the extra key ``opelab_info`` as JSON; SCOPE-RL
ignores keys it does not know. For a dict without ``opelab_info`` (one SCOPE-RL made), ``gamma`` (default
1.0, SCOPE-RL's own default) and ``task`` (default ``"scope-rl"``) are arguments of ``from_scope_rl``;
given explicitly they also override what ``opelab_info`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from opelab.data.dataset import BANDIT_FIELDS, FILL_VALUES, ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError, first_index

OPELAB_INFO_KEY = "opelab_info"
REQUIRED_KEYS = (
    "size",
    "n_trajectories",
    "step_per_trajectory",
    "action_type",
    "n_actions",
    "action_dim",
    "state",
    "action",
    "reward",
    "done",
    "terminal",
    "pscore",
    "behavior_policy",
    "dataset_id",
)


def dataset_to_scope_rl(dataset: LoggedDataset) -> dict[str, Any]:
    n, H = dataset.n_trajectories, dataset.horizon
    size = n * H
    padded = ~dataset.mask
    last = np.zeros((n, H), dtype=bool)
    last[np.arange(n), dataset.lengths - 1] = True
    space = dataset.action_space
    out: dict[str, Any] = {
        "size": size,
        "n_trajectories": n,
        "step_per_trajectory": H,
        "action_type": space.type,
        "n_actions": space.n_actions,
        "action_dim": space.action_dim,
        "state": np.array(dataset.observations).reshape(size, *dataset.obs_shape),
        "action": np.array(dataset.actions).reshape(size, *dataset.actions.shape[2:]),
        "reward": np.array(dataset.rewards).reshape(size),
        "done": (last | padded).reshape(size),
        "terminal": (dataset.terminals | padded).reshape(size),
        "pscore": np.array(dataset.behavior_pscore).reshape(size),
        "behavior_policy": dataset.info.behavior_policy,
        "dataset_id": dataset.info.seed if dataset.info.seed is not None else 0,
    }
    out[OPELAB_INFO_KEY] = dataset.info.to_json()
    if dataset.behavior_action_probs is not None:
        out["behavior_action_probs"] = np.array(dataset.behavior_action_probs).reshape(size, space.n_actions)
    for name in BANDIT_FIELDS:  # no SCOPE-RL keys either: they ride along under their own names
        if getattr(dataset, name) is not None:
            out[name] = np.array(getattr(dataset, name)).reshape(size)
    return out


def _flag(name: str, values: Any, size: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (size,):
        raise DatasetError(f"{name}: expected shape ({size},), found {array.shape}")
    if array.dtype != np.bool_:
        if array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all():
            raise DatasetError(f"{name}: expected 0/1 or bool flags, found dtype {array.dtype}")
        array = array.astype(bool)
    return array


def dataset_from_scope_rl(
    logged_dataset: Mapping[str, Any], *, gamma: float | None = None, task: str | None = None
) -> LoggedDataset:
    missing = [k for k in REQUIRED_KEYS if k not in logged_dataset]
    if missing:
        raise DatasetError(f"logged_dataset: expected SCOPE-RL keys {list(REQUIRED_KEYS)}, missing {missing}")
    d = logged_dataset
    n, H, size = int(d["n_trajectories"]), int(d["step_per_trajectory"]), int(d["size"])
    if n < 1 or H < 1 or size != n * H:
        raise DatasetError(
            f"size: expected n_trajectories * step_per_trajectory = {n} * {H} = {n * H}, found {size}"
        )
    action_type = d["action_type"]
    if action_type == "discrete":
        space = ActionSpace("discrete", n_actions=d["n_actions"])
    elif action_type == "continuous":
        space = ActionSpace("continuous", action_dim=d["action_dim"])
    else:
        raise DatasetError(f"action_type: expected 'discrete' or 'continuous', found {action_type!r}")

    def steps(name: str) -> np.ndarray:
        array = np.asarray(d[name])
        if array.ndim == 0 or array.shape[0] != size:
            raise DatasetError(f"{name}: expected {size} rows (one per step), found shape {array.shape}")
        return array

    state = steps("state")
    action = steps("action")
    reward = steps("reward")
    pscore = steps("pscore")
    if reward.ndim != 1:
        raise DatasetError(f"reward: expected shape ({size},), found {reward.shape}")
    if reward.dtype.kind not in "iuf":
        raise DatasetError(f"reward: expected a numeric dtype, found {reward.dtype}")
    action_shape = (size,) if space.is_discrete else (size, space.action_dim)
    if action.shape != action_shape:
        raise DatasetError(f"action: expected shape {action_shape} for {space.type} actions, found {action.shape}")
    if pscore.dtype.kind not in "iuf":
        raise DatasetError(f"pscore: expected a float dtype, found {pscore.dtype}")
    if pscore.ndim == 2:
        if space.is_discrete or pscore.shape[1] != space.action_dim:
            raise DatasetError(
                f"pscore: expected shape ({size},) or, for continuous actions, ({size}, {space.action_dim}); found {pscore.shape}"
            )
        pscore = pscore.prod(axis=1)
    elif pscore.ndim != 1:
        raise DatasetError(f"pscore: expected shape ({size},), found {pscore.shape}")
    done = _flag("done", d["done"], size).reshape(n, H)
    terminal = _flag("terminal", d["terminal"], size).reshape(n, H)

    # A trajectory ends at its first `done` (or at the horizon); what follows must be absorbing padding.
    ended = np.cumsum(done, axis=1) - done > 0  # steps strictly after the first done
    mask = ~ended
    arrays: dict[str, np.ndarray | None] = {
        "observations": state.reshape(n, H, *state.shape[1:]),
        "actions": action.reshape(n, H, *action.shape[1:]),
        "rewards": reward.reshape(n, H),
        "behavior_pscore": pscore.reshape(n, H),
        "behavior_action_probs": None,
    }
    if "behavior_action_probs" in d:
        probs = steps("behavior_action_probs")
        arrays["behavior_action_probs"] = probs.reshape(n, H, *probs.shape[1:])
    for name in BANDIT_FIELDS:
        if name in d:
            values = steps(name)
            if values.ndim != 1:
                raise DatasetError(f"{name}: expected shape ({size},), found {values.shape}")
            arrays[name] = values.reshape(n, H)
    for name, values in arrays.items():
        if values is None:
            continue
        wrong = values != FILL_VALUES[name]
        if wrong.ndim > 2:
            wrong = wrong.reshape(n, H, -1).any(axis=2)
        bad = ended & (wrong | ~terminal)
        if bad.any():
            i, t = first_index(bad)
            raise DatasetError(
                f"{name}: trajectory {i} continues after done at step {t} (found non-padding data at index "
                f"({i}, {t})); SCOPE-RL data that resets the environment inside a trajectory must be split "
                f"into separate trajectories first"
            )
    info = DatasetInfo(
        task=task if task is not None else "scope-rl",
        gamma=1.0 if gamma is None else gamma,
        action_space=space,
        behavior_policy=str(d["behavior_policy"]),
        seed=int(d["dataset_id"]),
    )
    if OPELAB_INFO_KEY in d:  # written by to_scope_rl: restores what SCOPE-RL's keys cannot hold
        saved = DatasetInfo.from_json(d[OPELAB_INFO_KEY])
        if saved.action_space.type != space.type or saved.action_space.n_actions != space.n_actions or saved.action_space.action_dim != space.action_dim:
            raise DatasetError(f"{OPELAB_INFO_KEY}: its action space {saved.action_space} disagrees with the dict's keys")
        # dataset_id 0 is what a seedless dataset writes; any other id is the dict's own word
        seed = saved.seed if saved.seed is None and info.seed == 0 else info.seed
        info = replace(
            saved,
            task=saved.task if task is None else task,
            gamma=saved.gamma if gamma is None else gamma,
            behavior_policy=info.behavior_policy,
            seed=seed,
        )
    return LoggedDataset(terminals=terminal & mask, mask=mask, info=info, **arrays)
