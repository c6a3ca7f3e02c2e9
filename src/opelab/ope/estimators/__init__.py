"""OPE estimators: the contract, the registry and the point estimators."""

from opelab.ope.estimators.base import (
    ESTIMATORS,
    EstimationContext,
    PointEstimator,
    get_estimator,
    register_estimator,
    self_normalize,
)
from opelab.ope.estimators.marginal import (
    DoubleRL,
    StateActionMarginalDR,
    StateActionMarginalIS,
    StateActionMarginalSNDR,
    StateActionMarginalSNIS,
    StateMarginalDR,
    StateMarginalIS,
    StateMarginalSNDR,
    StateMarginalSNIS,
    spectrum,
    spectrum_weights,
)
from opelab.ope.estimators.point import (
    DirectMethod,
    DoublyRobust,
    PerDecisionIS,
    SelfNormalizedDoublyRobust,
    SelfNormalizedPerDecisionIS,
    SelfNormalizedTrajectoryIS,
    TrajectoryIS,
)

__all__ = [
    "ESTIMATORS",
    "DirectMethod",
    "DoubleRL",
    "DoublyRobust",
    "EstimationContext",
    "PerDecisionIS",
    "PointEstimator",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedPerDecisionIS",
    "SelfNormalizedTrajectoryIS",
    "StateActionMarginalDR",
    "StateActionMarginalIS",
    "StateActionMarginalSNDR",
    "StateActionMarginalSNIS",
    "StateMarginalDR",
    "StateMarginalIS",
    "StateMarginalSNDR",
    "StateMarginalSNIS",
    "TrajectoryIS",
    "get_estimator",
    "register_estimator",
    "self_normalize",
    "spectrum",
    "spectrum_weights",
]
