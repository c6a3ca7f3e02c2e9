"""Logged data: the ``LoggedDataset`` contract, its validation and its storage formats."""

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.describe import DatasetSummary, describe
from opelab.data.interop import from_d3rlpy, from_minari, logged_pscores, to_d3rlpy, to_minari
from opelab.data.validation import DatasetError

__all__ = [
    "ActionSpace",
    "DatasetError",
    "DatasetInfo",
    "DatasetSummary",
    "LoggedDataset",
    "describe",
    "from_d3rlpy",
    "from_minari",
    "logged_pscores",
    "to_d3rlpy",
    "to_minari",
]
