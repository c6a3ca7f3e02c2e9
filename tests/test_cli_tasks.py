"""``opelab train`` → ``collect`` → ``evaluate`` through files on CartPole, ``opelab demo --task cartpole``, and
the one-line errors of these commands. Tiny budgets: the point is the wiring, not the numbers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.data import LoggedDataset


def _rl_available() -> bool:
    try:
        from opelab.learn.algorithms import import_d3rlpy

        import_d3rlpy()
    except ImportError:
        return False
    return True


RL = pytest.mark.skipif(not _rl_available(), reason="needs the rl extra (torch, d3rlpy)")
runner = CliRunner()
HORIZON = "15"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _error_line(args: list[str]) -> str:
    """The command fails with exit code 1 and prints exactly one line: 'error: ...' (stdout; stderr may carry
    third-party notices)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DoubleDQN base trained online for 100 steps, and 20 trajectories of it under a softmax head."""
    folder = tmp_path_factory.mktemp("cli_tasks")
    model, data = folder / "base.safetensors", folder / "data.parquet"
    if _rl_available():
        out = _ok(["train", "cartpole", "--steps", "100", "--hidden", "8,8", "--horizon", HORIZON, "--eval-episodes", "5", "--out", str(model)])
        assert "value of its action rule" in out.stdout
        _ok(["collect", "cartpole", "--policy", str(model), "--head", "softmax", "--temperature", "1.0", "-n", "20", "--seed", "1",
             "--horizon", HORIZON, "--out", str(data)])  # fmt: skip
    return folder, model, data


@RL
def test_train_collect_evaluate_round_trip_through_files(trained):
    folder, model, data = trained
    ds = LoggedDataset.read_parquet(data)
    assert (ds.n_trajectories, ds.horizon, ds.info.task, ds.info.seed) == (20, 15, "cartpole", 1)
    assert ds.info.behavior_policy == "base_softmax1" and ds.behavior_action_probs is not None

    offline = folder / "cql.safetensors"
    _ok(["train", "cartpole", "--offline", str(data), "--algorithm", "discrete_cql", "--steps", "20", "--hidden", "8,8",
         "--eval-episodes", "0", "--out", str(offline)])  # fmt: skip
    assert offline.is_file()

    csv = folder / "estimates.csv"
    result = _ok(["evaluate", str(data), "--policy", str(model), "--policy", str(offline), "--epsilon", "0", "--epsilon", "0.5",
                  "--estimators", "dm,snpdis,sndr", "--fqe-steps", "3", "--interval", "t", "--truth-rollouts", "10",
                  "--out", str(csv)])  # fmt: skip
    assert "truth ± SE" in result.stdout and "Assessment of each estimator" in result.stdout
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["policy", "estimator", "estimate", "lower", "upper", "true_value", "true_se"]
    assert set(frame.policy) == {"base_eps0", "base_eps0.5", "cql_eps0", "cql_eps0.5"}
    assert set(frame.estimator) == {"dm", "snpdis", "sndr"}
    assert frame[["estimate", "true_value", "true_se"]].notna().all().all()
    assert (frame.lower <= frame.upper).all()

    # a uniform log needs no model; a second write needs --force
    uniform = folder / "uniform.parquet"
    _ok(["collect", "cartpole", "--uniform", "-n", "5", "--horizon", HORIZON, "--out", str(uniform)])
    assert LoggedDataset.read_parquet(uniform).info.behavior_policy == "uniform"
    assert "--force" in _error_line(["collect", "cartpole", "--uniform", "-n", "5", "--out", str(uniform)])


@RL
def test_streamed_evaluate_equals_the_in_memory_one(trained, tmp_path):
    """--stream over a folder of two files, FQE fit on all trajectories: the same numbers as in memory."""
    folder, model, data = trained
    ds = LoggedDataset.read_parquet(data)
    parts = tmp_path / "parts"
    parts.mkdir()
    ds.subset(list(range(8))).to_parquet(parts / "a.parquet")
    ds.subset(list(range(8, 20))).to_parquet(parts / "b.parquet")
    common = ["--policy", str(model), "--epsilon", "0.1", "--epsilon", "0.5", "--estimators", "dm,pdis,snpdis,sndr",
              "--fqe-steps", "3", "--interval", "t"]  # fmt: skip
    _ok(["evaluate", str(data), *common, "--out", str(tmp_path / "memory.csv")])
    result = _ok(["evaluate", str(parts), *common, "--stream", "--chunk-steps", "40", "--out", str(tmp_path / "stream.csv")])
    assert "streamed" in result.stdout
    memory, streamed = pd.read_csv(tmp_path / "memory.csv"), pd.read_csv(tmp_path / "stream.csv")
    assert list(memory.policy) == list(streamed.policy) and list(memory.estimator) == list(streamed.estimator)
    for column in ("estimate", "lower", "upper"):
        assert (memory[column] - streamed[column]).abs().max() < 1e-6  # FQE in float32; IS columns agree to 1e-12
    is_rows = memory.estimator.isin(["pdis", "snpdis"])
    assert (memory[is_rows].estimate - streamed[is_rows].estimate).abs().max() < 1e-12
    assert "folder" in _error_line(["evaluate", str(parts), *common])
    assert "--stream" in _error_line(["evaluate", str(data), *common, "--executor", "ray"])


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["train", "nope", "--out", "{d}/m.safetensors"], "error: TASK: expected one of ['cartpole'"),
        (["train", "gridworld", "--out", "{d}/m.safetensors"], "error: TASK: expected one of ['cartpole'"),
        (["collect", "cartpole", "--policy", "{d}/missing.safetensors", "--epsilon", "0.1", "--out", "{d}/x.parquet"],
         "error: --policy: expected a model file written by `opelab train`"),
        (["collect", "cartpole", "--policy", "{d}/missing.safetensors", "--head", "softmax", "--out", "{d}/x.parquet"],
         "error: --temperature: expected a value for --head softmax, found none"),
        (["collect", "cartpole", "--policy", "{d}/missing.safetensors", "--out", "{d}/x.parquet"], "error: --head: expected one of"),
        (["collect", "cartpole", "--head", "gaussian", "--sigma", "0.1", "--out", "{d}/x.parquet"],
         "error: --head: expected one of ['softmax', 'epsilon_greedy', 'greedy', 'uniform'] for discrete actions"),
        (["collect", "cartpole", "--epsilon", "1.5", "--out", "{d}/x.parquet"], "error: --epsilon: expected a number in [0, 1], found 1.5"),
        (["evaluate", "{d}/missing.parquet", "--policy", "{d}/m.safetensors"], "error: DATASET: expected a Parquet dataset"),
    ],
)  # fmt: skip
def test_errors_are_one_line_naming_the_option(tmp_path, args, start):
    line = _error_line([a.format(d=tmp_path) for a in args])
    assert line.startswith(start), line


@RL
def test_too_few_online_steps_for_a_batch_name_the_steps_option(tmp_path):
    line = _error_line(["train", "cartpole", "--steps", "50", "--horizon", HORIZON, "--out", str(tmp_path / "m.safetensors")])
    assert line.startswith("error: --steps: expected more than the batch size (64), found 50"), line


@RL
def test_evaluate_errors_on_a_missing_model(trained, tmp_path):
    _, _, data = trained
    line = _error_line(["evaluate", str(data), "--policy", str(tmp_path / "gone.safetensors")])
    assert line.startswith("error: --policy: expected a model file written by `opelab train`") and "gone.safetensors" in line


@RL
def test_demo_on_cartpole_with_a_tiny_budget(tmp_path):
    out = tmp_path / "demo"
    result = _ok(["demo", "--task", "cartpole", "-n", "20", "--horizon", HORIZON, "--train-steps", "100", "--candidate-steps", "10",
                  "--fqe-steps", "3", "--rollouts", "5", "--out", str(out)])  # fmt: skip
    for text in ("Estimates vs rollout value", "Assessment of each estimator", "SharpeRatio@2", "each metric picks"):
        assert text in result.stdout
    written = {p.name for p in out.iterdir()}
    assert {"dataset.parquet", "behavior.safetensors", "report.html", "report.json", "candidates.csv", "estimates.csv", "assessment.csv"} <= written
    candidates = pd.read_csv(out / "candidates.csv")
    assert list(candidates.columns) == ["policy", "true_value", "true_se"] and len(candidates) == 8
    assert (candidates.true_se >= 0).all()
    notes = json.loads((out / "report.json").read_text())["notes"]
    assert "rollout value" in notes[0] and "5 on-policy episodes" in notes[0]
    ds = LoggedDataset.read_parquet(out / "dataset.parquet")
    assert (ds.n_trajectories, ds.horizon, ds.info.task) == (20, 15, "cartpole")
