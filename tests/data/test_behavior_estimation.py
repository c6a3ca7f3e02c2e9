"""Behavior policies estimated from the data (``opelab.data.behavior``) and the estimators on top of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_ndtr, softmax
from threadpoolctl import threadpool_limits

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.data.behavior import estimate_pscores, fit_behavior_policy, fit_softmax_regression
from opelab.envs import collect
from opelab.ope import build_inputs, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ope"))
from ope_cases import policies_for, small_task  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small fits: the OpenMP threads of the boosted trees only contend with each other on a shared machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def tabular():
    task = small_task()
    behavior, evals = policies_for(task)  # softmax of the optimal finite-horizon Q: time-dependent
    return task, evals, collect(task, behavior, 3000, seed=1)


def continuous_dataset(n: int, sigma=(0.5, 0.2), clip: float | None = None, seed: int = 0) -> LoggedDataset:
    """One-step logs: s ~ N(0, I_3), a_j = clip(s ᵀ B_j + b_j + σ_j ε_j), with the true pscore."""
    rng = np.random.default_rng(seed)
    B, b, sigma = np.array([[1.0, -0.5], [0.3, 0.0], [0.0, 0.8]]), np.array([0.2, -0.1]), np.asarray(sigma)
    s = rng.standard_normal((n, 3))
    mu = s @ B + b
    a = mu + sigma * rng.standard_normal((n, 2))
    log_p = -0.5 * ((a - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    space = ActionSpace.continuous(2)
    if clip is not None:
        a = np.clip(a, -clip, clip)
        log_p = np.where(a <= -clip, log_ndtr((-clip - mu) / sigma), log_p)
        log_p = np.where(a >= clip, log_ndtr((mu - clip) / sigma), log_p)
        space = ActionSpace.continuous(2, low=[-clip] * 2, high=[clip] * 2)
    return LoggedDataset(
        observations=s[:, None],
        actions=a[:, None],
        rewards=-(a**2).sum(axis=1)[:, None],
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.exp(log_p.sum(axis=1))[:, None],
        info=DatasetInfo("one-step", 1.0, space, behavior_policy="linear-gaussian"),
    )


# ------------------------------------------------------------------------------------------ discrete
def test_one_hot_fit_is_the_empirical_frequency(tabular):
    _, _, ds = tabular
    est = estimate_pscores(ds, time_dependent=True, l2=1e-8)
    ids = ds.observations + 6 * np.arange(ds.horizon)[None, :]
    counts = np.zeros((6 * ds.horizon, 3))
    np.add.at(counts, (ids[ds.mask], ds.actions[ds.mask]), 1.0)
    freq = counts / counts.sum(axis=1, keepdims=True).clip(1)
    np.testing.assert_allclose(est.behavior_action_probs[ds.mask], freq[ids[ds.mask]], atol=1e-3)
    assert est.info.pscore_estimated and not ds.info.pscore_estimated
    assert np.shares_memory(est.observations, ds.observations) and np.shares_memory(est.rewards, ds.rewards)
    np.testing.assert_array_equal(est.behavior_pscore[~ds.mask], 1.0)


@pytest.mark.statistical
def test_estimates_with_estimated_pscores_are_close_to_those_with_the_true_ones(tabular):
    """Both are consistent for J(π_e) and their per-trajectory values differ only through π̂_b − π_b =
    O(1/√(visits)), so |V̂_est − V̂_true| = O_p(SE); we require ≤ 3 SE of the true-pscore estimate (the
    estimated-pscore estimator is asymptotically no less efficient: Hirano, Imbens & Ridder, 2003), and both
    within 4 of their SEs of the exact value."""
    task, evals, ds = tabular
    truth = np.array([task.policy_value(p) for p in evals])
    est = estimate_pscores(ds, time_dependent=True)
    options = dict(estimators=["tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sm_is", "sm_dr"], interval="t")
    true_table = evaluate(ds, build_inputs(ds, evals), **options)
    est_table = evaluate(est, build_inputs(est, evals), **options)
    se_true = (true_table.upper - true_table.lower) / (2 * 1.96)
    se_est = (est_table.upper - est_table.lower) / (2 * 1.96)
    assert np.all(np.abs(est_table.estimates - true_table.estimates) <= 3 * se_true)
    assert np.all(np.abs(est_table.estimates - truth) <= 4 * se_est)
    assert np.all(np.abs(true_table.estimates - truth) <= 4 * se_true)


def test_every_estimator_runs_on_an_estimated_dataset(tabular):
    _, evals, ds = tabular
    small = ds.subset(np.arange(300))
    est = estimate_pscores(small, n_folds=3)
    table = evaluate(est, build_inputs(est, evals, n_folds=2))
    assert "drl" in table.estimator_names and "dm" in table.estimator_names
    assert np.isfinite(table.estimates).all()


def test_softmax_regression_recovers_a_well_specified_model_and_is_calibrated_in_the_large():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 2))
    coef = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])
    probs = softmax(x @ coef + np.array([0.2, 0.0, -0.3]), axis=1)
    actions = (rng.random(len(x))[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    fitted_coef, fitted_intercept = fit_softmax_regression(x, actions, 3, l2=1e-6)
    fitted = softmax(x @ fitted_coef + fitted_intercept, axis=1)
    assert np.abs(fitted - probs).max() < 0.03
    np.testing.assert_allclose(fitted.sum(axis=0), np.bincount(actions, minlength=3), rtol=1e-5)  # score equation of b


def test_float_observations_use_standardised_features():
    rng = np.random.default_rng(1)
    n = 4000
    obs = rng.normal(100.0, 20.0, size=(n, 1, 2))  # far from standardised: features must be
    p1 = 1 / (1 + np.exp(-(obs[:, 0, 0] - 100.0) / 20.0))
    actions = (rng.random(n) < p1).astype(np.int64)
    probs = np.stack([1 - p1, p1], axis=1)[:, None]
    ds = LoggedDataset(
        observations=obs,
        actions=actions[:, None],
        rewards=np.zeros((n, 1)),
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.take_along_axis(probs[:, 0], actions[:, None], axis=1),
        behavior_action_probs=probs,
        info=DatasetInfo("float", 1.0, ActionSpace.discrete(2)),
    )
    est = estimate_pscores(ds, n_folds=2)  # each half fit on the other 2000 rows: errors O(1/√2000)
    error = np.abs(est.behavior_action_probs - ds.behavior_action_probs)
    assert error.mean() < 0.02 and error.max() < 0.1


def one_step_discrete(actions: np.ndarray, n_actions: int, obs: np.ndarray | None = None) -> LoggedDataset:
    """One-step logs of ``actions`` with placeholder pscores (ones) and 1-D float contexts."""
    n = len(actions)
    obs = np.linspace(-1.0, 1.0, n) if obs is None else obs
    return LoggedDataset(
        observations=obs.reshape(n, 1, -1),
        actions=actions[:, None],
        rewards=np.zeros((n, 1)),
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.ones((n, 1)),
        info=DatasetInfo("one-step", 1.0, ActionSpace.discrete(n_actions)),
    )


@pytest.mark.parametrize("method", ["logistic", "gradient_boosting"])
def test_actions_absent_from_a_fold_get_the_floor(method):
    """Action 3 is never logged and action 2 only in the first half of the rounds: a fold fit without them
    maps predict_proba's columns to their actions and gives the missing ones the floor."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, 200)
    actions[:5] = 2
    ds = one_step_discrete(actions, n_actions=4)
    est = estimate_pscores(ds, method=method, n_folds=2, fold_seed=0, min_probability=1e-6)
    probs = est.behavior_action_probs[:, 0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[:, 3], 1e-6 / (1 + 1e-6 * (probs[:, 3] > 0)), rtol=1e-3)  # floored, renormalised
    np.testing.assert_array_equal(est.behavior_pscore[:, 0], probs[np.arange(len(actions)), actions])
    from opelab.data.behavior import fold_indices

    for train, test in fold_indices(len(actions), 2, 0):
        if not (actions[train] == 2).any():
            np.testing.assert_allclose(probs[test, 2], probs[test, 3])  # both unseen: both at the floor
    single = estimate_pscores(one_step_discrete(np.full(10, 1), n_actions=3), method=method)
    np.testing.assert_allclose(single.behavior_action_probs[:, 0, 1], 1 - 2e-8 / (1 + 2e-8), rtol=1e-12)


