"""Logged data: the ``LoggedDataset`` contract, its validation and its storage formats."""

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.behavior import estimate_pscores, fit_behavior_policy
from opelab.data.describe import DatasetSummary, describe
from opelab.data.interop import from_d3rlpy, from_minari, logged_pscores, to_d3rlpy, to_minari
from opelab.data.obd import read_open_bandit_dataset
from opelab.data.tables import dataset_from_table
from opelab.data.validation import DatasetError

__all__ = [
    "ActionSpace",
    "DatasetError",
    "DatasetInfo",
    "DatasetSummary",
    "LoggedDataset",
    "dataset_from_table",
    "describe",
    "estimate_pscores",
    "fit_behavior_policy",
    "from_d3rlpy",
    "from_minari",
    "logged_pscores",
    "read_open_bandit_dataset",
    "to_d3rlpy",
    "to_minari",
]
