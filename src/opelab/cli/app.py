"""The typer application and the ``opelab`` entry point.

``main`` runs the commands with click's standalone mode off, so that a usage error found by the argument
parser (an unknown option, a value of the wrong type, a missing argument) is printed as one ``error:``
line naming the option and pointing to ``--help``, exit code 2, instead of click's multi-line panel.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from opelab.cli.output import one_line, print_error

app = typer.Typer(
    name="opelab",
    help="Offline decision making: logged data → candidates → off-policy evaluation → selection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Offline decision making: logged data → candidates → off-policy evaluation → selection."""


# click's exception classes, found from typer's own (typer vendors click from 0.29 on, and used click before)
_CLICK_ERRORS = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
ClickException = _CLICK_ERRORS["ClickException"]
UsageError = _CLICK_ERRORS["UsageError"]


def usage_error_line(exc: Exception) -> str:
    """``exc`` (a click exception) as one line: its message, and where the command's help is."""
    message = one_line(exc.format_message())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message


def main(argv: Sequence[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=None if argv is None else list(argv), prog_name="opelab", standalone_mode=False)
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `opelab` alone, or a group without its command: the help
            exc.show()
            code = 0
        else:
            print_error(usage_error_line(exc))
            code = exc.exit_code
    except typer.Abort:
        print_error("aborted")
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
