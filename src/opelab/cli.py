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


# --------------------------------------------------------------------------- #
# benchmarks: opelab benchmark / opelab results
# --------------------------------------------------------------------------- #
@app.command()
def benchmark(
    config: Path = typer.Argument(..., help="A benchmark config (TOML), e.g. configs/quick.toml."),
    resume: bool = typer.Option(False, help="Continue the latest run of this config in --db, skipping finished cells."),
    executor: str | None = typer.Option(None, help="local or ray (default: the config's executor.kind)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes / Ray CPUs (default: the config's)."),
    db: Path | None = typer.Option(None, help="The DuckDB results file (default: <config name>.duckdb here)."),
    address: str | None = typer.Option(None, help="Address of an existing Ray cluster (with --executor ray)."),
    progress_file: Path | None = typer.Option(None, help="Append one JSON line per recorded cell (for scripts)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run a benchmark grid (tasks × datasets) and store every estimate and metric in a DuckDB file."""

    def body() -> None:
        from opelab.bench import load_config, run_benchmark

        cfg = load_config(config)
        changes: dict[str, Any] = {}
        if executor is not None:
            if executor not in ("local", "ray"):
                raise CLIError(f"--executor: expected local or ray, found {executor!r}")
            changes["kind"] = executor
        if workers is not None:
            changes["workers"] = workers
        if address is not None:
            if (executor or cfg.executor.kind) != "ray":
                raise CLIError("--address: expected --executor ray with it, found the local executor")
            changes["address"] = address
        cfg = cfg.with_executor(**changes)
        path = db if db is not None else Path(f"{cfg.name}.duckdb")
        ex = cfg.executor
        console.print(
            f"[bold]{cfg.name}[/]: {len(cfg.tasks)} task(s) × {cfg.n_datasets} dataset(s) on {ex.kind} "
            f"({ex.workers} worker{'s' if ex.workers != 1 else ''}) → {path}",
            highlight=False,
        )
        summary = run_benchmark(cfg, path, resume=resume, progress=True, console=console, progress_file=progress_file)
        console.print(
            f"run {summary.run_id}: {summary.n_cells} cells, {summary.n_skipped} already done, {summary.n_done} done now, "
            f"{summary.n_failed} failed, in {summary.wall_s:.1f} s. Summary: `opelab results {path}`",
            highlight=False,
        )
        if summary.n_failed:
            from opelab.bench import ResultStore

            with ResultStore(path, read_only=True) as store:
                failed = store.query(
                    f"SELECT task, dataset, attempts, error FROM cells WHERE run_id = {summary.run_id} AND status = 'failed' "
                    "ORDER BY task, dataset"
                )
            for row in failed.itertuples(index=False):
                console.print(f"  failed: {row.task} dataset {row.dataset} after {row.attempts} attempt(s): {row.error}", highlight=False)
            raise CLIError(f"{summary.n_failed} cell(s) failed; fix the cause and rerun with --resume to run them again")

    _guarded(debug, body)


RESULT_METRICS = ("nmse", "rank_correlation", "regret@", "sharpe_ratio@")


def _shown_metric(metric: str) -> bool:
    return metric in RESULT_METRICS[:2] or metric.startswith(RESULT_METRICS[2:])


def _metric_order(metric: str) -> tuple[int, int]:
    """nMSE, rank correlation, regret@k by k, SharpeRatio@k by k."""
    for i, prefix in enumerate(RESULT_METRICS):
        if metric == prefix or metric.startswith(prefix) and prefix.endswith("@"):
            return i, int(metric.split("@")[1]) if "@" in metric else 0
    return len(RESULT_METRICS), 0


def _result_label(metric: str) -> str:
    from opelab.select.uncertainty import metric_direction

    name = METRIC_LABELS.get(metric, metric.replace("sharpe_ratio", "SharpeRatio")).rstrip(" ↑↓")
    return f"{name} {'↓' if metric_direction(metric) == 'lower' else '↑'}"


@app.command()
def results(
    db: Path = typer.Argument(..., help="A DuckDB results file written by `opelab benchmark`."),
    sql: str | None = typer.Option(None, help="Run this SQL query on the results and print its rows."),
    run: int | None = typer.Option(None, help="Which run to summarise (default: the latest)."),
    export: Path | None = typer.Option(None, help="Write every table as Parquet into this folder."),
    alpha: float = typer.Option(0.05, help="1 − level of the bootstrap intervals across datasets."),
    n_bootstrap: int = typer.Option(2000, min=1, help="Bootstrap resamples of the datasets."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summaries per task and estimator (mean and bootstrap CI across datasets), SQL queries, Parquet export."""

    def body() -> None:
        from opelab.bench import ResultStore

        if not db.exists():
            raise CLIError(f"DB: expected a results file, found nothing at {db}")
        with ResultStore(db, read_only=True) as store:
            if export is not None:
                for path in store.export_parquet(export):
                    console.print(f"wrote {path}", highlight=False)
            if sql is not None:
                _print_frame(store.query(sql), sql)
            if export is None and sql is None:
                _print_results(store, run, alpha, n_bootstrap)

    _guarded(debug, body)


def _print_frame(frame: Any, title: str) -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if frame[column].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v.item() if hasattr(v, "item") else v, 4) for v in row))
    console.print(table)
    console.print(f"{len(frame)} row(s)")


def _print_results(store: Any, run: int | None, alpha: float, n_bootstrap: int) -> None:
    from opelab.select.uncertainty import best_estimator_table, summarize_across_datasets

    run_id = store.latest_run() if run is None else run
    runs = store.query(f"SELECT run_id, name, created_at FROM runs WHERE run_id = {int(run_id or 0)}")
    if run_id is None or runs.empty:
        raise CLIError(f"--run: expected a run in {store.path}, found {'none' if run_id is None else run_id}")
    cells = store.query(f"SELECT task, status, count(*) AS n FROM cells WHERE run_id = {run_id} GROUP BY task, status")
    console.print(f"[bold]run {run_id}[/] ({runs.name[0]}, {runs.created_at[0]:%Y-%m-%d %H:%M} UTC)", highlight=False)
    metrics = store.query(f"SELECT task, dataset, estimator, metric, value FROM metrics WHERE run_id = {run_id} ORDER BY task, dataset")
    level = f"{100 * (1 - alpha):g}%"
    for task in dict.fromkeys(metrics.task):
        frame = metrics[(metrics.task == task) & metrics.metric.map(_shown_metric)].drop(columns="task")
        done = cells[(cells.task == task) & (cells.status == "done")].n.sum()
        failed = cells[(cells.task == task) & (cells.status == "failed")].n.sum()
        summary = summarize_across_datasets(frame, alpha=alpha, n_bootstrap=n_bootstrap, seed=0)
        picks = best_estimator_table(frame, alpha=alpha, n_bootstrap=n_bootstrap, seed=0)
        title = f"{task}: mean and {level} bootstrap CI across {done} dataset(s)" + (f" ({failed} failed)" if failed else "")
        columns = sorted(dict.fromkeys(summary.metric), key=_metric_order)
        best = dict(zip(picks.metric, picks.best))
        per_table = max(1, (console.width - 18) // 16)  # 14-character value columns and their padding
        for i, chunk in enumerate([columns[j : j + per_table] for j in range(0, len(columns), per_table)]):
            table = Table(title=title if i == 0 else "(continued)", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
            table.add_column("estimator", no_wrap=True)
            for metric in chunk:
                table.add_column(_result_label(metric), justify="right", min_width=14)
            for estimator in dict.fromkeys(summary.estimator):
                cells_text = []
                for metric in chunk:
                    row = summary[(summary.estimator == estimator) & (summary.metric == metric)].iloc[0]
                    text = f"{_fmt(float(row['mean']))}\n[{_fmt(float(row['lower']), 2)}, {_fmt(float(row['upper']), 2)}]"
                    cells_text.append(f"[bold green]{text}[/]" if best.get(metric) == estimator else text)
                table.add_row(str(estimator), *cells_text)
            console.print(table)
        parts = [
            f"{_result_label(r.metric).rstrip(' ↑↓')}: {r.best if isinstance(r.best, str) else 'none'}{' (separated)' if r.separated else ''}"
            for r in sorted(picks.itertuples(index=False), key=lambda r: _metric_order(r.metric))
        ]
        console.print(f"Picks (best mean; 'separated' = beats the runner-up beyond noise): {' · '.join(parts)}", highlight=False)


def main() -> None:
    app(prog_name="opelab")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
