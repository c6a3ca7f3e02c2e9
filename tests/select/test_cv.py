"""Cross-validated estimator selection (OCV, Cief, Kveton & Kompan, AAAI 2025): slicing, the score by hand, the
pick on a bandit with exact truth, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.envs import TabularMDP, bandit_inputs, collect, make
from opelab.ope import build_inputs
from opelab.ope.estimators import EstimationContext, get_estimator
from opelab.ope.inputs import OPEInput
from opelab.policies import SoftmaxPolicy, TabularQ
from opelab.select.cv import CVResult, cv_select, subset_inputs
from opelab.select.metrics import nmse, rank_correlation, sharpe_ratio_at_k

ARRAYS = ("eval_pscore", "q_hat", "v_hat", "initial_v_hat", "eval_action_probs", "eval_log_pscore")


@pytest.fixture(scope="module")
def bandit():
    task = make("bandit")
    ds = task.collect(task.behavior_policy(), 1500, seed=0)
    policies = task.candidates()
    return task, ds, policies


def test_subset_inputs_equals_bandit_inputs_on_the_subset(bandit):
    task, ds, policies = bandit
    idx = np.array([5, 0, 17, 3, 3, 400])
    whole = bandit_inputs(task, ds, policies, q_model="true")
    got = subset_inputs(whole, idx)
    want = bandit_inputs(task, ds.subset(idx), policies, q_model="true")
    for name in ARRAYS:
        if getattr(want, name) is None:
            assert getattr(got, name) is None
        else:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert got.policy_names == want.policy_names


def test_subset_inputs_equals_build_inputs_on_the_subset_with_given_q_tables():
    task = TabularMDP.random(5, 3, horizon=4, gamma=0.9, seed=1, n_terminal=1)
    q = TabularQ(task.optimal_q())
    behavior, evals = SoftmaxPolicy(q, 1.0, name="b"), [SoftmaxPolicy(q, 0.3, name="e1"), SoftmaxPolicy(q, 3.0, name="e2")]
    ds = collect(task, behavior, 60, seed=2)
    tables = [task.q_values(p) for p in evals]
    idx = np.arange(0, 60, 7)
    got = subset_inputs(build_inputs(ds, evals, q_tables=tables, weights=None), idx)
    want = build_inputs(ds.subset(idx), evals, q_tables=tables, weights=None)
    for name in ARRAYS:
        if getattr(want, name) is None:
            assert getattr(got, name) is None
        else:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    got.check_dataset(ds.subset(idx))


def test_subset_inputs_keeps_a_broadcast_view_and_checks_indices():
    q = np.arange(6.0).reshape(1, 6, 1)
    inputs = OPEInput(("a", "b", "c"), eval_pscore=np.full((3, 6, 1), 0.5), q_hat=np.broadcast_to(q, (3, 6, 1)))
    got = subset_inputs(inputs, [4, 1])
    assert got.q_hat.strides[0] == 0
    np.testing.assert_array_equal(got.q_hat, [[[4.0], [1.0]]] * 3)
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 5\]"):
        subset_inputs(inputs, [6])
    with pytest.raises(ValueError, match="indices: expected a non-empty 1-D array"):
        subset_inputs(inputs, np.array([], dtype=int))


def test_score_by_hand_on_a_tiny_case(bandit):
    """Recompute every split's training DM and validation IPW from the stored indices, and both scores."""
    task, ds, policies = bandit
    tiny = ds.subset(np.arange(9))
    inputs = bandit_inputs(task, tiny, policies[:3], q_model="true")
    result = cv_select(tiny, inputs, ["dm", "ipw"], n_splits=3, train_fraction=0.45, seed=4)
    n, n_t = 9, 4
    assert (result.n_train, result.n_validation) == (n_t, n - n_t)
    w = inputs.eval_pscore[:, :, 0] / tiny.behavior_pscore[None, :, 0]  # (P, n)
    r = tiny.rewards[:, 0]
    v = inputs.v_hat[:, :, 0]
    sq, corr = [], []
    for train in result.train_indices:
        val = np.setdiff1d(np.arange(n), train)
        ipw_val = (w[:, val] * r[val]).mean(axis=1)
        dm_train, ipw_train = v[:, train].mean(axis=1), (w[:, train] * r[train]).mean(axis=1)
        var_val = (w[:, val] * r[val]).var(axis=1, ddof=1) / (n - n_t)
        var_train = np.stack([v[:, train].var(axis=1, ddof=1), (w[:, train] * r[train]).var(axis=1, ddof=1)]) / n_t
        d2 = (np.stack([dm_train, ipw_train]) - ipw_val) ** 2
        sq.append(d2)
        corr.append(d2 - var_val - (1 - n_t / n) * var_train)
    sq, corr = np.array(sq), np.array(corr)
    np.testing.assert_allclose(result.scores, sq.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.score_se, sq.std(axis=0, ddof=1) / np.sqrt(3), rtol=1e-12)
    np.testing.assert_allclose(result.corrected, corr.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.overall, sq.mean(axis=2).mean(axis=0), rtol=1e-12)
    assert result.picks == tuple(("dm", "ipw")[i] for i in np.argmin(sq.mean(axis=0), axis=0))
    assert result.pick == ("dm", "ipw")[int(np.argmin(sq.mean(axis=2).mean(axis=0)))]
    # estimated metrics: the validation IPW as pseudo truth, averaged over splits
    first = result.train_indices[0]
    np.testing.assert_allclose(result.train_estimates[0, 0], v[:, first].mean(axis=1), rtol=1e-12)
    nm = np.mean([nmse(result.validation_estimates[s], result.train_estimates[s, 0]) for s in range(3)])
    assert result.estimated_nmse[0] == pytest.approx(nm, rel=1e-12)


