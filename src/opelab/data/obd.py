"""The Open Bandit Dataset (Saito et al., 2021: ZOZOTOWN's fashion recommendations) from its published CSV files.

Download the data yourself; this reads the layout it is published in:

    <path>/<behavior_policy>/<campaign>/<campaign>.csv        behavior_policy "random" or "bts",
    <path>/<behavior_policy>/<campaign>/item_context.csv      campaign "all", "men" or "women"

``<campaign>.csv`` has one row per impression: an unnamed index column, ``timestamp``, ``item_id``, ``position``
(1, 2 or 3: the slot of the three-item list), ``click`` (0/1), ``propensity_score`` (the behavior policy's
probability of the item at that slot), ``user_feature_0..3`` (hashed categorical strings) and
``user-item_affinity_0..K-1`` (numbers). ``item_context.csv`` has an unnamed index column, ``item_id`` and
``item_feature_0`` (a number) and ``item_feature_1..3`` (hashed categorical strings).

What ``read_open_bandit_dataset`` does, which is OBP's ``OpenBanditDataset`` default pre-processing:
    rows            sorted by ``timestamp`` (stable, so ties keep the file's order); one round per row
    action          ``item_id``; n_actions = the number of items of ``item_context.csv``, whose ids must be
                    0..n_items−1
    positions       ``position − 1``: slots 1, 2, 3 become 0, 1, 2 (OBP ranks the positions densely, the same
                    when all three occur); ``info.len_list`` = 3
    reward          ``click``
    behavior_pscore ``propensity_score``
    observations    (n, 1, d) float64: the one-hot encoding of ``user_feature_0..3``, each feature's categories
                    in sorted order with the first dropped (``pandas.get_dummies(drop_first=True)``, as OBP);
                    with ``include_affinity=True`` the ``user-item_affinity_*`` columns follow (OBP leaves
                    them out of its context)
    action_context  per item, in item_id order: ``item_feature_1..3`` label-encoded (each category's index in
                    sorted order, as scikit-learn's ``LabelEncoder``), then ``item_feature_0``
    terminals       True (each round is a one-step episode)
    info            task ``"obd/<behavior_policy>/<campaign>"``, gamma 1, behavior_policy the argument
A file that is missing, lacks a column or holds a value outside these ranges is refused with one
``DatasetError`` line naming the file, the column and the row (0-based data rows of the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError, one_line

BEHAVIOR_POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
LEN_LIST = 3
LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
USER_FEATURES = tuple(f"user_feature_{k}" for k in range(4))


def _shown(value: object) -> str:
    """``repr`` of a table cell, numpy scalars as the Python numbers they hold."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _read_csv(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise DatasetError(f"{path}: expected a file of the Open Bandit Dataset's layout, found nothing there")
    try:
        frame = pd.read_csv(path, dtype={name: str for name in (*USER_FEATURES, *(f"item_feature_{k}" for k in (1, 2, 3)))})
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"{path}: cannot be read as CSV ({one_line(error)})") from None
    first = str(frame.columns[0]) if len(frame.columns) else ""
    if first == "" or first.startswith("Unnamed:"):  # the index column the files are written with
        frame = frame.drop(columns=frame.columns[0])
    return frame


def _require(path: Path, frame: Any, columns: tuple[str, ...]) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: expected the column {missing[0]!r}, found columns {[str(c) for c in frame.columns][:20]}")
    for name in columns:
        bad = frame[name].isna().to_numpy()
        if bad.any():
            raise DatasetError(f"{path}: column {name!r}: expected a value in every row, found a missing value at row {int(np.flatnonzero(bad)[0])}")
    if len(frame) == 0:
        raise DatasetError(f"{path}: expected at least one row, found none")


