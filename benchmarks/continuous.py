"""Speed of continuous-action OPE on 10 policies × 10^6 logged transitions.

A linear-quadratic task (scalar state, 2-D actions, reward −‖a − c s‖², Gaussian behavior a = θ_b s + 0.5 ε)
logged for ``n`` trajectories of horizon ``H`` (n·H = 10^6). Ten deterministic evaluation policies a = θ_p s.
Reports the time of

- ``build_continuous_inputs`` per kernel (kernel-smoothed eval pscores only), and with a Q̂ callable per
  policy (the exact quadratic Q of each policy: q_hat and v_hat);
- ``evaluate`` with tis, pdis, dr, sntis, snpdis, sndr on those inputs;
- ``estimate_pscores`` (the conditional Gaussian behavior model) on the same logs, one fold and 5 folds.

    python benchmarks/continuous.py        # prints a table, writes benchmarks/results/continuous.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset, estimate_pscores
from opelab.ope import KERNELS, build_continuous_inputs, evaluate
from opelab.policies.continuous import DeterministicPolicy

ESTIMATORS = ("tis", "pdis", "dr", "sntis", "snpdis", "sndr")
C = np.array([1.0, -0.5])
RHO, KAPPA, TAU, GAMMA = 0.8, 0.5, 0.3, 0.99


def logged_data(n: int, H: int, seed: int = 0) -> LoggedDataset:
    rng = np.random.default_rng(seed)
    theta_b, sigma = np.array([0.8, -0.3]), 0.5
    obs = np.zeros((n, H, 1))
    actions = np.zeros((n, H, 2))
    rewards = np.zeros((n, H))
    pscore = np.zeros((n, H))
    s = rng.standard_normal(n)
    for t in range(H):
        mu = s[:, None] * theta_b
        a = mu + sigma * rng.standard_normal((n, 2))
        obs[:, t, 0], actions[:, t] = s, a
        rewards[:, t] = -((a - C * s[:, None]) ** 2).sum(axis=1)
        pscore[:, t] = np.exp(-0.5 * (((a - mu) / sigma) ** 2).sum(axis=1)) / (2 * np.pi * sigma**2)
        s = RHO * s + KAPPA * a.mean(axis=1) + TAU * rng.standard_normal(n)
    return LoggedDataset(
        observations=obs,
        actions=actions,
        rewards=rewards,
        terminals=np.zeros((n, H), dtype=bool),
        mask=np.ones((n, H), dtype=bool),
        behavior_pscore=pscore,
        info=DatasetInfo("linear-quadratic", GAMMA, ActionSpace.continuous(2), behavior_policy="gaussian(0.5)"),
    )


def exact_q(theta: np.ndarray, H: int):
    a = RHO + KAPPA * theta.mean()
    A, B = np.zeros(H + 1), np.zeros(H + 1)
    for t in range(H - 1, -1, -1):
        A[t] = ((theta - C) ** 2).sum() + GAMMA * A[t + 1] * a * a
        B[t] = GAMMA * (A[t + 1] * TAU**2 + B[t + 1])

    def q(obs, actions, steps):
        x = obs[:, 0]
        nxt = RHO * x + KAPPA * actions.mean(axis=1)
        return -((actions - C * x[:, None]) ** 2).sum(axis=1) - GAMMA * (A[steps + 1] * (nxt**2 + TAU**2) + B[steps + 1])

    return q


def best_of(repeats: int, run) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--policies", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "continuous.md")
    args = parser.parse_args()

    ds = logged_data(args.n, args.horizon)
    thetas = [np.array([0.8, -0.3]) + 0.05 * np.array([np.cos(k), np.sin(k)]) * (k + 1) for k in range(args.policies)]
    policies = [DeterministicPolicy(lambda o, th=th: o[:, :1] * th, name=f"det-{k}") for k, th in enumerate(thetas)]
    qs = [exact_q(th, args.horizon) for th in thetas]
    rows = []
    for name in sorted(KERNELS):
        seconds, _ = best_of(args.repeats, lambda: build_continuous_inputs(ds, policies, kernel=name, bandwidth=0.3))
        rows.append((f"build_continuous_inputs, kernel={name}", seconds))
    seconds, inputs = best_of(
        args.repeats, lambda: build_continuous_inputs(ds, policies, kernel="epanechnikov", bandwidth=0.3, q_functions=qs)
    )
    rows.append(("build_continuous_inputs + Q̂ callables (epanechnikov)", seconds))
    seconds, table = best_of(args.repeats, lambda: evaluate(ds, inputs, estimators=list(ESTIMATORS)))
    rows.append((f"evaluate: {', '.join(ESTIMATORS)}", seconds))
    seconds, _ = best_of(args.repeats, lambda: estimate_pscores(ds))
    rows.append(("estimate_pscores (conditional Gaussian, 1 fold)", seconds))
    seconds, _ = best_of(args.repeats, lambda: estimate_pscores(ds, n_folds=5))
    rows.append(("estimate_pscores (conditional Gaussian, 5 folds)", seconds))

    header = (
        f"# Continuous-action OPE: {args.policies} policies × {ds.n_transitions:,} transitions "
        f"(n = {args.n:,}, H = {args.horizon}, action_dim = 2)\n\n"
        f"Best of {args.repeats}; {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}.\n\n| step | seconds |\n|---|---:|\n"
    )
    body = "".join(f"| {label} | {seconds:.2f} |\n" for label, seconds in rows)
    text = header + body
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
