"""Interop with d3rlpy's MDPDataset and local Minari datasets: exact round trips, layouts and clear errors."""

from __future__ import annotations

import dataclasses
import json
import socket
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.interop import (
    HORIZON_KEY,
    OPELAB_INFO_KEY,
    from_d3rlpy,
    from_minari,
    logged_pscores,
    to_d3rlpy,
    to_minari,
)
from opelab.data.validation import DatasetError
from opelab.envs import chain, collect, gridworld
from opelab.policies import UniformPolicy

with warnings.catch_warnings():  # d3rlpy's import chain warns (gym's notice, deprecations)
    warnings.simplefilter("ignore")
    torch = pytest.importorskip("torch")
    d3rlpy = pytest.importorskip("d3rlpy")
    minari = pytest.importorskip("minari")
    import d3rlpy.dataset
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def tabular_ds() -> LoggedDataset:
    """(a) Variable-length discrete tabular dataset with behavior_action_probs."""
    ds = collect(gridworld(), UniformPolicy(4), 30, seed=0)
    assert ds.behavior_action_probs is not None and ds.obs_shape == ()
    assert len(set(ds.lengths.tolist())) > 1 and ds.terminals.any() and not ds.terminals[ds.mask].all()
    return ds


@pytest.fixture(scope="module")
def fixed_length_ds() -> LoggedDataset:
    """(b) Fixed-length discrete dataset (river-swim chain has no terminal states), no action probabilities."""
    ds = dataclasses.replace(collect(chain(), UniformPolicy(2), 8, seed=1), behavior_action_probs=None)
    assert bool(ds.mask.all()) and not ds.terminals.any()
    return ds


@pytest.fixture(scope="module")
def continuous_obs_ds() -> LoggedDataset:
    """(c) Continuous actions (dim 2, bounded), float observations (n, H, 3), lengths [4, 2, 3], horizon 5."""
    rng = np.random.default_rng(5)
    trajectories = [
        dict(
            observations=rng.normal(size=(T, 3)),
            actions=rng.uniform(-1, 1, size=(T, 2)),
            rewards=rng.normal(size=T),
            behavior_pscore=rng.uniform(0.05, 3.0, size=T),  # densities, some above 1
            terminal=(i == 0),
        )
        for i, T in enumerate((4, 2, 3))
    ]
    info = DatasetInfo(
        task="toy-continuous",
        gamma=0.97,
        action_space=ActionSpace.continuous(2, low=[-1.0, -1.0], high=[1.0, 1.0]),
        behavior_policy="gauss",
        seed=11,
    )
    ds = LoggedDataset.from_trajectories(trajectories, info, horizon=5)
    assert ds.observations.shape == (3, 5, 3) and ds.actions.shape == (3, 5, 2)
    return ds


@pytest.fixture(params=["grid", "fixed", "continuous"])
def any_ds(
    request: pytest.FixtureRequest,
    tabular_ds: LoggedDataset,
    fixed_length_ds: LoggedDataset,
    continuous_obs_ds: LoggedDataset,
) -> LoggedDataset:
    return {"grid": tabular_ds, "fixed": fixed_length_ds, "continuous": continuous_obs_ds}[request.param]


