"""Off-policy evaluation: inputs for P policies, Q-function estimation, estimators and ``evaluate``."""

from opelab.ope.estimators import ESTIMATORS, EstimationContext, PointEstimator, get_estimator, register_estimator
from opelab.ope.estimators.cdf import CDF_ESTIMATORS, CDFEstimator, CDFTable, evaluate_cdf, return_grid
from opelab.ope.evaluate import EstimateTable, evaluate
from opelab.ope.intervals import INTERVAL_METHODS
from opelab.ope.weights import FlowWeights, solve_flow_weights, tabular_marginal_weights, transition_counts
from opelab.ope.inputs import OPEInput, OPEInputError, build_inputs, evaluation_action_probs
from opelab.ope.qfunction import fit_tabular_fqe, q_on_logged_steps

__all__ = [
    "CDF_ESTIMATORS",
    "CDFEstimator",
    "CDFTable",
    "ESTIMATORS",
    "FlowWeights",
    "INTERVAL_METHODS",
    "evaluate_cdf",
    "return_grid",
    "solve_flow_weights",
    "tabular_marginal_weights",
    "transition_counts",
    "EstimateTable",
    "EstimationContext",
    "OPEInput",
    "OPEInputError",
    "PointEstimator",
    "build_inputs",
    "evaluate",
    "evaluation_action_probs",
    "get_estimator",
    "register_estimator",
    "fit_tabular_fqe",
    "q_on_logged_steps",
]
