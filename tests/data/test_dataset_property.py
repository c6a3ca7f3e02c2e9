"""Property: whatever arrays it is given, ``LoggedDataset(...)`` either builds or raises ``DatasetError``."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset

DTYPES = [np.dtype(t) for t in ("bool", "int8", "int32", "int64", "uint8", "uint64", "float16", "float32", "float64")]
SPECIAL = [float("nan"), float("inf"), float("-inf"), 0.0, 1.0, -1.0, 0.5, 2.0, 1e-300]
FINITE = 6e4  # float16's range
HUGE = [1e308, -1e308, 1.7976931348623157e308]  # float64 only: sums of these overflow


def elements(dtype: np.dtype) -> st.SearchStrategy[Any]:
    if dtype.kind == "f":
        special = SPECIAL + HUGE if dtype.itemsize == 8 else SPECIAL
        return st.one_of(st.sampled_from(special), st.floats(-FINITE, FINITE, width=8 * dtype.itemsize))
    if dtype.kind == "U":
        return st.text(alphabet="ab1.", max_size=3)
    return hnp.from_dtype(dtype)


def rare(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (a middle value, since Hypothesis favours the bounds)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


@st.composite
def random_array(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """An array of a random dtype, of the given shape or a random one, with NaN/inf among the floats."""
    if draw(st.booleans()):
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    dtype = draw(st.sampled_from([*DTYPES, np.dtype("U3")]))
    return draw(hnp.arrays(dtype, shape, elements=elements(dtype)))


@st.composite
def corrupt(draw: st.DrawFn, array: np.ndarray) -> np.ndarray:
    """Replace by a random array, cast, reshape, or poke one entry with a bad value."""
    how = draw(st.sampled_from(["random", "cast", "poke", "poke", "poke", "poke", "drop_axis", "add_axis"]))
    if how == "random":
        return draw(random_array(array.shape))
    if how == "cast":
        dtype = draw(st.sampled_from(DTYPES))
        with np.errstate(all="ignore"):
            return array.astype(dtype)
    if how == "drop_axis":
        return array[..., 0] if array.ndim and array.shape[-1] else array.reshape(-1)
    if how == "add_axis":
        return array[..., None]
    out = np.array(array, dtype=np.float64) if rare(draw, 4) else np.array(array)
    if out.size:
        index = tuple(draw(st.integers(0, s - 1)) for s in out.shape)
        value = draw(st.sampled_from(SPECIAL + HUGE + [-3.0, 3.0, 7.0]))
        with np.errstate(all="ignore"):
            if out.dtype.kind == "f":
                out[index] = value
            else:  # an integer/bool array gets the value cast (NaN/inf become 0)
                out[index] = np.array(value if np.isfinite(value) else 0).astype(out.dtype)
    return out


@st.composite
def dataset_inputs(draw: st.DrawFn) -> dict[str, Any]:
    discrete = draw(st.booleans())
    n = 0 if rare(draw, 20) else draw(st.integers(1, 3))
    H = 0 if rare(draw, 20) else draw(st.integers(1, 4))
    n_actions = draw(st.integers(1, 3))
    action_dim = draw(st.integers(1, 2))

    # mask: mostly prefixes (possibly empty rows), sometimes arbitrary (holes)
    if rare(draw, 8):
        mask = draw(hnp.arrays(np.bool_, (n, H)))
    else:
        lengths = np.array(draw(st.lists(st.integers(min(1, H), H), min_size=n, max_size=n)), dtype=int)
        mask = np.arange(H)[None, :] < lengths.reshape(n, 1)
    lengths = mask.sum(axis=1)

    floats = hnp.arrays(np.float64, st.just((n, H)), elements=st.floats(-10, 10))
    obs_shape = draw(st.sampled_from([(), (2,)]))
    if obs_shape:
        observations = draw(hnp.arrays(np.float64, (n, H, *obs_shape), elements=st.floats(-10, 10)))
    else:
        observations = draw(hnp.arrays(np.int64, (n, H), elements=st.integers(0, 9)))
    observations = np.where(mask.reshape(n, H, *(1,) * len(obs_shape)), observations, 0)

    if discrete:
        actions = draw(hnp.arrays(np.int64, (n, H), elements=st.integers(0, n_actions - 1)))
        actions = np.where(mask, actions, 0)
        raw = draw(hnp.arrays(np.float64, (n, H, n_actions), elements=st.floats(0.01, 1)))
        probs = np.where(mask[..., None], raw / raw.sum(axis=-1, keepdims=True), 0.0)
        pscore = np.where(mask, np.take_along_axis(probs, actions[..., None], -1)[..., 0], 1.0)
        if draw(st.booleans()):
            probs = None
    else:
        raw_actions = draw(hnp.arrays(np.float64, (n, H, action_dim), elements=st.floats(-2, 2)))
        actions = np.where(mask[..., None], raw_actions, 0.0)
        pscore = np.where(mask, draw(hnp.arrays(np.float64, (n, H), elements=st.floats(0.01, 20))), 1.0)
        probs = None
    terminals = np.zeros((n, H), dtype=bool)
    if n and H and draw(st.booleans()):
        terminals[np.arange(n), np.clip(lengths - 1, 0, None)] = draw(hnp.arrays(np.bool_, n))

    kw: dict[str, Any] = dict(
        observations=observations,
        actions=actions,
        rewards=np.where(mask, draw(floats), 0.0),
        terminals=terminals,
        mask=mask,
        behavior_pscore=pscore,
        behavior_action_probs=probs,
    )
    # corrupt no field (about a third of the time), one field, or two
    n_bad = draw(st.sampled_from([0, 0, 1, 1, 1, 2]))
    for name in draw(st.lists(st.sampled_from(sorted(kw)), min_size=n_bad, max_size=n_bad, unique=True)):
        if kw[name] is None:
            kw[name] = draw(random_array((n, H, n_actions)))
        else:
            kw[name] = draw(corrupt(kw[name]))

    if not rare(draw, 5):
        gamma = draw(st.floats(0, 1))
    else:
        gamma = draw(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(-2, 2),
                st.sampled_from(["0.9", None, True, np.float64(0.5), np.int64(1)]),
            )
        )
    matching = ("discrete", dict(n_actions=n_actions)) if discrete else ("continuous", dict(action_dim=action_dim))
    other = ("continuous", dict(action_dim=action_dim)) if discrete else ("discrete", dict(n_actions=n_actions))
    space_args = matching
    if rare(draw, 10):  # the other action type under the same arrays
        space_args = other
    elif rare(draw, 10):  # a random, possibly invalid, size
        space_args = (space_args[0], {next(iter(space_args[1])): draw(st.integers(-1, 4))})
    kw["_gamma"] = gamma
    kw["_space"] = space_args
    return kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dataset_inputs())
def test_construction_succeeds_or_raises_dataset_error(kw: dict[str, Any]) -> None:
    gamma, (kind, space_kwargs) = kw.pop("_gamma"), kw.pop("_space")
    try:
        info = DatasetInfo(task="random", gamma=gamma, action_space=ActionSpace(kind, **space_kwargs))
        ds = LoggedDataset(info=info, **kw)
    except DatasetError:
        return
    # it built: the arrays honour the contract and are read-only
    n, H = ds.mask.shape
    assert n >= 1 and H >= 1
    assert ds.lengths.min() >= 1
    assert np.array_equal(ds.mask, np.arange(H)[None, :] < ds.lengths[:, None])
    assert ds.rewards.dtype == np.float64 and ds.behavior_pscore.dtype == np.float64
    assert np.isfinite(ds.rewards).all() and np.isfinite(ds.behavior_pscore).all()
    assert (ds.behavior_pscore > 0).all()
    if ds.action_space.is_discrete:
        assert (ds.behavior_pscore <= 1).all()
    for name in ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs"):
        array = getattr(ds, name)
        if array is not None:
            assert not array.flags.writeable, name
    assert 0.0 <= ds.gamma <= 1.0