def _sample_actions(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    return (rng.random(len(probs))[:, None] > probs.cumsum(axis=1)).sum(axis=1)


@pytest.mark.parametrize("options", [dict(calibration="sigmoid"), dict(calibration="isotonic")])
def test_calibrated_logistic_recovers_the_behavior_probabilities(options):
    rng = np.random.default_rng(2)
    obs = rng.standard_normal((6000, 2))
    truth = softmax(obs @ np.array([[1.5, -1.0, 0.0], [0.0, 1.0, -1.0]]), axis=1)
    est = estimate_pscores(one_step_discrete(_sample_actions(rng, truth), 3, obs), n_folds=2, **options)
    error = np.abs(est.behavior_action_probs[:, 0] - truth)
    assert error.mean() < 0.05, error.mean()
    assert est.info.pscore_estimated


def test_gradient_boosting_fits_a_behavior_policy_that_is_not_log_linear():
    """π_b(· | s) is constant on the four quadrants of s: a step function that trees fit and a linear logit
    cannot."""
    rng = np.random.default_rng(3)
    obs = rng.standard_normal((6000, 2))
    table = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3]])
    truth = table[2 * (obs[:, 0] > 0) + (obs[:, 1] > 0)]
    ds = one_step_discrete(_sample_actions(rng, truth), 3, obs)
    boosted = np.abs(estimate_pscores(ds, method="gradient_boosting", n_folds=2).behavior_action_probs[:, 0] - truth)
    linear = np.abs(estimate_pscores(ds, n_folds=2).behavior_action_probs[:, 0] - truth)
    assert boosted.mean() < 0.08 and boosted.mean() < 0.5 * linear.mean(), (boosted.mean(), linear.mean())