def assert_identical(back: LoggedDataset, ds: LoggedDataset) -> None:
    assert back.equals(ds)
    for name in ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs"):
        x, y = getattr(back, name), getattr(ds, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        np.testing.assert_array_equal(x, y, err_msg=name)


def probs_of(ds: LoggedDataset) -> np.ndarray | None:
    return None if ds.behavior_action_probs is None else ds.behavior_action_probs[ds.mask]


# ------------------------------------------------------------------------------------------------ d3rlpy
def test_logged_pscores_is_flat_in_trajectory_order(tabular_ds: LoggedDataset) -> None:
    flat = logged_pscores(tabular_ds)
    assert flat.shape == (tabular_ds.n_transitions,) and flat.dtype == np.float64
    expected = np.concatenate([tabular_ds.behavior_pscore[i, :T] for i, T in enumerate(tabular_ds.lengths)])
    np.testing.assert_array_equal(flat, expected)


def test_d3rlpy_round_trip_is_exact(any_ds: LoggedDataset) -> None:
    mdp = to_d3rlpy(any_ds)
    back = from_d3rlpy(
        mdp,
        behavior_pscore=logged_pscores(any_ds),
        info=any_ds.info,
        behavior_action_probs=probs_of(any_ds),
        horizon=any_ds.horizon,
    )
    assert_identical(back, any_ds)


def test_d3rlpy_round_trip_with_padded_or_per_episode_pscores(
    tabular_ds: LoggedDataset, continuous_obs_ds: LoggedDataset
) -> None:
    # padded (n, H) arrays also carry the horizon (continuous_obs_ds is padded past its longest trajectory)
    for ds in (tabular_ds, continuous_obs_ds):
        back = from_d3rlpy(
            to_d3rlpy(ds),
            behavior_pscore=ds.behavior_pscore,
            info=ds.info,
            behavior_action_probs=ds.behavior_action_probs,
        )
        assert_identical(back, ds)
    per_episode = [tabular_ds.behavior_pscore[i, :T] for i, T in enumerate(tabular_ds.lengths)]
    probs = [tabular_ds.behavior_action_probs[i, :T] for i, T in enumerate(tabular_ds.lengths)]
    back = from_d3rlpy(
        to_d3rlpy(tabular_ds),
        behavior_pscore=per_episode,
        info=tabular_ds.info,
        behavior_action_probs=probs,
        horizon=tabular_ds.horizon,
    )
    assert_identical(back, tabular_ds)


def test_d3rlpy_sees_episodes_transitions_and_action_type(any_ds: LoggedDataset) -> None:
    mdp = to_d3rlpy(any_ds)
    assert isinstance(mdp, d3rlpy.dataset.MDPDataset)
    episodes = mdp.episodes
    assert len(episodes) == any_ds.n_trajectories
    assert [e.size() for e in episodes] == any_ds.lengths.tolist()
    ended_terminal = any_ds.terminals[np.arange(any_ds.n_trajectories), any_ds.lengths - 1]
    assert [e.terminated for e in episodes] == ended_terminal.tolist()
    # d3rlpy drops the last transition of a timed-out episode (no next observation); the steps are all there
    assert mdp.transition_count == any_ds.n_transitions - int((~ended_terminal).sum())
    info = mdp.dataset_info
    space = any_ds.action_space
    if space.is_discrete:
        assert info.action_space == d3rlpy.ActionSpace.DISCRETE and info.action_size == space.n_actions
        assert episodes[0].actions.dtype.kind in "iu" and episodes[0].actions.shape == (any_ds.lengths[0], 1)
    else:
        assert info.action_space == d3rlpy.ActionSpace.CONTINUOUS and info.action_size == space.action_dim
        assert episodes[0].actions.shape == (any_ds.lengths[0], space.action_dim)
    T0 = int(any_ds.lengths[0])
    np.testing.assert_array_equal(episodes[0].rewards[:, 0], any_ds.rewards[0, :T0])
    assert episodes[0].rewards.shape == (T0, 1) and episodes[0].rewards.dtype == np.float64


def test_d3rlpy_gets_a_feature_axis_for_state_ids(tabular_ds: LoggedDataset) -> None:
    mdp = to_d3rlpy(tabular_ds)
    obs = mdp.episodes[0].observations
    assert obs.shape == (tabular_ds.lengths[0], 1) and obs.dtype == tabular_ds.observations.dtype
    np.testing.assert_array_equal(obs[:, 0], tabular_ds.observations[0, : tabular_ds.lengths[0]])
    kept = from_d3rlpy(mdp, behavior_pscore=tabular_ds.behavior_pscore, info=tabular_ds.info, obs_shape=(1,))
    assert kept.obs_shape == (1,)
    np.testing.assert_array_equal(kept.observations[..., 0], tabular_ds.observations)


def test_d3rlpy_without_pscores_is_refused(tabular_ds: LoggedDataset) -> None:
    mdp = to_d3rlpy(tabular_ds)
    expected = r"behavior_pscore.*carries no behavior propensities.*behavior_pscore=.*estimate"
    with pytest.raises(DatasetError, match=expected):
        from_d3rlpy(mdp, info=tabular_ds.info)


def test_d3rlpy_bad_arguments_name_the_field(tabular_ds: LoggedDataset, continuous_obs_ds: LoggedDataset) -> None:
    mdp = to_d3rlpy(tabular_ds)
    N = tabular_ds.n_transitions
    expected = rf"behavior_pscore: expected a flat array of shape \({N},\).*found \({N - 1},\)"
    with pytest.raises(DatasetError, match=expected):
        from_d3rlpy(mdp, behavior_pscore=logged_pscores(tabular_ds)[:-1], info=tabular_ds.info)
    with pytest.raises(DatasetError, match=r"behavior_pscore: expected a list of 30 per-episode arrays.*found 2"):
        from_d3rlpy(mdp, behavior_pscore=[np.ones(1), np.ones(1)], info=tabular_ds.info)
    with pytest.raises(DatasetError, match=r"action_space: expected CONTINUOUS.*'continuous'.*found DISCRETE"):
        from_d3rlpy(mdp, behavior_pscore=logged_pscores(tabular_ds), info=continuous_obs_ds.info)
    with pytest.raises(DatasetError, match=r"action_size: expected at most info.action_space.n_actions = 2, found 4"):
        two_actions = dataclasses.replace(tabular_ds.info, action_space=ActionSpace.discrete(2))
        from_d3rlpy(mdp, behavior_pscore=logged_pscores(tabular_ds), info=two_actions)


def test_d3rlpy_dataset_made_by_d3rlpy_is_read() -> None:
    # d3rlpy's own conventions: float32 observations/rewards, actions detected from the values
    obs = np.arange(10, dtype=np.float32).reshape(5, 2)
    mdp = d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=np.array([0, 1, 1, 0, 2]),
        rewards=np.array([1, 0, 0, 1, 1], dtype=np.float32),
        terminals=np.array([0, 1, 0, 0, 0], dtype=np.float32),
        timeouts=np.array([0, 0, 0, 0, 1], dtype=np.float32),
    )
    info = DatasetInfo(task="d3", gamma=0.9, action_space=ActionSpace.discrete(3))
    ds = from_d3rlpy(mdp, behavior_pscore=np.full(5, 1 / 3), info=info)
    assert ds.lengths.tolist() == [2, 3] and ds.horizon == 3
    assert ds.terminals.tolist() == [[False, True, False], [False, False, False]]
    assert ds.observations.dtype == np.float32 and ds.obs_shape == (2,)
    assert ds.actions.tolist() == [[0, 1, 0], [1, 0, 2]] and ds.actions.dtype.kind == "i"
    assert ds.rewards.dtype == np.float64


