"""Tests for opelab.ope.estimators.cdf: off-policy estimators of the return CDF, the grid, and ``evaluate_cdf``.

Ground truth, never the code under test checking itself:
- the exact return distribution of the evaluation policies (``opelab.envs.returns``) on a tabular task;
- with π_e = π_b, the empirical CDF of the logged returns (exactly);
- brute-force (P, n, G) indicator formulas for every estimator on random weights and returns;
- the SNTIS point estimator of ``opelab.ope`` for the mean of the SNTIS CDF;
- a large-sample bound for CDF-TIS: √n (F̂ − F) tends to the Gaussian process B(τ(y)) − F(y) N with B a
  Brownian motion, τ(y) = E_b[W² 1{G ≤ y}] ≤ E_b[W²] and N ~ N(0, 1), so sup_y |F̂ − F| ≤
  (3.02 √E_b[W²] + 2.81) / √n with probability about 0.99 (reflection principle for B at 0.005, normal
  tail for N at 0.005); E_b[W²] is read off the sample. A check that the bound can fail is included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtri

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import TabularMDP, collect
from opelab.envs.returns import exact_return_distribution
from opelab.ope import OPEInput, OPEInputError, build_inputs, evaluate
from opelab.ope.estimators.base import EstimationContext
from opelab.ope.estimators.cdf import (
    CDF_ESTIMATORS,
    CDFDirectMethod,
    CDFEstimator,
    CDFTable,
    CDFTrajectoryDR,
    CDFTrajectoryIS,
    evaluate_cdf,
    get_cdf_estimator,
    register_cdf_estimator,
    return_grid,
)
from opelab.policies import SoftmaxPolicy, TabularPolicy, TabularQ, UniformPolicy

ALL = sorted(CDF_ESTIMATORS)
NORMALISED = ["cdf_sntis", "cdf_dm", "cdf_tdr", "cdf_sntdr"]  # estimates whose top value is 1
CONVERGING = ["cdf_tis", "cdf_sntis", "cdf_tdr", "cdf_sntdr"]
SMALL, LARGE, N_SEEDS = 200, 3200, 5


# ---------------------------------------------------------------------------------------------- the case
def make_task() -> TabularMDP:
    """4 states (one terminal), 2 actions, horizon 3, noisy rewards: a Gaussian mixture of 258 atoms."""
    return TabularMDP.random(4, 2, horizon=3, gamma=0.9, seed=7, reward_noise=0.1, n_terminal=1)


def make_policies(task: TabularMDP):
    rng = np.random.default_rng(0)
    behavior = UniformPolicy(task.n_actions, name="behavior")
    soft = SoftmaxPolicy(TabularQ(task.optimal_q()), 0.3, name="soft")
    td = TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)), name="td")
    return behavior, [soft, td]


def exact_inputs(ds: LoggedDataset, task: TabularMDP, evals) -> OPEInput:
    return build_inputs(ds, evals, q_tables=[task.q_values(p) for p in evals])


def conditional_model(task: TabularMDP, evals, ds: LoggedDataset):
    """The exact F(y | s_0) of every policy, as a ``model(grid) -> (P, n, G)``."""
    starts = np.flatnonzero(task.initial > 0)
    laws = {}
    for p, policy in enumerate(evals):
        for s in starts:
            one_start = TabularMDP(initial=np.eye(task.n_states)[s], transitions=task.transitions, rewards=task.rewards,
                                   horizon=task.horizon, gamma=task.gamma, reward_noise=task.reward_noise,
                                   terminal_states=task.terminal_states)
            laws[p, s] = exact_return_distribution(one_start, policy)
    s0 = np.asarray(ds.observations[:, 0])

    def model(grid: np.ndarray) -> np.ndarray:
        table = np.zeros((len(evals), task.n_states, len(grid)))
        for (p, s), law in laws.items():
            table[p, s] = law.cdf(grid)
        return table[:, s0]

    return model


@pytest.fixture(scope="module")
def case():
    task = make_task()
    behavior, evals = make_policies(task)
    laws = [exact_return_distribution(task, p) for p in evals]
    return task, behavior, evals, laws


@pytest.fixture(scope="module")
def sup_errors(case):
    """sup_grid |F̂ − F| per (size, seed, estimator, policy), plus what the TIS bound needs at the large size."""
    task, behavior, evals, laws = case
    errors = {}
    large = []
    for n in (SMALL, LARGE):
        for seed in range(N_SEEDS):
            ds = collect(task, behavior, n, seed=100 + seed)
            inputs = exact_inputs(ds, task, evals)
            table = evaluate_cdf(ds, inputs)
            truth = np.stack([law.cdf(table.grid) for law in laws])
            errors[n, seed] = {
                name: np.abs(table.estimate(name) - truth).max(axis=-1) for name in table.estimator_names
            }
            if n == LARGE:
                W = EstimationContext(ds, inputs).trajectory_ratio
                behavior_ecdf = np.searchsorted(np.sort(ds.returns), table.grid, side="right") / n
                large.append((W, np.abs(behavior_ecdf - truth).max(axis=-1)))
    return errors, large


def synthetic(returns: np.ndarray, weights: np.ndarray, v0: np.ndarray | None) -> tuple[LoggedDataset, OPEInput]:
    """One-step trajectories with reward G_i, behavior pscore 1 and eval pscore W_i: the ratio is W_i."""
    n = len(returns)
    info = DatasetInfo(task="synthetic", gamma=1.0, action_space=ActionSpace.discrete(1))
    ds = LoggedDataset(observations=np.zeros((n, 1), dtype=np.int64), actions=np.zeros((n, 1), dtype=np.int64),
                       rewards=np.asarray(returns, dtype=np.float64)[:, None], terminals=np.zeros((n, 1), dtype=bool),
                       mask=np.ones((n, 1), dtype=bool), behavior_pscore=np.ones((n, 1)), info=info)
    inputs = OPEInput(policy_names=tuple(f"p{p}" for p in range(len(weights))), eval_pscore=weights[:, :, None],
                      initial_v_hat=v0)
    return ds, inputs


def brute_force(name: str, returns: np.ndarray, W: np.ndarray, v0: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The estimator formulas with explicit (P, n, G) indicators, before projection."""
    logged = (returns[None, :, None] <= grid).astype(float)  # (1, n, G)
    model = (v0[:, :, None] <= grid).astype(float)  # (P, n, G)
    mean_w = W.mean(axis=1, keepdims=True)
    W_sn = np.divide(W, mean_w, out=np.zeros_like(W), where=mean_w > 0)
    if name == "cdf_tis":
        return (W[..., None] * logged).mean(axis=1)
    if name == "cdf_sntis":
        return (W_sn[..., None] * logged).mean(axis=1)
    if name == "cdf_dm":
        return model.mean(axis=1)
    weights = W if name == "cdf_tdr" else W_sn
    return (weights[..., None] * (logged - model)).mean(axis=1) + model.mean(axis=1)


