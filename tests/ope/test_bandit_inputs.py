"""One-step and ranking logs: the dataset's bandit fields, OBP-shaped inputs, policies given as
probabilities, ratios in log space and the default estimators per kind of data."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.ope import OPEInput, OPEInputError, build_inputs, evaluate
from opelab.ope.estimators import get_estimator
from opelab.ope.estimators.base import estimator_grid
from opelab.policies import ActionDistribution
from opelab.policies.given import ActionDistributionError, read_action_dist, write_action_dist

N_ACTIONS, LEN_LIST = 4, 3


def _bandit(n: int = 200, seed: int = 0, positions: bool = True) -> tuple[LoggedDataset, np.ndarray]:
    """A one-step log of lists: behavior π_b(a | x, slot) logged at a uniform slot; returns it and π_b (n, A, L)."""
    rng = np.random.default_rng(seed)
    pi_b = rng.dirichlet(np.ones(N_ACTIONS), size=(n, LEN_LIST)).transpose(0, 2, 1)
    pos = rng.integers(0, LEN_LIST, n) if positions else np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    at_pos = pi_b[np.arange(n), :, pos]
    actions = (u[:, None] > np.cumsum(at_pos, axis=1)).sum(axis=1)
    actions = np.minimum(actions, N_ACTIONS - 1)
    info = DatasetInfo("bandit", 1.0, ActionSpace.discrete(N_ACTIONS), len_list=LEN_LIST if positions else None)
    ds = LoggedDataset(
        observations=rng.normal(size=(n, 1, 2)),
        actions=actions[:, None],
        rewards=rng.binomial(1, 0.4, n)[:, None].astype(np.float64),
        terminals=np.zeros((n, 1), bool),
        mask=np.ones((n, 1), bool),
        behavior_pscore=at_pos[np.arange(n), actions][:, None],
        info=info,
        positions=pos[:, None] if positions else None,
    )
    return ds, pi_b


def test_positions_and_bandit_info_round_trip_through_parquet(tmp_path):
    ds, _ = _bandit()
    features = np.arange(N_ACTIONS * 2, dtype=np.float64).reshape(N_ACTIONS, 2)
    ds = ds.with_info(action_context=features)
    ds.to_parquet(tmp_path / "b.parquet")
    back = LoggedDataset.read_parquet(tmp_path / "b.parquet")
    assert back.equals(ds) and back.content_digest == ds.content_digest
    np.testing.assert_array_equal(back.info.action_features, features)
    assert back.positions.dtype == np.int64


def test_datasets_without_bandit_fields_keep_their_json_and_digest():
    ds, _ = _bandit(positions=False)
    assert "len_list" not in ds.info.to_json() and "slate" not in ds.info.to_json()
    assert DatasetInfo.from_json(ds.info.to_json()) == ds.info


@pytest.mark.parametrize(
    "change, message",
    [
        ({"positions": np.full((200, 1), 3)}, "positions: expected integers in [0, 2]"),
        ({"positions": np.zeros((200, 1))}, "positions: expected an integer dtype"),
        ({"behavior_marginal_pscore": np.ones((200, 1))}, "behavior_marginal_pscore: given, but the dataset is not a ranking log"),
        ({"behavior_log_pscore": np.zeros((200, 1))}, "behavior_pscore: expected exp(behavior_log_pscore)"),
        ({"behavior_log_pscore": np.ones((200, 1))}, "behavior_log_pscore: expected log-probabilities <= 0"),
    ],
)
def test_bad_bandit_fields_are_named(change, message):
    ds, _ = _bandit()
    fields = {name: getattr(ds, name) for name in ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "positions")}
    fields.update(change)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        LoggedDataset(info=ds.info, **fields)


def test_bad_bandit_info_is_named():
    space = ActionSpace.discrete(3)
    with pytest.raises(DatasetError, match="info.action_context: expected one row per action"):
        DatasetInfo("t", 1.0, space, action_context=[[0.0], [1.0]])
    with pytest.raises(DatasetError, match="info.len_list: expected a positive int"):
        DatasetInfo("t", 1.0, space, len_list=0)
    with pytest.raises(DatasetError, match="info.slate: expected len_list"):
        DatasetInfo("t", 1.0, space, slate=True)
    with pytest.raises(DatasetError, match="info.action_context: expected null or a list of lists"):
        DatasetInfo.from_json('{"task": "t", "gamma": 1.0, "action_space": {"type": "discrete", "n_actions": 3}, "action_context": "x"}')



@pytest.mark.parametrize("context", [[["1.5"], ["2"], ["0"]], [[True], [False], [True]], np.array([[1], ["a"], [2.0]], dtype=object)])
def test_action_context_of_strings_or_booleans_is_refused_not_coerced(context):
    with pytest.raises(DatasetError, match=r"info.action_context: expected an \(n_actions, d\) array of numbers, found dtype"):
        DatasetInfo("t", 1.0, ActionSpace.discrete(3), action_context=context)
    assert DatasetInfo("t", 1.0, ActionSpace.discrete(3), action_context=[[1], [2], [3]]).action_context == ((1.0,), (2.0,), (3.0,))


def test_from_obp_takes_the_rows_at_the_logged_positions():
    ds, pi_b = _bandit()
    rng = np.random.default_rng(1)
    pi_e = rng.dirichlet(np.ones(N_ACTIONS), size=(ds.n_trajectories, LEN_LIST)).transpose(0, 2, 1)
    q = rng.random((ds.n_trajectories, N_ACTIONS, LEN_LIST))
    inputs = OPEInput.from_obp(ds, {"e": pi_e, "b": pi_b}, q)
    i, a, pos = np.arange(ds.n_trajectories), ds.actions[:, 0], ds.positions[:, 0]
    for p, dist in enumerate((pi_e, pi_b)):
        np.testing.assert_array_equal(inputs.eval_pscore[p, :, 0], dist[i, a, pos])
        np.testing.assert_allclose(inputs.v_hat[p, :, 0], (dist[i, :, pos] * q[i, :, pos]).sum(axis=1), rtol=1e-14)
        np.testing.assert_array_equal(inputs.q_hat[p, :, 0], q[i, a, pos])
    assert inputs.q_hat.strides[0] == 0  # one q̂ for every policy, not a copy each
    assert inputs.eval_action_probs is None
    table = evaluate(ds, inputs)
    assert table.estimator_names[:1] == ("dm",) and "tis" not in table.estimator_names and "pdis" not in table.estimator_names
    # the behavior policy as its own candidate: every ratio is 1, so DR = mean(r) + mean(V̂ − Q̂(x, a))
    expected = ds.rewards.mean() + (inputs.v_hat[1] - inputs.q_hat[1]).mean()
    assert table.estimate("dr")[1] == pytest.approx(expected, rel=1e-12)
    # DM by hand
    assert table.estimate("dm")[0] == pytest.approx(inputs.v_hat[0].mean(), rel=1e-14)


def test_from_obp_refuses_malformed_arrays():
    ds, pi_b = _bandit()
    with pytest.raises(OPEInputError, match="action_dist: expected shape"):
        OPEInput.from_obp(ds, pi_b[:10])
    with pytest.raises(OPEInputError, match="has len_list = 2 positions, but the dataset logs position 2"):
        OPEInput.from_obp(ds, pi_b[:, :, :2] / pi_b[:, :, :2].sum(axis=1, keepdims=True))
    with pytest.raises(OPEInputError, match=r"action_dist\['x'\]: expected each round's probabilities"):
        OPEInput.from_obp(ds, {"x": pi_b * 2})
    with pytest.raises(OPEInputError, match="estimated_rewards_by_reg_model: expected shape"):
        OPEInput.from_obp(ds, pi_b, np.zeros((3, 3)))
    with pytest.raises(OPEInputError, match="expected a one-step log"):
        OPEInput.from_obp(_two_step(), pi_b)
    negative = pi_b.copy()
    negative[7, 2, 1], negative[7, 3, 1] = -0.1, negative[7, 3, 1] + 0.1  # still sums to 1
    with pytest.raises(OPEInputError, match=r"non-negative probabilities, found np.float64\(-0.1\) at \(round, action, position\) \(7, 2, 1\)"):
        OPEInput.from_obp(ds, negative)
    infinite = pi_b.copy()
    infinite[4, 0, 0] = np.inf
    with pytest.raises(OPEInputError, match=r"non-negative probabilities, found np.float64\(inf\) at \(round, action, position\) \(4, 0, 0\)"):
        OPEInput.from_obp(ds, infinite)  # before: "expected ... to sum to 1, found inf" (or nothing off the logged position)
    q = np.zeros(pi_b.shape)
    q[5, 1, 2] = np.inf
    with pytest.raises(OPEInputError, match=r"estimated_rewards_by_reg_model: expected finite values, found np.float64\(inf\) at .* \(5, 1, 2\)"):
        OPEInput.from_obp(ds, pi_b, q)


def _two_step() -> LoggedDataset:
    info = DatasetInfo("t", 0.9, ActionSpace.discrete(2))
    return LoggedDataset.from_trajectories(
        [{"observations": [0, 1], "actions": [0, 1], "rewards": [1.0, 0.0], "behavior_pscore": [0.5, 0.5]}], info
    )


def test_build_inputs_accepts_action_distributions_and_matches_from_obp():
    ds, pi_b = _bandit()
    rng = np.random.default_rng(2)
    pi_e = rng.dirichlet(np.ones(N_ACTIONS), size=(ds.n_trajectories, LEN_LIST)).transpose(0, 2, 1)
    obp = OPEInput.from_obp(ds, {"e": pi_e})
    from opelab.ope.inputs import evaluation_action_probs

    probs = evaluation_action_probs(ds, [ActionDistribution("e", pi_e)])
    np.testing.assert_array_equal(probs[0, :, 0], pi_e[np.arange(ds.n_trajectories), :, ds.positions[:, 0]])
    np.testing.assert_array_equal(probs[0, np.arange(ds.n_trajectories), 0, ds.actions[:, 0]], obp.eval_pscore[0, :, 0])
    with pytest.raises(OPEInputError, match=r"policies\[0\]: action_dist \('e'\): expected rows summing to 1"):
        evaluation_action_probs(ds, [ActionDistribution("e", pi_e * 0.5)])


def test_action_distribution_tables_round_trip_and_refuse_malformed_ones(tmp_path):
    ds, pi_b = _bandit()
    path = tmp_path / "pi.parquet"
    write_action_dist(path, [ActionDistribution("behavior", pi_b), ActionDistribution("uniform", np.full((200, N_ACTIONS), 0.25))], ds)
    read = read_action_dist(path, ds)
    assert [p.name for p in read] == ["behavior", "uniform"]
    np.testing.assert_array_equal(read[0].action_dist[:, 0], pi_b[np.arange(200), :, ds.positions[:, 0]])
    import pyarrow as pa
    import pyarrow.parquet as pq

    short = pa.table({"p": pa.FixedSizeListArray.from_arrays(pa.array(np.full(4 * 10, 0.25)), 4)})
    pq.write_table(short, tmp_path / "short.parquet")
    with pytest.raises(ActionDistributionError, match="expected one row per logged step \\(200\\), found 10 rows"):
        read_action_dist(tmp_path / "short.parquet", ds)
    wide = pa.table({"p": pa.FixedSizeListArray.from_arrays(pa.array(np.full(5 * 200, 0.2)), 5)})
    pq.write_table(wide, tmp_path / "wide.parquet")
    with pytest.raises(ActionDistributionError, match="column 'p': expected 4 probabilities per row"):
        read_action_dist(tmp_path / "wide.parquet", ds)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ActionDistributionError, match="junk.parquet: expected a Parquet table"):
        read_action_dist(tmp_path / "junk.parquet", ds)


def test_cli_evaluates_policies_given_as_probabilities(tmp_path):
    ds, pi_b = _bandit()
    ds.to_parquet(tmp_path / "d.parquet")
    write_action_dist(tmp_path / "pi.parquet", [ActionDistribution("behavior", pi_b), ActionDistribution("uniform", np.full((200, N_ACTIONS), 0.25))], ds)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "d.parquet"), "--action-dist", str(tmp_path / "pi.parquet"), "--q-function", "none",
                                 "--estimators", "tis,sntis", "--out", str(tmp_path / "e.csv")])  # fmt: skip
    assert result.exit_code == 0, result.output
    import pandas as pd

    frame = pd.read_csv(tmp_path / "e.csv")
    behavior = frame[(frame.policy == "behavior") & (frame.estimator == "tis")].estimate.iloc[0]
    assert behavior == pytest.approx(ds.rewards.mean(), rel=1e-12)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "d.parquet"), "--action-dist", str(tmp_path / "d.parquet")])
    assert result.exit_code == 1 and result.stdout.strip().startswith("error: --action-dist:"), result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "d.parquet")])
    assert result.exit_code == 1 and "--policy: expected at least one model file, or --action-dist" in result.stdout


def test_log_space_ratios_match_exact_rationals_where_probabilities_underflow():
    """Generated sequences as one-step actions: joint propensities 2^-1100 .. 2^-1090 underflow float64 to 0;
    with log-propensities the IPW and SNIPW estimates equal the exact rational computation."""
    rng = np.random.default_rng(5)
    n = 40
    b_exp = rng.integers(1090, 1101, n)  # π_b = 2^-b
    e_exp = b_exp - rng.integers(-3, 4, n)  # π_e = 2^-e: ratios 2^-3 .. 2^3
    rewards = rng.random(n).round(3)
    log_b = -b_exp * math.log(2.0)
    log_e = -e_exp * math.log(2.0)
    info = DatasetInfo("sequences", 1.0, ActionSpace.discrete(2))
    with np.errstate(under="ignore"):
        ds = LoggedDataset(
            observations=np.zeros((n, 1, 1)), actions=np.zeros((n, 1), dtype=np.int64), rewards=rewards[:, None],
            terminals=np.zeros((n, 1), bool), mask=np.ones((n, 1), bool), behavior_pscore=np.exp(log_b)[:, None],
            behavior_log_pscore=log_b[:, None], info=info,
        )  # fmt: skip
        inputs = OPEInput(policy_names=("e",), eval_pscore=np.exp(log_e)[None, :, None], eval_log_pscore=log_e[None, :, None])
    assert (ds.behavior_pscore == 0).all()
    ratios = [Fraction(2) ** int(b - e) for b, e in zip(b_exp, e_exp)]
    r = [Fraction(x).limit_denominator(1000) for x in rewards]
    exact_ipw = sum(w * x for w, x in zip(ratios, r)) / n
    exact_snipw = sum(w * x for w, x in zip(ratios, r)) / sum(ratios)
    table = evaluate(ds, inputs, ["tis", "sntis", "pdis", "snpdis"])
    for name, exact in (("tis", exact_ipw), ("sntis", exact_snipw), ("pdis", exact_ipw), ("snpdis", exact_snipw)):
        assert table.estimate(name)[0] == pytest.approx(float(exact), rel=1e-12), name
    with pytest.raises(OPEInputError, match="eval_pscore: expected exp\\(eval_log_pscore\\)"):
        OPEInput(policy_names=("e",), eval_pscore=np.ones((1, n, 1)), eval_log_pscore=log_e[None, :, None])


def test_estimator_options_are_recorded_in_names_and_grids():
    assert get_estimator("dm").name == "dm"
    with pytest.raises(ValueError, match="options: expected options of dm among none"):
        get_estimator("dm", lambda_=1.0)
    with pytest.raises(ValueError, match="grid.k: expected a non-empty list"):
        estimator_grid("sam_is", k=[])
    grid = estimator_grid("sam_is", k=[0, 1])
    assert [e.k for e in grid] == [0, 1]


def test_default_estimators_follow_the_kind_of_data():
    ds, pi_b = _bandit()
    table = evaluate(ds, OPEInput.from_obp(ds, pi_b, np.zeros((200, N_ACTIONS, LEN_LIST))))
    assert {"dm", "dr", "sndr"} <= set(table.estimator_names)
    assert not {"tis", "sntis", "pdis", "snpdis"} & set(table.estimator_names)
    two = _two_step()
    inputs = OPEInput(policy_names=("e",), eval_pscore=np.full((1, 1, 2), 0.5))
    assert evaluate(two, inputs).estimator_names == ("tis", "sntis", "pdis", "snpdis")


def test_bandit_fields_ride_along_through_scope_rl():
    ds, _ = _bandit()
    assert LoggedDataset.from_scope_rl(ds.to_scope_rl()).equals(ds)


def test_one_step_logs_stream_like_they_evaluate_in_memory():
    from opelab.envs import make
    from opelab.ope.streaming import chunk_inputs, evaluate_stream

    task = make("bandit_positions")
    ds = task.collect(task.behavior_policy(), 3000, seed=0)
    policies = task.candidates()[:3]
    weights = np.random.default_rng(0).random((ds.observations.shape[-1], ds.action_space.n_actions))

    def q_model(observations, steps):  # a fixed reward model: one (m, A) table for every policy
        q = 1 / (1 + np.exp(-np.asarray(observations) @ weights))
        return np.broadcast_to(q, (len(policies), *q.shape))

    names = ["ipw", "snipw", "dm", "dr", "sndr", get_estimator("switch_dr", lambda_=2.0), get_estimator("dr_os", lambda_=5.0)]
    streamed = evaluate_stream(ds, policies, q_model, names, interval="t", max_cells=700)
    memory = evaluate(ds, chunk_inputs(ds, policies, q_model), names, interval="t")
    assert streamed.estimator_names == memory.estimator_names
    np.testing.assert_allclose(streamed.estimates, memory.estimates, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.lower, memory.lower, rtol=1e-10, atol=1e-12)


def test_slate_from_obp_reads_cascades_and_refuses_the_one_step_arguments():
    """OBP's slate arrays give the same inputs as slate_inputs; arguments of the other layout are refused, not
    silently ignored (before: action_dist or q̂ passed with a ranking log were dropped without a word)."""
    from opelab.envs.bandit import slate_inputs, synthetic_slate

    task = synthetic_slate(n_items=4, len_list=3, seed=0)
    ds = task.collect(task.behavior_policy(), 200, 1)
    policies = task.candidates()[:2]
    exact = slate_inputs(task, ds, policies, ground_truth=None)
    cascade = {name: np.cumprod(exact.eval_pscore[p], axis=1).reshape(-1) for p, name in enumerate(exact.policy_names)}
    item_position = {name: (exact.marginal_weights[p] * ds.behavior_marginal_pscore).reshape(-1) for p, name in enumerate(exact.policy_names)}
    inputs = OPEInput.from_obp(ds, evaluation_policy_pscore_cascade=cascade, evaluation_policy_pscore_item_position=item_position)
    np.testing.assert_allclose(inputs.eval_pscore, exact.eval_pscore, rtol=1e-12)
    np.testing.assert_allclose(inputs.marginal_weights, exact.marginal_weights, rtol=1e-12)
    with pytest.raises(OPEInputError, match=r"action_dist: expected None for a ranking log"):
        OPEInput.from_obp(ds, np.ones((200, 4)) / 4, evaluation_policy_pscore_cascade=cascade)
    with pytest.raises(OPEInputError, match=r"estimated_rewards_by_reg_model: expected None for a ranking log"):
        OPEInput.from_obp(ds, estimated_rewards_by_reg_model=np.zeros((600, 4)), evaluation_policy_pscore_cascade=cascade)
    bandit, pi_b = _bandit()
    with pytest.raises(OPEInputError, match=r"evaluation_policy_pscore_cascade: expected None for a one-step log"):
        OPEInput.from_obp(bandit, pi_b, evaluation_policy_pscore_cascade=np.ones(bandit.n_trajectories))


def test_streams_refuse_estimators_whose_statistics_do_not_add_up():
    import opelab.select.slope  # noqa: F401  (registers "slope")
    from opelab.envs import make
    from opelab.ope.streaming import StreamError, evaluate_stream

    task = make("bandit")
    ds = task.collect(task.behavior_policy(), 300, seed=0)
    with pytest.raises(StreamError, match="slope: expected an estimator with a streaming form"):
        evaluate_stream(ds, task.candidates()[:2], None, ["slope"], interval="t")


def test_slate_from_obp_names_where_a_cascade_increases():
    from opelab.envs.bandit import synthetic_slate

    task = synthetic_slate(n_items=4, len_list=3, seed=0)
    ds = task.collect(task.behavior_policy(), 20, 1)
    cascade = np.tile([0.5, 0.25, 0.125], (20, 1))
    cascade[7, 2] = 0.3
    with pytest.raises(OPEInputError, match=r"non-increasing in t, found 0.3 after 0.25 at \(round, slot\) \(7, 2\)"):
        OPEInput.from_obp(ds, evaluation_policy_pscore_cascade=cascade)


def test_eval_log_pscore_may_be_minus_inf_where_the_policy_gives_no_probability():
    """log 0 = −inf is the exact log-propensity of an action π_e never takes (before: refused as not finite);
    its ratio is 0, as without logs."""
    info = DatasetInfo("t", 0.9, ActionSpace.discrete(2))
    ds = LoggedDataset.from_trajectories(
        [
            {"observations": [0, 1], "actions": [0, 1], "rewards": [1.0, 2.0], "behavior_pscore": [0.5, 0.25]},
            {"observations": [1, 0], "actions": [1, 0], "rewards": [0.0, 3.0], "behavior_pscore": [0.5, 0.75]},
        ],
        info,
    )
    pscore = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # greedy: the second step of round 0 and the first of round 1 are never taken
    with np.errstate(divide="ignore"):
        log_pscore = np.log(pscore)
    logged = OPEInput(policy_names=("greedy",), eval_pscore=pscore, eval_log_pscore=log_pscore)
    plain = OPEInput(policy_names=("greedy",), eval_pscore=pscore)
    names = ["tis", "pdis", "sntis", "snpdis"]
    np.testing.assert_allclose(evaluate(ds, logged, names).estimates, evaluate(ds, plain, names).estimates, rtol=1e-15)
    with pytest.raises(OPEInputError, match=r"eval_log_pscore: expected log-probabilities \(finite, or -inf where π_e is 0\), found"):
        OPEInput(policy_names=("greedy",), eval_pscore=pscore, eval_log_pscore=np.where(pscore > 0, 0.0, np.nan))
