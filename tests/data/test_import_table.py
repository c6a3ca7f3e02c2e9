"""Flat tables in: ``opelab.data.dataset_from_table`` and the ``opelab import`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.data import DatasetError, LoggedDataset, dataset_from_table

runner = CliRunner()


def bandit_frame(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "item": rng.integers(0, 4, size=n),
            "click": rng.integers(0, 2, size=n),
            "prop": rng.uniform(0.1, 1.0, size=n),
            "slot": rng.integers(0, 3, size=n),
            "x_0": rng.normal(size=n),
            "x_1": rng.normal(size=n),
            "note": ["n/a"] * n,  # ignored
        }
    )


def trajectory_frame() -> pd.DataFrame:
    """Two users, rows shuffled: u2 has steps 0..2 and ends terminally, u1 steps 0..1."""
    rows = [
        ("u2", 1, 1, 0.5, -0.1, 0.2, 0),
        ("u1", 0, 0, 1.0, -0.5, 0.1, 0),
        ("u2", 0, 2, 0.0, -1.2, 0.3, 0),
        ("u1", 1, 3, 2.0, -900.0, 0.4, 0),
        ("u2", 2, 0, 1.5, -0.7, 0.5, 1),
    ]
    return pd.DataFrame(rows, columns=["user", "t", "a", "r", "logp", "obs", "end"])


# ------------------------------------------------------------------------------------------ library
def test_one_step_table() -> None:
    frame = bandit_frame()
    ds = dataset_from_table(frame, action="item", reward="click", pscore="prop", context_prefix="x_", position="slot")
    n = len(frame)
    assert (ds.n_trajectories, ds.horizon, ds.obs_shape) == (n, 1, (2,))
    np.testing.assert_array_equal(ds.actions[:, 0], frame["item"])
    np.testing.assert_array_equal(ds.rewards[:, 0], frame["click"])
    np.testing.assert_array_equal(ds.behavior_pscore[:, 0], frame["prop"])
    np.testing.assert_array_equal(ds.observations[:, 0], frame[["x_0", "x_1"]].to_numpy())
    np.testing.assert_array_equal(ds.positions[:, 0], frame["slot"])
    assert ds.info.len_list == int(frame["slot"].max()) + 1 and ds.terminals.all()  # a round ends after its step
    assert ds.action_space.n_actions == int(frame["item"].max()) + 1 and ds.info.task == "table" and ds.gamma == 1.0
    same = dataset_from_table(frame, action="item", reward="click", pscore="prop", context=["x_0", "x_1"], position="slot")
    assert same.equals(ds)
    wider = dataset_from_table(frame, action="item", reward="click", pscore="prop", context="x_1", n_actions=9, len_list=5, position="slot")
    assert wider.action_space.n_actions == 9 and wider.info.len_list == 5 and wider.obs_shape == (1,)


def test_trajectories_are_sorted_and_padded() -> None:
    ds = dataset_from_table(
        trajectory_frame(), action="a", reward="r", log_pscore="logp", context=["obs"], trajectory="user", step="t",
        done="end", gamma=0.9, task="users",
    )  # fmt: skip
    assert (ds.n_trajectories, ds.horizon) == (2, 3)  # u1 first (ids sorted), then u2
    assert ds.lengths.tolist() == [2, 3]
    assert ds.actions.tolist() == [[0, 3, 0], [2, 1, 0]]
    np.testing.assert_array_equal(ds.observations[..., 0], [[0.1, 0.4, 0.0], [0.3, 0.2, 0.5]])
    assert ds.terminals.tolist() == [[False, False, False], [False, False, True]]
    np.testing.assert_array_equal(ds.behavior_log_pscore, [[-0.5, -900.0, 0.0], [-1.2, -0.1, -0.7]])
    assert ds.behavior_pscore[0, 1] == 0.0  # exp(-900) underflows; the log keeps it
    assert ds.gamma == 0.9 and ds.info.task == "users"


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    frame = trajectory_frame()
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    kwargs = dict(action="a", reward="r", log_pscore="logp", context=["obs"], trajectory="user", step="t", done="end")
    from_csv = dataset_from_table(tmp_path / "log.csv", **kwargs)
    assert from_csv.info.task == "log"
    assert dataset_from_table(str(tmp_path / "log.parquet"), **kwargs).equals(from_csv)
    assert dataset_from_table(frame, task="log", **kwargs).equals(from_csv)


def test_library_errors_name_the_column() -> None:
    frame = bandit_frame()
    with pytest.raises(DatasetError, match=r"column 'clk' \(reward\): not in the table; its columns are \['item', 'click'"):
        dataset_from_table(frame, action="item", reward="clk", pscore="prop", context_prefix="x_")
    with pytest.raises(DatasetError, match=r"pscore, log_pscore: expected exactly one propensity column, found neither"):
        dataset_from_table(frame, action="item", reward="click", context_prefix="x_")
    with pytest.raises(DatasetError, match=r"context: expected the context columns or a context_prefix \(one of the two\), found both"):
        dataset_from_table(frame, action="item", reward="click", pscore="prop", context=["x_0"], context_prefix="x_")
    with pytest.raises(DatasetError, match=r"table: expected a CSV or Parquet path or a pandas DataFrame, found int"):
        dataset_from_table(3, action="item", reward="click", pscore="prop", context_prefix="x_")
    with pytest.raises(DatasetError, match=r"column 'note' \(context\): expected numbers, found 'n/a' at row 0"):
        dataset_from_table(frame, action="item", reward="click", pscore="prop", context=["x_0", "note"])


# ------------------------------------------------------------------------------------------ CLI
GOOD = ["--action", "a", "--reward", "r", "--pscore", "p", "--context", "x,y"]


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(**columns: list) -> str:
    base = {"a": [0, 1, 2], "r": [1.0, 0.0, 0.5], "p": [0.5, 0.25, 1.0], "x": [0.1, 0.2, 0.3], "y": [1, 2, 3]}
    base.update(columns)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None}).to_csv(index=False)


TRAJ = ["--trajectory", "u", "--step", "s"]
# name -> (table text, extra args replacing/adding to GOOD, text the error line must hold)
BATTERY = {
    "missing column": (_table(), ["--reward", "clicks"], "column 'clicks' (reward): not in the table; its columns are ['a', 'r', 'p', 'x', 'y']"),
    "missing context column": (_table(), ["--context", "x,z"], "column 'z' (context): not in the table"),
    "non-numeric action": (_table(a=[0, "one", 2]), [], "column 'a' (action): expected numbers, found 'one' at row 1"),
    "negative action": (_table(a=[0, -1, 2]), [], "column 'a' (action): expected integers >= 0, found -1 at row 1"),
    "non-integer action": (_table(a=[0, 1.5, 2]), [], "column 'a' (action): expected integers, found 1.5 at row 1"),
    "action beyond n-actions": (_table(), ["--n-actions", "2"], "column 'a' (action): expected integers in [0, 1] (n_actions = 2), found 2 at row 2"),
    "pscore zero": (_table(p=[0.5, 0.0, 1.0]), [], "column 'p' (pscore): expected probabilities in (0, 1], found 0.0 at row 1"),
    "pscore above one": (_table(p=[0.5, 1.2, 1.0]), [], "column 'p' (pscore): expected probabilities in (0, 1], found 1.2 at row 1"),
    "missing reward": ("a,r,p,x,y\n0,1,0.5,0.1,1\n1,,0.5,0.2,2\n", [], "column 'r' (reward): expected a value in every row, found a missing value at row 1"),
    "NaN context": (_table(x=[0.1, 0.2, float("nan")]), [], "column 'x' (context): expected a value in every row, found a missing value at row 2"),
    "non-numeric context": (_table(y=[1, 2, "three"]), [], "column 'y' (context): expected numbers, found 'three' at row 2"),
    "infinite reward": (_table(r=[1.0, float("inf"), 0.0]), [], "column 'r' (reward): expected finite numbers, found inf at row 1"),
    "duplicate step": (_table(u=["a", "a", "b"], s=[0, 0, 0]), TRAJ, "columns 'u', 's' (trajectory, step): expected each step of a trajectory once, found step 0 of trajectory 'a' twice, at rows 0 and 1"),
    "hole in steps": (_table(u=["a", "a", "b"], s=[0, 2, 0]), TRAJ, "column 's' (step): expected the steps of each trajectory to be 0..T-1 without holes, found trajectory 'a' without step 1"),
    "steps not from zero": (_table(u=["a", "a", "b"], s=[1, 2, 0]), TRAJ, "found trajectory 'a' without step 0"),
    "non-integer step": (_table(u=["a", "a", "b"], s=[0, 0.5, 0]), TRAJ, "column 's' (step): expected integers, found 0.5 at row 1"),
    "trajectory without step": (_table(u=["a", "a", "b"]), ["--trajectory", "u"], "trajectory, step: expected both columns (multi-step trajectories) or neither"),
    "done not a flag": (_table(d=[0, "maybe", 1]), ["--done", "d"], "column 'd' (done): expected 0/1 or true/false, found 'maybe' at row 1"),
    "done before the end": (_table(u=["a", "a", "b"], s=[0, 1, 0], d=[1, 0, 0]), [*TRAJ, "--done", "d"], "column 'd' (done): expected true only on a trajectory's last step, found true at row 0"),
    "negative position": (_table(k=[0, -2, 1]), ["--position", "k"], "column 'k' (position): expected integers >= 0, found -2 at row 1"),
    "both propensities": (_table(), ["--log-pscore", "x"], "--pscore, --log-pscore: expected exactly one propensity column, found both"),
    "positive log-pscore": (_table(), ["--pscore", None, "--log-pscore", "r"], "column 'r' (log_pscore): expected log-probabilities <= 0, found 1.0 at row 0"),
    "no context": (_table(), ["--context", None], "--context, --context-prefix: expected the context columns or a prefix (one of the two), found neither"),
    "prefix matching nothing": (_table(), ["--context", None, "--context-prefix", "feat_"], "context_prefix 'feat_': no column of the table starts with it; its columns are ['a', 'r', 'p', 'x', 'y']"),
    "empty context name": (_table(), ["--context", "x,,y"], "--context: expected comma-separated column names, found 'x,,y'"),
    "header only": ("a,r,p,x,y\n", [], "table: expected at least one row, found none"),
    "empty file": ("", [], "t.csv: cannot be read as CSV (No columns to parse from file)"),
}


def _args(table: Path, extra: list, out: Path) -> list[str]:
    args = ["import", str(table), "--out", str(out), *GOOD]
    for i in range(0, len(extra), 2):  # an option given again replaces GOOD's value; None drops it
        option, value = extra[i], extra[i + 1]
        if option in args:
            at = args.index(option)
            del args[at : at + 2]
        if value is not None:
            args += [option, value]
    return args


def _error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("case", list(BATTERY))
def test_import_refuses_malformed_tables(tmp_path: Path, case: str) -> None:
    text, extra, expected = BATTERY[case]
    out = tmp_path / "out.parquet"
    message = _error_line(_args(_write(tmp_path, text), extra, out))
    assert expected in message, message
    assert not out.exists()


def test_import_refuses_unreadable_files(tmp_path: Path) -> None:
    garbage = tmp_path / "t.parquet"
    garbage.write_bytes(b"PAR1 this is not a parquet file")
    message = _error_line(_args(garbage, [], tmp_path / "o.parquet"))
    assert message.startswith(f"error: {garbage}: cannot be read as Parquet (")
    message = _error_line(_args(_write(tmp_path, _table(), "t.txt"), [], tmp_path / "o.parquet"))
    assert "t.txt: expected a .csv or .parquet file, found the suffix '.txt'" in message
    message = _error_line(_args(tmp_path / "absent.csv", [], tmp_path / "o.parquet"))
    assert "TABLE: expected a CSV or Parquet file, found nothing at" in message
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"a,r\n\xff\xfe\x00,1\n")
    assert "b.csv: cannot be read as CSV" in _error_line(_args(binary, [], tmp_path / "o.parquet"))


def test_import_round_trips_through_parquet(tmp_path: Path) -> None:
    frame = trajectory_frame()
    frame.to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "data.parquet"
    args = ["import", str(tmp_path / "users.csv"), "--out", str(out), "--action", "a", "--reward", "r", "--log-pscore", "logp",
            "--context", "obs", "--trajectory", "user", "--step", "t", "--done", "end", "--gamma", "0.9",
            "--behavior-policy", "prod"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{out}: 2 trajectories, 5 steps (horizon 3, γ = 0.9), 4 actions"), result.stdout
    back = LoggedDataset.read_parquet(out)
    expected = dataset_from_table(
        frame, action="a", reward="r", log_pscore="logp", context=["obs"], trajectory="user", step="t", done="end",
        gamma=0.9, task="users", behavior_policy="prod",
    )  # fmt: skip
    assert back.equals(expected)
    assert back.info.behavior_policy == "prod" and back.behavior_log_pscore is not None
    # an existing --out needs --force
    assert "exists; pass --force" in _error_line(args)
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_import_one_step_parquet_table(tmp_path: Path) -> None:
    frame = bandit_frame()
    frame.to_parquet(tmp_path / "clicks.parquet")
    out = tmp_path / "d.parquet"
    result = runner.invoke(app, ["import", str(tmp_path / "clicks.parquet"), "--out", str(out), "--action", "item", "--reward", "click",
                                 "--pscore", "prop", "--context-prefix", "x_", "--position", "slot"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "8 trajectories, 8 steps (horizon 1" in result.stdout and "3 positions" in result.stdout
    back = LoggedDataset.read_parquet(out)
    expected = dataset_from_table(frame, action="item", reward="click", pscore="prop", context_prefix="x_", position="slot", task="clicks")
    assert back.equals(expected)


def test_import_usage_errors_are_one_line(tmp_path: Path) -> None:
    table = _write(tmp_path, _table())
    for args, words in ((["import", str(table), "--reward", "r"], "--action"), (["import", str(table), "--frob"], "--frob")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
