"""The output folder of a run has one owner.

:func:`claim` is what every runner's output folder goes through (``run_protocol`` calls it):

* an advisory lock ``OUT/.lock`` (``fcntl.flock``, non-blocking) held for the whole run; a second run
  on the same OUT is refused with who holds it (pid, host, start time);
* ``OUT/owner.json`` records the protocol's *owner hash* — kind, name and data block, i.e. what the
  rows are measured on. Models, metrics and run settings may change between reruns (each model's
  work key decides its reuse), but another protocol or another dataset/degradation in the same OUT is
  refused unless ``force``, which removes the other owner's run (:data:`RUN_ENTRIES`; other files
  stay) and recomputes every model. Only a folder holding a result is owned: a run that fails before
  its first result leaves no claim behind, and its leftovers are taken over by the next run;
* stale temp files a killed run left (:func:`fsr_bench.atomic.is_temp_name`, nobody else writes them
  while the lock is held) are removed inside a run folder's own entries, never in a foreign folder;
* ``OUT/protocol.yaml`` is written by :func:`finish`, only after the run succeeded (and the owner
  file of the same owner is rewritten only then);
* each ``OUT/samples/<item>/`` folder carries a ``.key`` naming the data its images were made from
  (:func:`keyed_sample_folder`): another dataset, degradation or seed empties it first, so a rerun
  never shows a stale LR or reference next to new outputs.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError
from fsr_bench.provenance import stable_hash

__all__ = ["LOCK_FILE", "OWNER_FILE", "SAMPLE_KEY_FILE", "OutputFolderError", "claim", "finish", "keyed_sample_folder",
           "owner_hash", "sweep_temp_files"]

LOCK_FILE = ".lock"
OWNER_FILE = "owner.json"
SAMPLE_KEY_FILE = ".key"

#: what the runners write at OUT's top (every kind, and the report of `fsr-bench run`): a takeover by
#: another owner removes exactly these, and temp files are swept only inside them
RUN_ENTRIES = ("models", "samples", "cache", "sizes", "report", "summary.csv", "per_image.csv", "per_probe.csv",
               "per_pair.csv", "scores.npz", "results.json", "sweep.json", "sweep.csv", "protocol.yaml", OWNER_FILE)
#: a finished result: a run's, a sweep's, one model's (a rerun reuses it) or one sweep size's
_RESULT_FILES = ("results.json", "protocol.yaml", "sweep.json", "models/*/result.json", "sizes/*/results.json",
                 "sizes/*/models/*/result.json")


class OutputFolderError(FsrBenchError):
    """The output folder cannot be used (busy, owned by another protocol, not writable)."""


def owner_hash(protocol: Any) -> str:
    """What OUT belongs to: the protocol's kind, name and data block."""
    doc = protocol.model_dump(mode="json")
    return stable_hash({"kind": doc.get("kind"), "name": doc.get("name"), "data": doc.get("data")})


def os_error(exc: OSError, out: Path) -> OutputFolderError:
    """An OSError while writing a run as one message naming the path."""
    where = exc.filename or out
    reason = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space or choose another --out",
            errno.EROFS: "choose a writable --out", errno.EACCES: "choose a writable --out",
            errno.ENOTDIR: "a file is in the way; choose another --out"}.get(exc.errno or 0, "choose another --out")
    return OutputFolderError(f"cannot write the run to {where}: {reason}; {hint}")


def sweep_temp_files(out: Path) -> list[Path]:
    """Remove temp files a killed writer left in a run folder: only :mod:`fsr_bench.atomic`'s temp
    names, only at OUT's top and inside the entries a run writes (:data:`RUN_ENTRIES`)."""
    candidates = [p for p in out.glob(".*.tmp")]
    for entry in RUN_ENTRIES:
        if (out / entry).is_dir():
            candidates += (out / entry).rglob(".*.tmp")
    removed = []
    for tmp in candidates:
        if atomic.is_temp_name(tmp.name) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def holds_results(out: Path) -> bool:
    """True when OUT holds a finished result of some run (only such a folder is owned)."""
    return any(next(out.glob(pattern), None) is not None for pattern in _RESULT_FILES)


def _clear_run(out: Path) -> None:
    """Remove what a run wrote (another owner's rows must not mix with the new run's); other files stay."""
    for entry in RUN_ENTRIES:
        path = out / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _lock(out: Path) -> int:
    import fcntl

    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        holder = _read_json(path) or {}
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
               if holder else "another process")
        raise OutputFolderError(f"{out} is in use by another run ({who}); wait for it to finish or choose "
                                f"another --out (the lock is {path})") from None
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)
    return fd


