"""One root for every error the toolkit raises on purpose: ``FsrBenchError``.

Each error below it names the file, key or model at fault and what to do, so the command line
prints it as one ``error:`` line (exit status 2) instead of a traceback; anything else reaching the
CLI is a bug and keeps its traceback. Error classes keep a builtin base where callers may already
catch one (``RegistryError`` is a ``KeyError``, ``ProtocolError`` a ``ValueError``).
"""
from __future__ import annotations

__all__ = ["FsrBenchError"]


class FsrBenchError(Exception):
    """Bad input or an unavailable resource, explained in the message (never a bug)."""
