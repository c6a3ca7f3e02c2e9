"""Neural FQE at 10^6 CartPole transitions: peak memory of ``build_inputs`` with neural FQE for 10
candidates, and fit time at two dataset sizes with the same gradient steps (the time of a fit follows
n_iterations × n_steps × batch_size, not the number of transitions).

The dataset has CartPole's shapes (4-dim observations, 2 actions, horizon 200, reward 1; by default
45,400 trajectories of about 22 steps, as a CartPole dataset of 10^6 transitions has) and is built
directly: smooth random observations (an AR(1) process per trajectory) and uniform actions, so that it takes
seconds rather than the minutes 10^6 simulator steps would.

    python benchmarks/scale.py             # prints a table, writes benchmarks/results/scale.md
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import platform
import resource
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.ope import FQEConfig, build_inputs, evaluation_action_probs, fit_fqe, predict_fqe
from opelab.policies import SoftmaxPolicy
from opelab.policies.heads import CallableActionValues

TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
HORIZON = 200


def controller(observations: np.ndarray) -> np.ndarray:
    score = 0.5 * observations[:, 1] + 10.0 * observations[:, 2] + 2.0 * observations[:, 3]
    return np.stack([-score, score], axis=1)


def cartpole_shaped(n_transitions: int, n_trajectories: int, seed: int) -> LoggedDataset:
    """About n_transitions steps in n_trajectories trajectories padded to horizon 200 (lengths geometric
    with mean n_transitions / n_trajectories, cut at 200, as CartPole episodes end early; all 200 steps
    long when n_trajectories × 200 ≤ n_transitions):
    s_{t+1} = 0.95 s_t + 0.05 ε (4 dims), a uniform, r = 1."""
    n = n_trajectories
    rng = np.random.default_rng(seed)
    full = n * HORIZON <= n_transitions  # every trajectory runs to the horizon
    lengths = np.full(n, HORIZON) if full else np.minimum(rng.geometric(n / n_transitions, size=n), HORIZON)
    mask = np.arange(HORIZON)[None] < lengths[:, None]
    obs = np.empty((n, HORIZON, 4), dtype=np.float32)
    obs[:, 0] = rng.normal(0, 0.05, size=(n, 4))
    for t in range(1, HORIZON):
        obs[:, t] = 0.95 * obs[:, t - 1] + rng.normal(0, 0.05, size=(n, 4))
    obs *= mask[..., None]
    return LoggedDataset(
        observations=obs,
        actions=rng.integers(0, 2, size=(n, HORIZON)) * mask,
        rewards=mask.astype(np.float64),
        terminals=np.zeros((n, HORIZON), dtype=bool),
        mask=mask,
        behavior_pscore=np.where(mask, 0.5, 1.0),
        info=DatasetInfo(task="cartpole-shaped", gamma=0.99, action_space=ActionSpace.discrete(2), behavior_policy="uniform"),
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(stage: str, n_transitions: int, n_trajectories: int, steps: int) -> dict:
    """One stage in this (fresh) process: the dataset, π for 10 policies, then ``stage``:
    "build_inputs" (what ``opelab evaluate`` runs) or "fqe" (fit_fqe + predict_fqe only)."""
    torch.set_num_threads(1)
    base = CallableActionValues(controller, 2)
    policies = [SoftmaxPolicy(base, tau, name=f"softmax{tau}") for tau in TEMPERATURES]
    config = FQEConfig(n_steps=steps)
    ds = cartpole_shaped(n_transitions, n_trajectories, seed=0)
    result = {"transitions": ds.n_transitions, "trajectories": ds.n_trajectories, "batch": config.batch_size}
    start = time.perf_counter()
    if stage == "build_inputs":
        inputs = build_inputs(ds, policies, q_function="neural_fqe", weights=None, fqe=config)
        result["seconds"] = time.perf_counter() - start
        result["v0"] = float(inputs.initial_v_hat.mean(axis=1).mean())
    else:
        probs = evaluation_action_probs(ds, policies)  # (P, n, H, A)
        result["probs_seconds"] = time.perf_counter() - start
        fit_fqe(ds, probs, config=dataclasses.replace(config, n_iterations=1, n_steps=1))  # torch's one-time set-up
        tracemalloc.start()  # the fit's own numpy memory; two iterations suffice (each step allocates the same)
        fit_fqe(ds, probs, config=dataclasses.replace(config, n_iterations=2))
        result["fit_numpy_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        start = time.perf_counter()
        fit = fit_fqe(ds, probs, config=config)
        result["seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        predict_fqe(fit, ds)
        result["predict_seconds"] = time.perf_counter() - start
    result["peak_gb"] = peak_rss_gb()
    return result


def in_fresh_process(*args: object, function=None) -> dict:  # type: ignore[no-untyped-def]
    """Run ``function`` (default: ``measure``) in a spawned process, so that each peak RSS is that run's own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function or measure, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--trajectories", type=int, default=45_400, help="padded to horizon 200")
    parser.add_argument("--small", type=int, default=250_000, help="the second size for the time comparison")
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per FQE iteration")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale.md")
    args = parser.parse_args()
    scale = args.small / args.transitions
    runs = [
        ("build_inputs, neural FQE", args.transitions, args.trajectories),
        ("fit_fqe + predict_fqe", args.transitions, args.trajectories),
        ("fit_fqe + predict_fqe", args.small, max(1, round(args.trajectories * scale))),
        ("build_inputs, neural FQE", args.transitions, args.transitions // HORIZON),  # full-length trajectories
        ("fit_fqe + predict_fqe", args.transitions, args.transitions // HORIZON),
        ("fit_fqe + predict_fqe", args.small, args.small // HORIZON),
    ]
    rows = [
        "| stage (10 policies) | transitions | trajectories × 200 | fit or stage seconds | predict seconds | fit's numpy peak (MB) | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, n_transitions, n_trajectories in runs:
        stage = "build_inputs" if label.startswith("build_inputs") else "fqe"
        r = in_fresh_process(stage, n_transitions, n_trajectories, args.steps)
        predict = f"{r['predict_seconds']:.1f}" if "predict_seconds" in r else "(included)"
        own = f"{r['fit_numpy_mb']:.1f}" if "fit_numpy_mb" in r else "–"
        rows.append(f"| {label} | {r['transitions']:,} | {r['trajectories']:,} | {r['seconds']:.1f} | {predict} | {own} | {r['peak_gb']:.2f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    machine = f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, 1 thread"
    budget = f"{HORIZON} FQE iterations × {args.steps} Adam steps × batch {r['batch']}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Neural FQE at 10^6 transitions: memory and time\n\n"
        f"Command: `python benchmarks/scale.py --transitions {args.transitions} --trajectories {args.trajectories} "
        f"--small {args.small} --steps {args.steps}` ({machine}).\n"
        f"CartPole-shaped data (4-dim observations, 2 actions, horizon {HORIZON}), 10 softmax candidates; {budget} "
        "per fit. Each row runs in a fresh process; its peak RSS (resource.getrusage) includes the dataset and "
        "π (P, n, H, A).\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
