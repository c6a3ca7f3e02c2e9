"""The ``opelab`` command line: a thin face over the library.

One module per command group: ``demo``, ``report``, ``data`` (describe, collect), ``importing`` (import),
``train``, ``evaluate``, ``bench`` (benchmark, results); ``models`` holds what the commands on real tasks share
(tasks by name, model files, heads) and ``tables`` the tables several commands print. Everything printed goes
through ``output``: no markup is interpreted in user strings, and every error is one line.
"""

from opelab.cli.app import app, main
# the order of these imports is the order of the commands in --help
from opelab.cli import demo, report, data, importing, train, evaluate, bench  # noqa: F401, E402, I001

__all__ = ["app", "main"]
