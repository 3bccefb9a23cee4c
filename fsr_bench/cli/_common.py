"""Small helpers shared by subcommands (no heavy imports at module level)."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer

from fsr_bench.errors import FsrBenchError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print an actionable error (no traceback) and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def write_failed(exc: OSError, out: Any) -> "typer.Exit":
    """An OSError while writing a command's output folder (``-o``): one error line naming the path
    and the way out, instead of a traceback."""
    import errno

    where = exc.filename or out
    hint = "free some space or choose another -o" if exc.errno == errno.ENOSPC else \
        "choose a writable -o folder (not an existing file)"
    return fail(f"cannot write {where}: {exc.strerror or exc}; {hint}")


def catches_errors(command: F) -> F:
    """Every subcommand: a toolkit error (:class:`FsrBenchError`) becomes one ``error:`` line and
    exit status 2; anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FsrBenchError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]
