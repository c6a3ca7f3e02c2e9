"""Reports people look at: figures and one self-contained HTML page."""

from opelab.report.html import TaskReport, recommendation, render_report, write_report
from opelab.report.validation import MissingReportFile, ReportError

__all__ = ["MissingReportFile", "ReportError", "TaskReport", "recommendation", "render_report", "write_report"]
