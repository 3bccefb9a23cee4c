"""Identity-preserving training for any super-resolver: a frozen recogniser compares SR and HR faces.

``loss: {identity: {weight: 0.1, recogniser: mobilefacenet}}`` in a training config adds

    L_id = mean_i (1 − cos(φ(warp_i(SR_i)), φ(warp_i(HR_i))))

and, with ``infonce_weight: w > 0``, the batch-contrastive term (InfoNCE, van den Oord et al.,
arXiv:1807.03748; the "identity discrimination" half of DIDnet's dual identity constraint, Cheng et
al., ICME 2021, as reconstructed in ``baselines/didnet.py``)

    L_nce = mean_i −log( exp(s_ii / τ) / Σ_j exp(s_ij / τ) ),   s_ij = ê(SR_i) · ê(HR_j)

over the faces of the **global** batch (ê = φ / ‖φ‖): SR_i must be closer to its own HR face than to
every other one. Under DDP the HR embeddings (targets, no gradient) are gathered from every
process, so the negatives, and so each face's term, do not depend on the number of processes (the
per-process means are averaged with DDP's gradients, as for every other term); with fewer than two
faces in the global batch the term is 0.

where φ is a frozen face recogniser (eval mode, no gradient into its weights) and ``warp_i`` is the
5-point similarity alignment to the ArcFace 112×112 template **estimated on the HR face** (MTCNN
landmarks, computed once per training image and cached) and applied to SR and HR alike with
``grid_sample`` — the same pixels of both are compared, so the super-resolver cannot lower the loss
by moving or re-shaping the face. The alignment is insightface's (``face_align.estimate_norm``, the
ArcFace family's reference), applied as ``cv2.warpAffine`` would, but differentiably.

Landmarks follow the training augmentation: crops shift them, the dihedral ops map them exactly as
:func:`fsr_bench.train.data.dihedral` maps pixels, and a horizontal flip swaps left/right points so
the template's order (image-left eye first) still holds. Faces MTCNN did not find carry NaN
landmarks and are left out of both terms (a batch with none contributes 0). Identity training needs
whole faces (``data.patch_size: null``): a 128-px patch of a 256-px face is not a face.

Autocast: the warp and the recogniser run in float32 with autocast switched off inside the loss
(the embeddings are compared through cosines close to 1, where bf16's 8-bit mantissa is too
coarse); the super-resolver outside it keeps the configured precision.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fsr_bench.atomic import write_text

ALIGNED = 112  # ArcFace / MobileFaceNet input side
_SWAP_ON_FLIP = [1, 0, 2, 4, 3]  # (left eye, right eye, nose, left mouth, right mouth) after a mirror


# -- landmarks under the training augmentation ---------------------------------------------------
def dihedral_points(pts: np.ndarray, op: int, h: int, w: int) -> np.ndarray:
    """Map (x, y) pixel coordinates of an (h, w) image as ``data.dihedral(img, op)`` maps its pixels."""
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    for _ in range(op % 4):  # torch.rot90(k=1, dims=(-2, -1)): new[i, j] = old[j, w-1-i]
        x, y, h, w = y, (w - 1) - x, w, h
    if op >= 4:
        x = (w - 1) - x
    out = np.stack([x, y], axis=1)
    return out[_SWAP_ON_FLIP] if op >= 4 else out


def face_affine(landmarks: np.ndarray | None) -> np.ndarray:
    """2×3 similarity (image px -> 112×112 ArcFace template px); NaN when there are no landmarks."""
    if landmarks is None or not np.isfinite(landmarks).all():
        return np.full((2, 3), np.nan, dtype=np.float32)
    from insightface.utils.face_align import estimate_norm

    return estimate_norm(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), image_size=ALIGNED).astype(np.float32)


def aligned_grid(affine: torch.Tensor, in_hw: Sequence[int], size: int = ALIGNED) -> torch.Tensor:
    """``grid_sample`` grid (B, size, size, 2) that warps (B, C, H, W) images as ``cv2.warpAffine``.

    Output pixel centre (u, v) samples the source at A⁻¹((u, v) − t); both use integer pixel-centre
    coordinates, converted to grid_sample's [-1, 1] with ``align_corners=False``.
    """
    b = affine.shape[0]
    a, t = affine[:, :, :2].double(), affine[:, :, 2:].double()  # (B, 2, 2), (B, 2, 1)
    a_inv = torch.linalg.inv(a)
    v, u = torch.meshgrid(torch.arange(size, dtype=torch.float64, device=affine.device),
                          torch.arange(size, dtype=torch.float64, device=affine.device), indexing="ij")
    dst = torch.stack([u.reshape(-1), v.reshape(-1)], 0).expand(b, 2, size * size)  # (B, 2, size²)
    src = a_inv @ (dst - t)  # (B, 2, size²) source pixel coordinates (x, y)
    h, w = in_hw
    gx = (2 * src[:, 0] + 1) / w - 1
    gy = (2 * src[:, 1] + 1) / h - 1
    return torch.stack([gx, gy], dim=-1).view(b, size, size, 2)


def align_faces(images: torch.Tensor, affine: torch.Tensor, size: int = ALIGNED) -> torch.Tensor:
    grid = aligned_grid(affine, tuple(images.shape[-2:]), size).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# -- the loss ------------------------------------------------------------------------------------
#: term names (what TrainStep logs and ``loss.weights`` may re-weight)
IDENTITY, INFONCE = "identity", "identity_infonce"


def info_nce(e_sr: torch.Tensor, e_targets: torch.Tensor, offset: int, temperature: float) -> torch.Tensor:
    """Mean cross-entropy of ``e_sr @ e_targetsᵀ / τ`` with row i's positive at column ``offset + i``."""
    logits = e_sr @ e_targets.t() / temperature  # (b, B)
    target = torch.arange(e_sr.shape[0], device=e_sr.device) + offset
    return F.cross_entropy(logits, target)


