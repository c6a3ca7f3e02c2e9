"""Synthetic bandits and slates (``opelab.envs.bandit``): exact values against hand computations and brute-force
Monte Carlo, the logs they collect, the estimators' inputs, and the wiring into ``opelab demo`` and benchmarks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from opelab.bench import Cell, ResultStore, parse_config, run_benchmark, run_cell
from opelab.bench.config import ConfigError
from opelab.bench.tasks import BanditFamily, find_family
from opelab.data import LoggedDataset
from opelab.envs import (
    BANDIT_TASKS,
    REGISTRY,
    SLATE_TASKS,
    SyntheticBandit,
    SyntheticSlate,
    bandit_inputs,
    collect,
    make,
    slate_inputs,
    synthetic_bandit,
    synthetic_slate,
)
from opelab.envs.bandit import MAX_SLATES, PlackettLucePolicy, enumerate_slates
from opelab.ope import ESTIMATORS, evaluate
from opelab.policies import CategoricalPolicy, UniformPolicy

Z = 3.5  # standard errors allowed between a Monte Carlo mean and the exact value


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class FixedPolicy(CategoricalPolicy):
    """The same distribution on every context."""

    def __init__(self, probs, name="fixed"):
        super().__init__(len(probs), name)
        self.probs = np.asarray(probs, dtype=np.float64)

    def action_probs(self, observations, steps=None):
        return np.broadcast_to(self.probs, (len(observations), self.n_actions)).copy()


def tiny_bandit(**options) -> SyntheticBandit:
    """Contexts x ∈ {0, 1} with p = (1/4, 3/4), f(x, a0) = x, f(x, a1) = −x + 1/2."""
    return SyntheticBandit(
        contexts=np.array([[0.0], [1.0]]), context_probs=np.array([0.25, 0.75]), weights=np.array([[1.0, -1.0]]),
        biases=np.array([0.0, 0.5]), n_actions=2, **options,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- bandit: exact values
def test_exact_bandit_value_matches_a_hand_computation():
    task = tiny_bandit()
    q = [[0.5, sigmoid(0.5)], [sigmoid(1.0), sigmoid(-0.5)]]  # q[k][a] = σ(f(x_k, a))
    np.testing.assert_allclose(task.q_table, q, rtol=1e-14)
    pi = [0.2, 0.8]
    by_hand = 0.25 * (0.2 * q[0][0] + 0.8 * q[0][1]) + 0.75 * (0.2 * q[1][0] + 0.8 * q[1][1])
    assert task.policy_value(FixedPolicy(pi)) == pytest.approx(by_hand, rel=1e-14)
    assert task.optimal_value() == pytest.approx(0.25 * q[0][1] + 0.75 * q[1][0], rel=1e-14)
    # positions: the value is scaled by the mean examination probability (1 + 1/2) / 2
    assert tiny_bandit(len_list=2).policy_value(FixedPolicy(pi)) == pytest.approx(0.75 * by_hand, rel=1e-14)
    # continuous rewards: q = f itself
    linear = tiny_bandit(reward_type="continuous").policy_value(FixedPolicy(pi))
    assert linear == pytest.approx(0.25 * (0.8 * 0.5) + 0.75 * (0.2 * 1.0 + 0.8 * -0.5), rel=1e-14)
    law = task.return_distribution(FixedPolicy(pi))
    assert law.mean() == pytest.approx(by_hand, rel=1e-12) and law.cdf(0.5) == pytest.approx(1 - by_hand, rel=1e-12)


def brute_force_value(task: SyntheticBandit, policy, n: int, seed: int) -> tuple[float, float]:
    """Mean and SE of n simulated rounds, written independently of the module: context by p, action by
    π(· | x) row by row, reward from σ(xᵀW_e(a) + b_e(a)) (or its linear form), slot uniform."""
    rng = np.random.default_rng(seed)
    k = rng.choice(task.n_contexts, size=n, p=task.context_probs)
    x = task.contexts[k]
    probs = policy.action_probs(x, np.zeros(n, dtype=np.int64))
    a = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    column = a if task.action_categories is None else task.action_categories[a]
    f = (x * task.weights[:, column].T).sum(axis=1) + task.biases[column]
    mean = 1 / (1 + np.exp(-f)) if task.reward_type == "binary" else f
    if task.len_list is not None:
        mean = mean / (1 + rng.integers(task.len_list, size=n))
    r = rng.binomial(1, mean) if task.reward_type == "binary" else mean + task.reward_noise * rng.standard_normal(n)
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(n))


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(BANDIT_TASKS))
def test_exact_bandit_value_matches_brute_force_monte_carlo(name):
    task = make(name)
    policies = [task.behavior_policy(), *task.candidates(epsilons=(0.0, 0.3), temperatures=(0.5,), adversarial_epsilons=(0.5,))]
    for i, policy in enumerate(policies):
        mean, se = brute_force_value(task, policy, 100_000, seed=i)
        assert abs(mean - task.policy_value(policy)) < Z * se, (name, policy.name)


@pytest.mark.statistical
@pytest.mark.parametrize("name", ["bandit", "bandit_continuous", "bandit_positions"])
def test_on_policy_collection_means_agree_with_the_exact_value(name):
    task = make(name)
    for i, policy in enumerate([task.behavior_policy(), task.candidates()[0], UniformPolicy(task.n_actions)]):
        for ds in (task.collect(policy, 50_000, seed=10 + i), collect(task, policy, 50_000, seed=20 + i)):
            r = ds.rewards[:, 0]
            assert abs(r.mean() - task.policy_value(policy)) < Z * r.std(ddof=1) / math.sqrt(len(r)), (name, policy.name)


# ---------------------------------------------------------------------------------------------- bandit: the log
def test_a_bandit_log_is_one_step_with_the_behavior_distribution():
    task = synthetic_bandit(n_actions=6, dim_context=3, n_contexts=7, seed=4)
    behavior = task.behavior_policy(beta=2.0)
    ds = task.collect(behavior, 500, seed=1)
    assert isinstance(ds, LoggedDataset) and (ds.n_trajectories, ds.horizon, ds.obs_shape) == (500, 1, (3,))
    assert ds.observations.dtype == np.float64 and ds.gamma == 1.0 and ds.info.behavior_policy == behavior.name
    table = task.policy_table(behavior)
    ids = task.context_ids(ds.observations[:, 0])
    np.testing.assert_array_equal(ds.behavior_action_probs[:, 0], table[ids])
    np.testing.assert_array_equal(ds.behavior_pscore[:, 0], table[ids, ds.actions[:, 0]])
    assert set(np.unique(ds.rewards)) <= {0.0, 1.0}
    assert ds.positions is None and ds.info.len_list is None and ds.info.action_context is None
    assert task.collect(behavior, 500, seed=1).equals(ds) and not task.collect(behavior, 500, seed=2).equals(ds)


def test_positions_and_embeddings_are_logged_as_documented(tmp_path):
    task = make("bandit_positions")
    ds = task.collect(task.behavior_policy(), 2000, seed=0)
    assert ds.info.len_list == 3 and ds.positions.shape == (2000, 1)
    assert set(np.unique(ds.positions)) == {0, 1, 2}
    np.testing.assert_allclose(task.position_bias, [1, 1 / 2, 1 / 3])

    task = make("bandit_embeddings")
    ds = task.collect(task.behavior_policy(), 200, seed=0)
    context = np.asarray(ds.info.action_context)
    assert context.shape == (task.n_actions, 1) and set(context[:, 0]) == {0.0, 1.0, 2.0}
    counts = np.bincount(context[:, 0].astype(int))
    assert counts.min() >= 2 and counts.max() - counts.min() <= 1  # several actions per category, balanced
    q = task.q_table
    for c in range(3):  # the expected reward depends on the action only through its category
        same = np.flatnonzero(context[:, 0] == c)
        np.testing.assert_array_equal(q[:, same], np.broadcast_to(q[:, same[:1]], q[:, same].shape))
    path = tmp_path / "embeddings.parquet"
    ds.to_parquet(path)
    assert LoggedDataset.read_parquet(path).equals(ds)


def test_bandit_sizes_and_inputs_are_checked_with_clear_errors():
    with pytest.raises(ValueError, match=r"n_embedding_categories: expected an int in \[2, n_actions - 1 = 9\]"):
        synthetic_bandit(n_embedding_categories=10)
    with pytest.raises(ValueError, match="n_actions: expected an int >= 2"):
        synthetic_bandit(n_actions=1)
    with pytest.raises(ValueError, match="reward_type: expected 'binary' or 'continuous'"):
        synthetic_bandit(reward_type="poisson")
    with pytest.raises(ValueError, match="horizon, gamma: a bandit has horizon 1"):
        make("bandit", horizon=5)
    task = make("bandit")
    with pytest.raises(ValueError, match="expected n_actions = 10, found 3"):
        task.policy_value(UniformPolicy(3))
    with pytest.raises(ValueError, match="n_rounds: expected an int >= 1"):
        task.collect(task.behavior_policy(), 0, seed=0)
    with pytest.raises(ValueError, match="row 1 matching none of its 20 contexts"):
        task.context_ids(np.stack([task.contexts[0], task.contexts[0] + 1e-9]))


def test_bandit_inputs_feed_the_one_step_estimators():
    task = make("bandit")
    candidates = task.candidates(epsilons=(0.0, 0.3), temperatures=(0.5,), adversarial_epsilons=(0.5,))
    truth = task.policy_values(candidates)
    ds = task.collect(task.behavior_policy(), 3000, seed=5)
    same = bandit_inputs(task, ds, [task.behavior_policy()], q_model=None)
    np.testing.assert_allclose(same.eval_pscore[0], ds.behavior_pscore)
    assert same.q_hat is None and same.initial_v_hat is None
    exact = bandit_inputs(task, ds, candidates, q_model="true", ground_truth=truth)
    ids = task.context_ids(ds.observations[:, 0])
    np.testing.assert_allclose(exact.q_hat[:, :, 0], np.broadcast_to(task.q_table[ids, ds.actions[:, 0]], (len(candidates), 3000)))
    np.testing.assert_array_equal(exact.ground_truth, truth)
    tabular = bandit_inputs(task, ds, candidates, q_model="tabular")
    table = evaluate(ds, tabular, ["dm", "dr"])  # cell means fitted on the same data: DR's correction sums to 0
    np.testing.assert_allclose(table.estimate("dr"), table.estimate("dm"), atol=1e-12)
    regression = bandit_inputs(task, ds, candidates)
    defaults = evaluate(ds, regression)
    assert {"dm", "dr", "sndr"} <= set(defaults.estimator_names)
    if "ipw" in ESTIMATORS:
        assert {"ipw", "snipw"} <= set(defaults.estimator_names)
    named = evaluate(ds, regression, ["dm", "tis", "sntis", "dr", "sndr"])  # tis / sntis are ipw / snipw here
    assert np.abs(named.estimates - truth).max() < 0.1
    with pytest.raises(ValueError, match="q_model: expected one of"):
        bandit_inputs(task, ds, candidates, q_model="neural")


# ---------------------------------------------------------------------------------------------- slates
def plackett_luce(logits: np.ndarray, slate) -> float:
    """π(σ) = Π_t exp(l_σt) / Σ_{j ∉ σ_<t} exp(l_j), written out."""
    prob, left = 1.0, list(range(len(logits)))
    for item in slate:
        prob *= math.exp(logits[item]) / sum(math.exp(logits[j]) for j in left)
        left.remove(item)
    return prob


def test_exact_slate_value_matches_a_hand_computation():
    task = SyntheticSlate(
        contexts=np.array([[0.0], [1.0]]), context_probs=np.array([0.5, 0.5]), weights=np.array([[1.0, -1.0]]),
        biases=np.array([0.0, 0.0]), len_list=2,
    )  # fmt: skip
    policy = task.behavior_policy(beta=1.0)
    value = 0.0
    for x in (0.0, 1.0):
        a0, a1 = sigmoid(x), sigmoid(-x)  # attractiveness of items 0, 1
        first = math.exp(x) / (math.exp(x) + math.exp(-x))  # π(item 0 first)
        value += 0.5 * (first * (a0 + a1 / 2) + (1 - first) * (a1 + a0 / 2))
    assert task.policy_value(policy) == pytest.approx(value, rel=1e-14)
    cascade = SyntheticSlate(**{k: getattr(task, k) for k in ("contexts", "context_probs", "weights", "biases", "len_list")}, reward_structure="cascade")
    value = 0.0
    for x in (0.0, 1.0):
        a0, a1 = sigmoid(x), sigmoid(-x)
        first = math.exp(x) / (math.exp(x) + math.exp(-x))
        value += 0.5 * (first * (a0 + (1 - a0) * a1) + (1 - first) * (a1 + (1 - a1) * a0))
    assert cascade.policy_value(cascade.behavior_policy(beta=1.0)) == pytest.approx(value, rel=1e-14)


def test_slate_marginals_and_joint_propensities_equal_the_enumeration():
    task = synthetic_slate(n_items=4, len_list=3, seed=2)
    policy = task.behavior_policy(beta=1.5)
    ds = task.collect(policy, 400, seed=3)
    assert ds.info.slate and ds.info.len_list == 3 and ds.gamma == 1.0 and (ds.horizon, ds.n_trajectories) == (3, 400)
    assert (ds.observations == ds.observations[:, :1]).all()  # the context at every slot
    assert all(len(set(row)) == 3 for row in ds.actions)  # distinct items
    marginals = policy.marginal_probs(task.contexts)  # (K, L, I)
    np.testing.assert_allclose(marginals.sum(axis=2), 1.0, atol=1e-12)  # each slot shows one item
    assert (marginals.sum(axis=1) <= 1 + 1e-12).all()  # each item at most one slot
    brute = np.zeros_like(marginals)
    for k, x in enumerate(task.contexts):
        logits = policy.logits(x[None])[0]
        for slate in itertools.permutations(range(4), 3):
            p = plackett_luce(logits, slate)
            for t, item in enumerate(slate):
                brute[k, t, item] += p
    np.testing.assert_allclose(marginals, brute, rtol=1e-12)
    ids = task.context_ids(ds.observations[:, 0])
    np.testing.assert_allclose(ds.behavior_marginal_pscore, brute[ids[:, None], np.arange(3), ds.actions], rtol=1e-12)
    joint = np.array([plackett_luce(policy.logits(ds.observations[i, :1])[0], ds.actions[i]) for i in range(50)])
    np.testing.assert_allclose(ds.behavior_pscore[:50].prod(axis=1), joint, rtol=1e-12)
    np.testing.assert_allclose(policy.slate_probs(task.contexts).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(policy.logged_marginal_pscore(ds), ds.behavior_marginal_pscore, rtol=1e-12)
    np.testing.assert_allclose(policy.logged_pscore(ds), ds.behavior_pscore, rtol=1e-12)


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(SLATE_TASKS))
def test_exact_slate_value_matches_the_collected_mean(name):
    task = make(name)
    for i, policy in enumerate([task.behavior_policy(), *task.candidates()[::2]]):
        ds = task.collect(policy, 40_000, seed=i)
        returns = ds.rewards.sum(axis=1)
        assert abs(returns.mean() - task.policy_value(policy)) < Z * returns.std(ddof=1) / math.sqrt(len(returns)), policy.name
        np.testing.assert_allclose(task.slot_values(policy).sum(), task.policy_value(policy))
    if task.reward_structure == "cascade":
        assert ds.rewards.sum(axis=1).max() == 1.0  # the user stops after the first click


def test_slate_inputs_carry_what_the_slate_estimators_read():
    task = make("slate_cascade")
    candidates = task.candidates()
    ds = task.collect(task.behavior_policy(), 2000, seed=1)
    same = slate_inputs(task, ds, [task.behavior_policy()])
    np.testing.assert_allclose(same.eval_pscore[0], ds.behavior_pscore, rtol=1e-12)
    np.testing.assert_allclose(same.marginal_weights[0], 1.0, rtol=1e-12)
    assert same.q_hat is None and same.ground_truth[0] == pytest.approx(task.policy_value(task.behavior_policy()))
    inputs = slate_inputs(task, ds, candidates, q_model="true")
    np.testing.assert_allclose(inputs.eval_action_probs.sum(axis=-1), 1.0, atol=1e-12)
    # reward-to-go: Q_t(x, a_≤t) = E[r_t | x, a_≤t] + V_{t+1}(x, a_≤t), and V_0(x) is the exact value of x
    immediate = task.slot_rewards(ds.observations[:, 0], ds.actions)
    np.testing.assert_allclose(inputs.q_hat[:, :, :-1], immediate[None, :, :-1] + inputs.v_hat[:, :, 1:], atol=1e-12)
    np.testing.assert_allclose(inputs.q_hat[:, :, -1], np.broadcast_to(immediate[:, -1], (len(candidates), 2000)), atol=1e-12)
    ids = task.context_ids(ds.observations[:, 0])
    by_context = np.stack([(p.slate_probs(task.contexts) * task._slate_rewards.sum(axis=-1)).sum(axis=1) for p in candidates])
    np.testing.assert_allclose(inputs.initial_v_hat, by_context[:, ids], atol=1e-12)
    names = [name for name in ("sips", "iips", "rips", "cascade_dr") if name in ESTIMATORS] or ["tis", "sam_is", "pdis", "dr"]
    table = evaluate(ds, inputs, ["dm", *names])
    assert np.isfinite(table.estimates).all()
    with pytest.raises(ValueError, match="PlackettLucePolicy over 4 items and 3 slots"):
        slate_inputs(task, ds, [UniformPolicy(4)])


def test_slate_sizes_are_checked_with_clear_errors():
    assert len(enumerate_slates(4, 3)) == 24
    with pytest.raises(ValueError, match=rf"at most {MAX_SLATES} slates .* 10!/\(10-6\)! = 151200"):
        synthetic_slate(n_items=10, len_list=6)
    with pytest.raises(ValueError, match="len_list: expected at most n_items = 3"):
        synthetic_slate(n_items=3, len_list=4)
    with pytest.raises(ValueError, match="reward_structure: expected 'independent' or 'cascade'"):
        synthetic_slate(reward_structure="dbn")
    task = make("slate")
    with pytest.raises(ValueError, match="temperatures: expected positive numbers"):
        task.candidates(temperatures=(0.0,))
    bandit_log = make("bandit", n_actions=4).collect(UniformPolicy(4), 10, seed=0)
    with pytest.raises(ValueError, match="expected a ranking log of 3 slots over 4 items"):
        PlackettLucePolicy(task.score_values, 1.0, 3).logged_pscore(bandit_log)


# ---------------------------------------------------------------------------------------------- registration
def test_the_tasks_are_registered_with_exact_truth():
    for name in (*BANDIT_TASKS, *SLATE_TASKS):
        spec, task = REGISTRY[name], make(name)
        assert spec.kind == "tabular" and task.name == name and (task.horizon, task.gamma) == (spec.horizon, spec.gamma)
        assert isinstance(find_family(name), BanditFamily)


runner = CliRunner()


def test_demo_on_the_bandit_runs_end_to_end_through_the_cli(tmp_path):
    from opelab.report.results import load_task_report

    out = tmp_path / "bandit"
    result = runner.invoke(__import__("opelab.cli", fromlist=["app"]).app, ["demo", "--task", "bandit", "-n", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "bandit: 200 trajectories" in result.stdout and "Results written to" in result.stdout
    assert (out / "report.html").is_file() and (out / "dataset.parquet").is_file()
    report = load_task_report(out)
    assert report.task == "bandit" and report.true_cdfs is not None and len(report.candidates) == 10
    np.testing.assert_allclose(report.candidates.true_value, make("bandit").policy_values(make("bandit").candidates(temperatures=(0.2, 0.5, 1.0))))
    assert any(column.startswith("sharpe_ratio@") for column in report.assessment.columns)

    out = tmp_path / "slate"
    result = runner.invoke(__import__("opelab.cli", fromlist=["app"]).app, ["demo", "--task", "slate", "-n", "200", "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert LoggedDataset.read_parquet(out / "dataset.parquet").info.slate


BENCH = """
name = "bandits"
seed = 1
n_datasets = 2
n_trajectories = 300
ks = [2, 3]

