"""What the commands on real tasks share: tasks by name, model files, heads, datasets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from opelab.cli.output import CLIError

DISCRETE_HEADS = ("softmax", "epsilon_greedy", "greedy", "uniform")
CONTINUOUS_HEADS = ("gaussian", "truncated_gaussian")
HEAD_LEVEL = {"softmax": "temperature", "epsilon_greedy": "epsilon", "gaussian": "sigma", "truncated_gaussian": "sigma"}
MODEL_FILE = "a model file written by `opelab train` (opelab's safetensors format)"
TRUST_PICKLE_HELP = (
    "Also open pickle-based d3rlpy .d3 files. Opening one runs code stored in it: only for files you made yourself."
)


def learned_task(name: str, horizon: int | None = None, gamma: float | None = None, option: str = "TASK") -> Any:
    """A registered non-tabular task (gymnasium, MuJoCo or synthetic), optionally with its horizon and γ."""
    from opelab.envs import ALIASES, REGISTRY, make

    spec = REGISTRY.get(ALIASES.get(name, name))
    learned = [n for n, s in REGISTRY.items() if s.kind != "tabular"]
    if spec is None or spec.kind == "tabular":
        hint = " (tabular tasks have exact models: `opelab demo --task NAME`)" if spec is not None else ""
        raise CLIError(f"{option}: expected one of {learned}{hint}, found {name!r}")
    options: dict[str, Any] = {}
    if horizon is not None:
        options["horizon"] = horizon
    if gamma is not None:
        options["gamma"] = gamma
    return make(spec.name, **options)


def load_model(path: Path, option: str = "--policy", trust_pickle: bool = False) -> Any:
    """A saved base policy; files that are not opelab models are refused with one line (pickles unless trusted)."""
    from opelab.learn import LearnedPolicy

    if not path.exists():
        raise CLIError(f"{option}: expected {MODEL_FILE}, found nothing at {path}")
    if not path.is_file():
        raise CLIError(f"{option}: expected {MODEL_FILE}, found a folder at {path}")
    try:
        return LearnedPolicy.load(path, name=path.stem, trust_pickle=trust_pickle)
    except ImportError:
        raise
    except ValueError as exc:  # opelab's own errors name the file and what was wrong
        raise CLIError(f"{option}: {exc}") from exc
    except Exception as exc:  # anything else a foreign file provokes
        raise CLIError(f"{option}: expected {MODEL_FILE}, found an unreadable file at {path} ({type(exc).__name__}: {exc})") from exc


def check_model(model: Any, space: Any, where: str, path: Path) -> None:
    expected = f"{space.n_actions} discrete actions" if space.is_discrete else f"{space.action_dim}-dimensional continuous actions"
    found = f"{model.n_actions} discrete actions" if model.is_discrete else f"{model.action_dim}-dimensional continuous actions"
    if expected != found:
        raise CLIError(f"--policy: expected a model with {expected} ({where}), found {found} in {path}")


def head_name(head: str | None, uniform: bool, levels: dict[str, Any], space: Any) -> str:
    """The head from --head / --uniform, or from the one level option given (--temperature → softmax, ...)."""
    heads = DISCRETE_HEADS if space.is_discrete else CONTINUOUS_HEADS
    if uniform:
        if head not in (None, "uniform"):
            raise CLIError(f"--uniform: expected no other --head with it, found --head {head}")
        head = "uniform"
    if head is None:
        given = [name for name, value in levels.items() if value is not None]
        implied = {"temperature": "softmax", "epsilon": "epsilon_greedy", "sigma": CONTINUOUS_HEADS[0]}
        if len(given) != 1:
            raise CLIError(
                f"--head: expected one of {list(heads)} (or exactly one of --temperature, --epsilon, --sigma, --uniform), "
                f"found {'none' if not given else ', '.join('--' + g for g in given)}"
            )
        head = implied[given[0]]
    if head not in heads:
        raise CLIError(f"--head: expected one of {list(heads)} for {space.type} actions, found {head!r}")
    needed = HEAD_LEVEL.get(head)
    for name, value in levels.items():
        if value is not None and name != needed:
            raise CLIError(f"--{name}: expected no --{name} with --head {head}, found {value}")
    return head


def behavior_policy(model: Any, head: str, level: float | None, space: Any) -> Any:
    """A saved base policy under a head, named ``<model>_<head><level>`` like the candidates of opelab.learn."""
    from opelab.learn import LearnedGreedyPolicy
    from opelab.policies import EpsilonGreedyPolicy, GaussianPolicy, SoftmaxPolicy, UniformPolicy
    from opelab.policies.continuous import TruncatedGaussianPolicy

    if head == "uniform":
        return UniformPolicy(space.n_actions, name="uniform")
    if head == "greedy":
        return EpsilonGreedyPolicy(LearnedGreedyPolicy(model), 0.0, name=f"{model.name}_greedy")
    assert level is not None
    if head == "softmax":
        return SoftmaxPolicy(model, level, name=f"{model.name}_softmax{level:g}")
    if head == "epsilon_greedy":
        return EpsilonGreedyPolicy(LearnedGreedyPolicy(model), level, name=f"{model.name}_eps{level:g}")
    if head == "gaussian":
        return GaussianPolicy(model, level, space.low, space.high, name=f"{model.name}_gauss{level:g}")
    return TruncatedGaussianPolicy(model, level, space.low, space.high, name=f"{model.name}_tgauss{level:g}")


def check_level(head: str, level: float | None) -> None:
    option = HEAD_LEVEL.get(head)
    if option is None:
        return
    if level is None:
        raise CLIError(f"--{option}: expected a value for --head {head}, found none")
    valid = 0 <= level <= 1 if option == "epsilon" else level > 0
    if not valid or not math.isfinite(level):
        raise CLIError(f"--{option}: expected {'a number in [0, 1]' if option == 'epsilon' else 'a positive number'}, found {level}")


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or max(sizes) > 4096 or len(sizes) > 16:
        raise CLIError(f"--hidden: expected 1 to 16 layer sizes in [1, 4096] like 64,64, found {text!r}")
    return sizes


def read_dataset(path: Path, option: str = "DATASET") -> Any:
    from opelab.data import LoggedDataset

    if not path.exists():
        raise CLIError(f"{option}: expected a Parquet dataset (LoggedDataset.to_parquet, `opelab collect`), found nothing at {path}")
    if not path.is_file():
        raise CLIError(f"{option}: expected a Parquet dataset file, found a folder at {path}")
    return LoggedDataset.read_parquet(path)


def deterministic(model: Any) -> Any:
    from opelab.policies.continuous import DeterministicPolicy

    return DeterministicPolicy(model, name=model.name)
