"""Streaming evaluation at scale: peak memory and time of ``evaluate_stream`` over Parquet folders.

Three cases, each run in a fresh process (its peak RSS, ``resource.getrusage``, is its own):

- ``bandit``: one-step logs with 5-dim float32 contexts and 10 actions (a softmax logging policy over linear
  scores, Bernoulli rewards), written as files of 10^6 rounds; 3 evaluation policies computed per chunk
  from the same linear scorer (softmax at 3 temperatures) and a fixed reward model as Q̂, the 7 standard
  estimators. Sizes 10^5 .. 10^8 rounds: time should be linear in n and memory flat.
- ``cartpole``: CartPole-shaped trajectories (``benchmarks/scale.py``'s generator: 4-dim observations,
  2 actions, horizon 200, geometric lengths of mean 22, so most steps sit in short trajectories and a few
  run to 200), 10 softmax candidates, neural FQE fit on the first 10,000 trajectories and applied chunk by
  chunk, the 7 standard estimators with t intervals (two passes).
- ``ray``: the cartpole case on a local Ray with 2 workers; the estimates must equal the local stream's.

    python benchmarks/stream.py                       # all cases, default sizes; writes results/stream.md
    python benchmarks/stream.py --bandit 1e5 1e6 --cartpole 1e6 --no-ray   # a quick run

Data are written once to ``--data`` (default: a folder under the system's temporary directory) and reused;
10^8 bandit rounds take about 5 GB of disk.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

D, A = 5, 10  # bandit: context size, actions
FILE_ROWS = 1_000_000
BANDIT_TEMPERATURES = (0.5, 1.0, 2.0)
FIT_TRAJECTORIES = 10_000


def _weights() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(D, A))


def bandit_scores(observations: np.ndarray) -> np.ndarray:
    return np.asarray(observations, dtype=np.float64) @ _WEIGHTS


_WEIGHTS = _weights()


def bandit_file(n: int, seed: int):
    from opelab.data import ActionSpace, DatasetInfo, LoggedDataset

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, D)).astype(np.float32)
    s = bandit_scores(x[:, 0])
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    a = np.minimum((p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), A - 1)
    r = (rng.random(n) < 1 / (1 + np.exp(-s[np.arange(n), a]))).astype(np.float64)
    return LoggedDataset(
        observations=x,
        actions=a[:, None],
        rewards=r[:, None],
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=p[np.arange(n), a][:, None],
        info=DatasetInfo(task="linear-bandit", gamma=1.0, action_space=ActionSpace.discrete(A), behavior_policy="softmax1"),
    )


def write_folder(kind: str, n: int, root: Path) -> Path:
    """``n`` rounds (bandit) or transitions (cartpole) as files of 10^6, written once."""
    folder = root / f"{kind}_{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    from scale import cartpole_shaped

    for k, lo in enumerate(range(0, n, FILE_ROWS)):
        rows = min(FILE_ROWS, n - lo)
        ds = bandit_file(rows, seed=k) if kind == "bandit" else cartpole_shaped(rows, max(1, round(rows / 22)), seed=k)
        ds.to_parquet(folder / f"part{k:05d}.parquet")
    done.touch()
    return folder


def bandit_policies():
    from opelab.policies import SoftmaxPolicy
    from opelab.policies.heads import CallableActionValues

    return [SoftmaxPolicy(CallableActionValues(bandit_scores, A), tau, name=f"softmax{tau}") for tau in BANDIT_TEMPERATURES]


def bandit_q(observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A fixed reward model for every policy: the logging model's click probabilities."""
    q = 1 / (1 + np.exp(-bandit_scores(observations)))
    return np.broadcast_to(q, (len(BANDIT_TEMPERATURES), *q.shape))


def measure(kind: str, folder: str, executor: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from opelab.data.chunks import head, open_source
    from opelab.ope.streaming import evaluate_stream

    source = open_source(folder)
    result = {"rows": source.n_rows, "trajectories": source.n_trajectories, "files": len(source.files)}
    start = time.perf_counter()
    if kind == "bandit":
        table = evaluate_stream(source, bandit_policies(), bandit_q)
    else:
        from opelab.ope import FQEConfig, evaluation_action_probs, fit_fqe
        from opelab.ope.fqe import fqe_action_values
        from scale import TEMPERATURES, controller

        from opelab.policies import SoftmaxPolicy
        from opelab.policies.heads import CallableActionValues

        policies = [SoftmaxPolicy(CallableActionValues(controller, 2), tau, name=f"softmax{tau}") for tau in TEMPERATURES]
        sample = head(source, FIT_TRAJECTORIES, horizon=source.horizon)
        fit = fit_fqe(sample, evaluation_action_probs(sample, policies), config=FQEConfig(n_steps=5))
        del sample
        result["fit_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        table = evaluate_stream(source, policies, fqe_action_values(fit), interval="t", executor=executor)
    result["seconds"] = time.perf_counter() - start
    result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["estimates"] = table.estimates.tolist()
    result["lower"] = None if table.lower is None else table.lower.tolist()
    return result


def main() -> None:
    from scale import in_fresh_process

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bandit", type=float, nargs="*", default=[1e5, 1e6, 1e7, 1e8])
    parser.add_argument("--cartpole", type=float, nargs="*", default=[1e7])
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "opelab-stream-bench")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stream.md")
    args = parser.parse_args()
    rows = ["| case | rows | trajectories | files | FQE fit (s) | stream (s) | rows / s | peak RSS (GB) |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    runs = [("bandit", int(n), "local") for n in args.bandit] + [("cartpole", int(n), "local") for n in args.cartpole]
    if not args.no_ray:
        runs += [("cartpole", int(n), "ray") for n in args.cartpole]
    local: dict[int, dict] = {}
    for kind, n, executor in runs:
        start = time.perf_counter()
        folder = write_folder(kind, n, args.data)
        written = time.perf_counter() - start
        r = in_fresh_process(kind, str(folder), executor, function=measure)
        label = f"{kind} ({executor})" if kind == "cartpole" else kind
        fit = f"{r['fit_seconds']:.1f}" if "fit_seconds" in r else "–"
        rows.append(
            f"| {label} | {r['rows']:,} | {r['trajectories']:,} | {r['files']} | {fit} | {r['seconds']:.1f} | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['peak_gb']:.2f} |"
        )
        print(rows[-1], f"(data written in {written:.0f} s)" if written > 1 else "", flush=True)
        if kind == "cartpole" and executor == "local":
            local[n] = r
        if kind == "cartpole" and executor == "ray":
            same = r["estimates"] == local[n]["estimates"] and r["lower"] == local[n]["lower"]
            notes.append(f"- Ray (2 workers) vs local stream at {n:,} transitions: estimates and t bounds {'identical' if same else 'DIFFERENT'}.")
            print(notes[-1], flush=True)
    machine = f"{platform.machine()}, Python {platform.python_version()}, 2 cores"
    command = "python benchmarks/stream.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Streaming evaluation: memory and time\n\n"
        f"Command: `{command.strip()}` ({machine}). See the script's docstring for the cases. Each row runs in a "
        "fresh process; peak RSS includes the interpreter, numpy, pyarrow and torch (about 0.3 GB).\n\n"
        + "\n".join(rows) + "\n\n" + "\n".join(notes) + ("\n" if notes else "")
    )  # fmt: skip


if __name__ == "__main__":
    main()
