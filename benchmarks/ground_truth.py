"""Ground truth by rollouts: ``opelab.envs.rollouts.rollout_values`` (all policies × episodes batched through
the numpy CartPole) against a plain loop over gymnasium's own CartPole-v1, one episode and one step at a
time. 10 softmax policies over a linear controller × 100 episodes × horizon 200.

    python benchmarks/ground_truth.py      # prints a table, writes benchmarks/results/ground_truth.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import gymnasium
import numpy as np

from opelab.envs import make
from opelab.envs.rollouts import rollout_values
from opelab.policies import SoftmaxPolicy
from opelab.policies.heads import CallableActionValues

TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def controller(observations: np.ndarray) -> np.ndarray:
    """Push toward the side the pole falls to: a score on (ẋ, θ, θ̇), as two action values."""
    obs = np.atleast_2d(observations)
    score = 0.5 * obs[:, 1] + 10.0 * obs[:, 2] + 2.0 * obs[:, 3]
    return np.stack([-score, score], axis=1)


def plain_loop(policies, n_episodes: int, horizon: int, gamma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    env = gymnasium.make("CartPole-v1", max_episode_steps=horizon)
    rng = np.random.default_rng(seed)
    values, errors = np.zeros(len(policies)), np.zeros(len(policies))
    for p, policy in enumerate(policies):
        returns = []
        for episode in range(n_episodes):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            total, discount = 0.0, 1.0
            for t in range(horizon):
                action, _ = policy.sample(obs[None], rng, np.array([t]))
                obs, reward, terminated, truncated, _ = env.step(int(action[0]))
                total += discount * reward
                discount *= gamma
                if terminated or truncated:
                    break
            returns.append(total)
        values[p], errors[p] = np.mean(returns), np.std(returns, ddof=1) / np.sqrt(n_episodes)
    env.close()
    return values, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ground_truth.md")
    args = parser.parse_args()
    task = make("cartpole")
    base = CallableActionValues(controller, 2)
    policies = [SoftmaxPolicy(base, tau, name=f"softmax{tau}") for tau in TEMPERATURES]
    start = time.perf_counter()
    batched = rollout_values(task, policies, n_episodes=args.episodes, seed=0)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    looped, looped_se = plain_loop(policies, args.episodes, task.horizon, task.gamma, seed=0)
    loop_s = time.perf_counter() - start
    combined = np.sqrt(batched.standard_errors**2 + looped_se**2)
    z = np.divide(np.abs(batched.values - looped), combined, out=np.zeros(len(policies)), where=combined > 0)
    lines = [
        "| method | seconds | episodes/s | speed-up |",
        "|---|---|---|---|",
        f"| rollout_values (batched numpy) | {batched_s:.2f} | {len(policies) * args.episodes / batched_s:,.0f} | {loop_s / batched_s:.1f}× |",
        f"| gymnasium CartPole-v1, per-episode loop | {loop_s:.2f} | {len(policies) * args.episodes / loop_s:,.0f} | 1.0× |",
    ]
    table = "\n".join(lines)
    agreement = (
        f"Values agree within noise: largest |difference| / combined SE = {np.max(z):.2f} over the {len(policies)} policies "
        f"(largest |difference| {np.max(np.abs(batched.values - looped)):.2f}; values {batched.values.min():.1f} to {batched.values.max():.1f})."
    )
    print(table)
    print(agreement)
    machine = f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, gymnasium {gymnasium.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Ground truth by rollouts\n\n"
        f"Command: `python benchmarks/ground_truth.py --episodes {args.episodes}` ({machine}).\n"
        f"{len(policies)} softmax policies over a linear controller × {args.episodes} CartPole episodes, horizon "
        f"{task.horizon}, γ = {task.gamma}. Goal: ≥ 10× faster than the plain loop.\n\n" + table + "\n\n" + agreement + "\n"
    )


if __name__ == "__main__":
    main()