def _gather_targets(e_hr: torch.Tensor, dim: int) -> tuple[torch.Tensor, int]:
    """Every process's HR embeddings (B_total, D) and where this process's rows start.

    Targets carry no gradient, so a plain ``all_gather`` suffices; processes may hold different
    numbers of faces (undetected ones are dropped), so rows are padded to the largest count.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return e_hr, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([e_hr.shape[0]], device=e_hr.device, dtype=torch.long)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = e_hr.new_zeros((max(sizes), dim))
    padded[: e_hr.shape[0]] = e_hr
    rows = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(rows, padded)
    return torch.cat([r[:n] for r, n in zip(rows, sizes)]), sum(sizes[:rank])


class IdentityLoss(nn.Module):
    """``forward(sr, hr, affine) -> {"identity": mean(1 − cos)[, "identity_infonce": InfoNCE]}``.

    Unweighted terms over the faces with landmarks (see the module docstring); ``weights`` holds
    each term's weight from the config, which TrainStep applies (``loss.weights`` may override).
    """

    def __init__(self, embedder: nn.Module, weight: float = 1.0, infonce_weight: float = 0.0,
                 temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"InfoNCE temperature must be positive, got {temperature}")
        self.embedder = embedder.eval().requires_grad_(False)
        self.temperature = float(temperature)
        self.weights = {IDENTITY: float(weight)}
        if infonce_weight > 0:
            self.weights[INFONCE] = float(infonce_weight)

    @classmethod
    def from_config(cls, section: Any, embedder: nn.Module) -> "IdentityLoss":
        """The loss a training config's ``loss.identity`` section describes, around ``embedder``."""
        return cls(embedder, weight=section.weight, infonce_weight=section.infonce_weight,
                   temperature=section.temperature)

    def train(self, mode: bool = True):  # the recogniser stays in eval mode (fixed BatchNorm statistics)
        return super().train(False)

    def _embed(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedder(faces).flatten(1).float(), dim=1)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, affine: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(sr.device.type, enabled=False):
            return self._terms(sr, hr, affine)

    def _terms(self, sr: torch.Tensor, hr: torch.Tensor, affine: torch.Tensor) -> dict[str, torch.Tensor]:
        valid = torch.isfinite(affine).flatten(1).all(dim=1)  # (B,)
        zero = sr.float().sum() * 0.0  # keeps the graph (DDP) with a zero contribution
        e_sr = e_hr = None
        if bool(valid.any()):
            affine = affine[valid]
            sr_faces = align_faces(sr[valid].float().contiguous(), affine)  # (b, 3, 112, 112)
            with torch.no_grad():
                e_hr = self._embed(align_faces(hr[valid].float().contiguous(), affine))  # (b, D)
            e_sr = self._embed(sr_faces)  # (b, D), differentiable w.r.t. sr
        terms = {IDENTITY: zero if e_sr is None or e_hr is None else (1.0 - (e_sr * e_hr).sum(dim=1)).mean()}
        if INFONCE in self.weights:  # every process reaches the gather, faces or not (DDP)
            dim = self._dim(sr) if e_hr is None else e_hr.shape[1]
            local = e_hr if e_hr is not None else sr.new_zeros((0, dim), dtype=torch.float32)
            targets, offset = _gather_targets(local, dim)
            if e_sr is None or targets.shape[0] < 2:  # no face here, or no negative anywhere
                terms[INFONCE] = zero
            else:
                terms[INFONCE] = info_nce(e_sr, targets, offset, self.temperature)
        return terms

    def _dim(self, like: torch.Tensor) -> int:
        """The embedding size, for a process without faces in this batch (DDP gather shapes)."""
        if not hasattr(self, "_embedding_dim"):
            with torch.no_grad():
                probe = like.new_zeros((1, 3, ALIGNED, ALIGNED), dtype=torch.float32)
                self._embedding_dim = int(self._embed(probe).shape[1])
        return self._embedding_dim