# ---------------------------------------------------------------------------------------------- registry
def test_registry():
    assert set(ALL) == {"cdf_tis", "cdf_sntis", "cdf_dm", "cdf_tdr", "cdf_sntdr"}
    for name in ALL:
        est = get_cdf_estimator(name)
        assert isinstance(est, CDFEstimator) and est.name == name
    custom = CDFTrajectoryDR(model=lambda grid: np.zeros((1, 1, len(grid))))
    assert get_cdf_estimator(custom) is custom
    with pytest.raises(ValueError, match="estimator: expected one of"):
        get_cdf_estimator("tis")

    class Impostor(CDFTrajectoryIS):
        name = "cdf_tis"

    with pytest.raises(ValueError, match="'cdf_tis' is already registered"):
        register_cdf_estimator(Impostor)


# ---------------------------------------------------------------------------------------------- exact facts
def test_on_policy_tis_is_the_empirical_cdf(case):
    task, behavior, _, _ = case
    ds = collect(task, behavior, 150, seed=3)
    inputs = build_inputs(ds, [behavior])
    np.testing.assert_array_equal(inputs.eval_pscore, ds.behavior_pscore[None])
    table = evaluate_cdf(ds, inputs, ["cdf_tis", "cdf_sntis"])
    empirical = (ds.returns[:, None] <= table.grid).mean(axis=0)
    np.testing.assert_array_equal(table.estimate("cdf_tis")[0], empirical)
    np.testing.assert_array_equal(table.estimate("cdf_sntis")[0], empirical)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 15),
    n_policies=st.integers(1, 3),
    data=st.data(),
)
def test_estimators_match_brute_force_and_are_valid_cdfs(n, n_policies, data):
    returns = np.array(data.draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n))) / 4.0  # ties happen
    weights = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5, 9.0]), min_size=n * n_policies,
                                          max_size=n * n_policies))).reshape(n_policies, n)
    size = n * n_policies
    v0 = np.array(data.draw(st.lists(st.floats(-3, 3), min_size=size, max_size=size))).reshape(n_policies, n)
    if data.draw(st.booleans()):
        grid = return_grid(synthetic(returns, weights, v0)[0], bounds=(-4.0, 4.0), n_points=7, extra_values=v0)
    else:  # a coarse grid that holds none of the data
        grid = np.unique(np.array(data.draw(st.lists(st.floats(-4, 4), min_size=1, max_size=9))))
    ds, inputs = synthetic(returns, weights, v0)
    ctx = EstimationContext(ds, inputs)
    for name in ALL:
        est = get_cdf_estimator(name)
        np.testing.assert_allclose(est.raw_cdf(ctx, grid), brute_force(name, returns, weights, v0, grid), atol=1e-12)
        out = est.estimate_cdf(ctx, grid)
        assert out.shape == (n_policies, len(grid))
        assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
        assert (np.diff(out, axis=-1) >= 0).all()
    sn = get_cdf_estimator("cdf_sntis").estimate_cdf(ctx, grid)
    covered = grid[-1] >= returns.max()
    for p in range(n_policies):
        if covered:
            assert sn[p, -1] == pytest.approx(1.0 if weights[p].sum() > 0 else 0.0, abs=1e-12)


