"""Reports people look at: figures and one self-contained HTML page."""

from opelab.report.html import TaskReport, recommendation, render_report, write_report

__all__ = ["TaskReport", "recommendation", "render_report", "write_report"]
