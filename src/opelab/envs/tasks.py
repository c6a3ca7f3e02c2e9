"""Tabular tasks a person can picture, and the registry ``make(name)``.

- ``gridworld``: a small maze with a goal, a pit and walls. Moves slip to a random other direction with
  probability ``slip``; every move costs a little, the goal pays +1 and ends the episode, the pit costs −1
  and ends it too. Episodes therefore have different lengths, and naive policies differ clearly: the
  optimal policy walks around the pit, the uniform policy wanders and often falls in.
- ``chain``: a river-swim chain (Strehl & Littman, 2008). Swimming left always works and pays a trickle at
  the left bank; swimming right against the current usually fails but leads to a large reward at the far
  end. Myopic policies stay left; far-sighted ones swim right.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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


TASKS: dict[str, Callable[[], TabularMDP]] = {
    "gridworld": gridworld,
    "chain": chain,
    "random": random_task,
}


def make(name: str) -> TabularMDP:
    """A registered task by name (``opelab.envs.TASKS`` lists them)."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, found {name!r}") from None
    return factory()
