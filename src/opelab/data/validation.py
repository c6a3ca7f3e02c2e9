"""Shared checks behind ``DatasetError``: each names the field, the expectation, the value found and where."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def freeze(array: np.ndarray) -> np.ndarray:
    """Mark an array this code just created read-only, in place, and return it."""
    array.flags.writeable = False
    return array


def owned_readonly(array: np.ndarray) -> np.ndarray:
    """A read-only array for a container to hold: writable inputs are copied, so the caller's later edits
    cannot bypass validation; arrays that are already read-only (another container's) are shared."""
    return freeze(array.copy() if array.flags.writeable else array.view())


class DatasetError(ValueError):
    """Logged data that breaks the ``LoggedDataset`` contract."""


_KIND_NAMES = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float"}


def first_index(bad: np.ndarray) -> tuple[int, ...]:
    """Index of the first True entry of a boolean array (C order)."""
    flat = int(np.flatnonzero(bad.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, bad.shape))


def format_index(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(i) for i in index) + ")"


def check_kind(name: str, array: np.ndarray, kinds: str, expected: str | None = None) -> None:
    if array.dtype.kind not in kinds:
        wanted = expected or "a numeric dtype (" + " or ".join(_KIND_NAMES[k] for k in kinds) + ")"
        raise DatasetError(f"{name}: expected {wanted}, found dtype {array.dtype}")


def check_ndim_prefix(name: str, array: np.ndarray, prefix: tuple[int, ...], expected: str) -> None:
    if array.shape[: len(prefix)] != prefix:
        raise DatasetError(f"{name}: expected shape {expected} starting with {prefix}, found {array.shape}")


def check_finite(name: str, array: np.ndarray, error: type[ValueError] = DatasetError) -> None:
    """Raise ``error`` naming the first NaN/inf entry of a float array (other dtypes are always finite)."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        idx = first_index(bad)
        raise error(f"{name}: expected finite values, found {array[idx]!r} at index {format_index(idx)}")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (pyarrow's and json's can span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def reject_json_constant(name: str) -> float:
    """``json.loads(..., parse_constant=reject_json_constant)``: NaN and ±Infinity are not JSON; refuse them."""
    raise ValueError(f"{name} is not valid JSON")


def json_type(value: object) -> str:
    """What a parsed JSON value is, in words ("an object", "a list", "null", ...)."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def check_keys(raw: object, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """``raw`` is a mapping holding every ``required`` key and no key outside ``required + optional``."""
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: expected a JSON object, found {json_type(raw)}")
    missing = [key for key in required if key not in raw]
    if missing:
        raise DatasetError(f"{where}: expected the key {missing[0]!r}, found keys {sorted(map(str, raw))}")
    unknown = sorted(str(key) for key in raw if key not in (*required, *optional))
    if unknown:
        raise DatasetError(f"{where}: expected only the keys {sorted([*required, *optional])}, found unexpected {unknown}")
