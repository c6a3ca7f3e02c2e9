"""Off-policy evaluation: inputs for P policies, Q-function estimation, estimators and ``evaluate``."""

from opelab.ope.estimators import ESTIMATORS, EstimationContext, PointEstimator, get_estimator, register_estimator
from opelab.ope.evaluate import EstimateTable, evaluate
from opelab.ope.inputs import OPEInput, OPEInputError, build_inputs, evaluation_action_probs
from opelab.ope.qfunction import fit_tabular_fqe, q_on_logged_steps

__all__ = [
    "ESTIMATORS",
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
