"""Benchmarks: ``opelab benchmark`` (a grid into a DuckDB store) and ``opelab results`` (summaries, SQL, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from opelab.cli.app import app
from opelab.cli.output import CLIError, console, fmt, guarded, line, one_line, styled
from opelab.cli.tables import METRIC_LABELS


@app.command()
def benchmark(
    config: Path = typer.Argument(..., help="A benchmark config (TOML), e.g. configs/quick.toml."),
    resume: bool = typer.Option(False, help="Continue the latest run of this config in --db, skipping finished cells."),
    executor: str | None = typer.Option(None, help="local or ray (default: the config's executor.kind)."),
    workers: int | None = typer.Option(None, min=1, max=1024, help="Worker processes / Ray CPUs (default: the config's)."),
    db: Path | None = typer.Option(None, help="The DuckDB results file (default: <config name>.duckdb here)."),
    address: str | None = typer.Option(None, help="Address of an existing Ray cluster (with --executor ray)."),
    progress_file: Path | None = typer.Option(None, help="Append one JSON line per recorded cell (for scripts)."),
    memory_limit: float | None = typer.Option(
        None, min=0.01, help="GiB the run may use (default: the memory available); a run whose cells at once (workers × the largest) are estimated above it is refused."
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run a benchmark grid (tasks × datasets) and store every estimate and metric in a DuckDB file."""

    def body() -> None:
        from opelab.bench import StoreError, load_config, run_benchmark

        if not config.is_file():
            found = "a folder" if config.exists() else "nothing"
            raise CLIError(f"CONFIG: expected a benchmark config file (TOML), found {found} at {config}")
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
        if path.is_dir():
            raise CLIError(f"--db: expected a DuckDB file path, found a folder at {path}")
        if path.parent != Path("") and not path.parent.is_dir():
            raise CLIError(f"--db: expected an existing folder for {path}, found none at {path.parent}")
        if progress_file is not None and (progress_file.is_dir() or not progress_file.parent.is_dir()):
            raise CLIError(f"--progress-file: expected a file path in an existing folder, found {progress_file}")
        limit = None if memory_limit is None else int(memory_limit * 2**30)
        ex = cfg.executor
        header = line(
            (cfg.name, "bold"),
            f": {len(cfg.tasks)} task(s) × {cfg.n_datasets} dataset(s) on {ex.kind} "
            f"({ex.workers} worker{'s' if ex.workers != 1 else ''}) → {path}",
        )
        started = []

        def _resume_command() -> str:
            """This command line with ``--resume``, its options as given (shell-quoted)."""
            import shlex

            words = ["opelab", "benchmark", str(config), "--db", str(path), "--resume"]
            for option, value in (("--executor", executor), ("--workers", workers), ("--address", address),
                                  ("--memory-limit", memory_limit), ("--progress-file", progress_file)):  # fmt: skip
                if value is not None:
                    words += [option, f"{value:g}" if isinstance(value, float) else str(value)]
            return shlex.join(words)

        def on_start() -> None:
            started.append(True)
            console.print(header)

        try:  # refusals (not an opelab store, no run to resume, beyond memory) come before the header and touch no file
            summary = run_benchmark(
                cfg, path, resume=resume, progress=True, console=console, progress_file=progress_file,
                memory_limit=limit, on_start=on_start,
            )  # fmt: skip
        except StoreError as exc:
            raise CLIError(_as_option("--db", exc)) from exc
        except KeyboardInterrupt:
            if not started:
                raise
            raise KeyboardInterrupt(f"the cells that finished are in {path}; `{_resume_command()}` runs the rest") from None
        console.print(
            f"run {summary.run_id}: {summary.n_cells} cells, {summary.n_skipped} already done, {summary.n_done} done now, "
            f"{summary.n_failed} failed, in {summary.wall_s:.1f} s. Summary: `opelab results {path}`"
        )
        if summary.n_failed:
            for cell, error in summary.failures:
                console.print(f"  failed: {cell.task} dataset {cell.dataset}: {one_line(error)}")
            raise CLIError(
                f"{summary.n_failed} cell(s) failed (the first: {one_line(summary.first_error or 'unknown')}); "
                "fix the cause and rerun with --resume to run them again"
            )

    guarded(debug, body)


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
    sql: str | None = typer.Option(None, help="Run this SQL query on the results (read-only) and print its rows."),
    run: int | None = typer.Option(None, min=1, help="Which run to summarise (default: the latest)."),
    export: Path | None = typer.Option(None, help="Write every table as Parquet into this folder."),
    force: bool = typer.Option(False, help="Overwrite existing files in --export."),
    alpha: float = typer.Option(0.05, min=1e-6, max=0.5, help="1 − level of the bootstrap intervals across datasets."),
    n_bootstrap: int = typer.Option(2000, min=1, max=10**6, help="Bootstrap resamples of the datasets."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summaries per task and estimator (mean and bootstrap CI across datasets), SQL queries, Parquet export."""

    def body() -> None:
        if not db.exists():
            raise CLIError(f"DB: expected a results file written by `opelab benchmark`, found nothing at {db}")
        if not db.is_file():
            raise CLIError(f"DB: expected a results file written by `opelab benchmark`, found a folder at {db}")
        if export is not None and export.exists() and not export.is_dir():
            raise CLIError(f"--export: expected a folder, found a file at {export}")
        with _open_store(db, "DB") as store:
            if export is not None:
                try:
                    written = store.export_parquet(export, force=force)
                except ValueError as exc:
                    raise CLIError(_as_option("--export", exc)) from exc
                for path in written:
                    console.print(f"wrote {path}")
            if sql is not None:
                try:
                    frame = store.query(sql)
                except ValueError as exc:
                    raise CLIError(_as_option("--sql", exc)) from exc
                _print_frame(frame, sql)
            if export is None and sql is None:
                _print_results(store, run, alpha, n_bootstrap)

    guarded(debug, body)


def _as_option(option: str, exc: Exception) -> str:
    """The store's message for its ``db`` / ``export`` / ``sql`` argument, naming the command line's option."""
    text = one_line(str(exc))
    name = option.lstrip("-").lower() + ": "
    return f"{option}: {text[len(name):]}" if text.startswith(name) else f"{option}: {text}"


def _open_store(path: Path, option: str) -> Any:
    """The results store at ``path``, read-only; a file that is not one is an error naming ``option``."""
    from opelab.bench import ResultStore, StoreError

    try:
        return ResultStore(path, read_only=True)
    except StoreError as exc:
        raise CLIError(_as_option(option, exc)) from exc


def _print_frame(frame: Any, title: str) -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if frame[column].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt(v.item() if hasattr(v, "item") else v, 4) for v in row))
    console.print(table)
    console.print(f"{len(frame)} row(s)")


def _print_results(store: Any, run: int | None, alpha: float, n_bootstrap: int) -> None:
    from opelab.select.uncertainty import best_estimator_table, summarize_across_datasets

    run_id = store.latest_run() if run is None else run
    runs = store.query(f"SELECT run_id, name, created_at FROM runs WHERE run_id = {int(run_id or 0)}")
    if run_id is None or runs.empty:
        raise CLIError(f"--run: expected a run in {store.path}, found {'none' if run_id is None else run_id}")
    cells = store.query(f"SELECT task, status, count(*) AS n FROM cells WHERE run_id = {run_id} GROUP BY task, status")
    console.print(line((f"run {run_id}", "bold"), f" ({runs.name[0]}, {runs.created_at[0]:%Y-%m-%d %H:%M} UTC)"))
    metrics = store.query(f"SELECT task, dataset, estimator, metric, value FROM metrics WHERE run_id = {run_id} ORDER BY task, dataset")
    if metrics.empty:
        console.print(f"run {run_id} has no finished cells yet")
        return
    level = f"{100 * (1 - alpha):g}%"
    nuisances = store.nuisances(run_id)  # None: a schema-1 store, convergence not recorded
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
                cells_text: list[Any] = []
                for metric in chunk:
                    row = summary[(summary.estimator == estimator) & (summary.metric == metric)].iloc[0]
                    text = f"{fmt(float(row['mean']))}\n[{fmt(float(row['lower']), 2)}, {fmt(float(row['upper']), 2)}]"
                    cells_text.append(styled(text, "bold green") if best.get(metric) == estimator else text)
                table.add_row(str(estimator), *cells_text)
            console.print(table)
        parts = [
            f"{_result_label(r.metric).rstrip(' ↑↓')}: {r.best if isinstance(r.best, str) else 'none'}{' (separated)' if r.separated else ''}"
            for r in sorted(picks.itertuples(index=False), key=lambda r: _metric_order(r.metric))
        ]
        console.print(f"Picks (best mean; 'separated' = beats the runner-up beyond noise): {' · '.join(parts)}")
        if nuisances is not None:
            _print_convergence(nuisances[nuisances.task == task], int(done))


def _print_convergence(rows: Any, n_cells: int) -> None:
    """How many of a task's cells have a learned nuisance that did not converge (nothing for exact ones)."""
    if rows.empty:
        return
    bad = rows[~rows.converged.astype(bool)]
    by_nuisance = ", ".join(f"{name} {group.dataset.nunique()}" for name, group in bad.groupby("nuisance", sort=True))
    learned = ", ".join(sorted(dict.fromkeys(rows.nuisance)))
    text = f"Nuisances ({learned}): {bad.dataset.nunique()} of {n_cells} cell(s) with an unconverged nuisance"
    console.print(text + (f" ({by_nuisance})" if by_nuisance else ""))
