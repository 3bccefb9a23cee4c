"""On-disk caches of recognition runs, so that adding one model to a finished run costs only that model.

* :class:`FaceStore` — detection + alignment + embedding per image, keyed by the image's 8-bit content
  and the whole face pipeline (detector settings, ``max_side``, recogniser and its weights' sha256, flip);
* :class:`SRStore` — one model's SR outputs (uint8), keyed by the model name, checkpoint sha256 and
  overrides, and within it by the LR probe's content.

Cache files are plain tensors loaded with ``weights_only=True``; a damaged or foreign file costs a
recomputation, never a wrong number.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Sequence

import torch

from fsr_bench import __version__, atomic
from fsr_bench.naming import safe_filename
from fsr_bench.protocol import ModelSpec
from fsr_bench.provenance import stable_hash

__all__ = ["CACHE_VERSION", "FaceStore", "SRStore", "content_key"]

CACHE_VERSION = 1


def content_key(image: torch.Tensor) -> str:
    """sha256 of an image's 8-bit pixels and shape: equal pixels, equal key (the cache key)."""
    from fsr_bench.data.io import to_uint8

    pixels = to_uint8(image.detach().cpu()).contiguous()
    h = hashlib.sha256(str(tuple(pixels.shape)).encode())
    h.update(pixels.numpy().tobytes())
    return h.hexdigest()


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path) -> dict[str, Any] | None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache costs a recomputation, never a wrong number
        return None
    return obj if isinstance(obj, dict) and obj.get("version") == CACHE_VERSION else None


def _face_cache_ok(cached: dict[str, Any], dim: int) -> bool:
    """A face cache file of the shape :meth:`FaceStore.save` writes, for ``dim``-d embeddings (a
    tampered or foreign one is recomputed)."""
    keys, det, emb = cached.get("keys"), cached.get("detected"), cached.get("embeddings")
    return (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and isinstance(det, torch.Tensor) and det.dtype == torch.bool and tuple(det.shape) == (len(keys),)
            and isinstance(emb, torch.Tensor) and emb.is_floating_point() and tuple(emb.shape) == (len(keys), dim))


def _sr_cache_ok(cached: dict[str, Any], scale: int | None) -> bool:
    """An SR cache file of the shape :meth:`SRStore.save` writes, made at ``scale`` (None: any)."""
    keys, outputs, recorded = cached.get("keys"), cached.get("outputs"), cached.get("scale")
    return (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and isinstance(outputs, list)
            and len(outputs) == len(keys) and isinstance(recorded, int) and not isinstance(recorded, bool)
            and (scale is None or recorded == scale))


# -- the face cache --------------------------------------------------------------------------------
class FaceStore:
    """Detection + alignment + embedding of images, cached by 8-bit content for one face pipeline.

    ``embed(images)`` returns ``(keys, embeddings (N, D) float32 — zero rows where undetected,
    detected (N,) bool)``; ``None`` images (probes that could not be made) are undetected.
    """

    def __init__(self, folder: Path, aligner, recogniser, max_side: int | None, fresh: bool = False):
        self.aligner, self.recogniser, self.max_side = aligner, recogniser, max_side
        self.pipeline = {
            "version": CACHE_VERSION,
            "detector": aligner.describe(),
            "max_side": max_side,
            "recogniser": {k: v for k, v in recogniser.describe().items() if k not in ("device", "weights_path")},
        }
        self.path = folder / f"faces_{stable_hash(self.pipeline)[:16]}.pt"
        self.dim = int(recogniser.embedding_dim)
        self.entries: dict[str, tuple[bool, torch.Tensor]] = {}
        cached = None if fresh else _torch_load(self.path)
        if cached is not None and _face_cache_ok(cached, self.dim):
            for k, d, e in zip(cached["keys"], cached["detected"].tolist(), cached["embeddings"]):
                self.entries[k] = (bool(d), e)
        self.computed = 0
        self.reused = 0
        self._dirty = False
        self._fresh: list[str] = []

    def take_fresh(self) -> dict[str, tuple[bool, torch.Tensor]]:
        """Entries computed since the last call (another process of a sharded run sends these to
        rank 0, which alone saves the cache)."""
        fresh = {k: self.entries[k] for k in self._fresh}
        self._fresh = []
        return fresh

    def merge(self, entries: dict[str, tuple[bool, torch.Tensor]]) -> None:
        """Add entries computed by another process (saved with the next :meth:`save`)."""
        for k, v in entries.items():
            if k not in self.entries:
                self.entries[k] = v
                self._dirty = True

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        """Downscale images whose longer side exceeds ``max_side`` (alignment output is 112×112)."""
        from fsr_bench.data.identity_folders import quantize
        from fsr_bench.data.resize import imresize

        side = max(image.shape[-2:])
        if self.max_side is None or side <= self.max_side:
            return image
        return quantize(imresize(image, scale=self.max_side / side))

    def embed(self, images: Sequence[torch.Tensor | None]) -> tuple[list[str | None], torch.Tensor, torch.Tensor]:
        keys = [None if im is None else content_key(im) for im in images]
        todo: dict[str, torch.Tensor] = {}
        for k, im in zip(keys, images):
            if k is not None and im is not None and k not in self.entries and k not in todo:
                todo[k] = im
        if todo:
            todo_keys = list(todo)
            found = self.aligner.align([self._prepare(todo[k].float()) for k in todo_keys])
            emb = torch.zeros(len(todo_keys), self.dim)
            if bool(found.detected.any()):
                emb[found.detected] = self.recogniser.embed(found.faces[found.detected]).float()
            for i, k in enumerate(todo_keys):
                self.entries[k] = (bool(found.detected[i]), emb[i].clone())
            self._fresh += todo_keys
            self.computed += len(todo_keys)
            self._dirty = True
        n_keys = sum(1 for k in keys if k is not None)
        self.reused += n_keys - len(todo)
        out = torch.zeros(len(images), self.dim)
        det = torch.zeros(len(images), dtype=torch.bool)
        for i, k in enumerate(keys):
            if k is not None:
                d, e = self.entries[k]
                det[i] = d
                out[i] = e
        return keys, out, det

    def save(self) -> None:
        if not self._dirty:
            return
        keys = list(self.entries)
        atomic.write_bytes(self.path, _torch_bytes({
            "version": CACHE_VERSION,
            "pipeline": stable_hash(self.pipeline),
            "keys": keys,
            "detected": torch.tensor([self.entries[k][0] for k in keys], dtype=torch.bool),
            "embeddings": torch.stack([self.entries[k][1] for k in keys]) if keys else torch.zeros(0, self.dim),
        }))
        self._dirty = False


