"""Off-policy selection and the assessment of estimators (SharpeRatio@k and friends)."""

from opelab.select.assess import Assessment, assess, default_ks
from opelab.select.risk import (
    Criterion,
    assess_criteria,
    empirical_risk_measure,
    lower_bound_criterion,
    risk_criterion,
    risk_measure,
    safety_violation_rate_at_k,
    value_criterion,
)
from opelab.select.uncertainty import (
    Comparison,
    assessment_frame,
    best_estimator_table,
    compare_estimators,
    summarize_across_datasets,
)
from opelab.select.metrics import (
    TopKMetrics,
    TypeErrors,
    nmse,
    normalized_regret_at_k,
    rank_correlation,
    regret_at_k,
    sharpe_ratio_at_k,
    top_k_indices,
    topk_metrics,
    type_errors,
)

__all__ = [
    "Assessment",
    "Comparison",
    "Criterion",
    "assess_criteria",
    "empirical_risk_measure",
    "risk_criterion",
    "risk_measure",
    "assessment_frame",
    "best_estimator_table",
    "compare_estimators",
    "lower_bound_criterion",
    "safety_violation_rate_at_k",
    "summarize_across_datasets",
    "value_criterion",
    "TopKMetrics",
    "TypeErrors",
    "assess",
    "default_ks",
    "nmse",
    "normalized_regret_at_k",
    "rank_correlation",
    "regret_at_k",
    "sharpe_ratio_at_k",
    "top_k_indices",
    "topk_metrics",
    "type_errors",
]
