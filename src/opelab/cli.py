"""The ``opelab`` command line: a thin face over the library."""

from __future__ import annotations

import datetime as _dt
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="opelab",
    help="Offline decision making: logged data → candidates → off-policy evaluation → selection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Offline decision making: logged data → candidates → off-policy evaluation → selection."""


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def _guarded(debug: bool, body: Callable[[], None]) -> None:
    try:
        body()
    except typer.Exit:
        raise
    except Exception as exc:  # one clear line for people; the traceback with --debug
        if debug:
            traceback.print_exc()
        else:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _fresh_out_dir(out: Path | None, force: bool) -> Path:
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(f"opelab-demo-{stamp}")
        suffix = 1
        while out.exists():
            out = Path(f"opelab-demo-{stamp}-{suffix}")
            suffix += 1
    elif out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a folder, found a file at {out}")
    elif out.exists() and any(out.iterdir()) and not force:
        raise CLIError(f"--out: {out} exists and is not empty; pass --force to overwrite its files")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}"
    return str(value)


# The backbone estimators plus the marginal ones of the SharpeRatio@k paper's benchmark (SAM-SNIS, SAM-SNDR).
DEMO_ESTIMATORS = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sam_snis", "sam_sndr")


@app.command()
def demo(
    task: str = typer.Option("gridworld", help="Tabular task: gridworld, chain or random."),
    n_trajectories: int = typer.Option(1000, "--n-trajectories", "-n", min=1, help="Logged trajectories."),
    seed: int = typer.Option(0, help="Seed of the data collection."),
    behavior_temperature: float = typer.Option(1.0, help="Softmax temperature of the behavior policy over Q*."),
    out: Path | None = typer.Option(None, help="Output folder (default: a fresh opelab-demo-* folder here)."),
    force: bool = typer.Option(False, help="Write into --out even if it holds files."),
    html_report: bool = typer.Option(True, "--report/--no-report", help="Write report.html (the slowest step)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Collect data on a tabular task, build ~10 candidates, run every estimator against exact truth."""
    _guarded(debug, lambda: _demo(task, n_trajectories, seed, behavior_temperature, out, force, html_report))


def _demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool = True
) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from opelab.envs import make
    from opelab.pipeline import run_tabular
    from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family

    if not temperature > 0:
        raise CLIError(f"--behavior-temperature: expected a positive number, found {temperature}")
    task = make(task_name)
    out_dir = _fresh_out_dir(out, force)
    q_star = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q_star, temperature, name=f"behavior(softmax{temperature:g})")
    candidates = candidate_family(q_star, temperatures=(0.2, 0.5, 1.0))

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        bar = progress.add_task("starting", total=None)
        result = run_tabular(
            task,
            behavior,
            candidates,
            n_trajectories=n,
            seed=seed,
            estimators=DEMO_ESTIMATORS,
            interval="bootstrap",
            distributions=True,
            on_stage=lambda stage: progress.update(bar, description=stage),
        )
        progress.update(bar, description="writing the report" if html_report else "writing the results")
        report_path = _write_demo(result, out_dir, html_report)

    ds = result.dataset
    console.print(
        f"[bold]{task.name}[/]: {ds.n_trajectories} trajectories, {ds.n_transitions} steps "
        f"(horizon {ds.horizon}, γ = {ds.gamma}), behavior {behavior.name}: "
        f"true value {result.behavior_true_value:.3f}, logged mean return {result.table.behavior_value:.3f}"
    )
    _print_estimates(result)
    _print_assessment(result)
    if report_path is None:
        console.print(f"Results written to [bold]{out_dir}[/] (`opelab report {out_dir}` makes the HTML report)")
    else:
        console.print(f"Results written to [bold]{out_dir}[/]; open the report: [bold]{report_path}[/]")


def _write_demo(result: Any, out_dir: Path, html_report: bool = True) -> Path | None:
    from opelab.report import write_report
    from opelab.report.results import save_task_report, task_report

    result.dataset.to_parquet(out_dir / "dataset.parquet")
    report = task_report(result)
    save_task_report(report, out_dir)
    if not html_report:
        return None
    return write_report([report], out_dir / "report.html", title=f"opelab demo: {result.task.name}")