# -- landmarks of the training set, computed once ------------------------------------------------
def _dataset_key(names: Sequence[str], sizes: Sequence[int]) -> str:
    h = hashlib.sha256()
    for n, s in zip(names, sizes):
        h.update(f"{n}\0{s}\n".encode())
    return h.hexdigest()[:16]


def training_landmarks(hr_set: Any, cache_dir: str | os.PathLike, device: str = "cpu",
                       echo=print) -> list[np.ndarray | None]:
    """MTCNN 5-point landmarks of every HR training image (None where no face is found).

    Cached as JSON in ``cache_dir/landmarks-<key>.json``, the key hashing every image's path and
    byte size, so a changed dataset is recomputed and an unchanged one never is.
    """
    paths = [Path(p) for p in getattr(hr_set, "paths")]
    key = _dataset_key([str(p) for p in paths], [p.stat().st_size for p in paths])
    cache = Path(cache_dir) / f"landmarks-{key}.json"
    if cache.is_file():
        rows: list[list[list[float]] | None] = json.loads(cache.read_text())["landmarks"]
        return [None if r is None else np.asarray(r, dtype=np.float32) for r in rows]
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.progress import progress_bar

    aligner = FaceAligner(device=device)  # the recognition protocol's detector and settings
    rows = []
    chunk = 16
    for start in progress_bar(range(0, len(hr_set), chunk), desc="HR landmarks (once)", unit="batch"):
        images = [hr_set[i]["hr"] for i in range(start, min(start + chunk, len(hr_set)))]
        found: Any = aligner.align(images)  # AlignedFaces; the name is reused for the count below
        for ok, pts in zip(found.detected.tolist(), found.landmarks.numpy()):
            rows.append(np.round(pts, 3).tolist() if ok else None)
    found = sum(r is not None for r in rows)
    echo(f"identity loss: MTCNN found a face in {found} of {len(rows)} training images (others: no identity term)")
    write_text(cache, json.dumps({"key": key, "detector": "mtcnn (facenet-pytorch)", "landmarks": rows}))
    return [None if r is None else np.asarray(r, dtype=np.float32) for r in rows]
