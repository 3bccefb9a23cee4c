"""The trainer's streaming CSV logs (``train_log.csv``, ``val_log.csv``), written through pandas.

One row per log interval / validation, appended as it happens (a crash loses nothing already
logged). The header is fixed by the first row: later rows keep its columns (keys it lacks are
dropped, missing ones are left empty), so a column appearing mid-run cannot shift the table. On
``--resume`` the rows logged after the checkpoint's step are dropped, because the resumed run logs
those steps again; a fresh run replaces an old log.

The dialect is the results tables' (:data:`fsr_bench.results.CSV_DIALECT`: comma, minimal quoting,
``\\n`` line ends, empty cell for a missing value). Values are written as ``str()`` gives them (the
trainer formats its floats, e.g. ``f"{loss:.6f}"``); a resumed log is read back as text, so the rows
it keeps are rewritten character for character.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fsr_bench.results import CSV_DIALECT, frame, write_csv

__all__ = ["CsvLog"]


class CsvLog:
    """Append-only CSV whose header is fixed at the first row; resume drops rows after the restart."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = Path(path)
        self.fields: list[str] | None = None
        if resume_step is None:
            self.path.unlink(missing_ok=True)
            return
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        logged = pd.read_csv(self.path, dtype=str, keep_default_na=False)  # text: "0.250" stays "0.250"
        self.fields = list(logged.columns)
        write_csv(self.path, logged[logged["step"].astype(float).astype(int) <= resume_step])

    def write(self, row: dict[str, Any]) -> None:
        first = self.fields is None
        if self.fields is None:
            self.fields = list(row)
        line = frame([[row.get(k) for k in self.fields]], self.fields)
        line.to_csv(self.path, mode="a", header=first, **CSV_DIALECT)
