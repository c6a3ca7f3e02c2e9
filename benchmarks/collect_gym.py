"""Throughput of data collection on the gymnasium, MuJoCo and synthetic tasks (``opelab.collect``).

For each task, collects trajectories with a simple behavior policy (uniform for discrete actions, a clipped
Gaussian around the box centre for continuous ones) and reports transitions per second (best of
``--repeats``), building and validating the ``LoggedDataset`` included. For the classic-control tasks it
also times gymnasium's own ``SyncVectorEnv`` stepping the same number of transitions with random actions
(no policy, no dataset): the reference a gymnasium-based collector could at best reach.

    python benchmarks/collect_gym.py       # prints a table, writes benchmarks/results/collect_gym.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from opelab.envs import collect, make, mujoco_available
from opelab.policies import GaussianPolicy, UniformPolicy

CASES = [  # (task, trajectories)
    ("cartpole", 2000),
    ("acrobot", 200),
    ("mountaincar", 2000),
    ("pendulum", 2000),
    ("rtb", 10000),
    ("rtb_continuous", 10000),
    ("recsys", 20000),
    ("recsys_continuous", 20000),
]
MUJOCO_CASES = [("hopper", 100), ("reacher", 100), ("inverted_pendulum", 500), ("swimmer", 30)]


def behavior(task):
    space = task.action_space
    if space.is_discrete:
        return UniformPolicy(space.n_actions)
    low, high = np.array(space.low), np.array(space.high)
    centre = (low + high) / 2
    return GaussianPolicy(lambda obs: np.broadcast_to(centre, (len(obs), len(centre))), (high - low) / 4, low, high)


def time_collect(task, n: int, repeats: int) -> tuple[float, int]:
    policy = behavior(task)
    best, transitions = np.inf, 0
    for r in range(repeats):
        start = time.perf_counter()
        ds = collect(task, policy, n, seed=r)
        best = min(best, time.perf_counter() - start)
        transitions = ds.n_transitions
    return best, transitions


def time_sync_vector_env(gym_id: str, transitions: int, n_envs: int = 64) -> float:
    """Seconds for gymnasium's SyncVectorEnv to step ``transitions`` transitions with random actions."""
    import gymnasium

    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(gym_id) for _ in range(n_envs)])
    envs.reset(seed=0)
    envs.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(transitions // n_envs):
        envs.step(envs.action_space.sample())
    seconds = time.perf_counter() - start
    envs.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "collect_gym.md")
    args = parser.parse_args()
    cases = CASES + (MUJOCO_CASES if mujoco_available() else [])
    lines = [
        "| task | horizon | trajectories | transitions | seconds | transitions/s "
        "| gymnasium SyncVectorEnv (64 envs), transitions/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, n in cases:
        task = make(name)
        seconds, transitions = time_collect(task, n, args.repeats)
        reference = "—"
        if getattr(task, "gym_id", None) and name not in dict(MUJOCO_CASES):
            reference = f"{transitions / time_sync_vector_env(task.gym_id, transitions):,.0f}"
        lines.append(
            f"| {name} | {task.horizon} | {n:,} | {transitions:,} | {seconds:.2f} | {transitions / seconds:,.0f} "
            f"| {reference} |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    python = f"{platform.python_implementation()} {platform.python_version()}"
    machine = f"{platform.machine()}, {python}, numpy {np.__version__}"
    note = "" if mujoco_available() else "MuJoCo was not installed: the MuJoCo tasks were skipped.\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Data collection throughput: gymnasium, MuJoCo and synthetic tasks\n\n"
        f"Command: `python benchmarks/collect_gym.py --repeats {args.repeats}` ({machine}; best of {args.repeats}).\n"
        "Includes the behavior policy, building and validating the `LoggedDataset`. Classic control and the\n"
        "synthetic tasks step all episodes as numpy arrays; MuJoCo tasks step one simulator row by row.\n"
        + note + "\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
