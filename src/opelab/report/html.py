"""One self-contained HTML file that answers "which estimator should I trust here, and how risky is its
top-k choice?": a summary sentence per task at the top, then per task the dataset, the candidates, the
assessment of every estimator and the figures (inline SVG; no network fetches, works offline).

The page carries a tiny inline script that makes every table sortable by clicking a header, and records
in ``<body data-figures=... data-errors=...>`` how many figures were laid out with a non-zero size and
any script error, so a headless browser can check the page (``--dump-dom``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from opelab.data.describe import format_number
from opelab.select.assess import LOWER_IS_BETTER

METRIC_NAMES = {
    "nmse": "nMSE",
    "rank_correlation": "rank correlation",
    "regret@1": "regret@1",
    "normalized_regret@1": "normalised regret@1",
    "type_i": "Type I error",
    "type_ii": "Type II error",
}


@dataclass(frozen=True, eq=False)
class TaskReport:
    """Everything the report shows for one task (one dataset).

    ``estimates``: [policy, estimator, estimate] (+ lower, upper); ``candidates``: [policy, true_value, ...];
    ``assessment``: index estimator, metric columns; ``topk``: [estimator, k, best, worst, mean, std,
    sharpe_ratio]; ``picks``: [metric, estimator, value]. CDF inputs are optional.

    A report *without truth* (every ``true_value`` NaN: a user's own logs) has no assessment, top-k or picks
    (None) and must carry ``estimated_assessment``; its page opens with that assessment, labelled as
    estimated from the logs (``opelab.report.validation``).

    Construction checks the tables against each other once (``opelab.report.validation``): a pick, a top-k row
    or an assessment row naming an estimator without estimates, estimates of a policy that is not a candidate,
    no finite true value at all, ... raise ``ReportError``.
    """

    task: str
    dataset_summary: list[tuple[str, str]]
    candidates: pd.DataFrame
    estimates: pd.DataFrame
    assessment: pd.DataFrame | None
    topk: pd.DataFrame | None
    picks: pd.DataFrame | None
    behavior_value: float
    safety_threshold: float | None = None
    cdfs: pd.DataFrame | None = None
    true_cdfs: pd.DataFrame | None = None
    risk: pd.DataFrame | None = None
    true_risk: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    estimated_assessment: pd.DataFrame | None = None  # the assessment estimated from the logs alone
    estimated_reason: str | None = None  # its recommendation, one sentence

    def __post_init__(self) -> None:
        from opelab.report.validation import check_task_report

        check_task_report(self)

    @property
    def has_truth(self) -> bool:
        """Whether any candidate has a finite true value (else the report shows only estimates from the logs)."""
        return self.assessment is not None


def recommendation(report: TaskReport) -> tuple[str | None, str]:
    """The estimator most metrics pick, and one sentence saying why (ties: better mean SharpeRatio@k); on a
    report without truth, the pick of the assessment estimated from the logs, and its sentence."""
    if not report.has_truth:
        return _estimated_pick(report), f"On {report.task} (no ground truth; estimated from the logs): " + (
            report.estimated_reason or "see the estimated assessment."
        )
    assert report.picks is not None and report.assessment is not None
    picks = report.picks.dropna(subset=["estimator"])
    if picks.empty:
        return None, f"On {report.task}, no metric could pick an estimator."
    counts = picks["estimator"].value_counts()
    sharpe_columns = [c for c in report.assessment.columns if c.startswith("sharpe_ratio@")]
    mean_sharpe = report.assessment[sharpe_columns].replace([np.inf, -np.inf], np.nan).mean(axis=1) if sharpe_columns else None
    leaders = [name for name, count in counts.items() if count == counts.iloc[0]]
    if len(leaders) > 1 and mean_sharpe is not None:
        leaders.sort(key=lambda name: -np.nan_to_num(mean_sharpe.get(name, np.nan), nan=-np.inf))
    best = leaders[0]
    won = picks[picks["estimator"] == best]["metric"].tolist()
    sharpe_won = [m for m in won if m.startswith("sharpe_ratio@")]
    other_won = [METRIC_NAMES.get(m, m) for m in won if not m.startswith("sharpe_ratio@")]
    parts = []
    if other_won:
        parts.append("the best " + ", ".join(other_won))
    if sharpe_won:
        parts.append(f"the best SharpeRatio@k for {len(sharpe_won)} of {len(sharpe_columns)} values of k")
    row = report.assessment.loc[best] if best in report.assessment.index else None
    detail = ""
    if row is not None and "nmse" in row and np.isfinite(row["nmse"]):
        detail = f" (nMSE {_number(row['nmse'])}"
        if "regret@1" in row and np.isfinite(row["regret@1"]):
            detail += f", regret@1 {_number(row['regret@1'])}"
        detail += ")"
    why = " and ".join(parts) if parts else "the most metric wins"
    return best, f"On {report.task}, trust {best}: it has {why}{detail}, {len(won)} of {len(picks)} metrics." + _risk_sentence(report, best)


def _estimated_pick(report: TaskReport) -> str | None:
    frame = report.estimated_assessment
    if frame is None or frame.empty:
        return None
    selected = frame[frame["selected"].astype(bool)]
    return None if selected.empty else str(selected["estimator"].iloc[-1])


def _risk_sentence(report: TaskReport, best: str) -> str:
    """How risky the recommended estimator's top-k choice is, for a middle k (3 when available)."""
    assert report.topk is not None
    rows = report.topk[report.topk["estimator"] == best]
    if rows.empty:
        return ""
    ks = sorted(int(k) for k in rows["k"])
    k = 3 if 3 in ks else ks[len(ks) // 2]
    row = rows[rows["k"] == k].iloc[0]
    return (
        f" Deploying its top-{k} gives true values from {_number(float(row['worst']))} to {_number(float(row['best']))}"
        f" (behavior policy {_number(report.behavior_value)}; SharpeRatio@{k} {_number(float(row['sharpe_ratio']))})."
    )


def render_report(tasks: Sequence[TaskReport], title: str = "opelab report") -> str:
    """The whole page as one HTML string."""
    from opelab.report import plots

    summary_items = []
    sections = []
    for index, task in enumerate(tasks):
        best, sentence = recommendation(task)
        summary_items.append(f'<li><a href="#task-{index}">{html.escape(task.task)}</a>: {html.escape(sentence)}</li>')
        sections.append(_task_section(task, index, best, plots))
    assessed = [(i, task) for i, task in enumerate(tasks) if task.picks is not None]
    agreement_html = ""
    if assessed:
        agreement = pd.concat([task.picks.assign(task=task.task, dataset=str(i)) for i, task in assessed], ignore_index=True)
        agreement["estimator"] = agreement["estimator"].astype(object).where(agreement["estimator"].notna(), None)
        agreement_svg = _inline_svg(plots.figure_to_svg(plots.plot_agreement_matrix(agreement[["task", "dataset", "metric", "estimator"]])))
        agreement_html = (
            '<figure class="opelab-figure agreement"><figcaption>Which estimator each metric would pick</figcaption>'
            + agreement_svg
            + "</figure>"
        )
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            '<section class="summary"><h2>Summary</h2><ul>' + "".join(summary_items) + "</ul>",
            agreement_html,
            "<p class=\"hint\">SharpeRatio@k = (best@k − J(π<sub>b</sub>)) / std@k of the true values of the k candidates an "
            "estimator ranks highest (Kiyohara et al., ICLR 2024): high when the portfolio beats the behavior policy "
            "without much spread. Tables sort when you click a header.</p></section>",
            *sections,
        ]
    )
    return _PAGE.format(title=html.escape(title), style=_STYLE, body=body, script=_SCRIPT)


