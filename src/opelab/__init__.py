"""opelab: offline decision making end to end.

Logged data (``opelab.data``) → candidate policies (``opelab.policies``) → off-policy evaluation
(``opelab.ope``) → selection and assessment (``opelab.select``), on tasks with exact ground truth
(``opelab.envs``).

The names below are re-exported lazily (PEP 562): ``import opelab`` costs nothing until one is used, so the
command line and ``opelab.<stage>`` imports load only what they need.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ActionSpace": "opelab.data",
    "DatasetError": "opelab.data",
    "DatasetInfo": "opelab.data",
    "LoggedDataset": "opelab.data",
    "TabularMDP": "opelab.envs",
    "collect": "opelab.envs",
    "EstimateTable": "opelab.ope",
    "OPEInput": "opelab.ope",
    "build_inputs": "opelab.ope",
    "evaluate": "opelab.ope",
    "assess": "opelab.select",
    "sharpe_ratio_at_k": "opelab.select",
    "topk_metrics": "opelab.select",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