def _write_owner(out: Path, protocol: Any) -> None:
    atomic.write_json(out / OWNER_FILE, {"protocol_name": protocol.name, "kind": protocol.kind,
                                         "owner_hash": owner_hash(protocol), "protocol_hash": protocol.hash()})


def _check_owner(out: Path, protocol: Any, force: bool) -> bool:
    """Refuse OUT or take it; True when it was already an fsr-bench run folder (``owner.json``).

    Only a folder holding a result is owned: what a failed run left (no result) is taken over by
    the next run. The owner file of the same owner is rewritten by :func:`finish` only, so a
    failing rerun leaves it as the last successful run wrote it."""
    want = owner_hash(protocol)
    owner = _read_json(out / OWNER_FILE)
    if owner is None:
        others = [p.name for p in out.iterdir() if p.name not in (LOCK_FILE, OWNER_FILE)]
        if not others or force:
            pass
        elif (out / "protocol.yaml").is_file() or (out / "results.json").is_file():
            raise OutputFolderError(
                f"{out} holds a run without {OWNER_FILE} (written by an older fsr-bench); rerun with --force "
                "to take it over (every model is recomputed) or choose another --out")
        else:
            raise OutputFolderError(f"{out} is not empty and not an fsr-bench run folder; choose another --out "
                                    "(or pass --force to write into it anyway)")
        _write_owner(out, protocol)
        return False
    if owner.get("owner_hash") == want:
        return True
    if holds_results(out) and not force:
        same_name = owner.get("protocol_name") == protocol.name and owner.get("kind") == protocol.kind
        what = "its data block (dataset or degradation) differs from this run's" if same_name else \
            f"not to {protocol.name!r} (kind {protocol.kind})"
        raise OutputFolderError(
            f"{out} belongs to protocol {owner.get('protocol_name')!r} (kind {owner.get('kind')}), {what}; "
            "choose another --out, or pass --force to take the folder over (its run is removed, every model "
            "is recomputed)")
    _clear_run(out)  # another owner's run (or a failed run's leftovers): start clean
    _write_owner(out, protocol)
    return True


def _release_unclaimed(out: Path, made: bool) -> None:
    """After a failed run that left no result: OUT is not claimed (no owner file, no lock, and no
    folder when this run made it and nothing else is in it)."""
    if holds_results(out):
        return
    leftovers = [p.name for p in out.iterdir() if p.name not in (LOCK_FILE, OWNER_FILE)]
    if leftovers:  # a failed run's cache or samples: the owner file marks them as fsr-bench's
        return
    (out / OWNER_FILE).unlink(missing_ok=True)
    (out / LOCK_FILE).unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            out.rmdir()


@contextlib.contextmanager
def claim(out_dir: str | os.PathLike[str], protocol: Any, force: bool = False) -> Iterator[Path]:
    """Lock ``out_dir``, check (or record) its owner, sweep stale temp files; yields the folder.

    A run that fails before any result exists leaves the folder unclaimed (:func:`_release_unclaimed`)."""
    out = Path(out_dir)
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _lock(out)
    except OSError as exc:
        raise os_error(exc, out) from None
    try:
        try:
            was_run = _check_owner(out, protocol, force)
            if was_run:  # never another program's files: a forced foreign folder is not swept
                sweep_temp_files(out)
        except OSError as exc:
            raise os_error(exc, out) from None
        try:
            yield out
        except BaseException:
            with contextlib.suppress(OSError):
                _release_unclaimed(out, made)
            raise
    finally:
        os.close(fd)  # releases the flock; the file stays (its content is only advisory)


def finish(out: Path, protocol: Any) -> None:
    """Record the protocol as run (``OUT/protocol.yaml``, and its hash in the owner file): called once
    the run succeeded."""
    import yaml

    _write_owner(out, protocol)
    atomic.write_text(out / "protocol.yaml", yaml.safe_dump(protocol.model_dump(mode="json"), sort_keys=False))


def keyed_sample_folder(folder: Path, data_key: str) -> bool:
    """Make ``folder`` a sample folder of ``data_key``; True when it already was (its images stay).

    A folder made from other data (its ``.key`` differs or is absent) loses its images before the
    new key is written, so no image of the old data can survive next to the new ones."""
    key_file = folder / SAMPLE_KEY_FILE
    try:
        if key_file.read_text().strip() == data_key:
            return True
    except OSError:
        pass
    if folder.is_dir():
        for old in folder.glob("*.png"):
            old.unlink()
    atomic.write_text(key_file, data_key + "\n")
    return False
