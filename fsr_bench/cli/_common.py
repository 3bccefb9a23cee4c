"""Small helpers shared by subcommands (no heavy imports at module level)."""
from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print an actionable error (no traceback) and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
