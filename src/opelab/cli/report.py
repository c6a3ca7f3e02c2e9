"""``opelab report``: one HTML page from result folders."""

from __future__ import annotations

from pathlib import Path

import typer

from opelab.cli.app import app
from opelab.cli.output import CLIError, console, guarded, line, writable


@app.command()
def report(
    results: list[Path] = typer.Argument(
        ..., help="Result folders (written by `opelab demo` or `opelab evaluate --report-dir`), or one benchmark store (.duckdb)."
    ),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    title: str | None = typer.Option(None, help="Page title (default: 'opelab report', or the benchmark run's name)."),
    run: int | None = typer.Option(None, min=1, help="A benchmark store: the run to show (default: the latest)."),
    k: int = typer.Option(4, min=2, max=1000, help="A benchmark store: the k of SharpeRatio@k for the efficiency and agreement views."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write one self-contained HTML report (figures inline, works offline) from result folders, or the
    SharpeRatio@k paper's views of a benchmark store."""

    def body() -> None:
        from opelab.report import write_report
        from opelab.report.results import load_task_report

        writable(out, force)
        if len(results) == 1 and results[0].is_file():
            _store_report(results[0])
            return
        for flag, used in (("--run", run is not None), ("--k", k != 4)):
            if used:
                raise CLIError(f"{flag}: expected only with a benchmark store (one .duckdb file), found result folders")
        if len(results) > 100:
            raise CLIError(f"RESULTS: expected at most 100 result folders, found {len(results)}")
        for folder in results:
            if not folder.is_dir():
                found = "a file" if folder.exists() else "nothing"
                raise CLIError(f"RESULTS: expected a result folder (report.json and its CSV tables, written by `opelab demo`), found {found} at {folder}")
        reports = [load_task_report(folder) for folder in results]
        path = write_report(reports, out, title=title or "opelab report")
        console.print(line("Report written to ", (str(path), "bold"), f" ({path.stat().st_size / 1024:,.0f} KiB)"))

    def _store_report(path: Path) -> None:
        from opelab.bench import ResultStore, StoreError
        from opelab.report.store import read_store_report, write_store_report

        try:
            store = ResultStore(path, read_only=True)
        except StoreError as error:
            raise CLIError(f"RESULTS: expected result folders or one benchmark store, found a file that is not a store ({error})") from None
        with store:
            try:
                found = read_store_report(store, run, k=k)
            except ValueError as error:
                message = str(error)
                flag = "--run" if message.startswith("run:") else "--k" if message.startswith("k:") else "RESULTS"
                raise CLIError(f"{flag}: {message.split(': ', 1)[1] if flag != 'RESULTS' else message}") from None
        written = write_store_report(found, out, title=title)
        console.print(line("Benchmark report written to ", (str(written), "bold"), f" (run {found.run_id}, {written.stat().st_size / 1024:,.0f} KiB)"))

    guarded(debug, body)
