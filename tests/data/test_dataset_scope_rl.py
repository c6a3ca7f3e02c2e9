"""Conversion to and from SCOPE-RL's flat, step-major ``logged_dataset`` dict."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.data.scope_rl import REQUIRED_KEYS


def from_dict(d: dict, ds: LoggedDataset) -> LoggedDataset:
    return LoggedDataset.from_scope_rl(d, gamma=ds.gamma, task=ds.info.task)


@pytest.fixture(params=["grid", "fixed", "continuous"])
def any_ds(request, grid_ds, fixed_ds, continuous_ds) -> LoggedDataset:
    return {"grid": grid_ds, "fixed": fixed_ds, "continuous": continuous_ds}[request.param]


def test_round_trip_is_exact(any_ds: LoggedDataset, assert_same_arrays) -> None:
    back = from_dict(any_ds.to_scope_rl(), any_ds)
    assert back.equals(any_ds)
    assert_same_arrays(back, any_ds)


def test_keys_shapes_and_step_major_order(any_ds: LoggedDataset) -> None:
    ds = any_ds
    d = ds.to_scope_rl()
    n, H = ds.n_trajectories, ds.horizon
    size = n * H
    expected_keys = set(REQUIRED_KEYS) | {"opelab_info"}
    expected_keys |= {"behavior_action_probs"} if ds.behavior_action_probs is not None else set()
    assert set(d) == expected_keys
    assert (d["size"], d["n_trajectories"], d["step_per_trajectory"]) == (size, n, H)
    assert d["action_type"] == ds.action_space.type
    assert d["n_actions"] == ds.action_space.n_actions and d["action_dim"] == ds.action_space.action_dim
    assert d["behavior_policy"] == ds.info.behavior_policy and d["dataset_id"] == ds.info.seed
    assert d["state"].shape == (size, *ds.obs_shape) and d["state"].dtype == ds.observations.dtype
    action_shape = () if ds.action_space.is_discrete else (ds.action_space.action_dim,)
    assert d["action"].shape == (size, *action_shape)
    for key in ("reward", "done", "terminal", "pscore"):
        assert d[key].shape == (size,), key
    assert d["done"].dtype == np.bool_ and d["terminal"].dtype == np.bool_
    if "behavior_action_probs" in d:
        assert d["behavior_action_probs"].shape == (size, ds.action_space.n_actions)
    # entry i*H + t is trajectory i, step t
    for i in range(n):
        T = int(ds.lengths[i])
        for t in range(H):
            k = i * H + t
            np.testing.assert_array_equal(d["state"][k], ds.observations[i, t])
            np.testing.assert_array_equal(d["action"][k], ds.actions[i, t])
            assert d["reward"][k] == ds.rewards[i, t] and d["pscore"][k] == ds.behavior_pscore[i, t]
            # done on the last logged step and on the absorbing padding after it
            assert d["done"][k] == (t >= T - 1)
            assert d["terminal"][k] == (bool(ds.terminals[i, t]) or t >= T)
            if "behavior_action_probs" in d:
                np.testing.assert_array_equal(d["behavior_action_probs"][k], ds.behavior_action_probs[i, t])


def test_to_scope_rl_returns_writable_copies(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    before = float(grid_ds.rewards[0, 0])
    d["reward"][0] = before + 1.0  # a copy: the dataset is untouched
    assert grid_ds.rewards[0, 0] == before


def test_continuous_per_dimension_pscore_is_multiplied(continuous_ds: LoggedDataset) -> None:
    ds = continuous_ds
    d = ds.to_scope_rl()
    rng = np.random.default_rng(3)
    per_dim = rng.uniform(0.2, 3.0, size=(d["size"], ds.action_space.action_dim))
    per_dim[~ds.mask.reshape(-1)] = 1.0  # padding: joint density 1
    d["pscore"] = per_dim
    back = from_dict(d, ds)
    expected = per_dim.prod(axis=1).reshape(ds.n_trajectories, ds.horizon)
    np.testing.assert_array_equal(back.behavior_pscore, expected)
    np.testing.assert_array_equal(back.actions, ds.actions)
    assert back.mask.tolist() == ds.mask.tolist()


def test_per_dimension_pscore_refused_for_discrete(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["pscore"] = np.stack([d["pscore"], np.ones_like(d["pscore"])], axis=1)
    with pytest.raises(DatasetError, match="pscore"):
        from_dict(d, grid_ds)


@pytest.mark.parametrize("key", ["size", "state", "action", "reward", "done", "terminal", "pscore", "dataset_id"])
def test_missing_key(grid_ds: LoggedDataset, key: str) -> None:
    d = grid_ds.to_scope_rl()
    del d[key]
    with pytest.raises(DatasetError, match=key):
        from_dict(d, grid_ds)


@pytest.mark.parametrize("delta", [-1, 1, 20])
def test_size_not_n_times_h(grid_ds: LoggedDataset, delta: int) -> None:
    d = grid_ds.to_scope_rl()
    d["size"] = d["size"] + delta
    with pytest.raises(DatasetError, match="size"):
        from_dict(d, grid_ds)


def test_row_count_differs_from_size(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["reward"] = d["reward"][:-1]
    with pytest.raises(DatasetError, match="reward"):
        from_dict(d, grid_ds)


def test_data_after_done_fixed_length(fixed_ds: LoggedDataset) -> None:
    """An environment reset inside a trajectory: done at step 2 of trajectory 1, real data after it."""
    d = fixed_ds.to_scope_rl()
    H = d["step_per_trajectory"]
    d["done"] = d["done"].copy()
    d["done"][1 * H + 2] = True
    with pytest.raises(DatasetError, match=r"trajectory 1 continues after done at step 3"):
        from_dict(d, fixed_ds)


def test_data_after_done_variable_length(grid_ds: LoggedDataset) -> None:
    """Padding after done that is not the absorbing fill (here: a non-zero reward after the end)."""
    i = int(np.argmin(grid_ds.lengths))
    T, H = int(grid_ds.lengths[i]), grid_ds.horizon
    d = grid_ds.to_scope_rl()
    d["reward"][i * H + T + 1] = 0.5
    with pytest.raises(DatasetError, match=rf"reward.*trajectory {i} continues after done"):
        from_dict(d, grid_ds)
    d = grid_ds.to_scope_rl()
    d["terminal"][i * H + T] = False  # padding must be absorbing (terminal)
    with pytest.raises(DatasetError, match=rf"trajectory {i} continues after done"):
        from_dict(d, grid_ds)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint8])
def test_numeric_flags_are_accepted(any_ds: LoggedDataset, dtype) -> None:
    d = any_ds.to_scope_rl()
    d["done"] = d["done"].astype(dtype)
    d["terminal"] = d["terminal"].astype(dtype)
    assert set(np.unique(d["done"]).tolist()) <= {0, 1}
    assert from_dict(d, any_ds).equals(any_ds)


@pytest.mark.parametrize("bad", [np.full(1, 0.5), np.full(1, 2.0), np.full(1, np.nan), np.array(["True"])])
def test_flags_other_than_zero_or_one(grid_ds: LoggedDataset, bad: np.ndarray) -> None:
    d = grid_ds.to_scope_rl()
    flags = d["done"].astype(bad.dtype)
    flags[0] = bad[0]
    d["done"] = flags
    with pytest.raises(DatasetError, match="done"):
        from_dict(d, grid_ds)


def test_flag_shape(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["terminal"] = d["terminal"].reshape(-1, 1)
    with pytest.raises(DatasetError, match="terminal"):
        from_dict(d, grid_ds)


def test_bad_action_type(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["action_type"] = "multi-discrete"
    with pytest.raises(DatasetError, match="action_type"):
        from_dict(d, grid_ds)


def test_defaults_and_validation_downstream(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    assert LoggedDataset.from_scope_rl(d).equals(grid_ds)  # opelab_info restores gamma and task
    assert LoggedDataset.from_scope_rl(d, gamma=0.5, task="x").info.gamma == 0.5  # explicit arguments win
    d.pop("opelab_info")  # a dict SCOPE-RL made itself
    back = LoggedDataset.from_scope_rl(d)  # gamma 1, task "scope-rl"
    assert back.gamma == 1.0 and back.info.task == "scope-rl"
    np.testing.assert_array_equal(back.rewards, grid_ds.rewards)
    with pytest.raises(DatasetError, match="gamma"):
        LoggedDataset.from_scope_rl(d, gamma=1.5)
    d["action"] = d["action"].copy()
    d["action"][0] = 7  # out of range for 4 actions: caught by the LoggedDataset validation
    with pytest.raises(DatasetError, match="actions"):
        from_dict(d, grid_ds)


def test_reward_with_extra_axis_is_a_dataset_error(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["reward"] = np.stack([d["reward"], d["reward"]], axis=1)
    with pytest.raises(DatasetError, match="reward"):
        from_dict(d, grid_ds)


def test_discrete_without_n_actions_is_a_dataset_error(grid_ds: LoggedDataset) -> None:
    d = grid_ds.to_scope_rl()
    d["n_actions"] = None
    with pytest.raises(DatasetError, match="n_actions"):
        from_dict(d, grid_ds)


def test_round_trip_keeps_bounds_and_pscore_estimated(make_continuous_trajectories) -> None:
    info = DatasetInfo(
        task="c", gamma=0.9, action_space=ActionSpace.continuous(2, low=[-1, -1], high=[1, 1]),
        seed=2, pscore_estimated=True,
    )
    ds = LoggedDataset.from_trajectories(make_continuous_trajectories((2, 3)), info)
    assert from_dict(ds.to_scope_rl(), ds).equals(ds)
