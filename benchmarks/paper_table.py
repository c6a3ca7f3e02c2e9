"""The results table of a SharpeRatio@k-paper style benchmark: per task, each estimator's mean nMSE, rank
correlation, regret@1 and SharpeRatio@k over the datasets, and which estimator wins SharpeRatio@k and nMSE.

    opelab benchmark configs/sharpe_ratio_paper_small.toml --db paper_small.duckdb --workers 2
    python benchmarks/paper_table.py paper_small.duckdb --k 4
        # prints the table, writes benchmarks/results/sharpe_ratio_paper_small.md
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import duckdb
import numpy as np



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", type=Path)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--wall", type=str, default="", help="wall time of the benchmark run, for the record")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sharpe_ratio_paper_small.md")
    args = parser.parse_args()
    con = duckdb.connect(str(args.db), read_only=True)
    run = con.sql("select max(run_id) from runs").fetchall()[0][0]
    name = con.sql(f"select name from runs where run_id = {run}").fetchall()[0][0]
    wanted = ("nmse", "rank_correlation", "regret@1", f"sharpe_ratio@{args.k}")
    frame = con.sql(
        f"select task, estimator, metric, avg(value) as mean, count(*) as n from metrics "
        f"where run_id = {run} and metric in {wanted} group by all"
    ).df()
    cells = con.sql(f"select task, count(*) as cells, sum(wall_s) as seconds from cells where run_id = {run} and status = 'done' group by task").df()
    lines = []
    for task in cells.task:
        sub = frame[frame.task == task].pivot(index="estimator", columns="metric", values="mean")
        sharpe, nmse = sub[f"sharpe_ratio@{args.k}"], sub["nmse"]
        best_sharpe = ", ".join(sharpe.index[np.isclose(sharpe, sharpe.max(), rtol=1e-9, atol=1e-12)])
        best_nmse = ", ".join(nmse.index[np.isclose(nmse, nmse.min(), rtol=1e-9, atol=1e-12)])
        n = int(frame[frame.task == task].n.max())
        lines += [
            f"### {task} ({n} datasets; SharpeRatio@{args.k} winner: **{best_sharpe}**, nMSE winner: **{best_nmse}**)",
            "",
            f"| estimator | nMSE | rank corr | regret@1 | SharpeRatio@{args.k} |",
            "|---|---|---|---|---|",
        ]
        for est, row in sub.iterrows():
            lines.append(
                f"| {est} | {row['nmse']:.3f} | {row['rank_correlation']:.3f} | {row['regret@1']:.2f} | {row[f'sharpe_ratio@{args.k}']:.2f} |"
            )
        lines.append("")
    table = "\n".join(lines)
    print(table)
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# {name}: which estimator wins\n\n"
        f"Commands: `opelab benchmark configs/{name}.toml --db {name}.duckdb --workers 2` "
        f"then `python benchmarks/paper_table.py {name}.duckdb --k {args.k}` ({machine}"
        f"{'; benchmark wall time ' + args.wall if args.wall else ''}). Means over datasets; SharpeRatio@k = "
        "max(best@k − J(π_b), 0) / std@k of the true values of each estimator's top-k.\n\n" + table
    )



if __name__ == "__main__":
    main()
