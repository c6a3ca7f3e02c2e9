"""Memory: what this machine can still give, what a heavy command will take, and a check before starting.

A command that cannot fit should say so in one line before it computes for a minute and dies with an empty
``MemoryError`` (or is killed by the kernel). Three pieces:

- ``available_memory()``: bytes this process may still allocate. On Linux the smaller of ``MemAvailable``
  (``/proc/meminfo``) and the room left under a cgroup memory limit (v2 ``memory.max``, v1
  ``memory.limit_in_bytes``, of the process's cgroup or any ancestor; usage counts without reclaimable
  inactive page cache); elsewhere ``sysconf`` free pages; ``None`` when nothing tells.
- ``check_memory(required, what, limit=...)``: raises ``ResourceError`` when an estimate exceeds the
  available memory, naming both numbers and how to override: an explicit ``limit`` (the command line's
  memory-limit option), else the ``OPELAB_MEMORY_LIMIT`` environment variable (``16G``, ``512M``, ``1.5GiB``,
  bytes; ``off`` skips the check), else ``available_memory()``.
- estimates of the heavy paths, in bytes, from the sizes alone (``DataSize``: n trajectories, horizon H,
  D values per observation, A actions; P policies, B bootstrap resamples, E estimators). They are
  upper-ish: measured peaks (tracemalloc; tabular tasks, every registered estimator) sit at about 0.8× the
  estimate (0.55× with one cheap estimator such as DM alone); the constants carry that headroom. With U = P·n·H·8 bytes (one float64 per policy and logged step):

      dataset_bytes    n·H·(8·D + 8·a + 8·A + 34)   observations, actions (a values a step), behavior action
                                                   probabilities (discrete), rewards, pscores, flags, discounts
      inputs_bytes     (4 + 4A)·U                   building an OPEInput: π_e(·|s) and Q̂(s,·) (A each), the
                                                   gathers and temporaries; (5 + A)·U of it stay held
      evaluate_bytes   max(inputs_bytes,            the held inputs, the estimators' shared arrays (≈ 13·U for
                           (18 + A)·U + bootstrap)  the whole registry) and the bootstrap's extra
      bootstrap_bytes  8·(K·n + B_c·n + B_c·K       the estimators' resampling terms as K = P·E·(1 + H/2)
                          + 2·E·P·B)                matrix columns (per-trajectory terms, and per-step ones for
                                                   the self-normalised forms), one chunk of counts (B_c =
                                                   min(B, 8·10⁶ / n) resamples) and its sums, every draw

  Continuous actions count as A = 1. ``opelab.bench.runner.cell_memory`` adds them up for a benchmark cell.

This module imports nothing of opelab's (sizes in, bytes out; a dataset or a task is read by duck typing), so
every stage and the command line can call it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "MEMORY_LIMIT_VARIABLE",
    "DataSize",
    "ResourceError",
    "available_memory",
    "bootstrap_bytes",
    "check_memory",
    "dataset_bytes",
    "evaluate_bytes",
    "format_bytes",
    "inputs_bytes",
    "memory_limit",
    "parse_bytes",
]

MEMORY_LIMIT_VARIABLE = "OPELAB_MEMORY_LIMIT"
BOOTSTRAP_CHUNK_ELEMENTS = 8_000_000  # opelab.ope.intervals draws B_c·n counts at a time, B_c = this // n
_FLOAT = 8
_PROC = Path("/proc")  # module attributes, so tests can point them at fake trees
_CGROUP = Path("/sys/fs/cgroup")
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63 − 1


class ResourceError(ValueError):
    """A command that would need more memory than this machine (or its cgroup) has available."""


# --------------------------------------------------------------------------- #
# sizes as text
# --------------------------------------------------------------------------- #
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int | None:
    """``"16G"``, ``"512MiB"``, ``"1.5gb"``, ``"2048"`` → bytes (binary units); ``"off"`` / ``"none"`` → None.
    Raises ``ValueError`` for anything else."""
    value = text.strip().lower()
    if value in ("off", "none", "no"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", value)
    if match is None or (match.group(2) == "" and value.endswith("ib")):
        raise ValueError(f"memory limit: expected a size such as 16G, 512M or 2048 (bytes), or off, found {text!r}")
    size = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"memory limit: expected a positive size, found {text!r}")
    return int(size)


def format_bytes(n: float) -> str:
    """Bytes for people: ``1.5 GiB``, ``320 MiB``, ``12 KiB``, ``80 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------- #
