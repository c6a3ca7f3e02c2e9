"""The SharpeRatio@k paper's views of a benchmark store (``opelab report STORE.duckdb``).

A benchmark store (``opelab.bench.ResultStore``) holds, per run, one row of metrics per (task, dataset,
estimator, metric). This module reads one run and shows it the way Kiyohara et al. (ICLR 2024) report their
benchmark, in the same self-contained HTML page as ``opelab.report.html``:

per task
    SharpeRatio@k against k for every estimator, the mean across datasets with its percentile-bootstrap band
    (``opelab.select.uncertainty.summarize_across_datasets``, datasets as the unit);
    best@k, worst@k, mean@k and std@k of the true values of each estimator's top-k, with the behavior
    policy's value (the true J(π_b) of the cells, averaged; SharpeRatio@k itself uses each dataset's logged
    mean return);
    nMSE, rank correlation and normalised regret@k with their bands;
across tasks
    the most efficient estimator per task: the highest mean SharpeRatio@k (k = ``k``, 4 in the paper);
    the agreement table: a *trial* is one (task, dataset) cell; in how many trials the estimator with the
    best SharpeRatio@k is also the pick of nMSE, of rank correlation and of normalised regret@k, the paper's
    "3 of 70 / 41 of 70 / 8 of 70" reading. Ties are common (estimators that rank the same top-k have the same
    SharpeRatio@k), so a trial's pick of a metric is the *set* A of estimators tied at its best value, and
    the trial counts |A ∩ B| / (|A| |B|): the probability that a uniformly random member of each set is the
    same estimator (1 without ties when the picks agree, 0 when they differ), the same "average over the
    orderings of tied values" as the metrics' ``ties="average"``; the number of trials whose SharpeRatio@k
    pick was tied is shown beside;
    the cells that failed, and the cells whose learned nuisances (neural FQE, marginal weights, MQL) did not
    converge by their own signals (``opelab.ope.fqe`` / ``opelab.ope.minimax``: the change between iterates,
    the Bellman or flow residual), from the store's ``nuisances`` table; a store of schema 1 does not record
    them and the page says so rather than showing an empty list; cells with exact (tabular) nuisances have
    no rows.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from opelab.report import plots
from opelab.select.assess import LOWER_IS_BETTER

__all__ = ["StoreReport", "read_store_report", "render_store_report", "write_store_report"]

COMPARED = ("nmse", "rank_correlation", "normalized_regret@{k}")
LABELS = {"nmse": "nMSE", "rank_correlation": "rank correlation", "normalized_regret": "normalised regret"}


@dataclass(frozen=True, eq=False)
class StoreReport:
    """What the page shows for one run of a store (module docstring).

    summary      task, estimator, metric, mean, std, lower, upper, n_datasets, ... (one bootstrap per task)
    behavior     task, behavior_value (true J(π_b), mean over its done cells), logged_value (mean), policy (the
                 behavior policy's name as its cells recorded it, None before schema 4)
    trials       task, dataset, and per compared metric (and SharpeRatio@k) the tied-best estimators, joined by ", "
    agreement    comparison, one column per task ("agree of trials"), total; ``agreement_counts`` the numbers
    efficient    task, estimator, sharpe_ratio (mean), lower, upper, runner_up, runner_up_value
    cells        task, done, failed, first error
    convergence  one row per learned nuisance that did not converge: task, dataset, nuisance, last_change,
                 residual, residual_sample; ``convergence_summary`` per task: cells with learned nuisances and
                 with an unconverged one; both None when the store does not record convergence (schema 1)
    """

    run_id: int
    name: str
    k: int
    alpha: float
    summary: pd.DataFrame
    behavior: pd.DataFrame
    trials: pd.DataFrame
    agreement: pd.DataFrame
    agreement_counts: pd.DataFrame
    efficient: pd.DataFrame
    cells: pd.DataFrame
    convergence: pd.DataFrame | None
    convergence_summary: pd.DataFrame | None = None


def _label(metric: str) -> str:
    base, _, k = metric.partition("@")
    name = LABELS.get(base, base.replace("sharpe_ratio", "SharpeRatio"))
    return f"{name}@{k}" if k else name


def _best_set(values: pd.Series, metric: str) -> tuple[str, ...]:
    """The estimators tied at the best value of ``metric`` on one dataset (NaN values left out)."""
    finite = values.dropna()
    if finite.empty:
        return ()
    best = finite.min() if metric.startswith(LOWER_IS_BETTER) else finite.max()
    return tuple(str(name) for name in finite.index[finite == best])


def _agreement(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """P(a uniformly random member of ``a`` equals one of ``b``) = |a ∩ b| / (|a| |b|); 0 when either is empty."""
    return len(set(a) & set(b)) / (len(a) * len(b)) if a and b else 0.0


def read_store_report(store: Any, run_id: int | None = None, *, k: int = 4, alpha: float = 0.05, n_bootstrap: int = 2000) -> StoreReport:
    """Read one run (default: the latest) of an open ``ResultStore`` into the page's tables.

    ``k``: the SharpeRatio@k of the efficiency and agreement views (the paper's 4); a run whose candidate sets
    are smaller than ``k`` is refused with the largest k it has.
    """
    from opelab.select.uncertainty import summarize_across_datasets

    run = store.latest_run() if run_id is None else int(run_id)
    runs = store.query(f"SELECT run_id, name FROM runs WHERE run_id = {int(run or 0)}")
    if run is None or runs.empty:
        raise ValueError(f"run: expected a run in {Path(store.path).name}, found {'none' if run is None else run}")
    metrics = store.query(f"SELECT task, dataset, estimator, metric, value FROM metrics WHERE run_id = {run} ORDER BY task, dataset")
    if metrics.empty:
        raise ValueError(f"run: expected finished cells in run {run} of {Path(store.path).name}, found none")
    sharpe = f"sharpe_ratio@{k}"
    if sharpe not in set(metrics.metric):
        ks = sorted(int(m.split("@")[1]) for m in set(metrics.metric) if m.startswith("sharpe_ratio@"))
        raise ValueError(f"k: expected a k the run's metrics hold (SharpeRatio@k for k in {ks}), found {k}")
    policy = "behavior" if store.has_column("cells", "behavior") else "NULL::VARCHAR AS behavior"  # schema 4
    cells = store.query(
        f"SELECT task, dataset, status, error, behavior_value, logged_value, {policy} FROM cells WHERE run_id = {run} "
        "ORDER BY task, dataset"
    )
    tasks = list(dict.fromkeys(metrics.task))
    summaries = []
    for task in tasks:
        frame = metrics[metrics.task == task].drop(columns="task")
        summaries.append(summarize_across_datasets(frame, alpha=alpha, n_bootstrap=n_bootstrap, seed=0).assign(task=task))
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary[["task", *[c for c in summary.columns if c != "task"]]]
    done = cells[cells.status == "done"]
    behavior = done.groupby("task", sort=False)[["behavior_value", "logged_value"]].mean().reindex(tasks)
    names = done.groupby("task", sort=False)["behavior"].agg(lambda s: "; ".join(dict.fromkeys(s.dropna())) or None)
    behavior = behavior.assign(policy=names.reindex(tasks)).reset_index()

    compared = [m.format(k=k) for m in COMPARED]
    rows = []
    for (task, dataset), frame in metrics.groupby(["task", "dataset"], sort=False):
        wide = frame.pivot(index="estimator", columns="metric", values="value")
        row: dict[str, Any] = {"task": task, "dataset": int(dataset)}
        for metric in (sharpe, *compared):
            row[metric] = _best_set(wide[metric], metric) if metric in wide.columns else ()
        rows.append(row)
    trials = pd.DataFrame(rows)
    count_rows = []
    for metric in compared:
        agree = trials.apply(lambda r: _agreement(r[sharpe], r[metric]), axis=1).astype(float)
        row = {"comparison": f"SharpeRatio@{k} pick = {_label(metric)} pick"}
        for task in tasks:
            mask = trials.task == task
            row[task] = (float(agree[mask].sum()), int(mask.sum()))
        row["total"] = (float(agree.sum()), len(trials))
        count_rows.append(row)
    tied = trials[sharpe].map(len) > 1
    count_rows.append(
        {"comparison": f"SharpeRatio@{k} pick tied between estimators", **{t: (float(tied[trials.task == t].sum()), int((trials.task == t).sum())) for t in tasks},
         "total": (float(tied.sum()), len(trials))}  # fmt: skip
    )
    agreement_counts = pd.DataFrame(count_rows)
    agreement = agreement_counts.copy()
    for column in [*tasks, "total"]:
        agreement[column] = [f"{a:.4g} of {n}" for a, n in agreement_counts[column]]
    trials_text = trials.copy()
    for metric in (sharpe, *compared):
        trials_text[metric] = [", ".join(names) if names else "none" for names in trials[metric]]

    efficient_rows = []
    for task in tasks:
        block = summary[(summary.task == task) & (summary.metric == sharpe)].sort_values("mean", ascending=False, na_position="last")
        if block.empty or block["mean"].isna().all():
            efficient_rows.append({"task": task, "estimator": None})
            continue
        first = block.iloc[0]
        second = block.iloc[1] if len(block) > 1 else None
        efficient_rows.append(
            {"task": task, "estimator": first.estimator, sharpe: first["mean"], "lower": first["lower"], "upper": first["upper"],
             "runner_up": None if second is None else second.estimator, "runner_up_value": np.nan if second is None else second["mean"]}
        )  # fmt: skip
    status = (
        cells.groupby("task", sort=False)
        .apply(
            lambda f: pd.Series(
                {"done": int((f.status == "done").sum()), "failed": int((f.status == "failed").sum()),
                 "first_error": next((str(e) for e in f.error if isinstance(e, str) and e), "")}  # fmt: skip
            ),
            include_groups=False,
        )
        .reset_index()
    )
    convergence = convergence_summary = None
    nuisances = store.nuisances(run)  # None: a schema-1 store records no convergence
    if nuisances is not None:
        nuisances = nuisances[nuisances.task.isin(tasks)]
        flags = nuisances.converged.astype("boolean").fillna(False).astype(bool)
        columns = ["task", "dataset", "nuisance", "last_change", "residual", "residual_sample"]
        convergence = nuisances.loc[~flags, [c for c in columns if c in nuisances.columns]].reset_index(drop=True)
        per_cell = nuisances.assign(ok=flags).groupby(["task", "dataset"], sort=False).ok.all().reset_index()
        convergence_summary = pd.DataFrame(
            {"task": tasks,
             "cells with learned nuisances": [int((per_cell.task == t).sum()) for t in tasks],
             "cells with an unconverged one": [int(((per_cell.task == t) & ~per_cell.ok).sum()) for t in tasks]}  # fmt: skip
        )
    return StoreReport(
        run_id=int(run), name=str(runs.name.iloc[0]), k=int(k), alpha=float(alpha), summary=summary, behavior=behavior,
        trials=trials_text, agreement=agreement, agreement_counts=agreement_counts, efficient=pd.DataFrame(efficient_rows),
        cells=status, convergence=convergence, convergence_summary=convergence_summary,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- figures
def _series(summary: pd.DataFrame, estimator: str, prefix: str) -> pd.DataFrame:
    rows = summary[(summary.estimator == estimator) & summary.metric.str.startswith(prefix + "@")].copy()
    rows["k"] = rows.metric.str.split("@").str[1].astype(int)
    return rows.sort_values("k")


@plots._literal_text
def plot_curves_with_bands(
    summary: pd.DataFrame, prefixes: tuple[str, ...], title: str, behavior_value: float | None = None
) -> Figure:
    """Per prefix (sharpe_ratio, best, worst, mean, std) one panel: the mean across datasets against k for every
    estimator, its bootstrap interval as a band; the behavior value as a dashed line where it applies."""
    names = list(dict.fromkeys(summary.estimator))
    styles = plots._resolve_styles(names, None)
    columns = len(prefixes)  # one row of panels, shown page-wide
    rows = 1
    fig = plots._new_figure(10.0 if columns == 1 else 4.0 * columns, 4.2)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True).reshape(-1)
    for ax, prefix in zip(axes, prefixes):
        for name in names:
            rows_ = _series(summary, name, prefix)
            if rows_.empty:
                continue
            style = styles[name]
            mean = rows_["mean"].to_numpy(dtype=float)
            ax.plot(rows_.k, mean, color=style.color, marker=style.marker, linestyle=style.linestyle, linewidth=1.6, markersize=5)
            low, high = rows_["lower"].to_numpy(dtype=float), rows_["upper"].to_numpy(dtype=float)
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.fill_between(rows_.k[ok], low[ok], high[ok], color=style.color, alpha=0.15, linewidth=0)
        if behavior_value is not None and np.isfinite(behavior_value) and prefix in ("best", "worst", "mean"):
            ax.axhline(behavior_value, color=plots._REFERENCE_COLOR, linestyle="--", linewidth=1.2)
        if len(prefixes) > 1:
            ax.set_title(_label(prefix) + "@k", fontsize="medium")
        else:
            ax.set_ylabel("SharpeRatio@k")
        ax.set_xlabel("k (number of deployed candidates)")
        ax.grid(True, color="0.92", linewidth=0.8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(prefixes) :]:
        ax.set_visible(False)
    handles: list[Any] = [plots._line_handle(n, styles[n]) for n in names]
    if behavior_value is not None and any(p in ("best", "worst", "mean") for p in prefixes):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=plots._REFERENCE_COLOR, linestyle="--", label="behavior policy value"))
    plots._legend(fig, handles)
    return plots._finish(fig, title)


@plots._literal_text
def plot_metric_intervals(summary: pd.DataFrame, metrics: tuple[str, ...], title: str) -> Figure:
    """One panel per metric: every estimator's mean across datasets with its bootstrap interval."""
    names = list(dict.fromkeys(summary.estimator))
    styles = plots._resolve_styles(names, None)
    fig = plots._new_figure(4.0 * len(metrics) + 1.0, 1.2 + 0.32 * len(names))
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    y = np.arange(len(names), dtype=float)
    for ax, metric in zip(axes, metrics):
        rows = summary[summary.metric == metric].set_index("estimator").reindex(names)
        for i, name in enumerate(names):
            style = styles[name]
            mean, low, high = (float(rows.loc[name, c]) for c in ("mean", "lower", "upper"))
            if np.isfinite(low) and np.isfinite(high):
                ax.hlines(y[i], low, high, color=style.color, linewidth=2.2)
            if np.isfinite(mean):
                ax.plot([mean], [y[i]], marker=style.marker, color=style.color, markeredgecolor="black", markersize=7, linestyle="none")
        direction = "lower is better" if metric.startswith(LOWER_IS_BETTER) else "higher is better"
        ax.set_title(f"{_label(metric)} ({direction})", fontsize="medium")
        ax.grid(True, axis="x", color="0.92", linewidth=0.8)
    axes[0].set_yticks(y, [plots._short(n, 24) for n in names])
    axes[0].set_ylim(len(names) - 0.5, -0.5)
    return plots._finish(fig, title)


# ---------------------------------------------------------------------------------------------- page
def _table(frame: pd.DataFrame) -> str:
    from opelab.report.html import _frame_table

    return _frame_table(frame, index=False)


def _figure(caption: str, fig: Figure, wide: bool = False) -> str:
    from opelab.report.html import _inline_svg

    cls = "opelab-figure wide" if wide else "opelab-figure"
    return f'<figure class="{cls}"><figcaption>{html.escape(caption)}</figcaption>{_inline_svg(plots.figure_to_svg(fig))}</figure>'


def render_store_report(report: StoreReport, title: str | None = None) -> str:
    """The page as one HTML string (same style and script as ``opelab.report.html``)."""
    from opelab.report.html import _PAGE, _SCRIPT, _STYLE, _number

    k = report.k
    sharpe = f"sharpe_ratio@{k}"
    level = f"{100 * (1 - report.alpha):g}%"
    title = title or f"opelab benchmark: {report.name} (run {report.run_id})"
    efficient = report.efficient.copy()
    items = []
    for row in efficient.to_dict("records"):
        if pd.isna(row.get("estimator")):  # None in a column of names reads back as NaN
            items.append(f"<li>{html.escape(row['task'])}: no estimator has a finite SharpeRatio@{k}.</li>")
            continue
        runner_up = row.get("runner_up")
        runner = f"; next {html.escape(str(runner_up))} at {_number(row['runner_up_value'])}" if pd.notna(runner_up) and runner_up else ""
        items.append(
            f"<li><a href=\"#task-{html.escape(row['task'])}\">{html.escape(row['task'])}</a>: most efficient by SharpeRatio@{k} is "
            f"<b>{html.escape(str(row['estimator']))}</b>, {_number(row[sharpe])} ({level} interval [{_number(row['lower'])}, "
            f"{_number(row['upper'])}]){runner}.</li>"
        )
    failed = report.cells[report.cells.failed > 0]
    cells_note = (
        "Every cell finished."
        if failed.empty
        else f"{int(failed.failed.sum())} cell(s) failed and are left out: " + "; ".join(
            f"{t}: {n} ({e})" for t, n, e in zip(failed.task, failed.failed, failed.first_error)
        )
    )
    if report.convergence is None or report.convergence_summary is None:
        convergence = (
            "<p class=\"note\">Nuisance convergence: this store does not record it (schema 1 stores no per-cell "
            "convergence signal), so no cell can be flagged.</p>"
        )
    elif report.convergence_summary["cells with learned nuisances"].sum() == 0:
        convergence = '<p class="note">Nuisance convergence: every nuisance of this run is exact (tabular), nothing to flag.</p>'
    else:
        flagged = int(report.convergence_summary["cells with an unconverged one"].sum())
        convergence = (
            "<h3>Nuisance convergence</h3>"
            f'<p class="hint">{flagged} cell(s) hold a learned nuisance (FQE, marginal weights, MQL) that did not converge by '
            "its own signals (change between iterates, Bellman or flow residual): their estimates rest on an unfinished "
            "fit.</p>" + _table(report.convergence_summary)
            + ("" if report.convergence.empty else "<details><summary>The unconverged fits</summary>" + _table(report.convergence) + "</details>")
        )
    summary = [
        f"<h1>{html.escape(title)}</h1>",
        '<section class="summary"><h2>Summary</h2><ul>' + "".join(items) + "</ul>",
        f"<h3>Agreement of SharpeRatio@{k} with the other metrics</h3>"
        f'<p class="hint">A trial is one (task, dataset). In how many trials the estimator SharpeRatio@{k} picks is also '
        "the pick of each other metric (Kiyohara et al., ICLR 2024, report 3, 41 and 8 of 70 for nMSE, rank "
        "correlation and nRegret@4). Where several estimators tie at a metric's best value, the trial counts the "
        "chance that one drawn at random from each tied set is the same estimator, so counts can be fractional.</p>" + _table(report.agreement),
        f'<p class="note">{html.escape(cells_note)}</p>',
        convergence,
        "<details><summary>Each trial's picks</summary>" + _table(report.trials) + "</details></section>",
    ]
    sections = []
    for task in dict.fromkeys(report.summary.task):
        block = report.summary[report.summary.task == task]
        behavior = report.behavior.set_index("task").loc[task]
        value = float(behavior.behavior_value) if np.isfinite(behavior.behavior_value) else None
        datasets = int(block.n_datasets.max())
        compared = ("nmse", "rank_correlation", f"normalized_regret@{k}")
        table = block[block.metric.isin([*compared, sharpe])][["estimator", "metric", "mean", "lower", "upper", "n_datasets"]].copy()
        table["metric"] = table.metric.map(_label)
        sections.append(
            "\n".join(
                [
                    f'<section class="task" id="task-{html.escape(task)}"><h2>{html.escape(task)}</h2>',
                    f'<p class="hint">Means across {datasets} dataset(s) with {level} percentile-bootstrap intervals (bands). '
                    f"Behavior policy{_named(behavior.policy)}: true value {_number(value)}, "
                    f"logged mean return {_number(float(behavior.logged_value))} "
                    "(the SharpeRatio baseline).</p>",
                    '<div class="figures">',
                    _figure("SharpeRatio@k against k", plot_curves_with_bands(block, ("sharpe_ratio",), f"{task}: SharpeRatio@k"), wide=True),
                    _figure(
                        "Top-k portfolio statistics",
                        plot_curves_with_bands(block, ("best", "worst", "mean", "std"), f"{task}: true values of the top-k", value),
                        wide=True,
                    ),
                    _figure("nMSE, rank correlation and regret", plot_metric_intervals(block, compared, f"{task}: accuracy metrics"), wide=True),
                    "</div>",
                    "<details><summary>The metrics with their intervals</summary>" + _table(table) + "</details></section>",
                ]
            )
        )
    return _PAGE.format(title=html.escape(title), style=_STYLE, body="\n".join([*summary, *sections]), script=_SCRIPT)


def write_store_report(report: StoreReport, path: str | Path, title: str | None = None) -> Path:
    """Write the page to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_store_report(report, title), encoding="utf-8")
    return path


def _named(policy: object) -> str:
    """" <name>" for the page's behavior line (HTML-escaped), or nothing when the store did not record it."""
    return f" {html.escape(str(policy))}" if isinstance(policy, str) and policy else ""
