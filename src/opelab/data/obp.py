"""Conversion to and from the ``bandit_feedback`` dict of the Open Bandit Pipeline (OBP, Saito et al., 2021).

Two layouts, told apart by the key ``slate_id``:

Standard (``SyntheticBanditDataset``, ``OpenBanditDataset``, ``MultiClassToBanditReduction``): one row per round,
    n_rounds        int, n (or ``n_samples``, the name OBP's multiclass data gives it)
    n_actions       int, A
    action          (n,) int in [0, A)
    position        (n,) int >= 0, the slot the action was shown in, or None or absent (no positions)
    reward          (n,) number
    pscore          (n,) π_b(action | context), in (0, 1]
    context         (n, d) numbers
    action_context  (A, d_a) numbers, or None or absent
    pi_b            optional (n, A, L) π_b(· | context) per position (L = len_list, or 1 without positions)
    expected_reward optional (n, A): checked for shape, then dropped (a LoggedDataset has no place for it)
It becomes a horizon-1 ``LoggedDataset``: observations (n, 1, d) = context, actions/rewards/pscore (n, 1),
``behavior_action_probs`` (n, 1, A) = ``pi_b[i, :, position_i]`` (position 0 without positions), ``positions``
(n, 1) with ``info.len_list`` = the ``len_list`` argument, else the dict's ``len_list`` key, else
max(position) + 1; ``info.action_context`` = action_context; terminals True (a round is a whole episode: it
ends after its step, as opelab's synthetic bandits log it), gamma 1.

Slate (``SyntheticSlateBanditDataset``): rows are slots, ``n_rounds * L`` of them, grouped by round,
    n_rounds, n_unique_action (A), context (n, d), action_context (A, d_a) or None, and per row
    slate_id, action, position (0..L-1 within each slate, in that order), reward, pscore (the slate's joint
    propensity, repeated on its rows), pscore_cascade (the propensity of the slots up to this one),
    pscore_item_position (the marginal propensity of the item at its slot; the key may be absent or None),
    expected_reward_factual optional (n * L,): checked for shape, then dropped.
It becomes the ranking log of ``DatasetInfo`` (``slate=True``, ``len_list=L``, gamma 1, horizon L, one
trajectory per round, every step observing the round's context, terminal on the last slot): ``behavior_pscore[i, t]`` =
pscore_cascade[t] / pscore_cascade[t − 1] (slot t's item given the items above it), ``behavior_marginal_pscore``
= pscore_item_position. The joint ``pscore`` must equal the last slot's ``pscore_cascade`` (to 1e-9 relative).

Keys OBP does not have, read when present and written by ``to_obp`` so that a round trip is exact:
    log_pscore         (rows,) log of opelab's ``behavior_pscore`` row by row (``behavior_log_pscore``): log π_b
                       of the action (standard) or of the slot's item given those above it (slate); ``pscore``
                       may then be 0 where the probability underflows
    pscore_slot        (slate, rows,) the per-slot conditional propensity itself (a cumulative product followed
                       by a ratio is not exact in floating point); checked against pscore_cascade
    behavior_action_probs (rows, A) π_b(· | context) at the logged position, written instead of ``pi_b`` when
                       there are positions (opelab knows π_b only at the position it was logged in); for a
                       slate, π_b(· | context, items above) at each slot
    len_list           int, the number of slots
    opelab_info        the ``DatasetInfo`` as JSON: task, gamma, behavior policy, seed, ``pscore_estimated``
    opelab_obs_shape   the observation shape, when it is not (d,) (``context`` is always (n, d))
    opelab_terminal    (n,) bool, whether each round's last step is terminal, written when some is not
The dict's own keys win over ``opelab_info`` for what they hold (actions, positions, action_context, len_list).
Every malformed dict is refused with one ``DatasetError`` naming the key, the expected and the found value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset, _is_int
from opelab.data.validation import DatasetError, first_index, format_index

OPELAB_INFO_KEY = "opelab_info"
# position and action_context may be absent (= None), and n_rounds may be called n_samples (OBP's multiclass data)
STANDARD_KEYS = ("n_rounds", "n_actions", "action", "reward", "pscore", "context")
SLATE_KEYS = ("n_rounds", "n_unique_action", "slate_id", "context", "action", "reward", "position", "pscore", "pscore_cascade")
_RTOL = 1e-9  # agreement asked of numbers that are computed from one another (joint vs cascade, ratios)


def _key(name: str) -> str:
    return f"bandit_feedback[{name!r}]"


def _count(d: Mapping[str, Any], name: str) -> int:
    value = d[name]
    if not _is_int(value) or value < 1:
        raise DatasetError(f"{_key(name)}: expected a positive int, found {value!r}")
    return int(value)


def _array(d: Mapping[str, Any], name: str, shape: tuple[int, ...], kinds: str = "iuf") -> np.ndarray:
    """``d[name]`` as an array of ``shape`` (``-1``: any length on that axis) and a dtype of ``kinds``."""
    value = d[name]
    if value is None:
        raise DatasetError(f"{_key(name)}: expected an array of shape {_shape(shape)}, found None")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged lists
        raise DatasetError(f"{_key(name)}: expected an array of shape {_shape(shape)}, found {type(value).__name__}") from None
    if array.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, array.shape)):
        raise DatasetError(f"{_key(name)}: expected shape {_shape(shape)}, found {array.shape}")
    if array.dtype == np.bool_ and "b" not in kinds:
        array = array.astype(np.float64) if "f" in kinds else array.astype(np.int64)
    if array.dtype.kind not in kinds:
        wanted = {"iu": "integers", "iuf": "numbers", "f": "floats", "b": "booleans"}.get(kinds, kinds)
        raise DatasetError(f"{_key(name)}: expected {wanted}, found dtype {array.dtype}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            idx = first_index(bad)
            raise DatasetError(f"{_key(name)}: expected finite values, found {array[idx].item()!r} at index {format_index(idx)}")
    return array


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _integers(d: Mapping[str, Any], name: str, rows: int, low: int, high: int | None) -> np.ndarray:
    array = _array(d, name, (rows,), "iu").astype(np.int64)
    bad = (array < low) | (array >= high if high is not None else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        expected = f"integers in [{low}, {high - 1}]" if high is not None else f"integers >= {low}"
        raise DatasetError(f"{_key(name)}: expected {expected}, found {array[i]} at index {i}")
    return array


def _pscore(d: Mapping[str, Any], name: str, rows: int, log_pscore: np.ndarray | None) -> np.ndarray:
    """Probabilities in (0, 1]; 0 is allowed where ``log_pscore`` says the probability underflows."""
    array = _array(d, name, (rows,)).astype(np.float64)
    bad = (array <= 0) | (array > 1)
    if log_pscore is not None:
        with np.errstate(under="ignore"):
            bad &= ~((array == 0) & (np.exp(log_pscore) == 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{_key(name)}: expected probabilities in (0, 1], found {array[i].item()!r} at index {i}")
    return array


def _log_pscore(d: Mapping[str, Any], rows: int) -> np.ndarray | None:
    if d.get("log_pscore") is None:
        return None
    array = _array(d, "log_pscore", (rows,), "f").astype(np.float64)
    if (array > 0).any():
        i = int(np.flatnonzero(array > 0)[0])
        raise DatasetError(f"{_key('log_pscore')}: expected log-probabilities <= 0, found {array[i].item()!r} at index {i}")
    return array


def _check_exp(name: str, pscore: np.ndarray, log_pscore: np.ndarray | None) -> None:
    if log_pscore is None:
        return
    with np.errstate(under="ignore"):
        linear = np.exp(log_pscore)
    bad = np.abs(pscore - linear) > _RTOL * linear + 1e-300
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{_key(name)}: expected exp(log_pscore) = {linear[i].item()!r}, found {pscore[i].item()!r} at index {i}")


def _action_context(d: Mapping[str, Any], n_actions: int) -> np.ndarray | None:
    if d.get("action_context") is None:
        return None
    return _array(d, "action_context", (n_actions, -1)).astype(np.float64)


def _restore_info(d: Mapping[str, Any], info: DatasetInfo, task: str | None, behavior_policy: str | None) -> DatasetInfo:
    """``info`` (from the dict's keys) completed by ``opelab_info`` when ``to_obp`` wrote one; arguments win."""
    if OPELAB_INFO_KEY in d:
        saved = DatasetInfo.from_json(d[OPELAB_INFO_KEY])
        info = replace(
            info, task=saved.task, gamma=saved.gamma, behavior_policy=saved.behavior_policy, seed=saved.seed,
            pscore_estimated=saved.pscore_estimated,
        )  # fmt: skip
    return replace(
        info,
        task=info.task if task is None else task,
        behavior_policy=info.behavior_policy if behavior_policy is None else behavior_policy,
    )


def _observations(d: Mapping[str, Any], context: np.ndarray, horizon: int) -> np.ndarray:
    """(n, horizon, *obs_shape): the round's context at every step, reshaped by ``opelab_obs_shape``."""
    n = context.shape[0]
    shape = d.get("opelab_obs_shape")
    if shape is not None:
        if not isinstance(shape, (list, tuple)) or not all(_is_int(s) and s >= 1 for s in shape) or int(np.prod(shape)) != context.shape[1]:
            raise DatasetError(
                f"{_key('opelab_obs_shape')}: expected a list of positive ints whose product is the context width "
                f"{context.shape[1]}, found {shape!r}"
            )
        context = context.reshape(n, *(int(s) for s in shape))
    return np.repeat(context[:, None], horizon, axis=1)


def _terminals(d: Mapping[str, Any], n: int, horizon: int) -> np.ndarray:
    terminals = np.zeros((n, horizon), dtype=bool)
    terminals[:, -1] = True
    if d.get("opelab_terminal") is not None:
        terminals[:, -1] = _array(d, "opelab_terminal", (n,), "b")
    return terminals


def _len_list(d: Mapping[str, Any], len_list: int | None) -> int | None:
    if len_list is not None:
        if not _is_int(len_list) or len_list < 1:
            raise DatasetError(f"len_list: expected a positive int, found {len_list!r}")
        return int(len_list)
    if d.get("len_list") is not None:
        return _count(d, "len_list")
    return None


def dataset_from_obp(
    bandit_feedback: Mapping[str, Any],
    *,
    task: str | None = None,
    behavior_policy: str | None = None,
    len_list: int | None = None,
) -> LoggedDataset:
    if not isinstance(bandit_feedback, Mapping):
        raise DatasetError(f"bandit_feedback: expected a dict, found {type(bandit_feedback).__name__}")
    slate = "slate_id" in bandit_feedback
    required = SLATE_KEYS if slate else STANDARD_KEYS
    if not slate and "n_rounds" not in bandit_feedback and "n_samples" in bandit_feedback:
        bandit_feedback = {**bandit_feedback, "n_rounds": bandit_feedback["n_samples"]}
    missing = [k for k in required if k not in bandit_feedback]
    if missing:
        layout = "slate" if slate else "standard"
        raise DatasetError(
            f"bandit_feedback: expected OBP's {layout} keys {list(required)}, missing {missing} "
            f"(found keys {sorted(map(str, bandit_feedback))})"
        )
    if slate:
        return _from_slate(bandit_feedback, task, behavior_policy, len_list)
    return _from_standard(bandit_feedback, task, behavior_policy, len_list)


def _from_standard(d: Mapping[str, Any], task: str | None, behavior_policy: str | None, len_list: int | None) -> LoggedDataset:
    n, A = _count(d, "n_rounds"), _count(d, "n_actions")
    action = _integers(d, "action", n, 0, A)
    reward = _array(d, "reward", (n,)).astype(np.float64)
    log_pscore = _log_pscore(d, n)
    pscore = _pscore(d, "pscore", n, log_pscore)
    _check_exp("pscore", pscore, log_pscore)
    context = _array(d, "context", (n, -1))
    action_context = _action_context(d, A)
    if d.get("expected_reward") is not None:
        _array(d, "expected_reward", (n, A))
    L = _len_list(d, len_list)
    positions = None
    if d.get("position") is not None:
        positions = _integers(d, "position", n, 0, L)
        L = int(positions.max()) + 1 if L is None else L
    probs = None
    if d.get("pi_b") is not None:
        width = 1 if positions is None else L
        pi_b = _array(d, "pi_b", (n, A, width)).astype(np.float64)
        probs = pi_b[np.arange(n), :, 0 if positions is None else positions]  # (n, A)
        name = "pi_b"
    elif d.get("behavior_action_probs") is not None:
        probs = _array(d, "behavior_action_probs", (n, A)).astype(np.float64)
        name = "behavior_action_probs"
    if probs is not None:
        _check_probs(name, probs, action, pscore)
    info = DatasetInfo(
        task="obp", gamma=1.0, action_space=ActionSpace.discrete(A), len_list=L if positions is not None else None,
        action_context=action_context,
    )
    info = _restore_info(d, info, task, behavior_policy)
    return LoggedDataset(
        observations=_observations(d, context, 1),
        actions=action[:, None],
        rewards=reward[:, None],
        terminals=_terminals(d, n, 1),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=pscore[:, None],
        behavior_action_probs=None if probs is None else probs[:, None, :],
        positions=None if positions is None else positions[:, None],
        behavior_log_pscore=None if log_pscore is None else log_pscore[:, None],
        info=info,
    )


def _check_probs(name: str, probs: np.ndarray, action: np.ndarray, pscore: np.ndarray) -> None:
    """Rows of π_b are distributions whose entry at the logged action is ``pscore``."""
    bad = (probs < 0) | (probs > 1)
    if bad.any():
        idx = first_index(bad)
        raise DatasetError(f"{_key(name)}: expected probabilities in [0, 1], found {probs[idx].item()!r} at row {idx[0]}")
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1.0) > 1e-6
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{_key(name)}: expected each row's distribution over actions to sum to 1, found {sums[i].item()!r} at row {i}")
    logged = probs[np.arange(len(action)), action]
    bad = np.abs(logged - pscore) > _RTOL * np.maximum(1.0, pscore)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{_key('pscore')}: expected {name} at the logged action and position ({logged[i].item()!r}), found {pscore[i].item()!r} at index {i}"
        )


