"""Tables the commands share: estimates per policy, the assessment of each estimator, its picks."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from opelab.cli.output import column_chunks, compact_table, console, fmt, line, styled

METRIC_LABELS = {
    "nmse": "nMSE ↓",
    "rank_correlation": "rank corr ↑",
    "regret@1": "regret@1 ↓",
    "normalized_regret@1": "nregret@1 ↓",
    "type_i": "Type I ↓",
    "type_ii": "Type II ↓",
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("sharpe_ratio", "SharpeRatio") + " ↑")


def print_estimates(result: Any, title: str = "Estimates vs exact value", first_width: int = 18) -> None:
    """Rows: candidates; columns: the truth and each estimator (a pipeline result's estimates_vs_truth)."""
    frame = result.estimates_vs_truth()
    frame = frame.rename(columns={"true_value": "truth"})
    for i, chunk in enumerate(column_chunks(list(frame.columns), first_width)):
        table = compact_table(title if i == 0 else "(continued)", "policy", chunk, first_width)
        for policy, row in frame[chunk].iterrows():
            table.add_row(str(policy), *(fmt(float(v), 2) for v in row))
        console.print(table)


def print_assessment(assessment: Any) -> None:
    """The assessment summary (metrics × estimators), each metric's winner in green, then the picks."""
    summary = assessment.summary
    picks = assessment.picks().set_index("metric")["estimator"]
    title = f"Assessment of each estimator (J(π_b) = {assessment.behavior_value:.3f}, the logged mean return)"
    for i, chunk in enumerate(column_chunks([str(name) for name in summary.index], 18)):
        table = compact_table(title if i == 0 else "(continued)", "metric", chunk)
        for metric in summary.columns:
            cells = []
            for name in chunk:
                text = fmt(float(summary.loc[name, metric]), 2)
                cells.append(styled(text, "bold green") if picks[metric] == name else text)
            table.add_row(metric_label(metric), *cells)
        console.print(table)
    console.print(f"Which estimator each metric picks (green above): {picks_sentence(picks)}.")


def picks_sentence(picks: Any) -> str:
    """'nMSE: dm · rank corr: sndr · ... · SharpeRatio@2..10: dm ×8, tis ×1' from metric → estimator."""
    parts = []
    for metric, name in picks.items():
        if not metric.startswith("sharpe_ratio@"):
            parts.append(f"{metric_label(metric).rstrip(' ↑↓')}: {name if isinstance(name, str) else 'none'}")
    sharpe = picks[[m for m in picks.index if m.startswith("sharpe_ratio@")]].dropna()
    if len(sharpe):
        ks = [m.split("@")[1] for m in sharpe.index]
        counts = ", ".join(f"{name} ×{count}" for name, count in sharpe.value_counts().items())
        parts.append(f"SharpeRatio@{ks[0]}..{ks[-1]}: {counts}")
    return " · ".join(parts)


def print_estimate_table(table: Any, truth: Any, title: str) -> None:
    """Rows: candidates; columns: the truth (± SE) when known, then each estimator (with its interval)."""
    frame = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    frame.add_column("policy", no_wrap=True)
    if truth is not None:
        frame.add_column("truth ± SE", justify="right")
    for name in table.estimator_names:
        frame.add_column(name, justify="right", overflow="fold")
    for p, policy in enumerate(table.policy_names):
        cells = [] if truth is None else [f"{fmt(float(truth.values[p]), 2)} ± {fmt(float(truth.standard_errors[p]), 2)}"]
        for e, _ in enumerate(table.estimator_names):
            text = fmt(float(table.estimates[e, p]), 2)
            if table.lower is not None:
                text += f"\n[{fmt(float(table.lower[e, p]), 1)}, {fmt(float(table.upper[e, p]), 1)}]"
            cells.append(text)
        frame.add_row(str(policy), *cells)
    console.print(frame)
    if table.interval is not None:
        console.print(
            line(f"Intervals: {table.interval}, level {1 - (table.alpha or 0):.0%}. "
                 f"J(π_b) (logged mean return) = {table.behavior_value:.3f}")
        )  # fmt: skip


def print_overlap(frame: Any) -> None:
    """Per policy: effective sample size of the importance weights (and its share of n), the largest and
    the mean weight (``opelab.ope.diagnostics.overlap_diagnostics``)."""
    table = Table(title="Overlap of each candidate with the logged data", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for name, justify in (("policy", "left"), ("ESS", "right"), ("ESS / n", "right"), ("max weight", "right"), ("mean weight", "right")):
        table.add_column(name, justify=justify, no_wrap=name == "policy")
    for row in frame.itertuples(index=False):
        table.add_row(str(row.policy), f"{row.ess:,.0f}", f"{row.ess_fraction:.1%}", fmt(float(row.max_weight), 2), fmt(float(row.mean_weight), 3))
    console.print(table)


def print_recommendation(recommendation: Any) -> None:
    """The estimated assessment of each estimator (``opelab.select.recommend_estimator``) and its pick,
    labelled as estimated from the logs."""
    frame = recommendation.table
    k = recommendation.k
    table = Table(
        title=f"Which estimator to trust: {recommendation.label}", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1)
    )
    table.add_column("method", no_wrap=True)
    table.add_column("estimator", no_wrap=True)
    metrics = [(name, label) for name, label in (
        ("estimated_nmse", "nMSE ↓ [95%]"), ("estimated_rank_correlation", "rank corr ↑ [95%]"),
        (f"estimated_sharpe_ratio@{k}", f"SharpeRatio@{k} ↑ [95%]"), ("picked_for", "picked for (policies)"),
    ) if name in frame]  # fmt: skip
    for _, label in metrics:
        table.add_column(label, justify="right")
    for row in frame.to_dict("records"):
        cells = []
        for name, _ in metrics:
            if name == "picked_for":
                cells.append(str(int(row[name])))
            else:
                cells.append(f"{fmt(float(row[name]), 3)}\n[{fmt(float(row[name + '_lower']), 2)}, {fmt(float(row[name + '_upper']), 2)}]")
        marker = " ◀" if row["selected"] else ""
        table.add_row(str(row["method"]), str(row["estimator"]) + marker, *cells)
    console.print(table)
    console.print(line("Recommendation: ", (recommendation.pick, "bold"), f". {recommendation.reason}"))