def test_cv_prefers_unbiased_ipw_over_clipped(bandit):
    """IPW is unbiased; IPW clipped at λ = 0.5 is biased far down. The clipped score must exceed IPW's by more
    than three standard errors of the difference, per policy on average and overall."""
    task, ds, policies = bandit
    inputs = bandit_inputs(task, ds, policies, q_model="true", ground_truth=task.policy_values(policies))
    clipped = get_estimator("ipw", lambda_=0.5)
    result = cv_select(ds, inputs, [clipped, "ipw"], n_splits=10, seed=0)
    assert isinstance(result, CVResult) and result.validation_estimator == "ipw"
    assert result.pick == "ipw"
    gap = result.overall[0] - result.overall[1]
    assert gap > 3 * np.hypot(*result.overall_se)
    assert all(p == "ipw" for p in result.picks)
    assert "ipw" in result.reason and result.reason.count(".") >= 1
    # the corrected score (an MSE estimate on all n) agrees, and is near the true MSE of the clipped estimator
    assert (result.corrected[0] > result.corrected[1]).all()
    truth = task.policy_values(policies)
    clipped_full = clipped.estimate(EstimationContext(ds, inputs))
    true_sq = (clipped_full - truth) ** 2
    assert np.mean(result.corrected[0]) == pytest.approx(np.mean(true_sq), rel=0.5)


def test_cv_prefers_true_model_dm_over_wrong_model_dm(bandit):
    """DM with the exact reward model against DM whose model is shifted by +0.3 (biased by 0.3 everywhere)."""
    task, ds, policies = bandit
    good = bandit_inputs(task, ds, policies, q_model="true")
    result = cv_select(ds, good, ["dm", "ipw"], seed=1, one_standard_error=True)
    assert result.pick == "dm"
    wrong = OPEInput(good.policy_names, eval_pscore=good.eval_pscore, q_hat=good.q_hat + 0.3, v_hat=good.v_hat + 0.3,
                     initial_v_hat=good.initial_v_hat + 0.3)
    result = cv_select(ds, wrong, ["dm", "ipw"], seed=1)
    assert result.pick == "ipw"
    assert result.overall[0] - result.overall[1] > 3 * np.hypot(*result.overall_se)


def test_table_metrics_and_rebuild(bandit):
    task, ds, policies = bandit
    small = ds.subset(np.arange(300))
    inputs = bandit_inputs(task, small, policies, q_model="regression")
    calls = []

    def rebuild(train):
        calls.append(train.n_trajectories)
        return bandit_inputs(task, train, policies, q_model="regression")

    result = cv_select(small, inputs, ["dm", "dr", "ipw"], n_splits=3, train_fraction=0.6, rebuild=rebuild, k=4)
    assert calls == [180, 180, 180]
    table = result.table()
    assert list(table.columns) == ["estimator", "policy", "score", "score_se", "corrected", "corrected_se", "selected"]
    assert len(table) == 3 * len(policies) + 3
    assert table["selected"].sum() == len(policies) + 1
    metrics = result.metrics()
    assert list(metrics["estimator"]) == ["dm", "dr", "ipw"]
    assert "estimated_sharpe_ratio@4" in metrics.columns
    s, e = 1, 2
    want = sharpe_ratio_at_k(result.validation_estimates[s], result.train_estimates[s, e], small.mean_return(), 4)
    got = [sharpe_ratio_at_k(result.validation_estimates[i], result.train_estimates[i, e], small.mean_return(), 4) for i in range(3)]
    assert want in got and result.estimated_sharpe_ratio[e] == pytest.approx(np.mean(got))
    rho = np.mean([rank_correlation(result.validation_estimates[i], result.train_estimates[i, e]) for i in range(3)])
    assert result.estimated_rank_correlation[e] == pytest.approx(rho)
    with pytest.raises(ValueError, match="rebuild: expected inputs for the policies"):
        cv_select(small, inputs, ["dm", "ipw"], rebuild=lambda train: bandit_inputs(task, train, policies[:2], q_model="true"))


