"""Coverage of 95% intervals when Q̂ and the marginal weights are fitted on the same data.

Task: a random tabular MDP (6 states, 3 actions, horizon 6, γ = 0.9, reward noise 0.2, two terminal
states: the ``small_task`` of ``tests/ope/ope_cases.py``), a softmax behavior policy (τ = 1 over the optimal
Q) and three candidates (softmax τ = 0.5, ε-greedy 0.3 around a random deterministic policy, a random
time-dependent policy); exact truth from ``task.policy_values``. Each of ``--datasets`` datasets holds
``--n`` trajectories (``collect(task, behavior, n, seed=10_000 + d)``); the estimators dr, sndr and sam_dr
use tabular FQE and tabular marginal weights fitted on the dataset (``build_inputs(ds, candidates)``).

Methods compared on every dataset, all at α = 0.05:
- ``bootstrap``: ``evaluate(..., interval="bootstrap")``, percentile, nuisances held fixed (not refit);
- ``control: t, exact Q̂``: the t interval with the task's exact Q-functions (nothing fitted; dr and sndr
  only, sam_dr needs fitted weights): what the intervals give when no nuisance is estimated;
- ``t``: ``evaluate(..., interval="t")`` on the same fitted inputs;
- ``t, K folds``: ``build_inputs(..., n_folds=K)`` (cross-fitted Q̂ and weights) + the t interval;
- ``refit <method>``: ``opelab.ope.refit`` (Q̂ and weights refit on every resample), percentile / basic /
  studentized from the same resamples (``refit_resamples`` once, ``refit_interval`` three times).

Reported per method, estimator and policy: coverage of the exact value with its binomial standard error
√(c(1 − c)/N) over the N datasets, and the mean width. Goal: coverage within [93%, 97%].

    OMP_NUM_THREADS=1 python benchmarks/refit_coverage.py            # 500 datasets, B = 200, 2 workers
    OMP_NUM_THREADS=1 python benchmarks/refit_coverage.py --quick    # 40 datasets, B = 100, no file written
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from opelab.envs import TabularMDP, collect
from opelab.ope import build_inputs, evaluate
from opelab.ope.refit import refit_interval, refit_resamples
from opelab.policies import EpsilonGreedyPolicy, SoftmaxPolicy, TabularPolicy, TabularQ

ESTIMATORS = ["dr", "sndr", "sam_dr"]
FOLDS = (2, 5)
REFIT = ("percentile", "basic", "studentized")
ALPHA = 0.05


def task_and_policies():
    task = TabularMDP.random(6, 3, horizon=6, gamma=0.9, seed=3, reward_noise=0.2, n_terminal=2)
    rng = np.random.default_rng(0)
    q = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q, 1.0, name="behavior")
    near = SoftmaxPolicy(q, 0.5, name="near")
    eps = EpsilonGreedyPolicy(TabularPolicy(np.eye(task.n_actions)[rng.integers(0, task.n_actions, task.n_states)]), 0.3, name="random_eps0.3")
    timed = TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)), name="time_dependent")
    return task, behavior, [near, eps, timed]


def methods() -> list[str]:
    return ["control: t, exact Q̂", "bootstrap (no refit)", "t"] + [f"t, {k} folds" for k in FOLDS] + [f"refit {m}" for m in REFIT]


def one_dataset(args: tuple[int, int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{method: (lower, upper)} (E, P) on dataset d."""
    d, n, n_bootstrap = args
    task, behavior, candidates = task_and_policies()
    ds = collect(task, behavior, n, seed=10_000 + d)
    inputs = build_inputs(ds, candidates)
    out = {}
    exact = build_inputs(ds, candidates, q_tables=[task.q_values(p) for p in candidates], weights=None)
    table = evaluate(ds, exact, ESTIMATORS[:2], interval="t", alpha=ALPHA)  # sam_dr needs weights: left out
    nan = np.full((1, len(candidates)), np.nan)
    out["control: t, exact Q̂"] = (np.vstack([table.lower, nan]), np.vstack([table.upper, nan]))
    table = evaluate(ds, inputs, ESTIMATORS, interval="bootstrap", n_bootstrap=n_bootstrap, seed=d, alpha=ALPHA)
    out["bootstrap (no refit)"] = (table.lower, table.upper)
    table = evaluate(ds, inputs, ESTIMATORS, interval="t", alpha=ALPHA)
    out["t"] = (table.lower, table.upper)
    for k in FOLDS:
        table = evaluate(ds, build_inputs(ds, candidates, n_folds=k, fold_seed=d), ESTIMATORS, interval="t", alpha=ALPHA)
        out[f"t, {k} folds"] = (table.lower, table.upper)
    resamples = refit_resamples(ds, lambda sub: build_inputs(sub, candidates), ESTIMATORS, n_bootstrap=n_bootstrap, seed=d)
    for m in REFIT:
        out[f"refit {m}"] = refit_interval(resamples, m, ALPHA)
    return out