# ------------------------------------------------------------------------------------------ continuous
def test_conditional_gaussian_recovers_the_behavior_density():
    ds = continuous_dataset(20_000)
    model = fit_behavior_policy(ds, l2=0.0)
    assert not model.clipped.any()
    np.testing.assert_allclose(model.sigma, [0.5, 0.2], rtol=0.02)
    est = estimate_pscores(ds)
    ratio = est.behavior_pscore / ds.behavior_pscore
    assert np.median(np.abs(np.log(ratio))) < 0.02 and np.quantile(np.abs(np.log(ratio)), 0.99) < 0.1


def test_actions_on_the_bounds_are_fit_as_clipped():
    ds = continuous_dataset(20_000, sigma=(0.8, 0.6), clip=0.7)
    on_bound = (np.abs(ds.actions[:, 0]) >= 0.7).mean()
    assert on_bound > 0.3
    model = fit_behavior_policy(ds, l2=0.0)
    assert model.clipped.all()
    np.testing.assert_allclose(model.sigma, [0.8, 0.6], rtol=0.03)  # censored MLE
    naive = fit_behavior_policy(ds, l2=0.0, clip=False)
    assert (naive.sigma < 0.9 * model.sigma).all()  # clipping shrinks the naive residuals
    est = estimate_pscores(ds)
    log_ratio = np.abs(np.log(est.behavior_pscore / ds.behavior_pscore))
    assert np.median(log_ratio) < 0.03 and np.quantile(log_ratio, 0.99) < 0.15
    # TIS with π_e = π̂_b is exactly the logged mean whatever π̂_b is; with the true π_b as π_e it is close
    tis = (ds.behavior_pscore[:, 0] / est.behavior_pscore[:, 0] * ds.returns).mean()
    se = (ds.behavior_pscore[:, 0] / est.behavior_pscore[:, 0] * ds.returns).std() / np.sqrt(ds.n_trajectories)
    assert abs(tis - ds.mean_return()) <= 4 * se


# ------------------------------------------------------------------------------------------ metadata
def test_pscore_estimated_round_trips_through_parquet_and_scope_rl(tmp_path, tabular):
    _, _, ds = tabular
    est = estimate_pscores(ds.subset(np.arange(50)))
    path = tmp_path / "estimated.parquet"
    est.to_parquet(path)
    back = LoggedDataset.read_parquet(path)
    assert back.info.pscore_estimated and back.equals(est)
    again = LoggedDataset.from_scope_rl(est.to_scope_rl())
    assert again.info.pscore_estimated and again.equals(est)
    cont = estimate_pscores(continuous_dataset(40, clip=0.7))
    cont.to_parquet(tmp_path / "cont.parquet")
    assert LoggedDataset.read_parquet(tmp_path / "cont.parquet").equals(cont)
    assert LoggedDataset.from_scope_rl(cont.to_scope_rl(), gamma=1.0).equals(cont)


