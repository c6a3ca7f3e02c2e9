"""The SharpeRatio@k paper's findings, read from a benchmark store, as Markdown tables to set next to the
paper's (Kiyohara et al., ICLR 2024, §5): per task the candidate set's spread of true values, the most
efficient estimator by SharpeRatio@k, every estimator's SharpeRatio@k / nMSE / rank correlation /
normalised regret@k with 95% bootstrap intervals over the datasets, the agreement of SharpeRatio@k's pick
with the other metrics' picks (the paper: 3, 41 and 8 of 70 trials), the cost of each task and the cells
whose nuisances did not converge. The numbers come from ``opelab.report.store.read_store_report``, the
same ones ``opelab report STORE.duckdb`` draws.

    opelab benchmark configs/sharpe_ratio_paper_medium.toml --db medium.duckdb --workers 2
    python benchmarks/paper_comparison.py medium.duckdb --k 4 > tables.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from opelab.bench import ResultStore
from opelab.report.store import read_store_report

PAPER_AGREEMENT = {"nMSE": (3, 70), "rank correlation": (41, 70), "normalised regret": (8, 70)}  # at k = 4


def _interval(row: pd.Series, digits: int) -> str:
    if np.isinf(row["mean"]):
        return "inf" if row["mean"] > 0 else "-inf"
    if not np.isfinite(row["mean"]):
        return "undefined"
    text = f"{row['mean']:.{digits}f}"
    if np.isfinite(row["lower"]) and np.isfinite(row["upper"]):
        text += f" [{row['lower']:.{digits}f}, {row['upper']:.{digits}f}]"
    return text


def _markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def tables(db: Path, k: int, n_bootstrap: int) -> str:
    with ResultStore(db, read_only=True) as store:
        report = read_store_report(store, k=k, n_bootstrap=n_bootstrap)
        cells = store.table("cells")
        truth = store.table("ground_truth")
        nuisances = store.nuisances(report.run_id)
    run = report.run_id
    cells, truth = cells[cells.run_id == run], truth[truth.run_id == run]
    out = [f"Run {run} of `{report.name}`, k = {k}, {n_bootstrap} bootstrap resamples over the datasets.", ""]

    done = cells[cells.status == "done"]
    cost = done.groupby("task", sort=False).agg(
        cells=("dataset", "size"), total_s=("wall_s", "sum"), first_collect_s=("collect_s", "max"),
        inputs_s=("inputs_s", "median"), transitions=("n_transitions", "mean"),
    ).reset_index()  # fmt: skip
    cost["total (min)"] = (cost.pop("total_s") / 60).round(1)
    cost["largest collect stage (s; training tasks: their training)"] = cost.pop("first_collect_s").round(0).astype(int)
    cost["inputs per cell, median (s)"] = cost.pop("inputs_s").round(0).astype(int)
    cost["logged steps per dataset"] = cost.pop("transitions").round(0).astype(int)
    out += ["## Cost per task (cells that finished)", "", _markdown(cost), ""]
    out.append(f"Sum over all finished cells: {done.wall_s.sum() / 3600:.2f} core-hours.")
    out.append("")

    per_task = truth.groupby(["task", "policy"], sort=False)["value"].mean().reset_index()
    spread = per_task.groupby("task", sort=False)["value"].agg(["min", "max", "std", "nunique"]).reset_index()
    spread = spread.merge(report.behavior, on="task", how="left")
    spread = pd.DataFrame({
        "task": spread.task,
        "J(π_b)": spread.behavior_value.round(2),
        "candidates' true values": [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(spread["min"], spread["max"], strict=True)],
        "spread (max − min)": (spread["max"] - spread["min"]).round(2),
        "std": spread["std"].round(2),
        "distinct values": spread["nunique"],
    })  # fmt: skip
    out += ["## Candidate sets (true values: on-policy rollouts for learned tasks, exact for tabular ones)", "", _markdown(spread), ""]

    out += ["## Most efficient estimator per task (mean SharpeRatio@%d over the datasets)" % k, ""]
    rows = []
    for e in report.efficient.to_dict("records"):
        value, lower, upper = (e.get(key, np.nan) for key in (f"sharpe_ratio@{k}", "lower", "upper"))
        runner_up = e.get("runner_up")
        rows.append({
            "task": e["task"],
            "estimator": "none (undefined)" if pd.isna(e.get("estimator")) else e["estimator"],
            f"SharpeRatio@{k}": "undefined" if pd.isna(value) else f"{value:.2f}" + ("" if pd.isna(lower) else f" [{lower:.2f}, {upper:.2f}]"),
            "runner-up": "" if runner_up is None or pd.isna(runner_up) else f"{runner_up} ({e['runner_up_value']:.2f})",
        })  # fmt: skip
    out += [_markdown(pd.DataFrame(rows)), ""]

    summary = report.summary
    metrics = {f"sharpe_ratio@{k}": (f"SharpeRatio@{k}", 2), "nmse": ("nMSE", 3), "rank_correlation": ("rank corr", 2), f"normalized_regret@{k}": (f"nRegret@{k}", 3)}
    out += ["## Every estimator (mean [95% bootstrap interval] over the datasets)", ""]
    for task in summary.task.unique():
        sub = summary[(summary.task == task) & summary.metric.isin(list(metrics))]
        table = []
        for estimator in sub.estimator.unique():
            row = {"estimator": estimator}
            for metric, (label, digits) in metrics.items():
                hit = sub[(sub.estimator == estimator) & (sub.metric == metric)]
                row[label] = _interval(hit.iloc[0], digits) if len(hit) else ""
            table.append(row)
        n = int(sub.n_datasets.max()) if len(sub) else 0
        out += [f"### {task} ({n} datasets)", "", _markdown(pd.DataFrame(table)), ""]

    out += ["## Agreement of SharpeRatio@%d's pick with the other metrics' picks" % k, ""]
    counts = report.agreement_counts
    rows = []
    for comparison in counts.comparison:
        agree, trials = counts.loc[counts.comparison == comparison, "total"].iloc[0]
        paper = next((f"{a} of {b} ({a / b:.0%})" for key, (a, b) in PAPER_AGREEMENT.items() if key in comparison and k == 4), "")
        rows.append({"comparison": comparison, "this run": f"{agree:.3g} of {trials} ({agree / trials:.0%})" if trials else "", "paper": paper})
    out += [_markdown(pd.DataFrame(rows)), "", "Per task:", "", _markdown(report.agreement), ""]

    if nuisances is not None and nuisances.seconds.notna().any():
        cost = nuisances.groupby(["task", "nuisance"], sort=False).seconds.median().round(1).reset_index(name="seconds per cell (median)")
        out += ["## Nuisance cost (wall time of the fits)", "", _markdown(cost), ""]

    if report.convergence_summary is not None:
        out += ["## Nuisance convergence", "", _markdown(report.convergence_summary), ""]
        conv = report.convergence
        if conv is not None and len(conv):
            worst = conv.groupby(["task", "nuisance"], sort=False).agg(
                cells=("dataset", "nunique"), last_change=("last_change", "median"), residual=("residual", "median")
            ).reset_index()  # fmt: skip
            worst["last_change"], worst["residual"] = worst.last_change.round(4), worst.residual.round(3)
            out += ["Unconverged fits, medians over the cells:", "", _markdown(worst), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", type=Path)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    print(tables(args.db, args.k, args.bootstrap))


if __name__ == "__main__":
    main()
