"""Pretrained weights: where they come from, and one resolver that finds or fetches them.

Every pretrained file fsr-bench uses is described by a :class:`WeightSpec` (URL, SHA-256, licence,
upstream source), so a result can always be traced to the exact bytes that produced it.

:func:`resolve_weights` looks in this order and returns the first hit:

1. an explicit path given by the caller (must exist; must match the SHA-256 when the spec has one);
2. the cache, ``$FSR_BENCH_HOME/weights/<filename>`` (``FSR_BENCH_HOME`` defaults to
   ``~/.cache/fsr-bench``);
3. ``extra_paths`` supplied by the caller (e.g. the developers' read-only ``../shared`` folder);
4. a download of ``spec.url`` into the cache — to a temporary file in the cache folder, checked
   against the SHA-256, then renamed atomically, so an interrupted or corrupted download never
   leaves a file that a later run would trust. ``FSR_BENCH_OFFLINE=1`` forbids this step.

If none succeeds, :class:`WeightsUnavailable` says what to fetch (URL), where to put it (the exact
cache path) and which environment variables change the search. Callers must never fall back to
random initialisation: a recogniser with random weights produces plausible-looking but meaningless
numbers.

This module deliberately imports neither torch nor numpy, so that resolving weights stays cheap.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from fsr_bench.atomic import sha256_file
from fsr_bench.errors import FsrBenchError

__all__ = [
    "ENV_HOME",
    "ENV_OFFLINE",
    "WeightSpec",
    "WeightsError",
    "WeightsUnavailable",
    "ChecksumMismatch",
    "fsr_bench_home",
    "weights_cache_dir",
    "cache_path",
    "is_offline",
    "sha256_file",
    "download_url",
    "resolve_weights",
]

log = logging.getLogger(__name__)

ENV_HOME = "FSR_BENCH_HOME"
ENV_OFFLINE = "FSR_BENCH_OFFLINE"
_DEFAULT_HOME = Path("~/.cache/fsr-bench")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class WeightSpec:
    """Provenance of one pretrained file.

    ``sha256`` may be empty for files without a published checksum; they are then used unverified
    (and the resolver logs that). ``filename`` is the name in the cache folder; keep it unique
    across specs, e.g. by including the upstream version.
    """

    name: str  # human name used in messages: "MobileFaceNet (foamliu, v1.0)"
    url: str  # direct download URL; "" when the file cannot be downloaded automatically
    sha256: str  # lowercase hex digest of the exact file; "" when unknown
    filename: str  # file name inside $FSR_BENCH_HOME/weights/
    licence: str = ""  # licence of the weights, e.g. "Apache-2.0"
    source: str = ""  # upstream project page, cited in reports

    def __post_init__(self) -> None:
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"WeightSpec.filename must be a bare file name, got {self.filename!r}")
        if self.sha256 and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)
        ):
            raise ValueError(
                f"WeightSpec.sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )


class WeightsError(FsrBenchError, RuntimeError):
    """Base class of weight-resolution problems."""


class WeightsUnavailable(WeightsError):
    """The weights were found nowhere and could not be downloaded."""


class ChecksumMismatch(WeightsError):
    """A file exists but its SHA-256 is not the one the spec records."""


# -- locations ---------------------------------------------------------------------------------
def fsr_bench_home() -> Path:
    """``$FSR_BENCH_HOME`` or ``~/.cache/fsr-bench`` (read at call time so tests can change it)."""
    return Path(os.environ.get(ENV_HOME) or _DEFAULT_HOME).expanduser()


def weights_cache_dir() -> Path:
    return fsr_bench_home() / "weights"


def cache_path(spec: WeightSpec) -> Path:
    """Where ``spec`` lives in the cache (whether or not it is there yet)."""
    return weights_cache_dir() / spec.filename


def is_offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE


# -- hashing and downloading -------------------------------------------------------------------
def download_url(url: str, dst: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` into ``dst`` (plain urllib: no extra dependency, honours ``https_proxy``).

    Module-level so tests can replace it with ``monkeypatch.setattr``.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "fsr-bench"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dst, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)


def _verify(spec: WeightSpec, path: Path, what: str) -> None:
    if not spec.sha256:
        log.warning("%s: no SHA-256 recorded for %s; using %s unverified", spec.name, what, path)
        return
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ChecksumMismatch(
            f"{spec.name}: {what} {path} has SHA-256 {actual}, expected {spec.sha256}. "
            f"It is a different or corrupted file; replace it with the file from "
            f"{spec.url or spec.source or 'the upstream release'}."
        )


def _download_into_cache(spec: WeightSpec, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s from %s", spec.name, spec.url)
        try:
            download_url(spec.url, tmp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WeightsUnavailable(
                _unavailable_message(spec, target, [], reason=f"download failed: {exc}")
            ) from exc
        _verify(spec, tmp, "the downloaded file")  # ChecksumMismatch: tmp is removed below
        os.replace(tmp, target)  # atomic on one filesystem: readers see all or nothing
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _unavailable_message(
    spec: WeightSpec, target: Path, searched: list[Path], reason: str
) -> str:
    where = f"\n  searched: {', '.join(str(p) for p in searched)}" if searched else ""
    fetch = (
        f"download {spec.url}" if spec.url else f"get the file from {spec.source or 'its upstream'}"
    )
    sha = f" (SHA-256 {spec.sha256})" if spec.sha256 else ""
    return (
        f"{spec.name} weights are not available ({reason}).{where}\n"
        f"  To fix: {fetch}{sha} and save it as\n"
        f"    {target}\n"
        f"  or pass an explicit path to the file. The cache folder is ${ENV_HOME}/weights "
        f"(set {ENV_HOME} to move it; now {fsr_bench_home()}); {ENV_OFFLINE}=1 disables downloads."
        + (f"\n  Licence: {spec.licence}." if spec.licence else "")
    )


# -- the resolver ------------------------------------------------------------------------------
def resolve_weights(
    spec: WeightSpec,
    explicit_path: str | os.PathLike | None = None,
    extra_paths: Iterable[str | os.PathLike] = (),
) -> Path:
    """Return a verified local path to the weights described by ``spec``.

    Precedence: ``explicit_path`` > cache > ``extra_paths`` (in order) > download into the cache.
    An explicit path that is missing or fails the checksum is an error, never silently replaced by
    another copy: the caller asked for that file. A cached or extra copy with a wrong checksum is an
    error too (someone put a different file there; we will not overwrite or ignore it).
    """
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(
                f"{spec.name}: the weights file {path} does not exist. Pass the path of a "
                f"downloaded copy of {spec.url or spec.source}, or omit it to use the cache at "
                f"{cache_path(spec)}."
            )
        _verify(spec, path, "the given file")
        return path

    target = cache_path(spec)
    searched = [target]
    if target.is_file():
        _verify(spec, target, "the cached file")
        return target

    for extra in extra_paths:
        path = Path(extra).expanduser()
        searched.append(path)
        if path.is_file():
            _verify(spec, path, "the file")
            return path

    if not spec.url:
        raise WeightsUnavailable(
            _unavailable_message(spec, target, searched, reason="no download URL is known")
        )
    if is_offline():
        raise WeightsUnavailable(
            _unavailable_message(spec, target, searched, reason=f"{ENV_OFFLINE} is set")
        )
    return _download_into_cache(spec, target)
