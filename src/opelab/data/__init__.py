"""Logged data: the ``LoggedDataset`` contract, its validation and its storage formats."""

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError

__all__ = ["ActionSpace", "DatasetError", "DatasetInfo", "LoggedDataset"]
