"""Training throughput of the d3rlpy algorithms behind ``opelab.learn`` (gradient steps per second).

Offline algorithms train on a collected dataset (CartPole with a uniform behavior policy for the discrete ones,
Pendulum with a clipped Gaussian for the continuous ones) with opelab's defaults (``opelab.learn.algorithms``:
d3rlpy's batch sizes, except 64 for the discrete Q-learners) and MLPs of ``--hidden`` units. The rate is
(n − m) / (t_n − t_m) from two runs of n and m < n steps, so building the networks and converting the data do
not count. Online algorithms (DoubleDQN on CartPole, SAC on Pendulum) report environment steps per second,
each with one gradient step. Torch runs with each of ``--threads`` thread counts (default 1 and 2;
the tests use 1, CI has two cores). The load average at the end is recorded: on a shared machine other
processes take cores, and two threads then collapse (torch spins on a busy core).

    python benchmarks/learn.py       # prints a table, writes benchmarks/results/learn.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from opelab.envs import collect, make
from opelab.learn import ALGORITHMS, train_offline, train_online
from opelab.policies import GaussianPolicy, UniformPolicy


def datasets():
    cartpole = make("cartpole")
    pendulum = make("pendulum")
    low, high = np.array(pendulum.action_space.low), np.array(pendulum.action_space.high)
    gaussian = GaussianPolicy(lambda obs: np.zeros((len(obs), 1)), (high - low) / 4, low, high)
    return {
        "discrete": collect(cartpole, UniformPolicy(2), 500, seed=0),
        "continuous": collect(pendulum, gaussian, 50, seed=0),
    }


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="gradient steps of the long run (the short one: 1/5)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learn.md")
    args = parser.parse_args()
    import torch

    data = datasets()
    tasks = {"discrete": make("cartpole"), "continuous": make("pendulum")}
    hidden = tuple(args.hidden)
    long, short = args.steps, max(1, args.steps // 5)
    lines = [
        "| algorithm | mode | task | data (transitions) | batch size | torch threads | steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    cases = [(threads, name, spec) for threads in args.threads for name, spec in ALGORITHMS.items()]
    for threads, name, spec in cases:
        torch.set_num_threads(threads)
        kind = spec.action_type
        probe = train_offline(data[kind], name, n_steps=1, hidden=hidden, seed=0)  # also warms up the imports
        if spec.online:  # updates start once the buffer holds a batch: both runs go past that point
            task, fill = tasks[kind], probe.algo.config.batch_size + 1
            online = dict(seed=0, hidden=hidden, random_steps=0)
            t_long = seconds(lambda: train_online(task, name, n_steps=fill + long, **online))
            t_short = seconds(lambda: train_online(task, name, n_steps=fill + short, **online))
            mode, size, where = "online", "—", task.name
        else:
            ds = data[kind]
            t_long = seconds(lambda: train_offline(ds, name, n_steps=long, hidden=hidden, seed=0))
            t_short = seconds(lambda: train_offline(ds, name, n_steps=short, hidden=hidden, seed=0))
            mode, size, where = "offline", f"{ds.n_transitions:,}", ds.info.task
        rate = (long - short) / max(t_long - t_short, 1e-9)
        batch = probe.algo.config.batch_size
        lines.append(f"| {name} | {mode} | {where} | {size} | {batch} | {threads} | {rate:,.0f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    python = f"{platform.python_implementation()} {platform.python_version()}"
    import d3rlpy

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = f"{python}, torch {torch.__version__}, d3rlpy {d3rlpy.__version__}"
    machine = f"load average {load} at the end, {platform.machine()}, {versions}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Training throughput of opelab.learn (d3rlpy)\n\n"
        f"Command: `python benchmarks/learn.py --steps {args.steps} --hidden {' '.join(map(str, hidden))} "
        f"--threads {' '.join(map(str, args.threads))}` ({machine}; CPU).\n"
        f"Gradient steps per second from runs of {long} and {short} steps (setup excluded); online rows count\n"
        "environment steps, each with one gradient step. CQL samples 10 actions per state for its conservative\n"
        "term and BCQ decodes 100 (d3rlpy's defaults), which makes them the slowest.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