def _from_slate(d: Mapping[str, Any], task: str | None, behavior_policy: str | None, len_list: int | None) -> LoggedDataset:
    n, A = _count(d, "n_rounds"), _count(d, "n_unique_action")
    slate_id = _array(d, "slate_id", (-1,), "iu")
    rows = len(slate_id)
    if rows % n != 0 or rows == 0:
        raise DatasetError(f"{_key('slate_id')}: expected n_rounds * len_list rows ({n} rounds), found {rows} rows")
    L = rows // n
    given = _len_list(d, len_list)
    if given is not None and given != L:
        raise DatasetError(f"len_list: expected {L} (= {rows} rows / {n} rounds), found {given}")
    blocks = slate_id.reshape(n, L)
    bad = blocks != blocks[:, :1]
    if bad.any():
        i, t = first_index(bad)
        raise DatasetError(
            f"{_key('slate_id')}: expected rows grouped by slate ({L} consecutive rows per slate_id, in position order), "
            f"found slate_id {blocks[i, t]} at row {i * L + t} inside the rows of slate_id {blocks[i, 0]}"
        )
    ids, first = np.unique(blocks[:, 0], return_index=True)
    if len(ids) != n:
        counts = np.unique(blocks[:, 0], return_counts=True)
        repeated = counts[0][counts[1] > 1][0]
        raise DatasetError(
            f"{_key('slate_id')}: expected each slate's {L} rows together, found slate_id {repeated} in more than one group of rows"
        )
    position = _integers(d, "position", rows, 0, None).reshape(n, L)
    bad = position != np.arange(L)
    if bad.any():
        i, t = first_index(bad)
        raise DatasetError(
            f"{_key('position')}: expected positions 0..{L - 1} in order within each slate, found {position[i, t]} at row {i * L + t} "
            f"(slot {t} of slate_id {blocks[i, 0]})"
        )
    action = _integers(d, "action", rows, 0, A).reshape(n, L)
    reward = _array(d, "reward", (rows,)).astype(np.float64).reshape(n, L)
    context = _array(d, "context", (n, -1))
    action_context = _action_context(d, A)
    if d.get("expected_reward_factual") is not None:
        _array(d, "expected_reward_factual", (rows,))
    log_pscore = _log_pscore(d, rows)
    cascade = _pscore(d, "pscore_cascade", rows, None if log_pscore is None else np.cumsum(log_pscore.reshape(n, L), axis=1).ravel())
    joint = _pscore(d, "pscore", rows, None if log_pscore is None else np.repeat(log_pscore.reshape(n, L).sum(axis=1), L))
    cascade, joint = cascade.reshape(n, L), joint.reshape(n, L)
    bad = np.abs(joint - cascade[:, -1:]) > _RTOL * cascade[:, -1:] + 1e-300
    if bad.any():
        i, t = first_index(bad)
        raise DatasetError(
            f"{_key('pscore')}: expected the slate's joint propensity (= pscore_cascade of its last slot, {cascade[i, -1].item()!r}) on each of "
            f"its rows, found {joint[i, t].item()!r} at row {i * L + t}"
        )
    if d.get("pscore_slot") is not None:
        conditional, source = _pscore(d, "pscore_slot", rows, log_pscore).reshape(n, L), "pscore_slot"
        _check_exp("pscore_slot", conditional.ravel(), log_pscore)
    elif log_pscore is not None:  # exact, and defined where the cascade underflows
        with np.errstate(under="ignore"):
            conditional, source = np.exp(log_pscore.reshape(n, L)), "log_pscore"
    else:
        conditional, source = _conditional(cascade), ""
    if source:
        with np.errstate(under="ignore"):
            rebuilt = np.cumprod(conditional, axis=1)
        bad = np.abs(rebuilt - cascade) > 1e-6 * cascade + 1e-300
        if bad.any():
            i, t = first_index(bad)
            raise DatasetError(
                f"{_key('pscore_cascade')}: expected the running product of {source} within the slate ({rebuilt[i, t].item()!r}), "
                f"found {cascade[i, t].item()!r} at row {i * L + t}"
            )
    probs = None
    if d.get("behavior_action_probs") is not None:
        probs = _array(d, "behavior_action_probs", (rows, A)).astype(np.float64)
        _check_probs("behavior_action_probs", probs, action.ravel(), conditional.ravel())
        probs = probs.reshape(n, L, A)
    marginal = None
    if d.get("pscore_item_position") is not None:
        marginal = _pscore(d, "pscore_item_position", rows, None).reshape(n, L)
    info = DatasetInfo(
        task="obp-slate", gamma=1.0, action_space=ActionSpace.discrete(A), len_list=L, slate=True,
        action_context=action_context,
    )  # fmt: skip
    info = _restore_info(d, info, task, behavior_policy)
    if info.gamma != 1.0:
        raise DatasetError(f"{OPELAB_INFO_KEY}: expected gamma 1 for a ranking log, found {info.gamma}")
    return LoggedDataset(
        observations=_observations(d, context, L),
        actions=action,
        rewards=reward,
        terminals=_terminals(d, n, L),
        mask=np.ones((n, L), dtype=bool),
        behavior_pscore=conditional,
        behavior_action_probs=probs,
        behavior_marginal_pscore=marginal,
        behavior_log_pscore=None if log_pscore is None else log_pscore.reshape(n, L),
        info=info,
    )


