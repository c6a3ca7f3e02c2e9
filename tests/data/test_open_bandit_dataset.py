"""``read_open_bandit_dataset`` on a small file written in the Open Bandit Dataset's published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import LabelEncoder

from opelab.data import DatasetError, LoggedDataset, read_open_bandit_dataset

N_ITEMS, N_AFFINITY = 4, 3


def write_obd(root: Path, behavior_policy: str = "random", campaign: str = "men", n: int = 12, seed: int = 0) -> pd.DataFrame:
    """``<root>/<behavior_policy>/<campaign>/{<campaign>.csv, item_context.csv}`` with the published columns
    (and their unnamed index column); rows are written out of time order. Returns the log as written."""
    rng = np.random.default_rng(seed)
    folder = root / behavior_policy / campaign
    folder.mkdir(parents=True)
    hashes = [f"{h:032x}" for h in rng.integers(0, 2**62, size=6)]
    seconds = rng.permutation(n) * 7
    log = pd.DataFrame(
        {
            "timestamp": [f"2019-11-24 00:{s // 60:02d}:{s % 60:02d}.{rng.integers(0, 10**6):06d}+00:00" for s in seconds],
            "item_id": rng.integers(0, N_ITEMS, size=n),
            "position": rng.integers(1, 4, size=n),
            "click": rng.integers(0, 2, size=n),
            "propensity_score": np.full(n, 1 / (N_ITEMS * 3)),
            **{f"user_feature_{k}": rng.choice(hashes[k : k + 3], size=n) for k in range(4)},
            **{f"user-item_affinity_{k}": rng.integers(0, 3, size=n).astype(float) for k in range(N_AFFINITY)},
        }
    )
    log.to_csv(folder / f"{campaign}.csv")  # with the index column, as the published files
    items = pd.DataFrame(
        {
            "item_id": np.arange(N_ITEMS),
            "item_feature_0": rng.normal(size=N_ITEMS),
            "item_feature_1": rng.choice(hashes[:2], size=N_ITEMS),
            "item_feature_2": rng.choice(hashes[2:5], size=N_ITEMS),
            "item_feature_3": rng.choice(hashes[4:], size=N_ITEMS),
        }
    )
    items.iloc[::-1].to_csv(folder / "item_context.csv")  # item order in the file does not matter
    return log


@pytest.fixture
def obd(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return tmp_path, write_obd(tmp_path)


def test_fields_follow_obps_preprocessing(obd) -> None:
    root, log = obd
    ds = read_open_bandit_dataset(root, "random", "men")
    order = np.argsort(pd.to_datetime(log["timestamp"]).to_numpy(), kind="stable")
    by_time = log.iloc[order].reset_index(drop=True)
    assert (ds.n_trajectories, ds.horizon) == (len(log), 1)
    np.testing.assert_array_equal(ds.actions[:, 0], by_time["item_id"])
    np.testing.assert_array_equal(ds.positions[:, 0], by_time["position"] - 1)
    np.testing.assert_array_equal(ds.rewards[:, 0], by_time["click"])
    np.testing.assert_array_equal(ds.behavior_pscore[:, 0], by_time["propensity_score"])
    # OBP: pd.get_dummies(user features, drop_first=True)
    dummies = pd.get_dummies(by_time[[f"user_feature_{k}" for k in range(4)]], drop_first=True).to_numpy(dtype=float)
    np.testing.assert_array_equal(ds.observations[:, 0], dummies)
    # OBP: item_feature_1..3 label-encoded, then item_feature_0
    items = pd.read_csv(root / "random" / "men" / "item_context.csv", index_col=0).sort_values("item_id")
    encoded = items[["item_feature_1", "item_feature_2", "item_feature_3"]].apply(LabelEncoder().fit_transform)
    expected = np.column_stack([encoded.to_numpy(dtype=float), items["item_feature_0"].to_numpy()])
    np.testing.assert_array_equal(ds.info.action_features, expected)
    info = ds.info
    assert (info.task, info.behavior_policy, info.len_list, info.gamma) == ("obd/random/men", "random", 3, 1.0)
    assert ds.action_space.n_actions == N_ITEMS and not info.slate and ds.terminals.all()


def test_include_affinity_appends_the_affinity_columns(obd) -> None:
    root, log = obd
    plain = read_open_bandit_dataset(root, "random", "men")
    wide = read_open_bandit_dataset(root, "random", "men", include_affinity=True)
    d = plain.obs_shape[0]
    assert wide.obs_shape == (d + N_AFFINITY,)
    np.testing.assert_array_equal(wide.observations[:, 0, :d], plain.observations[:, 0])
    order = np.argsort(pd.to_datetime(log["timestamp"]).to_numpy(), kind="stable")
    affinity = log[[f"user-item_affinity_{k}" for k in range(N_AFFINITY)]].to_numpy()[order]
    np.testing.assert_array_equal(wide.observations[:, 0, d:], affinity)


def test_round_trips_through_obp_and_parquet(obd, tmp_path: Path) -> None:
    root, _ = obd
    ds = read_open_bandit_dataset(root, "random", "men")
    bandit_feedback = ds.to_obp()
    assert bandit_feedback["position"].max() <= 2 and bandit_feedback["action_context"].shape == (N_ITEMS, 4)
    assert LoggedDataset.from_obp(bandit_feedback).equals(ds)
    ds.to_parquet(tmp_path / "obd.parquet")
    assert LoggedDataset.read_parquet(tmp_path / "obd.parquet").equals(ds)


def test_bts_and_campaign_folders(tmp_path: Path) -> None:
    write_obd(tmp_path, "bts", "all", seed=1)
    ds = read_open_bandit_dataset(tmp_path, behavior_policy="bts", campaign="all")
    assert ds.info.task == "obd/bts/all" and ds.info.behavior_policy == "bts"


def _corrupt(root: Path, name: str, column: str, row: int, value) -> None:
    path = root / "random" / "men" / name
    frame = pd.read_csv(path, index_col=0)
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[row], column] = value
    frame.to_csv(path)


@pytest.mark.parametrize(
    "file, column, row, value, match",
    [
        ("men.csv", "position", 2, 4, r"men.csv: column 'position': expected integers in \[1, 3\], found 4 at row 2"),
        ("men.csv", "propensity_score", 1, 0.0, r"men.csv: column 'propensity_score': expected probabilities in \(0, 1\], found 0.0 at row 1"),
        ("men.csv", "item_id", 3, N_ITEMS, r"men.csv: column 'item_id': expected integers in \[0, 3\], found 4 at row 3"),
        ("men.csv", "click", 0, "yes", r"men.csv: column 'click': expected finite numbers, found 'yes' at row 0"),
        ("men.csv", "timestamp", 5, "yesterday", r"men.csv: column 'timestamp': expected dates and times, found 'yesterday' at row 5"),
        ("men.csv", "user_feature_2", 4, np.nan, r"men.csv: column 'user_feature_2': expected a value in every row, found a missing value at row 4"),
        ("item_context.csv", "item_feature_0", 1, "big", r"item_context.csv: column 'item_feature_0': expected finite numbers, found 'big'"),
        ("item_context.csv", "item_id", 0, 1, r"item_context.csv: column 'item_id': expected each id 0..3 once, found a repeated id"),
    ],
)
def test_malformed_files(obd, file: str, column: str, row: int, value, match: str) -> None:
    root, _ = obd
    _corrupt(root, file, column, row, value)
    with pytest.raises(DatasetError, match=match) as info:
        read_open_bandit_dataset(root, "random", "men")
    assert "\n" not in str(info.value)


def test_missing_files_columns_and_bad_arguments(obd) -> None:
    root, _ = obd
    with pytest.raises(DatasetError, match=r"behavior_policy: expected one of \['random', 'bts'\], found 'greedy'"):
        read_open_bandit_dataset(root, "greedy", "men")
    with pytest.raises(DatasetError, match=r"campaign: expected one of \['all', 'men', 'women'\], found 'kids'"):
        read_open_bandit_dataset(root, "random", "kids")
    with pytest.raises(DatasetError, match=r"random/women: expected the folder <path>/random/women of the Open Bandit Dataset"):
        read_open_bandit_dataset(root, "random", "women")
    path = root / "random" / "men" / "men.csv"
    frame = pd.read_csv(path, index_col=0)
    frame.drop(columns=["click"]).to_csv(path)
    with pytest.raises(DatasetError, match=r"men.csv: expected the column 'click', found columns \['timestamp', 'item_id'"):
        read_open_bandit_dataset(root, "random", "men")
    (root / "random" / "men" / "item_context.csv").unlink()
    with pytest.raises(DatasetError, match=r"item_context.csv: expected a file of the Open Bandit Dataset's layout, found nothing there"):
        read_open_bandit_dataset(root, "random", "men")
