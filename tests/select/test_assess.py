"""``assess`` gathers the metric functions per estimator; ``picks`` names each metric's winner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opelab.ope import EstimateTable
from opelab.select import assess, default_ks, nmse, rank_correlation, regret_at_k, sharpe_ratio_at_k


def _table() -> EstimateTable:
    # Three policies with true values J = (1, 2, 3); behavior value 0.5.
    estimates = np.array(
        [
            [1.0, 2.0, 3.0],  # "perfect": right order and values
            [3.0, 2.0, 1.0],  # "reversed": picks the worst first
            [2.0, 2.0, 2.0],  # "flat": all tied → stable order keeps policy a first
        ]
    )
    return EstimateTable(
        policy_names=("a", "b", "c"),
        estimator_names=("perfect", "reversed", "flat"),
        estimates=estimates,
        behavior_value=0.5,
    )


TRUE = np.array([1.0, 2.0, 3.0])


def test_summary_matches_the_metric_functions():
    table = _table()
    result = assess(table, TRUE, safety_threshold=1.5)
    assert result.ks == (2, 3)
    assert list(result.summary.index) == ["perfect", "reversed", "flat"]
    for name in table.estimator_names:
        est = table.estimate(name)
        row = result.summary.loc[name]
        assert row["nmse"] == nmse(TRUE, est)
        assert row["regret@1"] == regret_at_k(TRUE, est, 1)
        assert row["sharpe_ratio@2"] == sharpe_ratio_at_k(TRUE, est, 0.5, 2)
        if not np.isnan(rank_correlation(TRUE, est)):
            assert row["rank_correlation"] == rank_correlation(TRUE, est)
    # Hand values: "reversed" picks c=1 first → regret 2, normalised 2/3. Its top-2 are a, b (J 1, 2):
    # best@2 = 2, std@2 = 0.7071 → SR@2 = (2 − 0.5)/0.7071 = 2.1213. "flat" ranks a, b, c → same top-2.
    assert result.summary.loc["reversed", "regret@1"] == 2.0
    assert result.summary.loc["reversed", "normalized_regret@1"] == pytest.approx(2 / 3)
    assert result.summary.loc["reversed", "sharpe_ratio@2"] == pytest.approx(1.5 / np.sqrt(0.5))
    # "perfect" top-2 = c, b (J 3, 2): SR@2 = (3 − 0.5)/0.7071 = 3.5355.
    assert result.summary.loc["perfect", "sharpe_ratio@2"] == pytest.approx(2.5 / np.sqrt(0.5))
    # Safety threshold 1.5: truly safe = b, c. "reversed" estimates c unsafe? No: Ĵ(c) = 1 < 1.5 → Type I 1/2;
    # a is truly unsafe and estimated safe (3) → Type II 1/1.
    assert result.summary.loc["reversed", "type_i"] == 0.5
    assert result.summary.loc["reversed", "type_ii"] == 1.0
    assert np.isnan(result.summary.loc["flat", "rank_correlation"])


def test_topk_and_rankings():
    result = assess(_table(), TRUE, ks=[1, 2, 3])
    assert set(result.topk.columns) == {"estimator", "k", "best", "worst", "mean", "std", "sharpe_ratio"}
    assert len(result.topk) == 9
    perfect = result.topk[result.topk.estimator == "perfect"].set_index("k")
    assert perfect.loc[1, "best"] == 3.0 and np.isnan(perfect.loc[1, "sharpe_ratio"])
    assert perfect.loc[3, "worst"] == 1.0 and perfect.loc[3, "mean"] == 2.0
    assert result.rankings["perfect"] == ("c", "b", "a")
    assert result.rankings["reversed"] == ("a", "b", "c")
    assert result.rankings["flat"] == ("a", "b", "c")  # ties: first listed first


def test_picks_prefer_lower_or_higher_by_metric():
    picks = assess(_table(), TRUE).picks().set_index("metric")
    assert picks.loc["nmse", "estimator"] == "perfect"
    assert picks.loc["rank_correlation", "estimator"] == "perfect"  # "flat" is NaN and never wins
    assert picks.loc["regret@1", "estimator"] == "perfect"
    assert picks.loc["sharpe_ratio@2", "estimator"] == "perfect"


def test_picks_ties_go_to_the_first_estimator_and_all_nan_picks_nothing():
    table = EstimateTable(("a",), ("x", "y"), np.array([[1.0], [1.0]]), behavior_value=0.0)
    result = assess(table, [1.0])
    assert result.ks == (1,)
    picks = result.picks().set_index("metric")
    assert picks.loc["nmse", "estimator"] == "x"
    assert pd.isna(picks.loc["rank_correlation", "estimator"])
    assert pd.isna(picks.loc["sharpe_ratio@1", "estimator"])


def test_behavior_value_defaults_to_the_table_and_can_be_overridden():
    table = _table()
    assert assess(table, TRUE).behavior_value == 0.5
    overridden = assess(table, TRUE, behavior_value=2.5)
    assert overridden.summary.loc["perfect", "sharpe_ratio@2"] == pytest.approx(0.5 / np.sqrt(0.5))


def test_true_values_must_match_the_policies():
    with pytest.raises(ValueError, match="true_values: expected one value per policy"):
        assess(_table(), [1.0, 2.0])


def test_default_ks():
    assert default_ks(1) == (1,)
    assert default_ks(4) == (2, 3, 4)


def test_estimate_table_long_form():
    frame = _table().to_pandas()
    assert list(frame.columns) == ["policy", "estimator", "estimate"]
    assert len(frame) == 9
    row = frame[(frame.policy == "c") & (frame.estimator == "reversed")]
    assert float(row.estimate.iloc[0]) == 1.0
    with pytest.raises(KeyError, match="expected one of"):
        _table().estimate("nope")
    assert isinstance(frame, pd.DataFrame)