def _conditional(cascade: np.ndarray) -> np.ndarray:
    """Slot t's propensity given the slots above it: pscore_cascade[t] / pscore_cascade[t − 1]."""
    n, L = cascade.shape
    previous = np.concatenate([np.ones((n, 1)), cascade[:, :-1]], axis=1)
    ratio = cascade / previous
    bad = ratio > 1 + _RTOL
    if bad.any():
        i, t = first_index(bad)
        raise DatasetError(
            f"{_key('pscore_cascade')}: expected non-increasing values within a slate (a running product of probabilities), "
            f"found {cascade[i, t].item()!r} after {cascade[i, t - 1].item()!r} at row {i * L + t}"
        )
    return np.minimum(ratio, 1.0)


# ---------------------------------------------------------------------------------------------------- to OBP
def dataset_to_obp(dataset: LoggedDataset) -> dict[str, Any]:
    space = dataset.action_space
    if not space.is_discrete:
        raise DatasetError(f"to_obp: expected discrete actions (OBP's bandit_feedback), found {space.type} actions")
    if dataset.info.slate:
        return _to_slate(dataset)
    if dataset.horizon != 1:
        raise DatasetError(
            f"to_obp: expected a one-step log (horizon 1) or a ranking log (info.slate), found horizon {dataset.horizon}"
        )
    n = dataset.n_trajectories
    out: dict[str, Any] = {
        "n_rounds": n,
        "n_actions": space.n_actions,
        "action": np.array(dataset.actions[:, 0]),
        "position": None if dataset.positions is None else np.array(dataset.positions[:, 0]),
        "reward": np.array(dataset.rewards[:, 0]),
        "pscore": np.array(dataset.behavior_pscore[:, 0]),
        "context": np.array(dataset.observations[:, 0]).reshape(n, -1),
        "action_context": None if dataset.info.action_context is None else np.array(dataset.info.action_features),
    }
    if dataset.behavior_action_probs is not None:
        probs = np.array(dataset.behavior_action_probs[:, 0])  # (n, A)
        if dataset.positions is None:
            out["pi_b"] = probs[:, :, None]
        else:
            out["behavior_action_probs"] = probs
    if dataset.behavior_log_pscore is not None:
        out["log_pscore"] = np.array(dataset.behavior_log_pscore[:, 0])
    if dataset.positions is not None:
        out["len_list"] = dataset.info.len_list
    _extras(dataset, out)
    return out


