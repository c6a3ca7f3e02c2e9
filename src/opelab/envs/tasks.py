"""Tabular tasks a person can picture, and the registry ``make(name)``.

- ``gridworld``: a small maze with a goal, a pit and walls. Moves slip to a random other direction with
  probability ``slip``; every move costs a little, the goal pays +1 and ends the episode, the pit costs −1
  and ends it too. Episodes therefore have different lengths, and naive policies differ clearly: the
  optimal policy walks around the pit, the uniform policy wanders and often falls in.
- ``chain``: a river-swim chain (Strehl & Littman, 2008). Swimming left always works and pays a trickle at
  the left bank; swimming right against the current usually fails but leads to a large reward at the far
  end. Myopic policies stay left; far-sighted ones swim right.

- ``bandit``, ``bandit_continuous``, ``bandit_embeddings``, ``bandit_positions``: contextual bandits over a
  finite context set (``opelab.envs.bandit.synthetic_bandit``); ``slate``, ``slate_cascade``: Plackett–Luce
  rankings with independent or cascade clicks (``synthetic_slate``). Their exact values are finite sums.

``REGISTRY`` (a ``TaskSpec`` per name: kind, action type, default horizon and gamma) lists these and the
gymnasium, MuJoCo and synthetic tasks; ``make(name, **options)`` builds any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np

from opelab.envs import bandit, gym_tasks, recsys, rtb
from opelab.envs.tabular import TabularMDP

DEFAULT_GRID = (
    "....G",
    ".#.#.",
    "..X..",
    ".#...",
    "S....",
)
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
MOVE_NAMES = ("up", "right", "down", "left")


def gridworld(
    layout: tuple[str, ...] = DEFAULT_GRID,
    *,
    slip: float = 0.1,
    horizon: int = 20,
    gamma: float = 0.95,
    step_reward: float = -0.04,
    goal_reward: float = 1.0,
    pit_reward: float = -1.0,
    reward_noise: float = 0.1,
) -> TabularMDP:
    """Grid maze from a layout of ``S`` start, ``G`` goal, ``X`` pit, ``#`` wall and ``.`` floor cells.

    Walls are not states. Bumping into a wall or the border leaves the agent in place.
    R(s, a, s') = step_reward + goal_reward·1{s' = G} + pit_reward·1{s' = X}.
    """
    rows, cols = len(layout), len(layout[0])
    if any(len(row) != cols for row in layout):
        raise ValueError("layout: expected rows of equal length")
    cells = [(r, c) for r in range(rows) for c in range(cols) if layout[r][c] != "#"]
    index = {cell: i for i, cell in enumerate(cells)}
    S, A = len(cells), len(MOVES)
    kinds = [layout[r][c] for r, c in cells]
    for needed in "SG":
        if needed not in kinds:
            raise ValueError(f"layout: expected a {needed!r} cell, found none")

    def target(cell: tuple[int, int], move: tuple[int, int]) -> int:
        r, c = cell[0] + move[0], cell[1] + move[1]
        return index.get((r, c), index[cell]) if 0 <= r < rows and 0 <= c < cols else index[cell]

    P = np.zeros((S, A, S))
    for s, cell in enumerate(cells):
        for a in range(A):
            P[s, a, target(cell, MOVES[a])] += 1.0 - slip
            for other in range(A):
                if other != a:
                    P[s, a, target(cell, MOVES[other])] += slip / (A - 1)
    terminal = np.array([k in "GX" for k in kinds])
    bonus = np.array([goal_reward if k == "G" else pit_reward if k == "X" else 0.0 for k in kinds])
    R = step_reward + np.broadcast_to(bonus, (S, A, S))
    initial = np.array([1.0 if k == "S" else 0.0 for k in kinds])
    initial /= initial.sum()
    return TabularMDP(
        initial=initial,
        transitions=P,
        rewards=R,
        horizon=horizon,
        gamma=gamma,
        reward_noise=reward_noise,
        terminal_states=terminal,
        name="gridworld",
        state_names=tuple(f"{k}({r},{c})" for k, (r, c) in zip(kinds, cells)),
    )


def chain(
    n_states: int = 6,
    *,
    horizon: int = 20,
    gamma: float = 0.95,
    success: float = 0.35,
    stay: float = 0.6,
    left_reward: float = 0.05,
    right_reward: float = 1.0,
    reward_noise: float = 0.1,
) -> TabularMDP:
    """River swim: action 0 swims left (always works), action 1 swims right against the current.

    Swimming right moves right with probability ``success``, stays with ``stay`` and drifts left otherwise.
    Being at the left bank and swimming left pays ``left_reward``; being at the right bank and swimming right
    pays ``right_reward``. Episodes start in the two leftmost states.
    """
    if n_states < 3:
        raise ValueError(f"n_states: expected at least 3, found {n_states}")
    if not (0 <= success and 0 <= stay and success + stay <= 1):
        raise ValueError(f"success, stay: expected non-negative with success + stay <= 1, found {success}, {stay}")
    S, A = n_states, 2
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for s in range(S):
        P[s, 0, max(s - 1, 0)] = 1.0
        right, left = min(s + 1, S - 1), max(s - 1, 0)
        P[s, 1, right] += success
        P[s, 1, s] += stay
        P[s, 1, left] += 1.0 - success - stay
    R[0, 0] = left_reward
    R[S - 1, 1] = right_reward
    initial = np.zeros(S)
    initial[:2] = 0.5
    return TabularMDP(
        initial=initial,
        transitions=P,
        rewards=R,
        horizon=horizon,
        gamma=gamma,
        reward_noise=reward_noise,
        name="chain",
    )


def random_task(seed: int = 0) -> TabularMDP:
    """A random 10-state, 3-action MDP with two terminal states (varying episode lengths)."""
    return TabularMDP.random(10, 3, horizon=15, gamma=0.9, seed=seed, reward_noise=0.1, n_terminal=2)


TASKS: dict[str, Callable[..., TabularMDP]] = {
    "gridworld": gridworld,
    "chain": chain,
    "random": random_task,
}
"""The tabular tasks (exact ground truth by dynamic programming). ``REGISTRY`` lists every task."""

BANDIT_TASKS: dict[str, Callable[..., bandit.SyntheticBandit]] = {
    "bandit": partial(bandit.synthetic_bandit, name="bandit"),
    "bandit_continuous": partial(bandit.synthetic_bandit, reward_type="continuous", name="bandit_continuous"),
    "bandit_embeddings": partial(bandit.synthetic_bandit, n_embedding_categories=3, name="bandit_embeddings"),
    "bandit_positions": partial(bandit.synthetic_bandit, len_list=3, name="bandit_positions"),
}
"""One-step contextual bandits with exact truth (``opelab.envs.bandit``); options go to ``synthetic_bandit``."""

SLATE_TASKS: dict[str, Callable[..., bandit.SyntheticSlate]] = {
    "slate": partial(bandit.synthetic_slate, name="slate"),
    "slate_cascade": partial(bandit.synthetic_slate, reward_structure="cascade", name="slate_cascade"),
}
"""Ranking bandits (4 items, 3 slots) with exact truth by enumeration; options go to ``synthetic_slate``."""

TaskKind = Literal["tabular", "gym", "mujoco", "synthetic"]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: how to build it and what it is.

    ``kind`` is ``tabular`` (exact ground truth: finite MDPs by dynamic programming, and the finite-context
    bandits and slates of ``opelab.envs.bandit`` by exact sums), ``gym`` (gymnasium classic control, numpy), ``mujoco``
    (gymnasium MuJoCo; needs ``extra``) or ``synthetic`` (industry-style simulators). ``horizon`` and
    ``gamma`` are the defaults that ``make(name)`` uses; ``source`` names the gymnasium id or the model.
    """

    name: str
    kind: TaskKind
    action_type: Literal["discrete", "continuous"]
    horizon: int
    gamma: float
    factory: Callable[..., Any]
    source: str = ""
    extra: str | None = None


_SPECS = (
    TaskSpec("gridworld", "tabular", "discrete", 20, 0.95, gridworld, "slippery maze with a goal and a pit"),
    TaskSpec("chain", "tabular", "discrete", 20, 0.95, chain, "river swim (Strehl & Littman, 2008)"),
    TaskSpec("random", "tabular", "discrete", 15, 0.9, random_task, "random 10-state, 3-action MDP"),
    TaskSpec("bandit", "tabular", "discrete", 1, 1.0, BANDIT_TASKS["bandit"], "contextual bandit, 20 contexts, 10 actions, binary rewards"),
    TaskSpec(
        "bandit_continuous", "tabular", "discrete", 1, 1.0, BANDIT_TASKS["bandit_continuous"],
        "contextual bandit, linear rewards + Gaussian noise",
    ),
    TaskSpec(
        "bandit_embeddings", "tabular", "discrete", 1, 1.0, BANDIT_TASKS["bandit_embeddings"],
        "contextual bandit, rewards through 3 action-embedding categories",
    ),
    TaskSpec(
        "bandit_positions", "tabular", "discrete", 1, 1.0, BANDIT_TASKS["bandit_positions"],
        "contextual bandit, item shown at one of 3 slots (position bias 1/(1+slot))",
    ),
    TaskSpec("slate", "tabular", "discrete", 3, 1.0, SLATE_TASKS["slate"], "Plackett-Luce rankings of 3 of 4 items, independent clicks"),
    TaskSpec("slate_cascade", "tabular", "discrete", 3, 1.0, SLATE_TASKS["slate_cascade"], "Plackett-Luce rankings, cascade clicks"),
    TaskSpec("cartpole", "gym", "discrete", 200, 0.99, gym_tasks.CartPole, "CartPole-v1"),
    TaskSpec("acrobot", "gym", "discrete", 500, 0.99, gym_tasks.Acrobot, "Acrobot-v1"),
    TaskSpec("mountaincar", "gym", "discrete", 200, 0.99, gym_tasks.MountainCar, "MountainCar-v0"),
    TaskSpec("pendulum", "gym", "continuous", 200, 0.99, gym_tasks.Pendulum, "Pendulum-v1"),
    TaskSpec(
        "mountaincar_continuous", "gym", "continuous", 999, 0.99, gym_tasks.MountainCarContinuous,
        "MountainCarContinuous-v0",
    ),
    TaskSpec("reacher", "mujoco", "continuous", 30, 0.99, gym_tasks.reacher, "Reacher-v5", "mujoco"),
    TaskSpec(
        "inverted_pendulum", "mujoco", "continuous", 100, 0.99, gym_tasks.inverted_pendulum,
        "InvertedPendulum-v5", "mujoco",
    ),
    TaskSpec("hopper", "mujoco", "continuous", 30, 0.99, gym_tasks.hopper, "Hopper-v5", "mujoco"),
    TaskSpec("swimmer", "mujoco", "continuous", 100, 0.99, gym_tasks.swimmer, "Swimmer-v5", "mujoco"),
    TaskSpec(
        "rtb", "synthetic", "discrete", 24, 1.0, rtb.RealTimeBidding,
        "budget-constrained real-time bidding, bid-multiplier grid",
    ),
    TaskSpec(
        "rtb_continuous", "synthetic", "continuous", 24, 1.0, rtb.RealTimeBiddingContinuous,
        "budget-constrained real-time bidding, bid multiplier in [0.1, 10]",
    ),
    TaskSpec(
        "recsys", "synthetic", "discrete", 20, 0.95, recsys.Recommendation,
        "recommendation with latent preferences, boredom and churn; action = item",
    ),
    TaskSpec(
        "recsys_continuous", "synthetic", "continuous", 20, 0.95, recsys.RecommendationContinuous,
        "recommendation; action = embedding-like vector, nearest item recommended",
    ),
)  # fmt: skip

REGISTRY: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
"""Every registered task by name, in listing order."""

ALIASES: dict[str, str] = {spec.source: spec.name for spec in _SPECS if spec.kind in ("gym", "mujoco")}
"""Gymnasium ids accepted by ``make`` (``make("CartPole-v1")`` is ``make("cartpole")``)."""


def list_tasks(kind: TaskKind | None = None) -> list[TaskSpec]:
    """The registered tasks, optionally only those of one ``kind``."""
    kinds = ("tabular", "gym", "mujoco", "synthetic")
    if kind is not None and kind not in kinds:
        raise ValueError(f"kind: expected one of {list(kinds)}, found {kind!r}")
    return [spec for spec in _SPECS if kind is None or spec.kind == kind]


def make(name: str, **options: Any) -> Any:
    """A registered task by name (``REGISTRY`` lists them; gymnasium ids are accepted too).

    ``options`` go to the task's factory (``horizon=``, ``gamma=`` and the task's own parameters). Tabular
    names return the same ``TabularMDP`` as always; the others return batched tasks that ``collect`` and
    ``rollout_values`` run. MuJoCo tasks raise ``ImportError`` naming the extra to install when MuJoCo is
    missing.
    """
    spec = REGISTRY.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    if spec is None:
        known = f"one of {list(REGISTRY)} (or a gymnasium id {sorted(ALIASES)})"
        raise ValueError(f"task: expected {known}, found {name!r}")
    return spec.factory(**options)
