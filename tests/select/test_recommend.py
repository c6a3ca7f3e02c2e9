"""recommend_estimator: one call over cross-validation, PAS-IF and SLOPE, estimated from the logs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from opelab.cli import app
from opelab.envs import bandit_inputs, collect, make
from opelab.ope import OPEInput, build_inputs, evaluate, get_estimator
from opelab.ope.estimators.slope import slope_family
from opelab.select import RecommendError, recommend_estimator


@pytest.fixture(scope="module")
def bandit():
    task = make("bandit")
    ds = task.collect(task.behavior_policy(), 2000, seed=0)
    policies = task.candidates()
    return task, ds, policies, bandit_inputs(task, ds, policies, q_model="true", ground_truth=task.policy_values(policies))


def test_cross_validation_avoids_a_deliberately_biased_estimator(bandit):
    """ipw clipped at λ = 0.5 is biased by far more than the others' noise: CV must not pick it, and its estimated
    nMSE must exceed the pick's by more than both intervals allow."""
    _, ds, _, inputs = bandit
    clipped = get_estimator("ipw", lambda_=0.5)
    found = recommend_estimator(ds, inputs, ["ipw", "dr", clipped], method="cv")
    assert found.pick != clipped.name and found.method == "cv" and "estimated from the logs" in found.reason
    rows = found.table.set_index("estimator")
    assert rows.loc[clipped.name, "estimated_nmse_lower"] > rows.loc[found.pick, "estimated_nmse_upper"]
    assert rows["selected"].sum() == 1 and rows.loc[found.pick, "selected"]


def test_all_combines_cross_validation_and_pasif_on_one_step_logs(bandit):
    _, ds, _, inputs = bandit
    found = recommend_estimator(ds, inputs, ["ipw", "dr", get_estimator("ipw", lambda_=0.5)], method="all", n_splits=3)
    assert set(found.results) == {"cv", "pasif"} and set(found.table["method"]) == {"cv", "pasif"}
    assert found.pick != "ipw(lambda_=0.5)"
    assert {"estimated_nmse", "estimated_rank_correlation", f"estimated_sharpe_ratio@{found.k}"} <= set(found.table.columns)


def test_slope_picks_per_policy_from_an_ordered_family(bandit):
    _, ds, _, inputs = bandit
    family = slope_family("ipw", [math.inf, 100.0, 10.0, 3.0, 1.0])
    found = recommend_estimator(ds, inputs, family, method="slope")
    assert found.table["picked_for"].sum() == inputs.n_policies
    assert found.pick in [m.name for m in family]


def test_trajectories_get_cross_validation_and_pasif():
    from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family

    task = make("chain")
    q_star = TabularQ(task.optimal_q())
    evals = candidate_family(q_star)[:4]
    ds = collect(task, SoftmaxPolicy(q_star, 1.0, name="behavior"), 400, seed=1)
    inputs = build_inputs(ds, evals)
    found = recommend_estimator(ds, inputs, method="cv", n_splits=4)
    assert found.pick in evaluate(ds, inputs).estimator_names
    estimators = ["tis", "pdis", "snpdis", "dm"]
    found = recommend_estimator(ds, inputs, estimators, method="all", n_splits=3)
    assert set(found.results) == {"cv", "pasif"} and found.pick in estimators
    fits = found.results["pasif"].fits  # one row per real candidate: the rule fitted to its per-step weights
    assert len(fits) == 4 and (fits["accepted"] >= 2).all() and (fits["mean_acceptance"] > 0).all()
    found = recommend_estimator(ds, inputs, estimators, method="pasif", n_splits=3)
    assert found.method == "pasif" and found.pick in estimators and "PAS-IF" in found.reason


def test_pasif_refuses_ranking_logs_by_name():
    task = make("slate")
    ds = task.collect(task.behavior_policy(), 300, seed=0)
    from opelab.envs import slate_inputs

    policies = task.candidates()
    inputs = slate_inputs(task, ds, policies)
    with pytest.raises(RecommendError, match="method: 'pasif' needs discrete actions .* found a ranking log; use 'cv'"):
        recommend_estimator(ds, inputs, ["sips", "iips"], method="pasif")


def test_bad_requests_are_named(bandit):
    _, ds, _, inputs = bandit
    with pytest.raises(RecommendError, match="method: expected one of"):
        recommend_estimator(ds, inputs, method="oracle")
    with pytest.raises(RecommendError, match="estimators: expected at least 2"):
        recommend_estimator(ds, inputs, ["ipw"])
    one = OPEInput(policy_names=("a",), eval_pscore=inputs.eval_pscore[:1])
    with pytest.raises(RecommendError, match="expected at least 2 candidate policies"):
        recommend_estimator(ds, one, ["ipw", "snipw"])
    with pytest.raises(RecommendError, match=r"ks: expected k in \[2, 9\]"):
        recommend_estimator(ds, inputs, ["ipw", "snipw"], ks=[1])


def test_evaluate_prints_the_recommendation(tmp_path, bandit):
    task, ds, policies, _ = bandit
    from opelab.policies import ActionDistribution
    from opelab.policies.given import write_action_dist

    ds.to_parquet(tmp_path / "d.parquet")
    obs = ds.observations[:, 0]
    given = [ActionDistribution(p.name, np.asarray(p.action_probs(obs, np.zeros(len(obs), dtype=int)))) for p in policies[:4]]
    write_action_dist(tmp_path / "pi.parquet", given, ds)
    runner = CliRunner()
    args = ["evaluate", str(tmp_path / "d.parquet"), "--action-dist", str(tmp_path / "pi.parquet"), "--q-function", "none",
            "--estimators", "ipw,snipw", "--recommend"]  # fmt: skip
    result = runner.invoke(app, [*args, "cv"])
    assert result.exit_code == 0, result.output
    assert "Which estimator to trust: estimated from the logs" in result.stdout and "Recommendation:" in result.stdout
    result = runner.invoke(app, [*args, "oracle"])
    assert result.exit_code == 1 and result.stdout.startswith("error: --recommend: expected one of"), result.output


def test_cross_validation_can_refit_the_inputs_on_each_training_part(bandit):
    task, ds, policies, inputs = bandit
    calls = []

    def rebuild(train):  # type: ignore[no-untyped-def]
        calls.append(train.n_trajectories)
        return bandit_inputs(task, train, policies, q_model="regression")

    found = recommend_estimator(ds, inputs, ["ipw", "dm"], method="cv", n_splits=3, rebuild=rebuild)
    assert calls == [1000, 1000, 1000] and found.pick in ("ipw", "dm")
