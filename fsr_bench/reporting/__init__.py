"""Reports from finished run folders: paper-layout markdown tables, figures and visual grids.

``load`` reads and validates run folders; ``tables`` renders markdown (pure functions);
``plots`` and ``grids`` draw figures; ``report`` writes ``report.md`` + ``figures/``.
Matplotlib loads only when a figure is drawn, so importing this package stays cheap.

Typical use::

    from fsr_bench.reporting import write_report
    write_report(["runs/ffhq_x4", "runs/ffhq_x8"], "runs/report")
"""
from __future__ import annotations

from fsr_bench.reporting.load import ReportInputError, Run, RunGroup, group_runs, load_run, load_runs
from fsr_bench.reporting.tables import report_tables, tables_for_terminal

_LAZY = ("write_report", "write_report_for")

__all__ = ["ReportInputError", "Run", "RunGroup", "group_runs", "load_run", "load_runs", "report_tables",
           "tables_for_terminal", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from fsr_bench.reporting import report

        return getattr(report, name)
    raise AttributeError(f"module 'fsr_bench.reporting' has no attribute {name!r}")
