"""``describe_source`` on one 100,000-step trajectory among 20,000 short ones: peak memory and time.

The dataset (float observations, 4 dims; 2 actions; short lengths uniform in 1..40) is written as two
Parquet files in one folder, the long trajectory alone and the short ones together, so that writing it never
needs the padded array either. ``describe(read_parquet(...))`` of the same data would pad every trajectory
to 100,000 steps; its size is given by ``opelab.resources.dataset_bytes`` (it is not run). ``describe_source``
runs in a fresh process per ``max_cells``; peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` there.

    python benchmarks/describe_long.py     # prints a table, writes benchmarks/results/describe_long.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.resources import DataSize, dataset_bytes

OBS_DIM = 4


def trajectories(lengths: np.ndarray, seed: int) -> LoggedDataset:
    """Trajectories of the given lengths, padded to their longest: AR(1) observations, uniform actions."""
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        obs = np.cumsum(rng.normal(0, 0.05, size=(T, OBS_DIM)), axis=0)
        out.append(
            dict(observations=obs, actions=rng.integers(0, 2, size=T), rewards=rng.normal(1.0, 0.1, size=T),
                 behavior_pscore=np.full(T, 0.5), terminal=bool(T < 40))
        )  # fmt: skip
    info = DatasetInfo(task="long-tail", gamma=0.999, action_space=ActionSpace.discrete(2), behavior_policy="uniform")
    return LoggedDataset.from_trajectories(out, info)


def child(folder: str, max_cells: int) -> None:
    from opelab.data.describe import describe_source

    start = time.perf_counter()
    summary = describe_source(folder, max_cells=max_cells)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak": peak, "summary": summary.to_dict()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", type=int, default=100_000, help="steps of the long trajectory")
    parser.add_argument("--short", type=int, default=20_000, help="number of short trajectories")
    parser.add_argument("--max-cells", type=int, nargs="+", default=[1 << 18, 1 << 16], help="chunk sizes to run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "describe_long.md")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    rng = np.random.default_rng(0)
    short = rng.integers(1, 41, size=args.short)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        start = time.perf_counter()
        trajectories(np.array([args.long]), seed=1).to_parquet(folder / "0-long.parquet")
        trajectories(short, seed=2).to_parquet(folder / "1-short.parquet")
        write_seconds = time.perf_counter() - start
        n, steps = 1 + args.short, args.long + int(short.sum())
        padded = dataset_bytes(n, DataSize(n, args.long, OBS_DIM, 2))
        rows = []
        for max_cells in args.max_cells:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(folder), str(max_cells)], capture_output=True, text=True, check=True
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            summary = result["summary"]
            assert summary["n_trajectories"] == n and summary["n_transitions"] == steps and summary["horizon"] == args.long
            rows.append((max_cells, result["seconds"], result["peak"]))
    command = f"python benchmarks/describe_long.py --long {args.long} --short {args.short} --max-cells {' '.join(map(str, args.max_cells))}"
    lines = [
        "# describe_source: one long trajectory among short ones",
        "",
        f"Command: `{command}` ({platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}).",
        f"Data: 1 trajectory of {args.long:,} steps + {args.short:,} of 1–40 steps ({steps:,} logged steps, float observations "
        f"of {OBS_DIM} dims, 2 actions), two Parquet files in one folder (written in {write_seconds:.1f} s). "
        "SACo bins the float observations, so the data is read twice. Each row runs in a fresh process.",
        "",
        "| method | max_cells | seconds | peak RSS (GB) |",
        "|---|---|---|---|",
        *(f"| describe_source | {cells:,} | {seconds:.1f} | {peak / 1e9:.2f} |" for cells, seconds, peak in rows),
        f"| describe(read_parquet(...)), padded to {n:,} × {args.long:,} (estimate, not run) | – | – | {padded / 1e9:.0f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