# what is available
# --------------------------------------------------------------------------- #
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _meminfo_available() -> int | None:
    text = _read(_PROC / "meminfo")
    match = None if text is None else re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
    return None if match is None else int(match.group(1)) * 1024


def _stat_value(text: str | None, key: str) -> int:
    match = None if text is None else re.search(rf"^{key}\s+(\d+)", text, re.MULTILINE)
    return 0 if match is None else int(match.group(1))


def _cgroup_available() -> int | None:
    """Room left under the tightest cgroup memory limit of this process (v2 or v1), or None if unlimited."""
    text = _read(_PROC / "self" / "cgroup") or ""
    rooms = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":  # v2: limit, usage, stat
            root, files = _CGROUP, ("memory.max", "memory.current", "inactive_file")
            if not (root / "memory.max").exists() and (root / "unified").is_dir():
                root = root / "unified"
        elif "memory" in controllers.split(","):
            root, files = _CGROUP / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        relative = Path(path.lstrip("/"))
        for folder in {root / relative, *[root / p for p in relative.parents], root}:  # own cgroup, ancestors, root
            limit = (_read(folder / files[0]) or "").strip()
            if not limit.isdigit() or int(limit) >= _UNLIMITED:
                continue
            usage = (_read(folder / files[1]) or "0").strip()
            used = int(usage) if usage.isdigit() else 0
            used -= min(used, _stat_value(_read(folder / "memory.stat"), files[2]))  # page cache the kernel can drop
            rooms.append(max(int(limit) - used, 0))
    return min(rooms) if rooms else None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _available() -> tuple[int | None, str]:
    """The available memory and where the number comes from (for messages)."""
    sources = ((_meminfo_available(), "MemAvailable"), (_cgroup_available(), "the cgroup memory limit"))
    found = [(value, name) for value, name in sources if value is not None]
    if found:
        return min(found)
    fallback = _sysconf_available()
    return fallback, "free physical pages"


def available_memory() -> int | None:
    """Bytes this process may still allocate (see the module docstring), or None when unknown."""
    return _available()[0]


def memory_limit(limit: int | str | None = None) -> tuple[int | None, str]:
    """The memory budget a check compares with, and its source: ``limit`` (bytes or a size such as ``"16G"``;
    ``"off"``: no check), else ``$OPELAB_MEMORY_LIMIT``, else the available memory (None: unknown or off)."""
    if limit is not None:
        return (parse_bytes(limit) if isinstance(limit, str) else int(limit)), "the given memory limit"
    variable = os.environ.get(MEMORY_LIMIT_VARIABLE)
    if variable is not None and variable.strip():
        try:
            return parse_bytes(variable), f"{MEMORY_LIMIT_VARIABLE}={variable}"
        except ValueError as exc:
            raise ResourceError(f"{MEMORY_LIMIT_VARIABLE}: {exc}") from None
    return _available()


def check_memory(required_bytes: float, what: str, *, limit: int | str | None = None, advice: str = "") -> None:
    """Raise ``ResourceError`` when ``required_bytes`` (an estimate for ``what``) exceeds the budget of
    ``memory_limit(limit)``. The one-line message gives both numbers and how to override; ``advice`` (e.g.
    "lower n_trajectories") comes before the override hint."""
    budget, source = memory_limit(limit)
    if budget is None or required_bytes <= budget:
        return
    gib, mib = math.ceil(required_bytes / 2**30), math.ceil(required_bytes / 2**20)
    suggestion = f"{gib}G" if required_bytes >= 2**30 else f"{mib}M"
    hint = f"{advice}; " if advice else ""
    raise ResourceError(
        f"memory: expected {what} to fit in {format_bytes(budget)} ({source}), found an estimate of "
        f"{format_bytes(required_bytes)}; {hint}override with {MEMORY_LIMIT_VARIABLE}={suggestion} "
        f"(or off to skip the check) if the estimate is too cautious"
    )