def _to_slate(dataset: LoggedDataset) -> dict[str, Any]:
    n, H, L = dataset.n_trajectories, dataset.horizon, dataset.info.len_list
    if H != L or not dataset.mask.all():
        raise DatasetError(f"to_obp: expected every round of a ranking log to fill all len_list = {L} slots, found rounds of {dataset.lengths.min()} slots")
    if not (dataset.observations == dataset.observations[:, :1]).all():
        raise DatasetError("to_obp: expected the same observation at every slot of a round (OBP's slate context is one per round)")
    rows = n * L
    conditional = np.array(dataset.behavior_pscore)
    with np.errstate(under="ignore"):
        cascade = np.cumprod(conditional, axis=1) if dataset.behavior_log_pscore is None else np.exp(np.cumsum(dataset.behavior_log_pscore, axis=1))
    out: dict[str, Any] = {
        "n_rounds": n,
        "n_unique_action": dataset.action_space.n_actions,
        "slate_id": np.repeat(np.arange(n), L),
        "context": np.array(dataset.observations[:, 0]).reshape(n, -1),
        "action_context": None if dataset.info.action_context is None else np.array(dataset.info.action_features),
        "action": np.array(dataset.actions).reshape(rows),
        "position": np.tile(np.arange(L), n),
        "reward": np.array(dataset.rewards).reshape(rows),
        "pscore": np.repeat(cascade[:, -1], L),
        "pscore_cascade": cascade.reshape(rows),
        "pscore_item_position": None if dataset.behavior_marginal_pscore is None else np.array(dataset.behavior_marginal_pscore).reshape(rows),
        "pscore_slot": conditional.reshape(rows),
        "len_list": L,
    }
    if dataset.behavior_action_probs is not None:
        out["behavior_action_probs"] = np.array(dataset.behavior_action_probs).reshape(rows, dataset.action_space.n_actions)
    if dataset.behavior_log_pscore is not None:
        out["log_pscore"] = np.array(dataset.behavior_log_pscore).reshape(rows)
    _extras(dataset, out)
    return out


def _extras(dataset: LoggedDataset, out: dict[str, Any]) -> None:
    out[OPELAB_INFO_KEY] = dataset.info.to_json()
    if len(dataset.obs_shape) != 1:
        out["opelab_obs_shape"] = list(dataset.obs_shape)
    if not dataset.terminals[:, -1].all():
        out["opelab_terminal"] = np.array(dataset.terminals[:, -1])