class SRStore:
    """SR outputs (uint8) of one model, keyed by the LR probe's content."""

    def __init__(self, folder: Path, spec: ModelSpec, sha: str | None, fresh: bool, inference: str = "fp32, NCHW",
                 scale: int | None = None):
        """``scale``: the protocol's; a cache file that records another is not used (the row's scale
        is read from it)."""
        self.meta: dict[str, object] = {"version": CACHE_VERSION, "fsr_bench": __version__, "name": spec.name,
                                        "checkpoint_sha256": sha, "overrides": spec.overrides}
        if inference != "fp32, NCHW":  # fp32 caches written before precision existed stay valid
            self.meta["inference"] = inference
        self.path = folder / f"{safe_filename(spec.display)}_{stable_hash(self.meta)[:16]}.pt"
        cached = None if fresh else _torch_load(self.path)
        if cached is not None and not _sr_cache_ok(cached, scale):
            cached = None
        self.scale: int | None = cached.get("scale") if cached else None
        self.variant: str | None = cached.get("variant") if cached else None
        self.outputs: dict[str, torch.Tensor] = dict(zip(cached["keys"], cached["outputs"])) if cached else {}
        self._dirty = False
        self._fresh: list[str] = []

    def holds(self, key: str, lr: torch.Tensor) -> bool:
        """True when the cached output of ``lr`` is there and is what the model makes of it: uint8,
        3 x (H·scale) x (W·scale). Anything else (a tampered file) is recomputed."""
        out = self.outputs.get(key)
        if not isinstance(out, torch.Tensor) or out.dtype != torch.uint8 or self.scale is None:
            return False
        return tuple(out.shape) == (3, int(lr.shape[-2]) * self.scale, int(lr.shape[-1]) * self.scale)

    def put(self, key: str, sr: torch.Tensor) -> None:
        self.outputs[key] = sr
        self._fresh.append(key)
        self._dirty = True

    def take_fresh(self) -> dict[str, torch.Tensor]:
        """Outputs computed since the last call (see :meth:`FaceStore.take_fresh`)."""
        fresh = {k: self.outputs[k] for k in self._fresh}
        self._fresh = []
        return fresh

    def merge(self, outputs: dict[str, torch.Tensor]) -> None:
        """Add outputs computed by another process (saved with the next :meth:`save`)."""
        for k, v in outputs.items():
            if k not in self.outputs:
                self.outputs[k] = v
                self._dirty = True

    def save(self) -> None:
        if self._dirty:
            keys = list(self.outputs)
            atomic.write_bytes(self.path, _torch_bytes({
                "version": CACHE_VERSION, "scale": self.scale, "variant": self.variant, "meta_hash": stable_hash(self.meta),
                "keys": keys, "outputs": [self.outputs[k] for k in keys]}))
            self._dirty = False
