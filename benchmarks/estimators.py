"""Speed and memory of the estimators on 10 policies × 10^6 logged transitions.

Synthetic inputs with the shapes of a real run (the estimators' cost does not depend on where the numbers
came from): ``n`` trajectories × horizon ``H`` with n·H = 10^6, P = 10 policies, 4 actions, ~10% of
trajectories ending early (padding). Reports, per layout, the time of each estimator alone (fresh shared
context, best of ``--repeats``), the time of all seven together through ``opelab.ope.evaluate`` (the
goal: ≤ 1 s), the time of every registered point estimator together (marginal ones included), the peak
memory that ``evaluate`` allocates on top of its inputs (goal ≤ 3× the inputs), and, separately, the cost
of adding each interval method to the seven estimators (bootstrap with ``--n-bootstrap`` resamples).

    python benchmarks/estimators.py            # prints a table, writes benchmarks/results/estimators.md
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.ope import ESTIMATORS, OPEInput, evaluate, evaluate_cdf, return_grid
from opelab.ope.estimators import EstimationContext, get_estimator

BACKBONE = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr")
INTERVALS = ("t", "hoeffding", "bernstein", "bootstrap")


def synthetic_case(n: int, H: int, P: int = 10, A: int = 4, seed: int = 0) -> tuple[LoggedDataset, OPEInput]:
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(n) < 0.1, rng.integers(1, H + 1, n), H)
    mask = np.arange(H)[None, :] < lengths[:, None]
    terminals = np.zeros((n, H), dtype=bool)
    early = lengths < H
    terminals[np.flatnonzero(early), lengths[early] - 1] = True
    pscore = np.where(mask, rng.uniform(0.1, 1.0, (n, H)), 1.0)
    ds = LoggedDataset(
        observations=np.where(mask, rng.integers(0, 100, (n, H)), 0),
        actions=np.where(mask, rng.integers(0, A, (n, H)), 0),
        rewards=np.where(mask, rng.normal(size=(n, H)), 0.0),
        terminals=terminals,
        mask=mask,
        behavior_pscore=pscore,
        info=DatasetInfo(task="synthetic", gamma=0.99, action_space=ActionSpace.discrete(A)),
    )
    eval_pscore = np.where(mask, rng.uniform(0.0, 1.0, (P, n, H)), 1.0)
    q_hat = np.where(mask, rng.normal(size=(P, n, H)), 0.0)
    v_hat = np.where(mask, rng.normal(size=(P, n, H)), 0.0)
    inputs = OPEInput(
        policy_names=tuple(f"pi{p}" for p in range(P)),
        eval_pscore=eval_pscore,
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=v_hat[:, :, 0].copy(),
        state_marginal_weights=rng.uniform(0.5, 1.5, (P, n, H)),
        marginal_weights=rng.uniform(0.5, 1.5, (P, n, H)),
        cross_fit_folds=2,
    )
    return ds, inputs


def input_bytes(ds: LoggedDataset, inputs: OPEInput) -> int:
    arrays = [ds.observations, ds.actions, ds.rewards, ds.terminals, ds.mask, ds.behavior_pscore]
    arrays += [inputs.eval_pscore, inputs.q_hat, inputs.v_hat, inputs.initial_v_hat]
    arrays += [inputs.state_marginal_weights, inputs.marginal_weights]
    return sum(a.nbytes for a in arrays)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(n: int, H: int, repeats: int, n_bootstrap: int) -> dict[str, float]:
    ds, inputs = synthetic_case(n, H)
    _ = ds.discounted_rewards, ds.returns  # dataset-level caches, built once per dataset in real use
    row: dict[str, float] = {"n": n, "H": H}
    for name in BACKBONE:
        est = get_estimator(name)
        row[name] = best_of(repeats, lambda: est.estimate(EstimationContext(ds, inputs)))
    row["all7"] = best_of(repeats, lambda: evaluate(ds, inputs, BACKBONE))
    row["all_point"] = best_of(repeats, lambda: evaluate(ds, inputs, list(ESTIMATORS)))
    _ = evaluate(ds, inputs, ["tis"], interval="t")  # warm-up: the t interval imports scipy.stats once
    row["cdf"] = best_of(1, lambda: evaluate_cdf(ds, inputs))
    coarse = np.linspace(ds.returns.min() - 1.0, ds.returns.max() + 1.0, 1000)
    row["cdf_1000"] = best_of(1, lambda: evaluate_cdf(ds, inputs, grid=coarse))
    row["cdf_grid"] = len(return_grid(ds, extra_values=inputs.initial_v_hat))
    for method in INTERVALS:
        row[method] = best_of(1, lambda: evaluate(ds, inputs, BACKBONE, interval=method, n_bootstrap=n_bootstrap)) - row["all7"]
    tracemalloc.start()
    evaluate(ds, inputs, BACKBONE)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row["input_mb"] = input_bytes(ds, inputs) / 2**20
    row["peak_extra_mb"] = peak / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "estimators.md")
    args = parser.parse_args()
    layouts = [(100_000, 10), (10_000, 100)]
    rows = [run(n, H, args.repeats, args.n_bootstrap) for n, H in layouts]
    header = ["n × H", *BACKBONE, "all 7 (evaluate)", "inputs MB", "evaluate peak extra MB", "extra / inputs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"{int(r['n']):,} × {int(r['H'])}"]
        cells += [f"{r[name] * 1000:.0f} ms" for name in BACKBONE]
        cells += [f"**{r['all7'] * 1000:.0f} ms**", f"{r['input_mb']:.0f}", f"{r['peak_extra_mb']:.0f}", f"{r['peak_extra_mb'] / r['input_mb']:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"| n × H | all {len(ESTIMATORS)} point estimators | " + " | ".join(f"+ {m} intervals (7 est.)" for m in INTERVALS) + " | 5 CDF estimators, default grid (points) | 5 CDF estimators, 1,000-point grid |"]
    lines.append("|" + "---|" * (4 + len(INTERVALS)))
    for r in rows:
        cells = [f"{int(r['n']):,} × {int(r['H'])}", f"{r['all_point'] * 1000:.0f} ms"]
        cells += [f"{r[m] * 1000:.0f} ms" for m in INTERVALS]
        cells += [f"{r['cdf'] * 1000:.0f} ms ({int(r['cdf_grid']):,})", f"{r['cdf_1000'] * 1000:.0f} ms"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Point estimators: 10 policies × 10^6 logged transitions\n\n"
        f"Command: `python benchmarks/estimators.py --repeats {args.repeats} --n-bootstrap {args.n_bootstrap}` "
        f"({machine}; best of {args.repeats}; interval columns: one run, minus the plain 7-estimator time).\n"
        "Per-estimator columns: one estimator with a fresh shared context. `all 7`: `opelab.ope.evaluate` with the\n"
        "seven estimators sharing one context, input checks included. Goal: all 7 ≤ 1 s; peak extra memory of\n"
        "`evaluate` (tracemalloc, numpy allocations) ≤ 3× the input arrays. The default CDF grid holds every\n"
        "distinct logged return and initial V̂ (here random, so about P·n points): it grows with the data, and a\n"
        "fixed grid is the way to bound the cost on large datasets.\n\n" + table + "\n"
    )
    print(f"registered estimators: {sorted(ESTIMATORS)}; written to {args.out}")


if __name__ == "__main__":
    main()
