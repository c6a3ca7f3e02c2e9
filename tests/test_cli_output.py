"""``guarded``: how a command's body ending in an exception or an interrupt reaches people (one line, the
exit code)."""

from __future__ import annotations

import duckdb
import pytest
import typer

from opelab.cli.output import guarded


def _run(body, capsys):
    with pytest.raises(typer.Exit) as exit_info:
        guarded(False, body)
    return exit_info.value.exit_code, " ".join(capsys.readouterr().out.split())


def _raise(exc):
    def body():
        raise exc

    return body


def test_an_interrupt_exits_with_130_and_its_message(capsys):
    assert _run(_raise(KeyboardInterrupt), capsys) == (130, "error: interrupted")
    assert _run(_raise(KeyboardInterrupt("run `x --resume`")), capsys) == (130, "error: interrupted: run `x --resume`")


def test_ctrl_c_inside_a_duckdb_query_is_an_interrupt_not_a_database_error(capsys):
    """DuckDB answers Ctrl-C during a query with its own InterruptException (an ordinary Exception)."""
    assert _run(_raise(duckdb.InterruptException("INTERRUPT Error: Interrupted!")), capsys) == (130, "error: interrupted")
    code, text = _run(_raise(duckdb.CatalogException("no such table")), capsys)
    assert code == 1 and text.startswith("error: CatalogException: no such table")