def test_trajectories_use_tis_as_validator():
    task = TabularMDP.random(5, 3, horizon=4, gamma=0.9, seed=1, n_terminal=1)
    q = TabularQ(task.optimal_q())
    evals = [SoftmaxPolicy(q, t, name=f"t{t}") for t in (0.3, 1.0, 3.0)]
    ds = collect(task, SoftmaxPolicy(q, 1.0, name="b"), 200, seed=5)
    inputs = build_inputs(ds, evals, q_tables=[task.q_values(p) for p in evals], weights=None)
    result = cv_select(ds, inputs, ["dm", "pdis", "dr"], n_splits=4, train_fraction=0.7, criterion="corrected")
    assert result.validation_estimator == "tis"
    assert result.train_indices.shape == (4, 140)
    assert result.pick in ("dm", "pdis", "dr") and result.criterion == "corrected"
    assert np.isfinite(result.corrected).all() and np.isfinite(result.overall).all()


def test_deterministic_in_the_seed(bandit):
    task, ds, policies = bandit
    inputs = bandit_inputs(task, ds, policies[:4], q_model="true")
    a, b = (cv_select(ds, inputs, ["dm", "ipw"], seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.scores, b.scores)
    c = cv_select(ds, inputs, ["dm", "ipw"], seed=8)
    assert not np.array_equal(a.train_indices, c.train_indices)


def test_errors(bandit):
    task, ds, policies = bandit
    inputs = bandit_inputs(task, ds, policies[:3], q_model="true")
    bare = bandit_inputs(task, ds, policies[:3], q_model=None)
    with pytest.raises(ValueError, match="at least 2 estimators"):
        cv_select(ds, inputs, ["ipw"])
    with pytest.raises(ValueError, match="expected a list of at least 2 estimators"):
        cv_select(ds, inputs, "ipw")
    with pytest.raises(ValueError, match="distinct names"):
        cv_select(ds, inputs, ["ipw", "ipw"])
    for fraction in (0.0, 1.0, -0.2, 1.5, True):
        with pytest.raises(ValueError, match=r"train_fraction: expected a number in \(0, 1\)"):
            cv_select(ds, inputs, ["ipw", "dm"], train_fraction=fraction)
    tiny = ds.subset(np.arange(5))
    with pytest.raises(ValueError, match="expected at least 2 in each part"):
        cv_select(tiny, subset_inputs(inputs, np.arange(5)), ["ipw", "dm"], train_fraction=0.8)
    with pytest.raises(ValueError, match=r"estimators\[1\]: dm cannot run, it needs initial_v_hat"):
        cv_select(ds, bare, ["ipw", "dm"])
    with pytest.raises(ValueError, match=r"estimators\[1\]: mips cannot run on these inputs \(mips: needs the actions' embeddings"):
        cv_select(ds, inputs, ["ipw", "mips"])
    with pytest.raises(ValueError, match="estimator: expected one of"):
        cv_select(ds, inputs, ["ipw", "no_such_estimator"])
    with pytest.raises(ValueError, match="n_splits: expected an integer >= 2"):
        cv_select(ds, inputs, ["ipw", "dm"], n_splits=1)
    with pytest.raises(ValueError, match=r"k: expected an integer in 1..3"):
        cv_select(ds, inputs, ["ipw", "dm"], k=4)
    with pytest.raises(ValueError, match="criterion"):
        cv_select(ds, inputs, ["ipw", "dm"], criterion="mse")
    with pytest.raises(ValueError, match="validation_estimator: dm cannot run"):
        cv_select(ds, bare, ["ipw", "snipw"], validation_estimator="dm")