# ------------------------------------------------------------------------------------------------ Minari
@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local Minari storage under tmp_path, with every network connection refused (nothing may download)."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return root


def test_minari_round_trip_is_exact(any_ds: LoggedDataset, minari_root: Path) -> None:
    created = to_minari(any_ds, "opelab-roundtrip-v0")
    assert Path(created.storage.data_path).resolve().is_relative_to(minari_root.resolve())
    assert created.total_episodes == any_ds.n_trajectories and created.total_steps == any_ds.n_transitions
    assert_identical(from_minari(created), any_ds)
    assert_identical(from_minari("opelab-roundtrip-v0"), any_ds)  # by id, from local storage


def test_minari_arrow_storage_restores_dtypes(tabular_ds: LoggedDataset, minari_root: Path) -> None:
    narrow = dataclasses.replace(
        tabular_ds, observations=tabular_ds.observations.astype(np.int32), actions=tabular_ds.actions.astype(np.int32)
    )
    created = to_minari(narrow, "opelab/narrow-v1", data_format="arrow")
    episode = next(created.iterate_episodes())
    assert episode.observations.dtype == np.int64  # Arrow stores Discrete as the space's int64
    assert_identical(from_minari(created), narrow)


def test_minari_layout(any_ds: LoggedDataset, minari_root: Path) -> None:
    created = to_minari(any_ds, "opelab-layout-v0")
    space = any_ds.action_space
    if space.is_discrete:
        assert created.action_space == spaces.Discrete(space.n_actions)
        n_states = int(any_ds.observations[any_ds.mask].max()) + 1
        assert created.observation_space == spaces.Discrete(n_states)
    else:
        assert isinstance(created.action_space, spaces.Box) and created.action_space.shape == (space.action_dim,)
        np.testing.assert_array_equal(created.action_space.low, space.low)
        assert isinstance(created.observation_space, spaces.Box) and created.observation_space.shape == any_ds.obs_shape
    metadata = created.storage.metadata
    assert DatasetInfo.from_json(metadata[OPELAB_INFO_KEY]) == any_ds.info
    assert json.loads(metadata[OPELAB_INFO_KEY]) == json.loads(any_ds.info.to_json())
    assert metadata[HORIZON_KEY] == any_ds.horizon and metadata["algorithm_name"] == any_ds.info.behavior_policy
    for i, episode in enumerate(created.iterate_episodes()):
        T = int(any_ds.lengths[i])
        assert len(episode) == T and len(episode.observations) == T + 1
        np.testing.assert_array_equal(episode.observations[:T], any_ds.observations[i, :T])
        np.testing.assert_array_equal(episode.observations[T], any_ds.observations[i, T - 1])  # repeated
        np.testing.assert_array_equal(episode.actions, any_ds.actions[i, :T])
        np.testing.assert_array_equal(episode.rewards, any_ds.rewards[i, :T])
        terminal = bool(any_ds.terminals[i, T - 1])
        assert episode.terminations.tolist() == [False] * (T - 1) + [terminal]
        assert episode.truncations.tolist() == [False] * (T - 1) + [not terminal]
        pscore = np.asarray(episode.infos["behavior_pscore"])
        assert pscore.shape == (T + 1,) and pscore[T] == 1.0
        np.testing.assert_array_equal(pscore[:T], any_ds.behavior_pscore[i, :T])
        if any_ds.behavior_action_probs is not None:
            probs = episode.infos["behavior_action_probs"]
            assert probs.shape == (T + 1, space.n_actions) and not probs[T].any()
            np.testing.assert_array_equal(probs[:T], any_ds.behavior_action_probs[i, :T])
        else:
            assert "behavior_action_probs" not in episode.infos


