"""opelab's policy file: a trained d3rlpy algorithm in one safetensors file that cannot run code when opened.

Why. d3rlpy's own ``.d3`` file (``algo.save``) is a pickle: ``d3rlpy.load_learnable`` calls ``pickle.load``,
which runs whatever code the file tells it to. A policy file downloaded from someone else must be data only.

Layout (format version 1). One safetensors file (https://huggingface.co/docs/safetensors): an 8-byte
little-endian header length, a JSON header, then raw tensor bytes. The header's ``__metadata__`` holds one key,
``"opelab"``, whose value is a JSON document (``PolicyDocument``)::

    {"format": "opelab.policy", "version": 1, "algorithm": "sac", "name": "sac_64x64", "hidden": [64, 64],
     "action_space": {"type": "continuous", "n_actions": null, "action_dim": 1, "low": [-2.0], "high": [2.0]},
     "observation_shape": [3], "action_size": 1, "d3rlpy_version": "2.8.0",
     "config": {... d3rlpy's config.serialize(): batch size, γ, encoders, the observation / action / reward
                scalers with their fitted parameters (mean, std, minimum, maximum), ...}}

``action_space`` is written as ``DatasetInfo`` writes it in Parquet metadata; ``d3rlpy_version`` is
informative (not checked: the config and tensor checks catch what another d3rlpy would break). The tensors
are the state dicts of every network of the algorithm (``algo.impl.modules``: critics, target critics, actor,
target actor, value function, VAE, imitator, temperature), named ``"<module>.<state-dict key>"``, e.g.
``"policy._mu.weight"``.
Optimizer states are left out: a policy file is for acting and evaluating, not for resuming training
(``lp.algo.save(path)`` still writes d3rlpy's ``.d3`` with them, for d3rlpy's own tools). Tensors that two
modules share (discrete BCQ's imitator reuses the critic's encoder) are written once per name; loading copies
the same values into the shared parameter twice, and the rebuilt algorithm shares it again by construction.

Reading (``read_policy_file``) never unpickles and never calls ``torch.load``: the JSON document is validated
field by field, the config is rebuilt with the d3rlpy config class that the opelab algorithm names
(``config_class.deserialize``), the networks are created on the CPU with ``create_impl(observation_shape,
action_size)`` (under a fixed seed, leaving the caller's random streams alone), and every module loads its
tensors strictly: the set of names, every shape and every dtype must match, or nothing is loaded.

The format is told by content, not by the file name: a safetensors file starts with its header length and
``{``; a pickle with ``0x80`` and the protocol number. A pickle (d3rlpy's ``.d3``) is refused with
``UnsafeModelError`` unless the caller passes ``trust_pickle=True`` (only for files they made themselves).
Every other unreadable file raises ``ModelFileError`` (a ``ValueError``) with one line naming the file, the
field, what was expected and what was found. ``.safetensors`` is the conventional suffix; other suffixes are
accepted (with a ``.d3`` name, d3rlpy's tools would try to unpickle the file and fail).

Known limit: the config chooses the network sizes, so a crafted file can ask for very large networks; they
are allocated before the tensors are compared (an out-of-memory error, never code execution).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from opelab.data import ActionSpace
from opelab.data.validation import DatasetError
from opelab.learn.algorithms import ALGORITHMS, check_hidden, hidden_label, import_d3rlpy, quiet_d3rlpy, seeded

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ModelFileError",
    "PolicyDocument",
    "UnsafeModelError",
    "read_policy_file",
    "write_policy_file",
]

FORMAT = "opelab.policy"
FORMAT_VERSION = 1
METADATA_KEY = "opelab"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
_DOCUMENT_KEYS = (
    "format", "version", "algorithm", "name", "hidden", "action_space", "observation_shape", "action_size",
    "d3rlpy_version", "config",
)  # fmt: skip


class ModelFileError(ValueError):
    """A file that is not a readable opelab policy file: the file, the field, the expectation and the value found.

    The message is one line, e.g. ``m.safetensors: opelab.action_size: expected 2 (from action_space), found 3``.
    """

    def __init__(self, path: str | PathLike[str], message: str, key: str = "") -> None:
        self.path, self.key, self.message = str(path), key, message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


class UnsafeModelError(ModelFileError):
    """A pickle-based model file (d3rlpy's ``.d3``), refused because opening it can run code stored in it."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``"KeyError: 'x'"``: an exception's type and message on one line, cut at ``limit`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class PolicyDocument:
    """The JSON document of a policy file (see the module docstring); ``config`` is d3rlpy's serialised config."""

    algorithm: str
    name: str
    hidden: tuple[int, ...]
    action_space: ActionSpace
    observation_shape: tuple[int, ...]
    action_size: int
    config: Mapping[str, Any]
    d3rlpy_version: str

    def to_json(self) -> str:
        space = dataclasses.asdict(self.action_space)
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "algorithm": self.algorithm,
            "name": self.name,
            "hidden": list(self.hidden),
            "action_space": space,
            "observation_shape": list(self.observation_shape),
            "action_size": self.action_size,
            "d3rlpy_version": self.d3rlpy_version,
            "config": dict(self.config),
        }
        return json.dumps(document, allow_nan=False)


# --------------------------------------------------------------------------- #
# writing
# --------------------------------------------------------------------------- #
def network_modules(impl: Any) -> dict[str, Any]:
    """The ``torch.nn.Module``s of a d3rlpy implementation by field name (its optimizers left out)."""
    import torch

    modules = impl.modules
    found = {f.name: getattr(modules, f.name) for f in dataclasses.fields(modules)}
    return {name: module for name, module in found.items() if isinstance(module, torch.nn.Module)}


def write_policy_file(
    path: str | PathLike[str],
    algo: Any,
    *,
    algorithm: str,
    hidden: Sequence[int],
    action_space: ActionSpace,
    name: str,
) -> Path:
    """Write ``algo`` (a built d3rlpy algorithm) and opelab's description of it as one safetensors file."""
    import safetensors.torch

    d3rlpy = import_d3rlpy()
    impl = algo.impl
    document = PolicyDocument(
        algorithm=algorithm,
        name=name,
        hidden=tuple(hidden),
        action_space=action_space,
        observation_shape=tuple(int(n) for n in impl.observation_shape),
        action_size=int(impl.action_size),
        config=json.loads(algo.config.serialize()),
        d3rlpy_version=d3rlpy.__version__,
    )
    tensors = {
        f"{module_name}.{key}": tensor.detach().cpu().clone().contiguous()  # clone: shared tensors written apart
        for module_name, module in network_modules(impl).items()
        for key, tensor in module.state_dict().items()
    }
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: document.to_json()})
    path = Path(path)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def read_policy_file(path: str | PathLike[str], *, trust_pickle: bool = False) -> tuple[Any, PolicyDocument]:
    """The d3rlpy algorithm in the file at ``path`` and its document (see the module docstring).

    A pickle-based d3rlpy ``.d3`` file is read with ``d3rlpy.load_learnable`` only with ``trust_pickle=True``
    (its document is then recovered from the config, with the default name); otherwise ``UnsafeModelError``.
    """
    if not isinstance(path, (str, PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, found {type(path).__name__}")
    file = Path(path)
    if not file.exists():
        raise ModelFileError(file, "expected an opelab policy file (.safetensors), found nothing at this path")
    if file.is_dir():
        raise ModelFileError(file, "expected an opelab policy file (.safetensors), found a directory")
    try:
        with file.open("rb") as f:
            return _read_open_file(file, f, trust_pickle)
    except OSError as exc:
        raise ModelFileError(file, f"expected a readable policy file, found an OS error: {_one_line(exc)}") from None


def _read_open_file(file: Path, f: Any, trust_pickle: bool) -> tuple[Any, PolicyDocument]:
    size = file.stat().st_size
    start = f.read(8)
    expected = "expected an opelab policy file (safetensors: an 8-byte header length, then a JSON header)"
    if len(start) == 0:
        raise ModelFileError(file, f"{expected}, found an empty file")
    if start[0] == 0x80 and len(start) > 1 and 2 <= start[1] <= 5:
        if not trust_pickle:
            raise UnsafeModelError(
                file,
                f"expected an opelab policy file (safetensors), found a pickle (protocol {start[1]}, as in d3rlpy's "
                ".d3 files); refused because opening a pickle can run code stored in it. If you made this file "
                "yourself, load it with trust_pickle=True (CLI: --trust-pickle) and re-save it with "
                "LearnedPolicy.save to convert it to the safe format",
            )
        return _read_d3(file)
    if start[:4] == b"PK\x03\x04":
        raise ModelFileError(file, f"{expected}, found a zip archive (e.g. a torch.save checkpoint)")
    if len(start) < 8:
        raise ModelFileError(file, f"{expected}, found a file of {size} bytes (too short for the header length)")
    n = int.from_bytes(start, "little")
    if n > min(size - 8, MAX_HEADER_BYTES):
        raise ModelFileError(
            file, f"{expected}, found a header length of {n} bytes in a file of {size} (truncated, or not safetensors)"
        )
    raw_header = f.read(n)
    if not raw_header.startswith(b"{"):
        raise ModelFileError(file, f"{expected}, found a header starting with {raw_header[:8]!r}")
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(file, f"{expected}, found a header that is not JSON ({_one_line(exc)})") from None
    if not isinstance(header, dict):
        raise ModelFileError(file, f"{expected}, found a header that is not a JSON object")
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        found = "no metadata" if not isinstance(metadata, dict) else f"the keys {_show(sorted(metadata))}"
        raise ModelFileError(
            file,
            f"expected opelab's key {METADATA_KEY!r}, found {found} (not written by LearnedPolicy.save)",
            key="__metadata__",
        )
    document = _parse_document(file, metadata[METADATA_KEY])
    d3rlpy = import_d3rlpy()
    import safetensors.torch

    config = _parse_config(file, document, d3rlpy)
    f.seek(0)
    try:
        tensors = safetensors.torch.load(f.read())
    except Exception as exc:  # safetensors raises its own SafetensorError (and others on odd input)
        raise ModelFileError(file, f"{expected}, found unreadable tensor data ({_one_line(exc)})") from None
    algo = _build(file, document, config)
    _load_tensors(file, algo, tensors)
    return algo, document


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sizes(value: Any) -> bool:
    """A non-empty JSON list of positive ints."""
    return isinstance(value, list) and len(value) > 0 and all(_is_int(n) and n >= 1 for n in value)


def _parse_document(file: Path, text: Any) -> PolicyDocument:
    """The JSON document, checked field by field (format and version first: a newer layout may differ)."""

    def fail(field: str, message: str) -> ModelFileError:
        return ModelFileError(file, message, key=f"{METADATA_KEY}.{field}" if field else METADATA_KEY)

    if not isinstance(text, str):
        raise fail("", f"expected a JSON document, found {type(text).__name__}")
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, or NaN / Infinity (save writes neither)
        raise fail("", f"expected a JSON document, found invalid JSON ({_one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise fail("", f"expected a JSON object, found {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise fail("format", f"expected {FORMAT!r}, found {_show(raw.get('format'))}")
    version = raw.get("version")
    if not _is_int(version) or version < 1:
        raise fail("version", f"expected a format version (a positive int), found {_show(version)}")
    if version > FORMAT_VERSION:
        raise fail(
            "version",
            f"expected format version {FORMAT_VERSION} or older (the newest this opelab reads), found {version}: "
            "written by a newer opelab, upgrade to read it",
        )
    missing = [k for k in _DOCUMENT_KEYS if k not in raw]
    if missing:
        raise fail("", f"expected the keys {list(_DOCUMENT_KEYS)}, found {missing} missing")
    algorithm = raw["algorithm"]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise fail("algorithm", f"expected one of {list(ALGORITHMS)}, found {_show(algorithm)}")
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise fail("name", f"expected a non-empty str, found {_show(raw['name'])}")
    for field in ("hidden", "observation_shape"):
        if not _sizes(raw[field]):
            raise fail(field, f"expected a non-empty list of positive ints, found {_show(raw[field])}")
    space = _parse_action_space(raw["action_space"], fail)
    spec = ALGORITHMS[algorithm]
    if space.type != spec.action_type:
        raise fail("action_space.type", f"expected {spec.action_type} actions for {algorithm}, found {space.type}")
    size = space.n_actions if space.is_discrete else space.action_dim
    if not _is_int(raw["action_size"]) or raw["action_size"] != size:
        raise fail("action_size", f"expected {size} (from action_space), found {_show(raw['action_size'])}")
    if not isinstance(raw["d3rlpy_version"], str):
        raise fail("d3rlpy_version", f"expected a str, found {_show(raw['d3rlpy_version'])}")
    if not isinstance(raw["config"], dict):
        raise fail("config", f"expected a JSON object, found {type(raw['config']).__name__}")
    return PolicyDocument(
        algorithm=algorithm,
        name=raw["name"],
        hidden=tuple(int(h) for h in raw["hidden"]),
        action_space=space,
        observation_shape=tuple(int(n) for n in raw["observation_shape"]),
        action_size=int(size),
        config=raw["config"],
        d3rlpy_version=raw["d3rlpy_version"],
    )


def _parse_action_space(raw: Any, fail: Callable[[str, str], ModelFileError]) -> ActionSpace:
    """An ``ActionSpace`` as ``DatasetInfo.to_json`` writes it."""
    fields = {f.name for f in dataclasses.fields(ActionSpace)}
    if not isinstance(raw, dict) or not set(raw) <= fields or "type" not in raw:
        raise fail("action_space", f"expected an object with keys {sorted(fields)}, found {_show(raw)}")
    values = dict(raw)
    for bound in ("low", "high"):
        if values.get(bound) is not None:
            if not isinstance(values[bound], list) or not all(_is_number(x) for x in values[bound]):
                raise fail(f"action_space.{bound}", f"expected a list of finite numbers, found {_show(values[bound])}")
            values[bound] = tuple(float(x) for x in values[bound])
    try:
        return ActionSpace(**values)
    except DatasetError as exc:
        raise fail("action_space", f"expected a valid action space, found {_show(raw)} ({_one_line(exc)})") from None


def _parse_config(file: Path, document: PolicyDocument, d3rlpy: Any) -> Any:
    """d3rlpy's config, deserialised with the class the algorithm names, its scalers checked against the shapes."""
    spec = ALGORITHMS[document.algorithm]

    def fail(field: str, message: str) -> ModelFileError:
        return ModelFileError(file, message, key=f"{METADATA_KEY}.config" + (f".{field}" if field else ""))

    config_class = getattr(d3rlpy.algos, spec.config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # dataclasses_json warns on mistyped fields: refuse them
            config = config_class.deserialize(json.dumps(dict(document.config)))
    except Exception as exc:  # dataclasses_json raises KeyError, TypeError, ValueError, ... on a bad document
        message = f"expected a {spec.config} as d3rlpy serialises it, found one it cannot read ({_one_line(exc)})"
        raise fail("", message) from None
    if not isinstance(config, config_class):
        raise fail("", f"expected a {spec.config}, found {type(config).__name__}")
    shapes = {"observation_scaler": document.observation_shape, "action_scaler": (document.action_size,)}
    for field in ("observation_scaler", "action_scaler", "reward_scaler"):
        scaler = getattr(config, field)
        if scaler is None:
            continue
        if not scaler.built:
            raise fail(field, f"expected a fitted scaler, found an unfitted {scaler.get_type()!r}")
        for name, value in vars(scaler).items():  # NaN and infinities were refused with the JSON
            if name.startswith("_") or not isinstance(value, np.ndarray):
                continue
            if not np.issubdtype(value.dtype, np.number):
                raise fail(f"{field}.{name}", f"expected numbers, found {_show(value.tolist())}")
            if field in shapes and value.shape != shapes[field]:
                raise fail(f"{field}.{name}", f"expected shape {list(shapes[field])}, found {list(value.shape)}")
    space, scaler = document.action_space, config.action_scaler
    if space.is_discrete and scaler is not None:
        raise fail("action_scaler", f"expected none for discrete actions, found {scaler.get_type()!r}")
    if not space.is_discrete and isinstance(scaler, d3rlpy.preprocessing.MinMaxActionScaler):
        for name, bound in (("minimum", space.low), ("maximum", space.high)):
            found = np.asarray(getattr(scaler, name), dtype=np.float32).reshape(-1)
            if bound is None or not np.array_equal(found, np.asarray(bound, dtype=np.float32)):
                message = f"expected the box of action_space ({_show(bound)}), found {found.tolist()}"
                raise fail(f"action_scaler.{name}", message)
    return config


def _build(file: Path, document: PolicyDocument, config: Any) -> Any:
    """The algorithm with fresh networks on the CPU (created under a fixed seed, caller's random streams kept)."""
    try:
        with seeded(0), quiet_d3rlpy():
            algo = config.create(device=False)
            algo.create_impl(document.observation_shape, document.action_size)
    except Exception as exc:  # d3rlpy asserts (AssertionError) and torch raises on configs it cannot build
        raise ModelFileError(
            file,
            f"expected a config d3rlpy can build for observations {list(document.observation_shape)} and "
            f"{document.action_size} actions, found one it refuses ({_one_line(exc)})",
            key=f"{METADATA_KEY}.config",
        ) from None
    return algo


def _load_tensors(file: Path, algo: Any, tensors: Mapping[str, Any]) -> None:
    """Load every module's state dict from ``tensors`` after checking names, shapes and dtypes (strict)."""
    modules = network_modules(algo.impl)
    expected = {f"{m}.{key}": value for m, module in modules.items() for key, value in module.state_dict().items()}
    what = f"{type(algo).__name__} with observations {list(algo.impl.observation_shape)}"
    missing = [name for name in expected if name not in tensors]
    if missing:
        message = f"expected the {len(expected)} tensors of {what}, found {len(missing)} missing, e.g. {missing[0]!r}"
        raise ModelFileError(file, message, key="tensors")
    extra = sorted(name for name in tensors if name not in expected)
    if extra:
        message = f"expected only the {len(expected)} tensors of {what}, found {len(extra)} more, e.g. {extra[0]!r}"
        raise ModelFileError(file, message, key="tensors")
    for name, value in expected.items():
        found = tensors[name]
        if tuple(found.shape) != tuple(value.shape) or found.dtype != value.dtype:
            raise ModelFileError(
                file,
                f"expected shape {list(value.shape)} ({value.dtype}), found {list(found.shape)} ({found.dtype})",
                key=f"tensors.{name}",
            )
    for module_name, module in modules.items():
        prefix = f"{module_name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)


def _read_d3(file: Path) -> tuple[Any, PolicyDocument]:
    """A trusted d3rlpy ``.d3`` pickle: ``d3rlpy.load_learnable``, the document recovered from the config."""
    d3rlpy = import_d3rlpy()
    try:
        with quiet_d3rlpy():
            algo = d3rlpy.load_learnable(str(file), device=False)
    except Exception as exc:  # whatever a pickle that is not a d3rlpy learnable raises
        message = f"expected a d3rlpy .d3 file, found a pickle d3rlpy cannot load ({_one_line(exc)})"
        raise ModelFileError(file, message) from None
    config = algo.config
    matches = [spec for spec in ALGORITHMS.values() if type(config).__name__ == spec.config]
    if not matches:
        configs = [s.config for s in ALGORITHMS.values()]
        raise ModelFileError(file, f"expected a saved algorithm of {configs}, found {type(config).__name__}")
    spec = matches[0]
    encoder = next(getattr(config, f) for f in ("encoder_factory", "actor_encoder_factory") if hasattr(config, f))
    hidden = check_hidden(tuple(int(h) for h in encoder.hidden_units))
    if spec.action_type == "discrete":
        space = ActionSpace.discrete(int(algo.action_size))
    else:
        scaler = config.action_scaler
        low = None if scaler is None else np.asarray(scaler.minimum, dtype=np.float64).reshape(-1).tolist()
        high = None if scaler is None else np.asarray(scaler.maximum, dtype=np.float64).reshape(-1).tolist()
        space = ActionSpace.continuous(int(algo.action_size), low=low, high=high)
    document = PolicyDocument(
        algorithm=spec.name,
        name=f"{spec.name}_{hidden_label(hidden)}",
        hidden=hidden,
        action_space=space,
        observation_shape=tuple(int(n) for n in algo.impl.observation_shape),
        action_size=int(algo.action_size),
        config=json.loads(config.serialize()),
        d3rlpy_version=d3rlpy.__version__,
    )
    return algo, document