[intervals]
method = "bootstrap"
n_bootstrap = 20

[[tasks]]
name = "bandit"
behavior = { head = "softmax", temperature = 1.0 }
candidates = { epsilons = [0.0, 0.3], temperatures = [0.5], adversarial_epsilons = [0.5] }

[[tasks]]
name = "bandit_positions"
behavior = { head = "epsilon_greedy", epsilon = 0.3 }
candidates = { epsilons = [0.0], temperatures = [1.0], adversarial_epsilons = [] }
inputs = { q_function = "fqe" }

[[tasks]]
name = "slate_cascade"
candidates = { epsilons = [], temperatures = [0.5, 2.0], adversarial_epsilons = [] }
"""


def test_a_benchmark_runs_the_bandit_tasks_with_exact_truth(tmp_path):
    config = parse_config(BENCH)
    summary = run_benchmark(config, tmp_path / "bandits.duckdb")
    assert (summary.n_done, summary.n_failed) == (6, 0)
    with ResultStore(tmp_path / "bandits.duckdb", read_only=True) as store:
        truth = store.table("ground_truth", stable=True)
        metrics = store.table("metrics", stable=True)
    assert (truth.se == 0).all()
    bandit = truth[truth.task == "bandit"].drop_duplicates("policy")
    task = make("bandit")
    expected = task.policy_values(task.candidates(epsilons=(0.0, 0.3), temperatures=(0.5,), adversarial_epsilons=(0.5,)))
    np.testing.assert_allclose(bandit.value, expected)
    assert {"sharpe_ratio@2", "sharpe_ratio@3", "nmse"} <= set(metrics.metric)
    cell = run_cell(config, Cell("slate_cascade", 0))
    assert {"dm"} <= set(cell.estimates.estimator) and len(cell.ground_truth) == 3


def test_bandit_configs_are_refused_with_the_key_and_its_line():
    slate = BENCH.replace("epsilons = [], temperatures = [0.5, 2.0]", "epsilons = [0.1], temperatures = [0.5, 2.0]")
    with pytest.raises(ConfigError, match=r"tasks\[2\]\.candidates\.epsilons: expected \[\] for slate task 'slate_cascade'"):
        parse_config(slate)
    neural = BENCH.replace('inputs = { q_function = "fqe" }', 'inputs = { q_function = "neural_fqe" }')
    with pytest.raises(ConfigError, match=r"q_function: expected 'auto' \(ridge regression\) or 'fqe'"):
        parse_config(neural)