# --------------------------------------------------------------------------- #
# estimates (formulas in the module docstring)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class DataSize:
    """The sizes of logged data: n trajectories of H steps, D values per observation, and discrete actions
    (``n_actions``) or continuous ones (``n_actions`` None, ``action_dim`` values)."""

    n_trajectories: int
    horizon: int
    obs_size: int = 1
    n_actions: int | None = None
    action_dim: int = 1

    @classmethod
    def of(cls, data: Any, n_trajectories: int | None = None) -> DataSize:
        """The sizes of ``data``: a ``DataSize``, a ``LoggedDataset``, or a task (``horizon``, ``action_space``,
        optionally ``obs_shape``) with ``n_trajectories`` of it."""
        if isinstance(data, DataSize):
            return data if n_trajectories is None else replace(data, n_trajectories=int(n_trajectories))
        n = n_trajectories if n_trajectories is not None else data.n_trajectories
        space = data.action_space
        discrete = bool(space.is_discrete)
        return cls(
            n_trajectories=int(n),
            horizon=int(data.horizon),
            obs_size=int(math.prod(getattr(data, "obs_shape", None) or (1,))),
            n_actions=int(space.n_actions) if discrete else None,
            action_dim=1 if discrete else int(space.action_dim or 1),
        )

    @property
    def actions(self) -> int:
        """A in the formulas: the discrete actions, 1 for continuous ones."""
        return self.n_actions or 1


def dataset_bytes(n_trajectories: int, task: Any) -> int:
    """A ``LoggedDataset`` of ``n_trajectories`` trajectories of ``task`` (anything ``DataSize.of`` reads),
    with its cached discounts and discounted rewards."""
    size = DataSize.of(task, n_trajectories)
    action = 8 if size.n_actions is not None else 8 * size.action_dim
    probs = 8 * size.n_actions if size.n_actions is not None else 0
    return size.n_trajectories * size.horizon * (8 * size.obs_size + action + probs + 34)


def _unit(size: DataSize, n_policies: int) -> int:
    return n_policies * size.n_trajectories * size.horizon * _FLOAT  # U: one float64 per policy and logged step


def inputs_bytes(data: Any, n_policies: int) -> int:
    """Peak of building an ``OPEInput`` for ``n_policies`` policies on ``data`` (``opelab.ope.build_inputs``)."""
    size = DataSize.of(data)
    return (4 + 4 * size.actions) * _unit(size, n_policies)


def bootstrap_bytes(data: Any, n_policies: int, n_bootstrap: int, n_estimators: int = 20) -> int:
    """Extra peak of bootstrap intervals with B = ``n_bootstrap`` resamples over E = ``n_estimators``."""
    if n_bootstrap <= 0:
        return 0
    size = DataSize.of(data)
    n, H = size.n_trajectories, size.horizon
    chunk = min(n_bootstrap, max(1, BOOTSTRAP_CHUNK_ELEMENTS // n))
    terms = n_policies * n_estimators * (1 + H // 2)  # columns of opelab.ope.intervals.bootstrap_estimates
    return _FLOAT * (terms * n + chunk * n + chunk * terms + 2 * n_estimators * n_policies * n_bootstrap)


def evaluate_bytes(data: Any, n_policies: int, *, n_bootstrap: int = 0, n_estimators: int = 20) -> int:
    """Peak of evaluating ``n_policies`` policies on ``data`` (a ``LoggedDataset`` or a ``DataSize``): building
    their ``OPEInput`` (``inputs_bytes``), then ``opelab.ope.evaluate`` reading it ((5 + A)·U held) with the
    estimators' shared arrays (≈ 13·U for the whole registry) and ``bootstrap_bytes`` when ``n_bootstrap`` > 0.
    The dataset itself is not counted (``dataset_bytes``)."""
    size = DataSize.of(data)
    held = (18 + size.actions) * _unit(size, n_policies)
    evaluation = held + bootstrap_bytes(size, n_policies, n_bootstrap, n_estimators)
    return max(inputs_bytes(size, n_policies), evaluation)


DEFAULT_MAX_CELLS = 1 << 18
"""Padded steps per chunk of a stream (``opelab.data.chunks``, ``opelab.ope.streaming``): 262,144."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_children() -> Iterator[None]:
    """Processes started inside this block inherit one-thread settings (they read them at import);
    the driver's own environment is restored afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
