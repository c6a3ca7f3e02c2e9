"""Cost and accuracy of the neural minimax learners (``opelab.ope.minimax``) against their tabular solutions.

On a random 10-state task (horizon 10, 3 actions) with 10 candidate policies and 2,000 logged trajectories:
seconds per fit (one network serves all 10 policies) and the correlation of the learned weights with the
exact tabular solution on the same data (the empirical flow), and MQL's mean absolute gap to tabular FQE.

    python benchmarks/minimax.py           # prints a table, writes benchmarks/results/minimax.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from opelab.envs import TabularMDP, collect
from opelab.ope import MinimaxConfig, build_inputs, fit_q, fit_state_weights, fit_weights, predict_q, predict_weights
from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per fit")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "minimax.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = TabularMDP.random(10, 3, horizon=10, gamma=0.95, seed=0, reward_noise=0.1)
    q = task.optimal_q()
    behavior = SoftmaxPolicy(TabularQ(q), 1.0, name="behavior")
    candidates = candidate_family(TabularQ(q))[:10]
    ds = collect(task, behavior, 2000, seed=0)
    tabular = build_inputs(ds, candidates)
    cfg = MinimaxConfig(n_steps=args.steps)
    mask = ds.mask
    lines = ["| learner | target | seconds | correlation with the tabular solution (min / median over policies) |", "|---|---|---|---|"]

    def corr(a: np.ndarray, b: np.ndarray) -> str:
        values = [np.corrcoef(a[p][mask], b[p][mask])[0, 1] for p in range(len(a))]
        return f"{min(values):.3f} / {np.median(values):.3f}"

    for name in ("mwl", "dualdice", "gendice", "bestdice"):
        start = time.perf_counter()
        fit = fit_weights(ds, tabular.eval_action_probs, name, cfg, n_states=task.n_states)
        pair_seconds = time.perf_counter() - start
        learned = predict_weights(fit, ds)
        lines.append(f"| {name} | w(s, a) | {pair_seconds:.1f} | {corr(learned, tabular.marginal_weights)} |")
        if name == "mwl":
            start = time.perf_counter()
            state = predict_weights(fit_state_weights(fit, ds, cfg), ds)
            lines.append(f"| {name} | w(s) from w(s, a) | {time.perf_counter() - start:.1f} | {corr(state, tabular.state_marginal_weights)} |")
    start = time.perf_counter()
    q_all = predict_q(fit_q(ds, tabular.eval_action_probs, cfg, n_states=task.n_states), ds)
    seconds = time.perf_counter() - start
    logged = np.take_along_axis(q_all, np.broadcast_to(ds.actions[None, ..., None], (*q_all.shape[:3], 1)), axis=-1)[..., 0]
    gap = np.abs(logged - tabular.q_hat)[:, mask].mean()
    spread = np.ptp(tabular.q_hat[:, mask])
    lines.append(f"| mql | Q(s, a) | {seconds:.1f} | {corr(logged, tabular.q_hat)} (mean gap to FQE {gap:.3f}, Q range {spread:.2f}) |")
    table = "\n".join(lines)
    print(table)
    machine = f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, 1 thread"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Neural minimax learners vs their tabular solutions\n\n"
        f"Command: `python benchmarks/minimax.py --steps {args.steps}` ({machine}).\n"
        f"Task: random S=10, A=3, H=10; {len(candidates)} policies; {ds.n_trajectories:,} trajectories "
        f"({ds.n_transitions:,} transitions); {args.steps} full-batch Adam steps per fit.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
