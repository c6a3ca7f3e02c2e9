"""Off-policy evaluation: inputs for P policies, Q-function estimation, estimators and ``evaluate``."""

from opelab.ope.estimators import ESTIMATORS, EstimationContext, PointEstimator, estimator_grid, get_estimator, register_estimator
from opelab.ope.estimators.cdf import CDF_ESTIMATORS, CDFEstimator, CDFTable, evaluate_cdf, return_grid
from opelab.ope.evaluate import EstimateTable, evaluate
from opelab.ope.intervals import INTERVAL_METHODS
from opelab.ope.dice import BESTDICE, DICE_SETTINGS, DUALDICE, GENDICE, MWL, DiceSettings, solve_dice_tabular, tabular_dice_weights
from opelab.ope.fqe import FQEConfig, fit_fqe, fqe_q_function, predict_fqe
from opelab.ope.minimax import MinimaxConfig, fit_q, fit_state_weights, fit_weights, predict_q, predict_weights
from opelab.ope.minimax_continuous import (
    ContinuousWeightsFit,
    continuous_marginal_weights,
    fit_continuous_state_weights,
    fit_continuous_weights,
    predict_continuous_weights,
)
from opelab.ope.weights import FlowWeights, solve_flow_weights, tabular_marginal_weights, transition_counts
from opelab.ope.inputs import OPEInput, OPEInputError, build_inputs, evaluation_action_probs
from opelab.ope.continuous import build_continuous_inputs
from opelab.ope.kernels import KERNELS, Kernel, kernel_density
from opelab.ope.qfunction import fit_tabular_fqe, q_on_logged_steps
from opelab.ope.regression import RewardModel, fit_reward_model
from opelab.ope.diagnostics import overlap_diagnostics
from opelab.ope.refit import refit_bootstrap

__all__ = [
    "RewardModel",
    "fit_reward_model",
    "overlap_diagnostics",
    "refit_bootstrap",
    "BESTDICE",
    "DICE_SETTINGS",
    "DUALDICE",
    "GENDICE",
    "MWL",
    "DiceSettings",
    "MinimaxConfig",
    "ContinuousWeightsFit",
    "continuous_marginal_weights",
    "fit_continuous_state_weights",
    "fit_continuous_weights",
    "predict_continuous_weights",
    "FQEConfig",
    "fit_fqe",
    "fqe_q_function",
    "predict_fqe",
    "fit_q",
    "fit_state_weights",
    "fit_weights",
    "predict_q",
    "predict_weights",
    "solve_dice_tabular",
    "tabular_dice_weights",
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
    "build_continuous_inputs",
    "KERNELS",
    "Kernel",
    "kernel_density",
    "evaluate",
    "evaluation_action_probs",
    "estimator_grid",
    "get_estimator",
    "register_estimator",
    "fit_tabular_fqe",
    "q_on_logged_steps",
]
