"""The bookkeeping of ``benchmarks/estimator_selection.py`` on tiny datasets: the oracle is the best estimator of
the set, so every single-estimator pick has relative MSE ≥ 1 and SharpeRatio@3 regret ≥ 0; and ``all_pick`` is
``recommend_estimator(method="all")``'s rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "estimator_selection.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("estimator_selection_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_relative_mse_and_regret_bookkeeping_on_the_chain(bench, seed: int) -> None:  # type: ignore[no-untyped-def]
    row = bench.score_dataset("chain", seed, rounds=0, trajectories=240)  # PAS-IF on trajectories needs >= 200
    mse = np.array(row["mse"])
    assert row["oracle_mse"] == pytest.approx(mse.min())
    for method, pick in row["picks"].items():
        if method.startswith("slope"):  # a pick per policy: a mix of members may beat the best single one
            assert pick["relative_mse"] > 0
            continue
        assert pick["relative_mse"] >= 1.0 - 1e-12, method
        assert pick["regret"] >= -1e-12, method
    assert min(p["relative_mse"] for m, p in row["picks"].items() if m.startswith("always ")) == pytest.approx(1.0)


def test_all_pick_is_recommend_estimators_rule(bench) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import Ridge

    import opelab.envs
    from opelab.select import recommend_estimator

    task = opelab.envs.make("bandit")
    policies = task.candidates()[:4]
    ds = task.collect(task.behavior_policy(), 400, 0)
    inputs = opelab.envs.bandit_inputs(task, ds, policies, q_model="regression")
    names = ["dm", "dr", "ipw", "snipw"]
    tables = [recommend_estimator(ds, inputs, names, method=m, n_splits=3, reward_model=Ridge()).table for m in ("cv", "pasif")]
    together = recommend_estimator(ds, inputs, names, method="all", n_splits=3, reward_model=Ridge())
    assert bench.all_pick(tables, names) == together.pick
