"""Off-policy selection and the assessment of estimators (SharpeRatio@k and friends), with truth
(``assess``) and without it, estimated from the logs (``recommend_estimator``: cross-validation, PAS-IF,
SLOPE)."""

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
from opelab.select.cv import CVResult, cv_select, subset_inputs
from opelab.select.pasif import PasifError, PasifResult, PseudoSplit, SubsamplingRule, fit_subsampling, pasif, pseudo_split
from opelab.select.recommend import Recommendation, RecommendError, recommend_estimator
from opelab.select.slope import SlopeResult, lepski_pick, slope, slope_family, slope_from_table
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
    "CVResult",
    "PasifError",
    "PasifResult",
    "PseudoSplit",
    "Recommendation",
    "RecommendError",
    "SlopeResult",
    "SubsamplingRule",
    "cv_select",
    "fit_subsampling",
    "lepski_pick",
    "pasif",
    "pseudo_split",
    "recommend_estimator",
    "slope",
    "slope_family",
    "slope_from_table",
    "subset_inputs",
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