def test_info_written_before_the_field_existed_still_loads():
    info = DatasetInfo("t", 0.9, ActionSpace.discrete(2), behavior_policy="b", seed=3)
    raw = json.loads(info.to_json())
    del raw["pscore_estimated"]
    old = DatasetInfo.from_json(json.dumps(raw))
    assert old == info and old.pscore_estimated is False


# ------------------------------------------------------------------------------------------ errors
def test_clear_errors(tabular):
    _, _, ds = tabular
    small = ds.subset(np.arange(10))
    with pytest.raises(DatasetError, match="method: expected 'logistic' or 'gradient_boosting' for discrete actions, found 'gaussian'"):
        estimate_pscores(small, method="gaussian")
    with pytest.raises(DatasetError, match="method: expected 'auto', 'logistic', 'gradient_boosting' or 'gaussian', found 'knn'"):
        estimate_pscores(small, method="knn")
    with pytest.raises(DatasetError, match=r"n_folds: expected an int in \[1, n_trajectories = 10\], found 11"):
        estimate_pscores(small, n_folds=11)
    with pytest.raises(DatasetError, match="l2: expected a finite float >= 0, found -1.0"):
        estimate_pscores(small, l2=-1.0)
    with pytest.raises(DatasetError, match=r"min_probability: expected a float in \(0, 1 / n_actions\), found 0.5"):
        estimate_pscores(small, min_probability=0.5)
    with pytest.raises(DatasetError, match="clip: expected an action space with bounds"):
        estimate_pscores(continuous_dataset(20), clip=True)
    with pytest.raises(DatasetError, match=r"features: expected finite values of shape \((\d+), k\), found \(\1,\)"):
        estimate_pscores(small, features=lambda obs, steps: obs.astype(float))
    with pytest.raises(DatasetError, match="dataset: expected a LoggedDataset, found dict"):
        estimate_pscores({})
    with pytest.raises(DatasetError, match="method: expected 'gaussian' for continuous actions, found 'gradient_boosting'"):
        estimate_pscores(continuous_dataset(20), method="gradient_boosting")
    with pytest.raises(DatasetError, match="calibration: expected None, 'sigmoid' or 'isotonic' for discrete actions, found 'platt'"):
        estimate_pscores(small, calibration="platt")
    with pytest.raises(DatasetError, match="calibration: expected None, 'sigmoid' or 'isotonic' for discrete actions, found 'sigmoid' for continuous"):
        estimate_pscores(continuous_dataset(20), calibration="sigmoid")
    with pytest.raises(DatasetError, match="calibration: expected at least 3 logged steps of every logged action"):
        estimate_pscores(one_step_discrete(np.array([0, 0, 0, 1, 2, 2, 2]), n_actions=3), calibration="sigmoid")


def test_estimated_pscores_replace_logged_log_propensities():
    """A dataset with behavior_log_pscore (log-space ratios) gets the log of the estimate, not the logged one
    (before: a DatasetError, the old log-propensities contradicting the new pscores)."""
    from dataclasses import replace

    from opelab.envs.bandit import synthetic_bandit

    task = synthetic_bandit(n_actions=4, seed=0)
    data = task.collect(task.behavior_policy(), 300, 0)
    logged = replace(data, behavior_log_pscore=np.log(data.behavior_pscore))
    estimated = estimate_pscores(logged)
    plain = estimate_pscores(data)
    assert plain.behavior_log_pscore is None
    np.testing.assert_array_equal(estimated.behavior_pscore, plain.behavior_pscore)
    np.testing.assert_allclose(estimated.behavior_log_pscore, np.log(plain.behavior_pscore), rtol=0, atol=0)


def test_ranking_logs_are_refused():
    """A slot's propensity π_b(a_t | x, a_<t) depends on the items above it; a model of (s_t, a_t) gave items
    already shown positive probability (before: silently wrong conditional propensities)."""
    from opelab.envs.bandit import synthetic_slate

    task = synthetic_slate(n_items=5, len_list=3, seed=0)
    data = task.collect(task.behavior_policy(), 100, 0)
    with pytest.raises(DatasetError, match=r"dataset: expected trajectories or a one-step log, found a ranking log"):
        estimate_pscores(data)
