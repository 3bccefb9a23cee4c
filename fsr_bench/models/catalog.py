"""What ``fsr-bench list models`` prints, without building — or even importing — any model.

Counting a model's parameters means importing torch and every plug-in (seconds on a small CPU), so
the rows (name, scale, parameters, paper, source) are computed once and cached in
``$FSR_BENCH_HOME/cache/model_catalog.json``. The cache is valid while its *fingerprint* is: the
fsr-bench version, the entry points of the ``fsr_bench.models`` group (name, target, distribution
version) and the size and mtime of every ``.py`` file of the packages that register models
(``fsr_bench/models`` and each plug-in's top-level package). Any edit, install or removal there
rebuilds it; nothing is ever listed from a stale cache.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from fsr_bench.atomic import write_text
from fsr_bench.provenance import stable_hash

CACHE_VERSION = 1
GLOB = set("*?[")


def _py_files(origin: str | None) -> list[Path]:
    """The .py files of the top-level package (or single module) at ``origin``."""
    if not origin:
        return []
    path = Path(origin)
    return sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]


def fingerprint() -> str:
    """A hash of everything the catalogue's rows depend on (module docstring)."""
    from fsr_bench import __version__
    from fsr_bench.models import ENTRY_POINT_GROUP

    eps = sorted((ep.name, ep.value, f"{ep.dist.name} {ep.dist.version}" if ep.dist else "")
                 for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    files = _py_files(str(Path(__file__).resolve().parent / "__init__.py"))
    for top in sorted({value.split(":")[0].split(".")[0] for _, value, _ in eps}):
        try:
            found = importlib.util.find_spec(top)  # a top-level name: located, not imported
        except (ImportError, ValueError):
            found = None
        files += _py_files(found.origin if found else None)
    stats = []
    for f in sorted(set(files)):
        try:
            st = f.stat()
        except OSError:
            continue
        stats.append((str(f), st.st_size, st.st_mtime_ns))
    return stable_hash({"version": CACHE_VERSION, "fsr_bench": __version__, "entry_points": eps, "files": stats})


def cache_path() -> Path:
    from fsr_bench.weights import fsr_bench_home

    return fsr_bench_home() / "cache" / "model_catalog.json"


def _build() -> dict[str, Any]:
    from fsr_bench.models import MODELS, list_models, model_summary
    from fsr_bench.models.pretrained import list_pretrained

    rows = [model_summary(n) for n in list_models()]
    extra = {i: e.model for i, e in list_pretrained().items() if not e.packaged}  # registered by plug-ins
    return {"rows": rows, "plugin_errors": MODELS.plugin_errors, "plugin_pretrained": extra}


def catalogue(echo=None) -> dict[str, Any]:
    """``{"rows": [...], "plugin_errors": {...}, "plugin_pretrained": {id: model}}``, from the cache when valid."""
    key = fingerprint()
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == key:
            return _with_live_registrations(cached)
    except (OSError, ValueError, AttributeError):
        pass
    if echo is not None:
        echo(f"building the model catalogue once (cached in {path})")
    built = {"fingerprint": key, **_build()}
    try:
        write_text(path, json.dumps(built))
    except OSError:  # a read-only home: list anyway, just slowly every time
        pass
    return built


def _with_live_registrations(cached: dict[str, Any]) -> dict[str, Any]:
    """In a process that already imported the models (a notebook, a test), models registered or removed
    in it since the cache was built are listed as they are now (a fresh ``fsr-bench`` never needs this)."""
    from fsr_bench.models import MODELS, model_summary

    if not MODELS.loaded:
        return cached
    names = set(MODELS.names())
    rows = [r for r in cached["rows"] if r["name"] in names]
    rows += [model_summary(n) for n in sorted(names - {r["name"] for r in rows})]
    return {**cached, "rows": sorted(rows, key=lambda r: r["name"])}


def match(names: list[str], pattern: str) -> list[str]:
    """Shell glob when ``pattern`` has ``* ? [``, else a case-insensitive substring (``""``: all)."""
    if GLOB & set(pattern):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in names if pattern.lower() in n.lower()]
