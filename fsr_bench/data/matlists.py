"""Image lists stored as MATLAB ``.mat`` files (the TinyFace and QMUL-SurvFace protocol files).

Both QMUL benchmarks (Cheng, Zhu, Gong: TinyFace, ACCV 2018; QMUL-SurvFace, arXiv:1804.09691)
ship their evaluation lists as MATLAB cell arrays: file names (``gallery_set``, ``probe_set``,
``positive_pairs_names`` …) and numeric identity labels (``gallery_ids`` …). ``scipy.io.loadmat``
returns a cell array as a nested object array whose leaves are 1-element string arrays; the
nesting depends on how the file was written, so the readers here flatten whatever they get and
check the length against the partner list instead of trusting one shape.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fsr_bench.data.io import FsrBenchDataError

__all__ = ["load_mat", "mat_ints", "mat_pairs", "mat_strings"]


def load_mat(path: Path, keys: Iterable[str], what: str) -> dict[str, Any]:
    """Read ``keys`` from a ``.mat`` file; a missing file or key names the file and the keys seen."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    keys = list(keys)
    try:
        data = loadmat(str(path))
    except FileNotFoundError:
        raise FsrBenchDataError(
            f"{what}: protocol list {path} is missing; restore it from the release archive"
        ) from None
    except (MatReadError, ValueError, TypeError, OSError) as exc:  # damaged or not a .mat at all
        raise FsrBenchDataError(f"{what}: cannot read {path} as a MATLAB .mat file ({exc})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        seen = sorted(k for k in data if not k.startswith("__"))
        raise FsrBenchDataError(f"{what}: {path} has no variable(s) {missing}; it holds {seen}")
    return {k: data[k] for k in keys}


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [leaf for item in value.ravel(order="C") for leaf in _leaves(item)]
        if value.dtype.kind == "U":
            return ["".join(value.ravel().tolist())] if value.size else [""]
        return value.ravel().tolist()
    return [value]


def mat_strings(value: Any, path: Path, key: str) -> list[str]:
    """A cell array of file names as a flat list of ``str``."""
    out = _leaves(value)
    bad = [x for x in out if not isinstance(x, str) or not x]
    if bad:
        raise FsrBenchDataError(f"{path}: {key} must be a cell array of file names; found {bad[:3]!r}")
    return out


def mat_ints(value: Any, path: Path, key: str) -> list[int]:
    """Numeric identity labels as a flat list of ``int`` (MATLAB stores them as doubles)."""
    flat = np.asarray(_leaves(value), dtype=np.float64) if np.size(value) else np.zeros(0)
    if not np.all(np.isfinite(flat)) or not np.all(flat == np.floor(flat)):
        raise FsrBenchDataError(f"{path}: {key} must hold integer identity labels")
    return flat.astype(np.int64).tolist()


def mat_pairs(value: Any, path: Path, key: str) -> list[tuple[str, str]]:
    """An ``N × 2`` cell array of file names as a list of pairs."""
    arr = np.asarray(value, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise FsrBenchDataError(f"{path}: {key} must be an N x 2 cell array of file names, got shape {arr.shape}")
    return [(mat_strings(a, path, key)[0], mat_strings(b, path, key)[0]) for a, b in arr]