def _foreign_minari(dataset_id: str, infos: dict[str, Any] | None) -> Any:
    """A Minari dataset made with Minari's own API (no opelab metadata): two discrete episodes."""
    buffers = [
        EpisodeBuffer(
            observations=np.array([0, 1, 2]),
            actions=np.array([1, 0]),
            rewards=np.array([0.5, 1.0]),
            terminations=np.array([False, True]),
            truncations=np.array([False, False]),
            infos=infos,
        ),
        EpisodeBuffer(
            observations=np.array([2, 1, 1, 0]),
            actions=np.array([0, 0, 1]),
            rewards=np.array([0.0, 0.0, 2.0]),
            terminations=np.array([False, False, False]),
            truncations=np.array([False, False, True]),
            infos=None if infos is None else {k: [0.5] * 4 for k in infos},
        ),
    ]
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        observation_space=spaces.Discrete(3),
        action_space=spaces.Discrete(2),
        algorithm_name="coin",
        author="opelab tests",
        author_email="tests@opelab.invalid",
        code_permalink="https://example.invalid/opelab",
        description="foreign",
        eval_env=None,
    )


@pytest.mark.filterwarnings("ignore:`eval_env` is set to None:UserWarning")
@pytest.mark.filterwarnings("ignore:env_spec is None:UserWarning")
def test_minari_without_pscores_is_refused(minari_root: Path) -> None:
    created = _foreign_minari("foreign-nopscore-v0", infos=None)
    expected = r"infos: expected the key 'behavior_pscore'.*found keys \[\].*behavior_pscore=.*estimate"
    with pytest.raises(DatasetError, match=expected):
        from_minari(created)


@pytest.mark.filterwarnings("ignore:`eval_env` is set to None:UserWarning")
@pytest.mark.filterwarnings("ignore:env_spec is None:UserWarning")
def test_minari_foreign_dataset_gets_an_info_from_its_spaces(minari_root: Path) -> None:
    created = _foreign_minari("foreign-pscore-v0", infos={"behavior_pscore": [0.5, 0.5, 0.5]})
    ds = from_minari(created)
    derived = DatasetInfo(
        task="foreign-pscore-v0", gamma=1.0, action_space=ActionSpace.discrete(2), behavior_policy="coin"
    )
    assert ds.info == derived
    assert ds.lengths.tolist() == [2, 3] and ds.observations.tolist() == [[0, 1, 0], [2, 1, 1]]
    assert ds.terminals.tolist() == [[False, True, False], [False, False, False]]
    np.testing.assert_array_equal(ds.behavior_pscore[ds.mask], 0.5)
    given = DatasetInfo(task="coin-flip", gamma=0.9, action_space=ActionSpace.discrete(2))
    assert from_minari(created, info=given, horizon=6).info == given
    expected = r"action_space: expected Discrete\(5\).*found the Minari space Discrete\(2\)"
    with pytest.raises(DatasetError, match=expected):
        from_minari(created, info=dataclasses.replace(given, action_space=ActionSpace.discrete(5)))


def test_minari_missing_dataset_is_not_downloaded(minari_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found locally"):
        from_minari("nowhere-v0")
    expected = r"minari_dataset_or_id: expected a MinariDataset or a dataset id, found int"
    with pytest.raises(DatasetError, match=expected):
        from_minari(3)  # type: ignore[arg-type]
