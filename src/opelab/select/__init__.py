"""Off-policy selection and the assessment of estimators (SharpeRatio@k and friends)."""

from opelab.select.assess import Assessment, assess, default_ks
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
