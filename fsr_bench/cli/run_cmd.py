"""``fsr-bench run``: see the issue tracker; filled in by its own issue."""
from __future__ import annotations

import typer

from fsr_bench.cli._common import fail


def run(ctx: typer.Context) -> None:
    """(not implemented yet)"""
    raise fail("`fsr-bench run` is not implemented yet", code=3)
