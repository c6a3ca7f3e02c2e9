"""``opelab report``: one HTML page from result folders."""

from __future__ import annotations

from pathlib import Path

import typer

from opelab.cli.app import app
from opelab.cli.output import CLIError, console, guarded, line, writable


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

        writable(out, force)
        if len(results) > 100:
            raise CLIError(f"RESULTS: expected at most 100 result folders, found {len(results)}")
        for folder in results:
            if not folder.is_dir():
                found = "a file" if folder.exists() else "nothing"
                raise CLIError(f"RESULTS: expected a result folder (report.json and its CSV tables, written by `opelab demo`), found {found} at {folder}")
        reports = [load_task_report(folder) for folder in results]
        path = write_report(reports, out, title=title)
        console.print(line("Report written to ", (str(path), "bold"), f" ({path.stat().st_size / 1024:,.0f} KiB)"))

    guarded(debug, body)
