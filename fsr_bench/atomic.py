"""Atomic file writes: a crash never leaves a half-written result behind."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

#: the temp names :func:`_publish` makes (``.NAME.`` + mkstemp's 8 random characters + ``.tmp``): only
#: these are ever swept, never another program's ``*.tmp`` (a draft, an office lock file)
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temp_name(name: str) -> bool:
    """True for a temp file name of this module's writers (a killed writer may leave one)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _default_mode() -> int:
    """What ``open()`` would give a new file (0o666 minus the umask); mkstemp's 0o600 is private."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _discard(tmp: str) -> None:
    """Remove a temp file after a failed write; a failure here (read-only, gone) must not hide the first."""
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _stage(path: Path, fill: Callable[[BinaryIO], object]) -> str:
    """Write through ``fill`` into a temp file beside ``path`` and fsync it; returns its name (removed
    on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _publish(path: str | os.PathLike, fill: Callable[[BinaryIO], object]) -> Path:
    """Write through ``fill`` into a temp file beside ``path``, fsync, then rename over ``path``:
    readers see the old file or the whole new one; a failure removes the temp file."""
    path = Path(path)
    tmp = _stage(path, fill)
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    return path


def _write_all(f: BinaryIO, data: bytes) -> None:
    f.write(data)


def write_together(files: Sequence[tuple[str | os.PathLike, bytes]]) -> None:
    """Write several files as one step: every temp file is complete on disk before the first rename,
    then they are renamed in the order given. A full disk fails before any of the files changed (the
    old set stays whole); only a crash between renames leaves a prefix of the new set published."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            staged.append((_stage(Path(path), functools.partial(_write_all, data=data)), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            _discard(tmp)  # the ones already renamed are gone: nothing to remove
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _publish(path, lambda f: f.write(data))


def write_with(path: str | os.PathLike, fill: Callable[[BinaryIO], object]) -> Path:
    """Atomically write what ``fill(file)`` streams into ``path`` (an encoder that writes as it goes,
    e.g. a video muxer: nothing is held in memory whole)."""
    return _publish(path, fill)


def sweep_stale_temp(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove temp files a killed writer left for ``names`` in ``folder`` (``.NAME.*.tmp``).

    :func:`write_bytes` cleans up after itself on any exception, but not after SIGKILL or power
    loss; a rerun of the same job calls this first, so stale temps never pile up on a full disk.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def copy_file(src: str | os.PathLike, dst: str | os.PathLike, chunk: int = 1 << 20) -> Path:
    """Copy ``src`` to ``dst`` atomically (temp file in dst's folder, fsync, rename; removed on failure)."""
    def fill(out: BinaryIO) -> None:
        with open(src, "rb") as inp:
            for block in iter(lambda: inp.read(chunk), b""):
                out.write(block)

    return _publish(dst, fill)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (checkpoints and weights are identified by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