def test_projection_repairs_doubly_robust_estimates():
    """Large weights on low returns with a model placed above them make raw CDF-TDR leave [0, 1]."""
    returns = np.array([0.0, 1.0, 2.0, 3.0])
    weights = np.array([[6.0, 0.0, 0.0, 0.0]])
    v0 = np.array([[2.5, 2.5, 2.5, 2.5]])
    ds, inputs = synthetic(returns, weights, v0)
    ctx = EstimationContext(ds, inputs)
    grid = return_grid(ds, n_points=2, extra_values=v0)
    raw = CDFTrajectoryDR().raw_cdf(ctx, grid)
    assert raw.max() > 1 and (np.diff(raw, axis=-1) < 0).any()
    out = CDFTrajectoryDR().estimate_cdf(ctx, grid)
    assert (np.diff(out, axis=-1) >= 0).all() and out.max() <= 1 and out.min() >= 0


def test_zero_weights_give_zero_self_normalised_estimates():
    ds, inputs = synthetic(np.array([0.0, 1.0]), np.zeros((1, 2)), np.array([[0.5, 0.5]]))
    ctx = EstimationContext(ds, inputs)
    grid = np.array([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(get_cdf_estimator("cdf_sntis").estimate_cdf(ctx, grid), [[0.0, 0.0, 0.0]])
    # SN-TDR falls back on its DM part
    np.testing.assert_array_equal(get_cdf_estimator("cdf_sntdr").estimate_cdf(ctx, grid), [[0.0, 1.0, 1.0]])


# ---------------------------------------------------------------------------------------------- statistics
@pytest.mark.statistical
@pytest.mark.parametrize("name", CONVERGING)
def test_sup_error_falls_with_n(sup_errors, name):
    """Averaged over seeds, 16 times the data at least halves the sup error (√16 = 4 expected)."""
    errors, _ = sup_errors
    small = np.mean([errors[SMALL, s][name] for s in range(N_SEEDS)], axis=0)
    large = np.mean([errors[LARGE, s][name] for s in range(N_SEEDS)], axis=0)
    assert (large <= 0.5 * small).all(), (name, small, large)


@pytest.mark.statistical
def test_point_mass_dm_does_not_converge(sup_errors):
    """The crude point-mass model is biased: DM stays far off while CDF-TDR (same model) converges."""
    errors, _ = sup_errors
    dm = np.mean([errors[LARGE, s]["cdf_dm"] for s in range(N_SEEDS)], axis=0)
    tdr = np.mean([errors[LARGE, s]["cdf_tdr"] for s in range(N_SEEDS)], axis=0)
    assert (dm > 0.2).all() and (tdr < 0.1).all()


@pytest.mark.statistical
def test_tis_error_below_the_weighted_ks_bound(sup_errors):
    errors, large = sup_errors
    a, b = ndtri(1 - 0.00125), ndtri(1 - 0.0025)
    for seed, (W, behavior_gap) in enumerate(large):
        bound = (a * np.sqrt((W**2).mean(axis=-1)) + b) / np.sqrt(LARGE)
        assert (errors[LARGE, seed]["cdf_tis"] < bound).all()
        # the bound is tight enough to reject the behavior policy's own return CDF for the "soft" policy
        assert behavior_gap[0] > bound[0]


@pytest.mark.statistical
def test_exact_conditional_model(case):
    """With the exact F(y | s_0), DM errs only through the initial states: sup error ≤ TV(μ̂₀, μ₀)."""
    task, behavior, evals, laws = case
    ds = collect(task, behavior, LARGE, seed=5)
    inputs = exact_inputs(ds, task, evals)
    model = conditional_model(task, evals, ds)
    table = evaluate_cdf(ds, inputs, [CDFDirectMethod(model=model), CDFTrajectoryDR(model=model)])
    truth = np.stack([law.cdf(table.grid) for law in laws])
    counts = np.bincount(ds.observations[:, 0], minlength=task.n_states) / LARGE
    total_variation = 0.5 * np.abs(counts - task.initial).sum()
    assert np.abs(table.estimate("cdf_dm") - truth).max() <= total_variation + 1e-12
    assert np.abs(table.estimate("cdf_tdr") - truth).max() < 0.1
    with pytest.raises(ValueError, match=r"cdf_dm.model: expected F̄ of shape \(P, n, G\)"):
        evaluate_cdf(ds, inputs, [CDFDirectMethod(model=lambda grid: np.zeros((2, 3, len(grid))))])


# ---------------------------------------------------------------------------------------------- grid & table
def test_grid_covers_bounds_beyond_the_logged_support(case):
    task, behavior, evals, laws = case
    ds = collect(task, behavior, SMALL, seed=8)
    inputs = exact_inputs(ds, task, evals)
    low, high = float(ds.returns.min()) - 3.0, float(ds.returns.max()) + 3.0
    table = evaluate_cdf(ds, inputs, bounds=(low, high))
    grid = table.grid
    assert grid[0] == low and grid[-1] == high
    assert np.isin(ds.returns, grid).all() and np.isin(inputs.initial_v_hat, grid).all()
    assert np.isin(np.linspace(low, high, 256), grid).all()
    assert np.isfinite(table.cdf).all()
    for name in NORMALISED:
        np.testing.assert_allclose(table.estimate(name)[:, -1], 1.0, atol=1e-12)
    W = EstimationContext(ds, inputs).trajectory_ratio
    np.testing.assert_allclose(table.estimate("cdf_tis")[:, -1], np.minimum(W.mean(axis=-1), 1.0), rtol=1e-12)
    assert np.isfinite(table.risk().drop(columns=["policy", "estimator"]).to_numpy(dtype=float)).all()
    # the grid spans the whole true law of π_e, so its estimated CDFs can reach their top inside the grid
    assert (np.asarray(laws[0].cdf(grid[-1])) > 1 - 1e-9) and (np.asarray(laws[0].cdf(grid[0])) < 1e-9)


def test_risk_of_sntis_equals_the_sntis_point_estimate(case):
    task, behavior, evals, _ = case
    ds = collect(task, behavior, SMALL, seed=9)
    inputs = exact_inputs(ds, task, evals)
    table = evaluate_cdf(ds, inputs)
    risk = table.risk((0.1, 0.25, 0.5))
    assert list(risk.columns) == ["policy", "estimator", "mean", "variance", "cvar@0.1", "cvar@0.25", "cvar@0.5",
                                  "quantile@0.1", "quantile@0.25", "quantile@0.5", "interquartile_range"]
    assert len(risk) == len(table.estimator_names) * len(evals)
    rows = risk[risk.estimator == "cdf_sntis"]
    assert list(rows.policy) == ["soft", "td"]
    point = evaluate(ds, inputs, ["sntis"]).estimate("sntis")
    np.testing.assert_allclose(rows["mean"].to_numpy(), point, rtol=1e-10)
    # weighted lower median by hand
    W = EstimationContext(ds, inputs).trajectory_ratio
    order = np.argsort(ds.returns, kind="stable")
    for p in range(len(evals)):
        cum = np.cumsum(W[p, order]) / W[p].sum()
        median = ds.returns[order][np.argmax(cum >= 0.5 - 1e-12)]
        assert rows["quantile@0.5"].iloc[p] == median
    # on a coarse grid without the logged returns the mean moves: the exact agreement is not automatic
    coarse = evaluate_cdf(ds, inputs, ["cdf_sntis"], grid=np.linspace(ds.returns.min(), ds.returns.max(), 5))
    assert np.abs(coarse.risk()["mean"].to_numpy() - point).max() > 1e-3


def test_evaluate_cdf_defaults_and_errors(case):
    task, behavior, evals, _ = case
    ds = collect(task, behavior, 40, seed=1)
    inputs = exact_inputs(ds, task, evals)
    assert evaluate_cdf(ds, inputs).estimator_names == tuple(CDF_ESTIMATORS)
    bare = OPEInput(policy_names=inputs.policy_names, eval_pscore=inputs.eval_pscore)
    assert set(evaluate_cdf(ds, bare).estimator_names) == {"cdf_tis", "cdf_sntis"}
    with pytest.raises(OPEInputError, match="cdf_dm: needs initial_v_hat"):
        evaluate_cdf(ds, bare, ["cdf_dm"])
    with pytest.raises(ValueError, match="bounds: expected None when a grid is given"):
        evaluate_cdf(ds, inputs, grid=np.array([0.0, 1.0]), bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="estimators: expected distinct names"):
        evaluate_cdf(ds, inputs, ["cdf_tis", "cdf_tis"])
    with pytest.raises(OPEInputError, match="eval_pscore: expected"):
        evaluate_cdf(collect(task, behavior, 41, seed=1), inputs)
    with pytest.raises(ValueError, match="grid: expected strictly increasing values"):
        evaluate_cdf(ds, inputs, grid=np.array([0.0, 2.0, 1.0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bounds": (1.0, 0.0)}, "bounds: expected finite low < high"),
        ({"bounds": (0.0, np.inf)}, "bounds: expected finite low < high"),
        ({"n_points": 1}, "n_points: expected an int >= 2"),
        ({"extra_values": np.array([np.nan])}, "extra_values: expected finite values"),
    ],
)
def test_return_grid_errors(case, kwargs, match):
    task, behavior, _, _ = case
    ds = collect(task, behavior, 10, seed=0)
    with pytest.raises(ValueError, match=match):
        return_grid(ds, **kwargs)


def test_cdf_table_validation_and_lookup():
    table = CDFTable(policy_names=("a",), estimator_names=("cdf_tis",), grid=np.array([0.0, 1.0]),
                     cdf=np.array([[[0.5, 1.0]]]))
    np.testing.assert_array_equal(table.estimate("cdf_tis"), [[0.5, 1.0]])
    with pytest.raises(KeyError, match="estimator: expected one of"):
        table.estimate("cdf_dm")
    with pytest.raises(ValueError, match=r"cdf: expected shape \(E, P, G\) = \(1, 1, 2\)"):
        CDFTable(policy_names=("a",), estimator_names=("cdf_tis",), grid=np.array([0.0, 1.0]), cdf=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="alphas: expected"):
        table.risk(alphas=(0.5, 1.5))