def _numbers(path: Path, frame: Any, name: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: column {name!r}: expected finite numbers, found {_shown(frame[name].iloc[row])} at row {row}")
    return values


def _integers(path: Path, frame: Any, name: str, low: int, high: int) -> np.ndarray:
    values = _numbers(path, frame, name)
    bad = (values != np.floor(values)) | (values < low) | (values > high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: column {name!r}: expected integers in [{low}, {high}], found {_shown(frame[name].iloc[row])} at row {row}")
    return values.astype(np.int64)


def _codes(values: Any) -> tuple[np.ndarray, int]:
    """Each value's index among the sorted distinct values, and how many there are."""
    uniques, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return codes.reshape(-1), len(uniques)


def read_open_bandit_dataset(
    path: str | Path,
    behavior_policy: str = "random",
    campaign: str = "all",
    *,
    include_affinity: bool = False,
) -> LoggedDataset:
    """The Open Bandit Dataset's log of ``behavior_policy`` on ``campaign`` as a horizon-1 ``LoggedDataset``
    with positions (see the module's docstring for exactly what is read and how it is encoded)."""
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise DatasetError(f"behavior_policy: expected one of {list(BEHAVIOR_POLICIES)}, found {behavior_policy!r}")
    if campaign not in CAMPAIGNS:
        raise DatasetError(f"campaign: expected one of {list(CAMPAIGNS)}, found {campaign!r}")
    folder = Path(path) / behavior_policy / campaign
    if not folder.is_dir():
        raise DatasetError(f"{folder}: expected the folder <path>/{behavior_policy}/{campaign} of the Open Bandit Dataset, found none")
    items_path, log_path = folder / "item_context.csv", folder / f"{campaign}.csv"

    items = _read_csv(items_path)
    item_features = sorted((str(c) for c in items.columns if str(c).startswith("item_feature_")), key=lambda c: (len(c), c))
    _require(items_path, items, ("item_id", "item_feature_0", *item_features))
    item_ids = _integers(items_path, items, "item_id", 0, len(items) - 1)
    if len(np.unique(item_ids)) != len(item_ids):
        raise DatasetError(f"{items_path}: column 'item_id': expected each id 0..{len(items) - 1} once, found a repeated id")
    items = items.iloc[np.argsort(item_ids, kind="stable")]
    encoded = [_codes(items[name])[0].astype(np.float64) for name in item_features if name != "item_feature_0"]
    action_context = np.stack([*encoded, _numbers(items_path, items, "item_feature_0")], axis=1)  # (n_items, d_a)
    n_items = len(items)

    log = _read_csv(log_path)
    affinity = sorted((str(c) for c in log.columns if str(c).startswith("user-item_affinity_")), key=lambda c: (len(c), c))
    _require(log_path, log, (*LOG_COLUMNS, *USER_FEATURES, *(affinity if include_affinity else ())))
    import pandas as pd

    stamps = pd.to_datetime(log["timestamp"], errors="coerce", utc=True, format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{log_path}: column 'timestamp': expected dates and times, found {_shown(log['timestamp'].iloc[row])} at row {row}")
    actions = _integers(log_path, log, "item_id", 0, n_items - 1)
    positions = _integers(log_path, log, "position", 1, LEN_LIST) - 1
    clicks = _numbers(log_path, log, "click")
    pscore = _numbers(log_path, log, "propensity_score")
    bad = (pscore <= 0) | (pscore > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{log_path}: column 'propensity_score': expected probabilities in (0, 1], found {pscore[row].item()!r} at row {row}")
    one_hot = []
    for name in USER_FEATURES:
        codes, k = _codes(log[name])
        one_hot.append(np.eye(k, dtype=np.float64)[codes][:, 1:])  # drop the first category, as get_dummies(drop_first=True)
    if include_affinity:
        one_hot += [_numbers(log_path, log, name)[:, None] for name in affinity]
    context = np.concatenate(one_hot, axis=1)  # (n, d)
    order = np.argsort(stamps.to_numpy(dtype="datetime64[ns]"), kind="stable")

    info = DatasetInfo(
        task=f"obd/{behavior_policy}/{campaign}", gamma=1.0, action_space=ActionSpace.discrete(n_items),
        behavior_policy=behavior_policy, len_list=LEN_LIST, action_context=action_context,
    )  # fmt: skip
    n = len(order)
    return LoggedDataset(
        observations=context[order][:, None],
        actions=actions[order][:, None],
        rewards=clicks[order][:, None],
        terminals=np.ones((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=pscore[order][:, None],
        positions=positions[order][:, None],
        info=info,
    )
