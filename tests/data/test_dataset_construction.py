"""``LoggedDataset.from_trajectories`` (padding, lengths, mask) and the returns of a logged dataset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset

INFO = DatasetInfo(task="toy", gamma=0.9, action_space=ActionSpace.discrete(3), seed=0)


def trajectory(T: int, *, probs: bool = True, terminal: bool = False, offset: int = 0) -> dict:
    row = np.array([0.2, 0.3, 0.5])
    actions = (np.arange(T) + offset) % 3
    out = dict(
        observations=np.arange(T) + 10 * offset,
        actions=actions,
        rewards=np.linspace(-1, 1, T) + offset,
        behavior_pscore=row[actions],
        terminal=terminal,
    )
    if probs:
        out["behavior_action_probs"] = np.tile(row, (T, 1))
    return out


# ---------------------------------------------------------------------------------------------- from_trajectories
def test_from_trajectories_pads_to_the_longest() -> None:
    trajs = [trajectory(3, offset=0), trajectory(1, terminal=True, offset=1), trajectory(2, offset=2)]
    ds = LoggedDataset.from_trajectories(trajs, INFO)
    assert (ds.n_trajectories, ds.horizon) == (3, 3)
    assert ds.lengths.tolist() == [3, 1, 2]
    assert ds.n_transitions == 6
    np.testing.assert_array_equal(ds.mask, [[True, True, True], [True, False, False], [True, True, False]])
    np.testing.assert_array_equal(ds.terminals, [[False] * 3, [True, False, False], [False] * 3])
    for i, traj in enumerate(trajs):
        T = int(ds.lengths[i])
        np.testing.assert_array_equal(ds.observations[i, :T], traj["observations"])
        np.testing.assert_array_equal(ds.actions[i, :T], traj["actions"])
        np.testing.assert_array_equal(ds.rewards[i, :T], traj["rewards"])
        np.testing.assert_array_equal(ds.behavior_pscore[i, :T], traj["behavior_pscore"])
        np.testing.assert_array_equal(ds.behavior_action_probs[i, :T], traj["behavior_action_probs"])
    # fill values on the padding: observation 0, action 0, reward 0, pscore 1, probs 0
    pad = ~ds.mask
    assert (ds.observations[pad] == 0).all() and (ds.actions[pad] == 0).all()
    assert (ds.rewards[pad] == 0.0).all() and (ds.behavior_pscore[pad] == 1.0).all()
    assert (ds.behavior_action_probs[pad] == 0.0).all() and not ds.terminals[pad].any()
    assert ds.rewards.dtype == np.float64 and ds.behavior_pscore.dtype == np.float64
    assert ds.behavior_action_probs.dtype == np.float64
    assert ds.observations.dtype == np.asarray(trajs[0]["observations"]).dtype


def test_from_trajectories_explicit_horizon() -> None:
    ds = LoggedDataset.from_trajectories([trajectory(2, probs=False), trajectory(4, probs=False)], INFO, horizon=6)
    assert ds.horizon == 6 and ds.behavior_action_probs is None
    assert ds.lengths.tolist() == [2, 4]
    np.testing.assert_array_equal(ds.mask.sum(axis=1), ds.lengths)
    assert not ds.mask[:, 4:].any()


def test_from_trajectories_multidimensional_observations(make_continuous_trajectories) -> None:
    info = DatasetInfo(task="c", gamma=0.5, action_space=ActionSpace.continuous(2))
    trajs = make_continuous_trajectories((1, 3))
    ds = LoggedDataset.from_trajectories(trajs, info)
    assert ds.observations.shape == (2, 3, 3) and ds.actions.shape == (2, 3, 2) and ds.obs_shape == (3,)
    np.testing.assert_array_equal(ds.observations[0, 1:], 0.0)
    np.testing.assert_array_equal(ds.observations[1], trajs[1]["observations"])
    np.testing.assert_array_equal(ds.terminals, [[True, False, False], [False, False, False]])


def test_from_trajectories_rebuilds_a_collected_dataset(grid_ds: LoggedDataset) -> None:
    trajs = []
    for i, T in enumerate(grid_ds.lengths.tolist()):
        trajs.append(
            dict(
                observations=grid_ds.observations[i, :T],
                actions=grid_ds.actions[i, :T],
                rewards=grid_ds.rewards[i, :T],
                behavior_pscore=grid_ds.behavior_pscore[i, :T],
                behavior_action_probs=grid_ds.behavior_action_probs[i, :T],
                terminal=bool(grid_ds.terminals[i, T - 1]),
            )
        )
    rebuilt = LoggedDataset.from_trajectories(trajs, grid_ds.info, horizon=grid_ds.horizon)
    assert rebuilt.equals(grid_ds)


def test_from_trajectories_errors() -> None:
    with pytest.raises(DatasetError, match="trajectories"):
        LoggedDataset.from_trajectories([], INFO)
    with pytest.raises(DatasetError, match="horizon"):
        LoggedDataset.from_trajectories([trajectory(4)], INFO, horizon=3)
    missing = trajectory(2)
    del missing["behavior_pscore"]
    with pytest.raises(DatasetError, match=r"trajectories\[1\].*behavior_pscore"):
        LoggedDataset.from_trajectories([trajectory(2), missing], INFO)
    bad_len = dict(trajectory(3), actions=np.zeros(2, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"trajectories\[0\]\.actions"):
        LoggedDataset.from_trajectories([bad_len], INFO)
    bad_obs = dict(trajectory(2), observations=np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(DatasetError, match=r"trajectories\[1\]\.observations"):
        LoggedDataset.from_trajectories([trajectory(2), bad_obs], INFO)
    with pytest.raises(DatasetError, match="mask"):  # an empty trajectory
        LoggedDataset.from_trajectories([trajectory(2), trajectory(0)], INFO)
    bad_pscore = dict(trajectory(2), behavior_pscore=[0.2, 0.9])  # disagrees with the probs
    with pytest.raises(DatasetError, match="behavior_pscore"):
        LoggedDataset.from_trajectories([bad_pscore], INFO)


def test_from_trajectories_inconsistent_probs_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match=r"trajectories\[1\]"):
        LoggedDataset.from_trajectories([trajectory(2), trajectory(2, probs=False)], INFO)


def test_from_trajectories_does_not_drop_later_probs() -> None:
    try:
        ds = LoggedDataset.from_trajectories([trajectory(2, probs=False), trajectory(2)], INFO)
    except DatasetError:
        return  # refusing the inconsistency is the expected behaviour
    assert ds.behavior_action_probs is not None


def test_from_trajectories_does_not_truncate_later_trajectories() -> None:
    second = dict(trajectory(2, probs=False), observations=np.array([0.5, 1.5]))
    try:
        ds = LoggedDataset.from_trajectories([trajectory(2, probs=False), second], INFO)
    except DatasetError:
        return  # refusing mixed dtypes would be fine too
    np.testing.assert_array_equal(ds.observations[1], [0.5, 1.5])


# ---------------------------------------------------------------------------------------------- returns
def hand_returns(ds: LoggedDataset, gamma: float) -> tuple[list[float], list[list[float]]]:
    returns, discounted = [], []
    for i in range(ds.n_trajectories):
        row, total, discount = [], 0.0, 1.0
        for t in range(ds.horizon):
            if not ds.mask[i, t]:
                row.append(0.0)
                continue
            row.append(discount * float(ds.rewards[i, t]))
            total += discount * float(ds.rewards[i, t])
            discount *= gamma
        returns.append(total)
        discounted.append(row)
    return returns, discounted


@pytest.mark.parametrize("gamma", [None, 0.0, 0.5, 1.0])
def test_returns_match_a_hand_written_loop(grid_ds: LoggedDataset, gamma: float | None) -> None:
    ds = grid_ds if gamma is None else grid_ds.with_info(gamma=gamma)
    g = ds.gamma
    returns, discounted = hand_returns(ds, g)
    assert ds.returns.shape == (ds.n_trajectories,) and ds.discounted_rewards.shape == (ds.n_trajectories, ds.horizon)
    np.testing.assert_allclose(ds.returns, returns, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds.discounted_rewards, discounted, rtol=1e-12, atol=1e-12)
    assert ds.mean_return() == pytest.approx(sum(returns) / len(returns), rel=1e-12, abs=1e-12)
    assert isinstance(ds.mean_return(), float)
    # padding contributes nothing, and the discount restarts at every trajectory
    assert (ds.discounted_rewards[~ds.mask] == 0).all() and (ds.discounts[~ds.mask] == 0).all()
    np.testing.assert_array_equal(ds.discounts[:, 0], 1.0)
    for name in ("returns", "discounted_rewards", "discounts"):
        assert not getattr(ds, name).flags.writeable


def test_returns_of_a_tiny_dataset_by_hand() -> None:
    ds = LoggedDataset.from_trajectories(
        [trajectory(3, probs=False), trajectory(1, probs=False, terminal=True, offset=2)],
        dataclasses.replace(INFO, gamma=0.5),
    )
    np.testing.assert_array_equal(ds.rewards, [[-1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ds.returns, [-1 + 0.5 * 0 + 0.25 * 1, 1.0])
    assert ds.mean_return() == pytest.approx((-0.75 + 1.0) / 2)
