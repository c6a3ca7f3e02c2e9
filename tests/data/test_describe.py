"""``opelab.data.describe``: dataset statistics, TQ and SACo (Schweighofer et al. 2022) on hand-built data."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.describe import DatasetSummary, describe, format_number, format_share


def traj(obs: Any, actions: Any, rewards: Any, pscore: Any, terminal: bool = False) -> dict[str, Any]:
    return dict(
        observations=np.asarray(obs),
        actions=np.asarray(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        behavior_pscore=np.asarray(pscore, dtype=np.float64),
        terminal=terminal,
    )


def discrete_info(k: int = 3, gamma: float = 0.5, **kwargs: Any) -> DatasetInfo:
    return DatasetInfo(task="toy", gamma=gamma, action_space=ActionSpace.discrete(k), **kwargs)


def five_trajectories(**info: Any) -> LoggedDataset:
    """gamma 0.5, 3 actions, lengths [3, 2, 1, 4, 2] padded to horizon 6.

    discounted returns:   T0 2 + .5·2 + .25·4 = 4;  T1 4;  T2 0;  T3 8;  T4 10 + .5·4 = 12
    undiscounted returns: T0 8;  T1 4;  T2 0;  T3 8;  T4 14
    unique (s, a): (0,0) (1,1) (2,0) (1,0) (0,1) (2,1) = 6
    """
    trajectories = [
        traj([0, 1, 2], [0, 1, 0], [2, 2, 4], [0.5, 0.5, 0.5], terminal=True),
        traj([0, 1], [0, 0], [4, 0], [0.5, 0.005]),
        traj([0], [1], [0], [0.25], terminal=True),
        traj([1, 1, 1, 2], [0, 1, 0, 1], [8, 0, 0, 0], [1.0, 0.5, 0.5, 0.5]),
        traj([2, 2], [0, 0], [10, 4], [0.5, 0.5]),
    ]
    return LoggedDataset.from_trajectories(trajectories, discrete_info(behavior_policy="eps-greedy", **info), horizon=6)


@pytest.fixture(scope="module")
def ds() -> LoggedDataset:
    return five_trajectories()


@pytest.fixture(scope="module")
def summary(ds: LoggedDataset) -> DatasetSummary:
    return describe(ds)


# ---------------------------------------------------------------------------------------------- basic statistics
def test_size_and_lengths(summary: DatasetSummary) -> None:
    assert (summary.task, summary.behavior_policy, summary.gamma) == ("toy", "eps-greedy", 0.5)
    assert (summary.n_trajectories, summary.n_transitions, summary.horizon) == (5, 12, 6)  # 3+2+1+4+2 = 12
    assert (summary.length_min, summary.length_max) == (1, 4)
    assert summary.length_mean == pytest.approx(12 / 5)
    assert summary.terminated_share == pytest.approx(2 / 5)  # T0 and T2


def test_returns(summary: DatasetSummary) -> None:
    # discounted returns sorted [0, 4, 4, 8, 12]: mean 28/5 = 5.6
    assert summary.return_mean == pytest.approx(5.6)
    # squared deviations 31.36 + 2.56 + 2.56 + 5.76 + 40.96 = 83.2, population variance 16.64
    assert summary.return_std == pytest.approx(math.sqrt(16.64))
    assert (summary.return_min, summary.return_max) == (0.0, 12.0)
    # linear interpolation at position 4q/100: p5 -> 0.2 (0 + .2·4), p25 -> 1, p50 -> 2, p75 -> 3, p95 -> 3.8 (8 + .8·4)
    assert summary.return_p5 == pytest.approx(0.8)
    assert (summary.return_p25, summary.return_median, summary.return_p75) == pytest.approx((4.0, 4.0, 8.0))
    assert summary.return_p95 == pytest.approx(11.2)
    assert summary.undiscounted_return_mean == pytest.approx(34 / 5)  # (8 + 4 + 0 + 8 + 14) / 5


def test_discrete_action_coverage(summary: DatasetSummary) -> None:
    assert summary.action_type == "discrete" and summary.n_actions == 3 and summary.action_dim is None
    # action 0: 2 + 2 + 0 + 2 + 2 = 8, action 1: 1 + 0 + 1 + 2 + 0 = 4, action 2 never (padding's 0s not counted)
    assert summary.action_counts == (8, 4, 0)
    assert summary.action_shares == pytest.approx((8 / 12, 4 / 12, 0.0))
    assert summary.n_actions_never_taken == 1
    assert summary.action_min is None and summary.action_mean is None and summary.action_max is None
    assert summary.action_share_at_low is None and summary.action_share_at_high is None


def test_discrete_pscores(summary: DatasetSummary) -> None:
    # logged pscores: 0.005, 0.25, nine times 0.5, 1.0 (the padding's 1.0s are not counted)
    assert summary.pscore_min == 0.005 and summary.pscore_max == 1.0
    assert summary.pscore_median == 0.5  # 6th and 7th of 12 sorted values are both 0.5
    assert summary.pscore_share_small == pytest.approx(1 / 12)
    assert summary.pscore_estimated is False
    assert describe(five_trajectories(pscore_estimated=True)).pscore_estimated is True


def test_continuous_actions_with_bounds() -> None:
    info = DatasetInfo(
        task="cont",
        gamma=1.0,
        action_space=ActionSpace.continuous(2, low=(-1, -1), high=(1, 1)),
        behavior_policy="gauss",
    )
    trajectories = [
        traj([[0.0], [0.5], [1.0]], [[-1.0, 0.5], [0.2, 1.0], [1.0, 1.0]], [1, 1, 1], [2.0, 0.5, 1.5]),
        traj([[0.25]], [[-0.2, -0.5]], [3], [3.0]),
    ]
    s = describe(LoggedDataset.from_trajectories(trajectories, info, horizon=4))
    assert s.action_type == "continuous" and s.action_dim == 2 and s.n_actions is None
    assert s.action_counts is None and s.action_shares is None and s.n_actions_never_taken is None
    assert s.action_min == pytest.approx((-1.0, -0.5))
    assert s.action_mean == pytest.approx((0.0, 0.5))  # (-1 + .2 + 1 - .2) / 4, (.5 + 1 + 1 - .5) / 4
    assert s.action_max == pytest.approx((1.0, 1.0))
    assert s.action_share_at_low == pytest.approx((0.25, 0.0))  # only the first step's dim 0 sits at -1
    assert s.action_share_at_high == pytest.approx((0.25, 0.5))
    # densities [2, .5, 1.5, 3]: median (1.5 + 2) / 2; no "pscore < 0.01" share for densities
    assert (s.pscore_min, s.pscore_median, s.pscore_max) == pytest.approx((0.5, 1.75, 3.0))
    assert s.pscore_share_small is None
    # SACo grid, 2 bins: obs over [0, 1] -> 0, 1, 1 (top edge), 0; dim 0 over [-1, 1] -> 0, 1, 1, 0;
    # dim 1 over [-.5, 1] -> 1, 1, 1, 0: keys (0,0,1) (1,1,1) (1,1,1) (0,0,0) -> 3 unique
    s2 = describe(LoggedDataset.from_trajectories(trajectories, info), bins=2)
    assert s2.unique_state_actions == 3 and s2.saco_bins == 2 and s2.saco is None
    # returns: gamma 1, [3, 3] -> every return statistic 3, std 0
    assert (s.return_mean, s.return_std, s.return_p5, s.return_p95) == (3.0, 0.0, 3.0, 3.0)


def test_continuous_actions_without_bounds() -> None:
    info = DatasetInfo(task="cont", gamma=1.0, action_space=ActionSpace.continuous(1))
    s = describe(LoggedDataset.from_trajectories([traj([[0.0], [1.0]], [[5.0], [-5.0]], [0, 0], [1.0, 1.0])], info))
    assert s.action_share_at_low is None and s.action_share_at_high is None
    assert s.action_min == (-5.0,) and s.action_mean == (0.0,) and s.action_max == (5.0,)


# ---------------------------------------------------------------------------------------------- TQ
def test_tq_mean_five_between_zero_and_ten() -> None:
    # gamma 1: returns 4 and 6, mean 5 -> (5 - 0) / (10 - 0) = 0.5
    ds = LoggedDataset.from_trajectories(
        [traj([0, 1], [0, 1], [1, 3], [0.5, 0.5]), traj([0], [0], [6], [0.5])], discrete_info(2, gamma=1.0)
    )
    s = describe(ds, random_return=0.0, expert_return=10.0)
    assert s.tq == pytest.approx(0.5)
    assert (s.random_return, s.expert_return, s.tq_discounted) == (0.0, 10.0, False)


def test_tq_undiscounted_by_default_discounted_on_request(ds: LoggedDataset) -> None:
    # undiscounted mean 6.8: (6.8 - 2) / (12 - 2) = 0.48; discounted mean 5.6: (5.6 - 2) / 10 = 0.36
    assert describe(ds, random_return=2, expert_return=12).tq == pytest.approx(0.48)
    s = describe(ds, random_return=2, expert_return=12, discounted=True)
    assert s.tq == pytest.approx(0.36) and s.tq_discounted is True
    # an expert below random still divides by a non-zero gap: (6.8 - 10) / (0 - 10) = 0.32
    assert describe(ds, random_return=10, expert_return=0).tq == pytest.approx(0.32)


def test_tq_none_without_both_returns(summary: DatasetSummary, ds: LoggedDataset) -> None:
    assert summary.tq is None and summary.random_return is None and summary.expert_return is None
    assert describe(ds, random_return=0.0).tq is None
    assert describe(ds, expert_return=10.0).tq is None


def test_tq_expert_equal_random_raises(ds: LoggedDataset) -> None:
    message = r"expert_return: expected a value different from random_return \(3.0\), found 3.0"
    with pytest.raises(ValueError, match=message):
        describe(ds, random_return=3.0, expert_return=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(random_return=float("nan"), expert_return=1.0), "random_return: expected a finite real number"),
        (dict(random_return=0.0, expert_return="10"), "expert_return: expected a finite real number or None, found '1"),
        (dict(bins=0), "bins: expected a positive int, found 0"),
        (dict(bins=2.5), "bins: expected a positive int, found 2.5"),
        (dict(discounted=1), "discounted: expected a bool, found 1"),
        (dict(reference="data"), "reference: expected a LoggedDataset or None, found str"),
    ],
)
def test_bad_arguments(ds: LoggedDataset, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        describe(ds, **kwargs)


def test_dataset_must_be_a_logged_dataset() -> None:
    with pytest.raises(ValueError, match="dataset: expected a LoggedDataset, found dict"):
        describe({})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- SACo
def three_pairs() -> LoggedDataset:
    """Pairs (1,1) (1,0) (2,0) on logged steps; the padding (obs 0, action 0) would add a 4th pair (0,0)."""
    return LoggedDataset.from_trajectories(
        [traj([1, 1, 2], [1, 0, 0], [0, 0, 0], [0.5] * 3), traj([2], [0], [0], [0.5])], discrete_info(), horizon=5
    )


def test_saco_three_of_six(ds: LoggedDataset, summary: DatasetSummary) -> None:
    assert summary.unique_state_actions == 6 and summary.saco is None
    assert summary.reference_unique_state_actions is None and summary.saco_bins is None
    s = describe(three_pairs(), reference=ds)
    assert s.unique_state_actions == 3  # padding ignored
    assert s.reference_unique_state_actions == 6
    assert s.saco == pytest.approx(0.5)
    assert s.saco_bins is None  # tabular states and discrete actions are counted as they are
    assert describe(ds, reference=ds).saco == 1.0
    assert describe(ds, reference=three_pairs()).saco == 2.0  # pairs outside the reference push SACo above 1


def test_saco_integer_multidimensional_observations() -> None:
    # obs (x, y) ints: ((0,1),0) ((0,1),0) ((1,0),0) ((0,1),1) -> 3 unique
    ds = LoggedDataset.from_trajectories(
        [traj([[0, 1], [0, 1], [1, 0]], [0, 0, 0], [0, 0, 0], [0.5] * 3), traj([[0, 1]], [1], [0], [0.5])],
        discrete_info(2),
    )
    assert describe(ds).unique_state_actions == 3


def float_obs(obs: list[float], actions: list[int]) -> dict[str, Any]:
    return traj(np.asarray(obs)[:, None], actions, np.zeros(len(obs)), np.full(len(obs), 0.5))


def test_saco_continuous_observations_binned() -> None:
    info = discrete_info(2)
    ds = LoggedDataset.from_trajectories(
        [float_obs([0.0, 0.1, 0.6, 1.0], [0, 0, 1, 1]), float_obs([0.2, 0.9], [0, 1])], info, horizon=6
    )
    # alone, 4 bins over [0, 1] (width .25): 0 -> 0, .1 -> 0, .6 -> 2, 1.0 -> 3 (top edge), .2 -> 0, .9 -> 3
    # pairs (0,0) (0,0) (2,1) (3,1) (0,0) (3,1) -> 3 unique
    alone = describe(ds, bins=4)
    assert alone.unique_state_actions == 3 and alone.saco_bins == 4
    # with a reference over [-1, 1], the shared 4 bins have width .5: (x + 1) / 2 · 4
    # dataset: 0 -> 2, .1 -> 2.2, .6 -> 3.2, 1 -> 3, .2 -> 2.4, .9 -> 3.8 -> pairs (2,0) (3,1): 2 unique
    # reference: -1 -> 0, -.4 -> 1.2, .3 -> 2.6, 1 -> 3 -> pairs (0,0) (1,0) (2,1) (3,1): 4 unique
    reference = LoggedDataset.from_trajectories([float_obs([-1.0, -0.4, 0.3, 1.0], [0, 0, 1, 1])], info)
    s = describe(ds, reference=reference, bins=4)
    assert (s.unique_state_actions, s.reference_unique_state_actions) == (2, 4)
    assert s.saco == pytest.approx(0.5)


def test_saco_constant_float_component_has_one_bin() -> None:
    ds = LoggedDataset.from_trajectories([float_obs([0.3, 0.3, 0.3], [0, 1, 1])], discrete_info(2))
    assert describe(ds, bins=7).unique_state_actions == 2


def test_saco_reference_must_match(ds: LoggedDataset) -> None:
    other_actions = LoggedDataset.from_trajectories([traj([0], [3], [0], [0.5])], discrete_info(4))
    message = r"reference: expected the dataset's action space .*n_actions=3.*found .*n_actions=4"
    with pytest.raises(ValueError, match=message):
        describe(ds, reference=other_actions)
    continuous = LoggedDataset.from_trajectories(
        [traj([0], [[0.5]], [0], [1.0])], DatasetInfo(task="toy", gamma=0.5, action_space=ActionSpace.continuous(1))
    )
    with pytest.raises(ValueError, match="reference: expected the dataset's action space"):
        describe(ds, reference=continuous)
    with pytest.raises(ValueError, match=r"reference: expected observations of the dataset's shape \(\), found \(2,\)"):
        describe(ds, reference=LoggedDataset.from_trajectories([traj([[0, 1]], [0], [0], [0.5])], discrete_info()))
    floats = LoggedDataset.from_trajectories([traj([0.5], [0], [0], [0.5])], discrete_info())  # obs_shape () floats
    message = "reference: expected integer observations like the dataset's, found dtype float64"
    with pytest.raises(ValueError, match=message):
        describe(ds, reference=floats)


def test_collected_data_is_consistent(grid_ds: LoggedDataset, continuous_ds: LoggedDataset) -> None:
    s = describe(grid_ds, reference=grid_ds)
    assert sum(s.action_counts or ()) == s.n_transitions == int(grid_ds.mask.sum())
    assert s.return_mean == pytest.approx(grid_ds.mean_return()) and s.saco == 1.0
    ordered = [s.return_min, s.return_p5, s.return_p25, s.return_median, s.return_p75, s.return_p95, s.return_max]
    assert ordered == sorted(ordered)
    c = describe(continuous_ds, bins=3)
    assert c.n_transitions == 9 and c.saco_bins == 3 and 1 <= c.unique_state_actions <= 9
    json.dumps(c.to_dict())


# ---------------------------------------------------------------------------------------------- output
def test_to_dict_is_json_serialisable(ds: LoggedDataset) -> None:
    s = describe(ds, random_return=0.0, expert_return=10.0, reference=three_pairs())
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["action_counts"] == [8, 4, 0] and d["tq"] == pytest.approx(0.68) and d["saco"] == 2.0
    assert set(d) == {f for f in DatasetSummary.__dataclass_fields__}
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in d.values())


def test_to_table_key_rows(ds: LoggedDataset) -> None:
    rows = dict(describe(ds, random_return=0.0, expert_return=10.0, reference=three_pairs()).to_table())
    assert rows["Task"] == "toy" and rows["Behavior policy"] == "eps-greedy" and rows["Discount γ"] == "0.5"
    assert (rows["Trajectories"], rows["Transitions"], rows["Horizon"]) == ("5", "12", "6")
    assert rows["Episode length (min / mean / max)"] == "1 / 2.4 / 4"
    assert rows["Terminated"] == "40%"
    assert rows["Return, discounted (mean ± std)"] == "5.6 ± 4.08"  # sqrt(16.64) = 4.0792
    assert rows["Return, discounted (min / p5 / p25 / median / p75 / p95 / max)"] == "0 / 0.8 / 4 / 4 / 8 / 11.2 / 12"
    assert rows["Return, undiscounted (mean)"] == "6.8"
    assert rows["Action space"] == "discrete, 3 actions"
    assert (rows["Action 0"], rows["Action 1"], rows["Action 2"]) == ("8 (66.7%)", "4 (33.3%)", "0 (0%)")
    assert rows["Actions never taken"] == "1 of 3"
    assert rows["Pscore (min / median / max)"] == "0.005 / 0.5 / 1"
    assert rows["Steps with pscore < 0.01"] == "8.33%"
    assert rows["Pscore estimated"] == "no"
    assert rows["TQ (trajectory quality)"] == "0.68 (undiscounted; random 0, expert 10)"
    assert rows["Unique state-action pairs"] == "6"
    assert rows["SACo (state-action coverage)"] == "2 (reference: 3 pairs)"
    plain = dict(describe(ds).to_table())
    assert plain["TQ (trajectory quality)"].startswith("n/a")
    assert plain["SACo (state-action coverage)"].startswith("n/a")


def test_to_table_continuous_rows() -> None:
    info = DatasetInfo(task="cont", gamma=1.0, action_space=ActionSpace.continuous(1, low=(-1,), high=(1,)))
    ds = LoggedDataset.from_trajectories([traj([[0.0], [1.0]], [[1.0], [0.0]], [0, 0], [1.0, 1.0])], info)
    rows = dict(describe(ds).to_table())
    assert rows["Action space"] == "continuous, 1 dimension"
    assert rows["Action dim 0 (min / mean / max)"] == "0 / 0.5 / 1"
    assert rows["Action dim 0 at bounds (low / high)"] == "0% / 50%"
    assert rows["Unique state-action pairs"] == "2 (10 bins per float dimension)"
    assert "Steps with pscore < 0.01" not in rows


def test_to_table_many_actions_summarised() -> None:
    ds = LoggedDataset.from_trajectories([traj([0, 0], [0, 1], [0, 0], [0.5, 0.5])], discrete_info(30))
    rows = dict(describe(ds).to_table())
    assert "Action 0" not in rows
    assert rows["Action share (min / median / max)"] == "0% / 0% / 50%"
    assert rows["Actions never taken"] == "28 of 30"


@pytest.mark.parametrize(
    "value, text",
    [
        (1234567, "1,234,567"),
        (np.int64(1000), "1,000"),
        (12345.6, "12,300"),
        (999.6, "1,000"),
        (4.5678, "4.57"),
        (1.5, "1.5"),
        (0.012345, "0.0123"),
        (-0.5, "-0.5"),
        (-12345.6, "-12,300"),
        (0.0, "0"),
        (2e-7, "2.00e-07"),
        (float("inf"), "inf"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_share() -> None:
    shares = (format_share(0.125), format_share(2 / 3), format_share(1.0), format_share(0.0))
    assert shares == ("12.5%", "66.7%", "100%", "0%")
