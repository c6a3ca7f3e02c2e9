"""opelab: offline decision making end to end.

Logged data (``opelab.data``) → candidate policies (``opelab.policies``) → off-policy evaluation
(``opelab.ope``) → selection and assessment (``opelab.select``), on tasks with exact ground truth
(``opelab.envs``).
"""

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.envs import TabularMDP, collect
from opelab.ope import EstimateTable, OPEInput, build_inputs, evaluate
from opelab.select import assess, sharpe_ratio_at_k, topk_metrics

__version__ = "0.1.0"

__all__ = [
    "ActionSpace",
    "DatasetError",
    "DatasetInfo",
    "EstimateTable",
    "LoggedDataset",
    "OPEInput",
    "TabularMDP",
    "__version__",
    "assess",
    "build_inputs",
    "collect",
    "evaluate",
    "sharpe_ratio_at_k",
    "topk_metrics",
]