def write_report(tasks: Sequence[TaskReport], path: str | Path, title: str = "opelab report") -> Path:
    """Write the page to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_report(tasks, title), encoding="utf-8")
    return path


def _task_section(task: TaskReport, index: int, best: str | None, plots) -> str:  # type: ignore[no-untyped-def]
    figures: list[tuple[str, object]] = []
    if task.has_truth:
        assert task.topk is not None
        figures += [
            ("SharpeRatio@k of each estimator's top-k", plots.plot_sharpe_ratio(task.topk)),
            ("Top-k portfolio statistics", plots.plot_topk_statistics(task.topk, task.behavior_value, task.safety_threshold)),
            ("Estimates against the true values", plots.plot_estimates_vs_truth(task.estimates, _truth(task))),
        ]
    figures.append(("Estimates per policy", plots.plot_estimate_bars(task.estimates, _truth(task) if task.has_truth else None)))
    if task.cdfs is not None and not task.cdfs.empty:
        figures.append(("Estimated and true return CDFs", plots.plot_return_cdfs(task.cdfs, task.true_cdfs)))
    if task.risk is not None and not task.risk.empty:
        if "cvar" in task.risk.columns:
            figures.append(("CVaR(α) of the return", plots.plot_cvar_curves(task.risk, task.true_risk)))
        if {"q25", "q50", "q75"} <= set(task.risk.columns):
            spread = task.risk.drop(columns=[c for c in ("alpha", "cvar") if c in task.risk.columns]).drop_duplicates(["estimator", "policy"])
            true_spread = None
            if task.true_risk is not None and {"q25", "q50", "q75"} <= set(task.true_risk.columns):
                true_spread = task.true_risk.drop(columns=[c for c in ("alpha", "cvar") if c in task.true_risk.columns]).drop_duplicates(["policy"])
            figures.append(("Interquartile ranges of the return", plots.plot_interquartile_ranges(spread, true_spread)))
    figure_html = "".join(
        f'<figure class="opelab-figure{" wide" if caption in _WIDE else ""}"><figcaption>{html.escape(caption)}</figcaption>'
        f"{_inline_svg(plots.figure_to_svg(fig))}</figure>"
        for caption, fig in figures
    )
    parts = [f'<section class="task" id="task-{index}"><h2>{html.escape(task.task)}</h2>', _estimated_section(task)]
    if task.has_truth:
        assert task.picks is not None and task.assessment is not None
        picks = task.picks.copy()
        picks["metric"] = [METRIC_NAMES.get(m, m.replace("sharpe_ratio", "SharpeRatio")) for m in picks["metric"]]
        parts.append(
            "<h3>Assessment of each estimator</h3>"
            + "<p class=\"hint\">Lower is better for nMSE, regret and error rates; higher for rank correlation and "
            "SharpeRatio@k. Each metric's pick is highlighted; the recommended estimator's column is shaded.</p>"
            + _assessment_table(task.assessment, best)
        )
    else:
        picks = None
        parts.append(
            '<p class="note">No ground truth: these logs carry no true values of the candidates, so nothing above '
            "is an assessment against the truth. Every metric is estimated from the logs, with the uncertainty shown; "
            "treat the pick as a recommendation to check online, not as a measured fact.</p>"
        )
    parts += [
        *(f'<p class="note">{html.escape(note)}</p>' for note in task.notes),
        '<div class="figures">' + figure_html + "</div>",
        "<h3>Candidates</h3>" + _frame_table(task.candidates, index=False),
        "<details><summary>Dataset</summary>" + _pairs_table(task.dataset_summary) + "</details>",
    ]
    if picks is not None:
        parts.append("<details><summary>Which estimator each metric picks</summary>" + _frame_table(picks, index=False) + "</details>")
    parts.append(
        f"<details><summary>All estimates ({len(task.estimates):,} rows)</summary>"
        + _frame_table(task.estimates, index=False)
        + "</details></section>"
    )
    return "\n".join(parts)


#: Figures laid out across the whole page width (their panels are wide: a group of bars per policy, or side-by-side
#: panels of policies), so they stay readable at 1280 px.
_WIDE = ("Estimates per policy", "Interquartile ranges of the return")


def _estimated_section(task: TaskReport) -> str:
    """The assessment estimated from the logs alone (``opelab.select.recommend_estimator``), shown above the
    assessment against the truth so the two can be compared; empty when the report has none."""
    frame = task.estimated_assessment
    if frame is None or frame.empty:
        return ""
    rows = []
    metrics = [c for c in frame.columns if c.startswith("estimated_") and not c.endswith(("_lower", "_upper"))]
    for record in frame.to_dict("records"):
        row = {"method": record["method"], "estimator": record["estimator"]}
        for metric in metrics:
            value = record[metric]
            interval = ""
            if f"{metric}_lower" in record and np.isfinite(float(record[f"{metric}_lower"])):
                interval = f" [{_number(float(record[f'{metric}_lower']))}, {_number(float(record[f'{metric}_upper']))}]"
            label = metric.removeprefix("estimated_").replace("sharpe_ratio", "SharpeRatio").replace("_", " ")
            row[label] = _number(float(value)) + interval
        if "picked_for" in record:
            row["picked for (policies)"] = str(int(record["picked_for"]))
        row["pick"] = "◀" if bool(record["selected"]) else ""
        rows.append(row)
    sentence = f"<p>{html.escape(task.estimated_reason)}</p>" if task.estimated_reason else ""
    compare = (
        "to compare with the assessment against the truth below"
        if task.has_truth
        else "the only assessment these logs allow, since they carry no true values"
    )
    return (
        "<h3>Estimated from the logs, without the truth</h3>"
        '<p class="hint">What a user without a simulator would see: each estimator\'s metrics estimated from the data '
        f"alone (cross-validation, PAS-IF or SLOPE; 95% intervals), {compare}.</p>" + sentence + _frame_table(pd.DataFrame(rows), index=False)
    )


def _truth(task: TaskReport) -> pd.Series:
    return task.candidates.set_index("policy")["true_value"]


def _inline_svg(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _number(value: object) -> str:
    """Numbers for people (``opelab.data.describe.format_number``), with n/a, ∞ and — spelled out."""
    if value is None:
        return "—"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        x = float(value)
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return format_number(value)
    return str(value)


def _cell(value: object) -> str:
    text = _number(value)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return f"<td>{html.escape(text)}</td>"
    x = float(value)
    key = "" if math.isnan(x) else repr(x) if math.isfinite(x) else ("1e308" if x > 0 else "-1e308")
    return f'<td data-sort="{key}">{html.escape(text)}</td>'


def _frame_table(frame: pd.DataFrame, index: bool = True) -> str:
    frame = frame.reset_index() if index else frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _pairs_table(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)
    return f'<table class="pairs"><tbody>{rows}</tbody></table>'


def _assessment_table(assessment: pd.DataFrame, best: str | None) -> str:
    """Metrics as rows, estimators as columns; the winner of each row in bold."""
    estimators = list(assessment.index)
    head = "<th>metric</th>" + "".join(
        f'<th class="{"recommended" if name == best else ""}">{html.escape(str(name))}</th>' for name in estimators
    )
    rows = []
    for metric in assessment.columns:
        values = assessment[metric].to_numpy(dtype=np.float64)
        lower = metric.startswith(LOWER_IS_BETTER)
        scores = np.where(np.isnan(values), np.inf if lower else -np.inf, values)
        winner = None if np.isnan(values).all() else int(np.argmin(scores) if lower else np.argmax(scores))
        cells = []
        for j, value in enumerate(values):
            cell = _cell(value)
            if j == winner:
                cell = cell.replace("<td", '<td class="pick"', 1)
            cells.append(cell)
        label = METRIC_NAMES.get(metric, metric.replace("sharpe_ratio", "SharpeRatio"))
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return f'<table class="sortable assessment"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style></head>
<body>{body}
<script>{script}</script></body></html>
"""

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 2px solid #0072B2; padding-bottom: .2rem; }
.summary { background: #f3f7fb; border-left: 6px solid #0072B2; padding: .6rem 1.2rem; }
.summary li { margin: .3rem 0; font-size: 1.05rem; }
.hint, .note { color: #555; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: right; }
th { background: #f6f8fa; } table.pairs th { text-align: left; }
td:first-child, th:first-child { text-align: left; }
table.sortable thead th { cursor: pointer; }
td.pick { font-weight: 700; background: #e8f3ea; }
th.recommended { background: #dbeafe; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid #e1e4e8; padding: .4rem; background: #fff; }
figure.agreement { max-width: 900px; margin: .8rem 0; }
figure.wide { grid-column: 1 / -1; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
details { margin: .6rem 0; } summary { cursor: pointer; font-weight: 600; }
"""

_SCRIPT = """
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message)); document.body.dataset.errors = errors.join(' | '); });
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var u = x && x.dataset.sort !== undefined && x.dataset.sort !== '' ? parseFloat(x.dataset.sort) : null;
          var v = y && y.dataset.sort !== undefined && y.dataset.sort !== '' ? parseFloat(y.dataset.sort) : null;
          if (u !== null && v !== null) { return dir * (u - v); }
          return dir * String(x ? x.textContent : '').localeCompare(String(y ? y.textContent : ''));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  function check() {
    var figures = document.querySelectorAll('figure.opelab-figure svg'), sized = 0;
    figures.forEach(function (svg) { var r = svg.getBoundingClientRect(); if (r.width > 0 && r.height > 0) { sized += 1; } });
    document.body.dataset.figures = figures.length; document.body.dataset.sizedFigures = sized;
    document.body.dataset.errors = errors.join(' | ');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
"""