@app.command()
def report(
    results: list[Path] = typer.Argument(..., help="Result folders (each written by `opelab demo`)."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    title: str = typer.Option("opelab report", help="Page title."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write one self-contained HTML report (figures inline, works offline) from result folders."""

    def body() -> None:
        from opelab.report import write_report
        from opelab.report.results import load_task_report

        if out.exists() and not force:
            raise CLIError(f"--out: {out} exists; pass --force to overwrite it")
        path = write_report([load_task_report(folder) for folder in results], out, title=title)
        console.print(f"Report written to [bold]{path}[/] ({path.stat().st_size / 1024:,.0f} KiB)")

    _guarded(debug, body)


@app.command()
def describe(
    dataset: Path = typer.Argument(..., help="A dataset written by LoggedDataset.to_parquet (e.g. a demo's dataset.parquet)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summarise a logged dataset: size, lengths, returns, action coverage, propensities."""

    def body() -> None:
        from opelab.data import LoggedDataset
        from opelab.data.describe import describe as describe_dataset

        table = Table(title=str(dataset), title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
        table.add_column("field")
        table.add_column("value", justify="right")
        for label, value in describe_dataset(LoggedDataset.read_parquet(dataset)).to_table():
            table.add_row(label, value)
        console.print(table)

    _guarded(debug, body)


def _compact_table(title: str, first: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    table.add_column(first, no_wrap=True, overflow="ellipsis", min_width=16, max_width=18)
    for column in columns:  # long headers fold onto a second line; numbers fit in 6 characters
        table.add_column(column, justify="right", overflow="fold", min_width=6, max_width=6)
    return table


def _column_chunks(columns: list[str], first_width: int) -> list[list[str]]:
    """Split value columns so that each printed table fits the console (7 characters a column)."""
    per_table = max(1, (console.width - first_width - 2) // 7)
    return [columns[i : i + per_table] for i in range(0, len(columns), per_table)] or [[]]


def _print_estimates(result: Any) -> None:
    frame = result.estimates_vs_truth()
    frame = frame.rename(columns={"true_value": "truth"})
    for i, chunk in enumerate(_column_chunks(list(frame.columns), 18)):
        table = _compact_table("Estimates vs exact value" if i == 0 else "(continued)", "policy", chunk)
        for policy, row in frame[chunk].iterrows():
            table.add_row(str(policy), *(_fmt(float(v), 2) for v in row))
        console.print(table)


METRIC_LABELS = {
    "nmse": "nMSE ↓",
    "rank_correlation": "rank corr ↑",
    "regret@1": "regret@1 ↓",
    "normalized_regret@1": "nregret@1 ↓",
    "type_i": "Type I ↓",
    "type_ii": "Type II ↓",
}


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("sharpe_ratio", "SharpeRatio") + " ↑")


def _print_assessment(result: Any) -> None:
    summary = result.assessment.summary
    picks = result.assessment.picks().set_index("metric")["estimator"]
    title = f"Assessment of each estimator (J(π_b) = {result.assessment.behavior_value:.3f}, the logged mean return)"
    for i, chunk in enumerate(_column_chunks([str(name) for name in summary.index], 18)):
        table = _compact_table(title if i == 0 else "(continued)", "metric", chunk)
        for metric in summary.columns:
            cells = []
            for name in chunk:
                text = _fmt(float(summary.loc[name, metric]), 2)
                cells.append(f"[bold green]{text}[/]" if picks[metric] == name else text)
            table.add_row(_metric_label(metric), *cells)
        console.print(table)

    console.print(f"Which estimator each metric picks (green above): {_picks_sentence(picks)}.")


def _picks_sentence(picks: Any) -> str:
    """'nMSE: dm · rank corr: sndr · ... · SharpeRatio@2..10: dm ×8, tis ×1' from metric → estimator."""
    parts = []
    for metric, name in picks.items():
        if not metric.startswith("sharpe_ratio@"):
            parts.append(f"{_metric_label(metric).rstrip(' ↑↓')}: {name if isinstance(name, str) else 'none'}")
    sharpe = picks[[m for m in picks.index if m.startswith("sharpe_ratio@")]].dropna()
    if len(sharpe):
        ks = [m.split("@")[1] for m in sharpe.index]
        counts = ", ".join(f"{name} ×{count}" for name, count in sharpe.value_counts().items())
        parts.append(f"SharpeRatio@{ks[0]}..{ks[-1]}: {counts}")
    return " · ".join(parts)


def main() -> None:
    app(prog_name="opelab")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