def run(n_datasets: int, n: int, n_bootstrap: int, workers: int):
    task, _, candidates = task_and_policies()
    truth = task.policy_values(candidates)  # (P,)
    covered = {m: np.zeros((len(ESTIMATORS), len(candidates))) for m in methods()}
    width = {m: np.zeros((len(ESTIMATORS), len(candidates))) for m in methods()}
    jobs = [(d, n, n_bootstrap) for d in range(n_datasets)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    os.environ.update(env)  # children inherit one BLAS thread each
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(one_dataset, jobs, chunksize=4):
            for m, (lower, upper) in result.items():
                covered[m] += np.where(np.isnan(lower), np.nan, (lower <= truth) & (truth <= upper))
                width[m] += upper - lower
    return truth, candidates, {m: c / n_datasets for m, c in covered.items()}, {m: w / n_datasets for m, w in width.items()}


def markdown(truth, candidates, rates, widths, n_datasets, n, n_bootstrap, workers, seconds, command) -> str:
    se = lambda c: np.sqrt(c * (1 - c) / n_datasets)  # noqa: E731
    names = [p.name for p in candidates]
    lines = [
        "# Coverage of 95% intervals with nuisances fitted on the same data",
        "",
        f"Command: `{command}`",
        f"Runtime: {seconds:.0f} s wall on {workers} worker process(es), one BLAS thread each "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared).",
        "",
        f"Task: random tabular MDP (S = 6, A = 3, H = 6, γ = 0.9, reward noise 0.2, 2 terminal states; "
        f"`small_task` of tests/ope/ope_cases.py), softmax behavior τ = 1, candidates {names} with exact values "
        f"{np.round(truth, 4).tolist()}. {n_datasets} datasets × {n} trajectories; Q̂ = tabular FQE and tabular "
        f"marginal weights fitted on each dataset; B = {n_bootstrap} resamples for every bootstrap. "
        f"Binomial SE of one cell: √(c(1 − c)/{n_datasets}) ≈ {100 * se(0.95):.2f} points at 95%. Goal: [93%, 97%].",
        "",
        "## Coverage % (± binomial SE), per estimator and policy",
        "",
        "| method | estimator | " + " | ".join(names) + " | mean | all cells in [93, 97] |",
        "|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for m in rates:
        for e, est in enumerate(ESTIMATORS):
            if np.isnan(rates[m][e]).all():
                continue
            cells = " | ".join(f"{100 * c:.1f} ± {100 * se(c):.1f}" for c in rates[m][e])
            ok = "yes" if ((rates[m][e] >= 0.93) & (rates[m][e] <= 0.97)).all() else "no"
            lines.append(f"| {m} | {est} | {cells} | {100 * rates[m][e].mean():.1f} | {ok} |")
    lines += ["", "## Mean interval width", "", "| method | estimator | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for m in widths:
        for e, est in enumerate(ESTIMATORS):
            if not np.isnan(widths[m][e]).all():
                lines.append(f"| {m} | {est} | " + " | ".join(f"{w:.3f}" for w in widths[m][e]) + " |")
    lines += ["", "## Methods whose every cell lies in [93%, 97%] (computed by the script)", ""]
    for m in rates:
        r = rates[m][~np.isnan(rates[m]).all(axis=1)]
        inside = (r >= 0.93) & (r <= 0.97)
        lines.append(f"- {m}: {int(inside.sum())} of {inside.size} cells in the band; range {100 * r.min():.1f}–{100 * r.max():.1f}%")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=500)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 datasets, B = 100; prints, writes no file")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "refit_coverage.md")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.n_bootstrap = 40, 100
    start = time.perf_counter()
    truth, candidates, rates, widths = run(args.datasets, args.n, args.n_bootstrap, args.workers)
    seconds = time.perf_counter() - start
    command = "OMP_NUM_THREADS=1 python benchmarks/refit_coverage.py " + " ".join(sys.argv[1:])
    text = markdown(truth, candidates, rates, widths, args.datasets, args.n, args.n_bootstrap, args.workers, seconds, command.strip())
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
