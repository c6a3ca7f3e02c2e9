"""Neural FQE for 10 candidates on a 10^5-transition CartPole dataset: one network for all policies
(``opelab.ope.fit_fqe`` with P = 10) against ten separate fits (P = 1 each), same budget per fit.

    python benchmarks/fqe.py               # prints a table, writes benchmarks/results/fqe.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from opelab.envs import collect, make
from opelab.ope import FQEConfig, build_inputs, fit_fqe, predict_fqe
from opelab.policies import SoftmaxPolicy
from opelab.policies.heads import CallableActionValues

TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def controller(observations: np.ndarray) -> np.ndarray:
    score = 0.5 * observations[:, 1] + 10.0 * observations[:, 2] + 2.0 * observations[:, 3]
    return np.stack([-score, score], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=520)
    parser.add_argument("--steps", type=int, default=10, help="Adam steps per FQE iteration")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fqe.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = make("cartpole")
    base = CallableActionValues(controller, 2)
    behavior = SoftmaxPolicy(base, 3.0, name="behavior")
    policies = [SoftmaxPolicy(base, tau, name=f"softmax{tau}") for tau in TEMPERATURES]
    ds = collect(task, behavior, args.trajectories, seed=0)
    probs = build_inputs(ds, policies, q_function="neural_fqe", weights=None, fqe=FQEConfig(n_steps=1, n_iterations=1)).eval_action_probs
    config = FQEConfig(n_steps=args.steps)
    start = time.perf_counter()
    batched = predict_fqe(fit_fqe(ds, probs, config=config), ds)[0]
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    separate = np.concatenate([predict_fqe(fit_fqe(ds, probs[p : p + 1], config=config), ds)[0] for p in range(len(policies))])
    separate_s = time.perf_counter() - start
    v0 = lambda q: (probs[:, :, 0] * q[:, :, 0]).sum(-1).mean(-1)  # noqa: E731
    lines = [
        "| FQE | seconds | speed-up | initial values (min / max over policies) |",
        "|---|---|---|---|",
        f"| one network, 10 policies | {batched_s:.1f} | {separate_s / batched_s:.1f}× | {v0(batched).min():.1f} / {v0(batched).max():.1f} |",
        f"| ten networks, one each | {separate_s:.1f} | 1.0× | {v0(separate).min():.1f} / {v0(separate).max():.1f} |",
    ]
    table = "\n".join(lines)
    print(f"{ds.n_transitions:,} transitions, horizon {ds.horizon}")
    print(table)
    machine = f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, 1 thread"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Neural FQE: one network for all candidates vs one per candidate\n\n"
        f"Command: `python benchmarks/fqe.py --trajectories {args.trajectories} --steps {args.steps}` ({machine}).\n"
        f"CartPole, {ds.n_transitions:,} transitions (horizon {ds.horizon}), 10 softmax candidates; "
        f"{ds.horizon} FQE iterations × {args.steps} Adam steps (batch {FQEConfig().batch_size}, a frozen target network per iteration) per fit.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
