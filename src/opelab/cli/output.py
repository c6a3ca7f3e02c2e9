"""Everything the command line prints goes through here.

The console never interprets text: markup, emoji codes and highlighting are off (``Console(markup=False,
emoji=False, highlight=False)``), so a path, a task name or a policy name holding ``[bold]``, ``[/]`` or
``:smile:`` is printed as typed and cannot break the printer. Styling is attached to pieces of text
explicitly (``styled``, ``line``), never parsed out of a string.

Errors: every failure of a command becomes one line, ``error: <message>``, on standard output, and exit
code 1 (usage errors found by the argument parser: exit code 2, see ``opelab.cli.app``). ``error_message``
turns any exception into that line: opelab's own errors carry the file, the field, the expected and the
found value already; other exceptions are named by their type, with a pointer to ``--debug``, which prints
the traceback instead.
"""

from __future__ import annotations

import datetime as _dt
import math
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "CLIError",
    "Stages",
    "compact_table",
    "console",
    "column_chunks",
    "error_message",
    "fmt",
    "fresh_out_dir",
    "guarded",
    "line",
    "print_error",
    "styled",
    "writable",
]

console = Console(markup=False, emoji=False, highlight=False)


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def styled(text: Any, style: str) -> Text:
    """``text`` (taken literally) in ``style``."""
    return Text(str(text), style=style)


def line(*parts: str | Text | tuple[str, str]) -> Text:
    """One printable line from literal strings, ``Text`` pieces and ``(text, style)`` pairs."""
    return Text.assemble(*(p if isinstance(p, (str, Text)) else (str(p[0]), p[1]) for p in parts))


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) folded to one space."""
    return " ".join(str(text).split())


def _is_opelab_error(exc: BaseException) -> bool:
    return isinstance(exc, (CLIError, ValueError)) and (
        type(exc).__module__.startswith("opelab") or type(exc) is ValueError
    )


def error_message(exc: BaseException) -> str:
    """The one line a person sees for ``exc`` (without the ``error:`` prefix)."""
    text = one_line(str(exc))
    if _is_opelab_error(exc) and text:
        return text
    if isinstance(exc, MemoryError):
        return "out of memory: the command needs more memory than is available; try a smaller size" + (
            f" ({text})" if text else ""
        )
    if isinstance(exc, KeyError):
        return f"missing key {text} (an internal error: rerun with --debug for the traceback)"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    name = type(exc).__name__
    return f"{name}: {text} (rerun with --debug for the traceback)" if text else f"{name} (rerun with --debug for the traceback)"


def print_error(message: str) -> None:
    console.print(line(("error:", "bold red"), " ", one_line(message)), soft_wrap=True)


def guarded(debug: bool, body: Callable[[], None]) -> None:
    """Run a command's body: any exception becomes one ``error:`` line (the traceback with ``--debug``)."""
    try:
        body()
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        print_error(f"interrupted: {exc}" if str(exc) else "interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # one clear line for people; the traceback with --debug
        if type(exc).__name__ == "InterruptException" and type(exc).__module__.endswith("duckdb"):  # Ctrl-C in a query
            print_error("interrupted")
            raise typer.Exit(130) from None
        if debug:
            traceback.print_exc()
        else:
            print_error(error_message(exc))
        raise typer.Exit(1) from None


def fresh_out_dir(out: Path | None, force: bool, prefix: str = "opelab-demo") -> Path:
    """``out`` (created; an existing non-empty folder needs ``force``) or a fresh ``<prefix>-<time>`` folder."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(f"{prefix}-{stamp}")
        suffix = 1
        while out.exists():
            out = Path(f"{prefix}-{stamp}-{suffix}")
            suffix += 1
    else:
        check_out_dir(out, force)
    out.mkdir(exist_ok=True)
    return out


def check_out_dir(out: Path, force: bool, option: str = "--out") -> None:
    """Refuse a folder to write into that is a file, holds files (without ``force``) or has no parent folder."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option}: expected a folder, found a file at {out}")
    if out.exists() and any(out.iterdir()) and not force:
        raise CLIError(f"{option}: {out} exists and is not empty; pass --force to overwrite its files")
    if not out.exists() and out.parent != Path("") and not out.parent.is_dir():
        raise CLIError(f"{option}: expected an existing folder to create {out.name} in, found none at {out.parent}")


def writable(path: Path, force: bool, option: str = "--out") -> None:
    """Refuse to write ``path`` over an existing file without ``force``, or into a missing folder."""
    if path.is_dir():
        raise CLIError(f"{option}: expected a file path, found a folder at {path}")
    if path.exists() and not force:
        raise CLIError(f"{option}: {path} exists; pass --force to overwrite it")
    if path.parent != Path("") and not path.parent.is_dir():
        raise CLIError(f"{option}: expected an existing folder for {path}, found none at {path.parent}")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}"
    return str(value)


def compact_table(title: str, first: str, columns: Sequence[str], first_width: int = 18) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    table.add_column(first, no_wrap=True, overflow="ellipsis", min_width=min(16, first_width), max_width=first_width)
    for column in columns:  # long headers fold onto a second line; numbers fit in 6 characters
        table.add_column(column, justify="right", overflow="fold", min_width=6, max_width=6)
    return table


def column_chunks(columns: list[str], first_width: int) -> list[list[str]]:
    """Split value columns so that each printed table fits the console (7 characters a column)."""
    per_table = max(1, (console.width - first_width - 2) // 7)
    return [columns[i : i + per_table] for i in range(0, len(columns), per_table)] or [[]]


class Stages:
    """A spinner with the elapsed time while a stage runs, then one line per finished stage."""

    def __init__(self) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(), console=console, transient=True
        )
        self.current: tuple[str, float] | None = None
        self.bar: Any = None

    def __enter__(self) -> Stages:
        self.progress.__enter__()
        self.bar = self.progress.add_task("starting", total=None)
        return self

    def __call__(self, name: str) -> None:
        """Start stage ``name`` (and report the one before it as done)."""
        import time

        self._finish()
        self.current = (name, time.perf_counter())
        self.progress.update(self.bar, description=name)

    def _finish(self) -> None:
        import time

        if self.current is not None:
            name, start = self.current
            self.progress.console.print(line(("✓", "green"), f" {name} ({time.perf_counter() - start:.1f} s)"))
            self.current = None

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._finish()
        self.progress.__exit__(*exc)
