"""Training pairs made reproducibly from HR faces, and a resumable distributed sampler.

Everything random about a training sample — its crop, its dihedral augmentation and the seed of
its degradation — is a pure function of ``(seed, epoch, index)`` (NumPy ``SeedSequence``), and the
order of an epoch is a pure function of ``(seed, epoch)``. Nothing depends on global RNG state,
worker processes or how many batches came before, so:

* ``--resume`` continues exactly, even mid-epoch: the sampler simply skips the batches already done;
* 2 processes × batch b see exactly the samples of 1 process × batch 2b (same global batches).

Sampler keys are ``(index, epoch, position)``; ``position`` is the sample's place in the epoch's
global order, so position // global_batch is the optimizer step within the epoch.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

if TYPE_CHECKING:
    from fsr_bench.data.folders import SizedDataset

__all__ = ["EpochSampler", "TrainPairs", "ValPairs", "dihedral"]


def _stream(*key: int, n: int = 4) -> list[int]:
    """``n`` uint32 words determined by ``key`` (independent streams for different keys)."""
    return [int(v) for v in np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(n)]


def dihedral(x: torch.Tensor, op: int) -> torch.Tensor:
    """One of the 8 symmetries of the square on the last two dims: rot90^(op%4), then hflip if op>=4."""
    if op % 4:
        x = torch.rot90(x, op % 4, dims=(-2, -1))
    if op >= 4:
        x = x.flip(-1)
    return x


class EpochSampler(Sampler):
    """A DistributedSampler that yields ``(index, epoch, position)`` and can start mid-epoch.

    Like ``torch.utils.data.DistributedSampler`` (shuffle with ``seed + epoch``, rank ``r`` takes
    positions ``r, r + W, …``; call :meth:`set_epoch` each epoch), but the epoch is cut to a
    multiple of the **global** batch (``drop_last``) so every rank has the same number of full
    batches and global batch ``k`` is positions ``[k·B, (k+1)·B)`` whatever the world size.
    ``set_epoch(epoch, start_step)`` skips the first ``start_step`` global batches (resume).
    """

    def __init__(self, n: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by the world size {world_size}")
        self.n, self.global_batch, self.rank, self.world_size, self.seed = n, global_batch, rank, world_size, seed
        self.steps_per_epoch = n // global_batch
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        first = self.start_step * self.global_batch
        last = self.steps_per_epoch * self.global_batch
        for pos in range(first + self.rank, last, self.world_size):
            yield order[pos], self.epoch, pos

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.global_batch // self.world_size


def _find_lr(lr_root: Path, name: str) -> Path:
    for suffix in (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp"):
        p = lr_root / f"{name}{suffix}"
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"pre-generated LR for {name!r} not found in {lr_root} (expected {lr_root}/{name}.png, the HR"
        " image's relative path with any image suffix)"
    )


class _Pairs(Dataset):
    def __init__(self, hr_set: SizedDataset, scale: int, degradation=None, lr_folder: str | Path | None = None):
        if degradation is None and lr_folder is None:
            raise ValueError("need a degradation or a pre-generated LR folder")
        self.hr_set, self.scale, self.degradation = hr_set, int(scale), degradation
        self.lr_folder = Path(lr_folder) if lr_folder is not None else None

    def __len__(self) -> int:
        return len(self.hr_set)

    def _hr(self, i: int) -> tuple[torch.Tensor, str]:
        item = self.hr_set[i]
        hr = item["hr"]
        s = self.scale
        h, w = hr.shape[-2] - hr.shape[-2] % s, hr.shape[-1] - hr.shape[-1] % s
        return hr[:, :h, :w], item["name"]  # mod-crop (top-left), as the degradations expect

    def _read_lr(self, lr_folder: Path, name: str, hr_shape: Sequence[int]) -> torch.Tensor:
        from fsr_bench.data.io import read_image

        lr = read_image(_find_lr(lr_folder, name))
        want = (hr_shape[-2] // self.scale, hr_shape[-1] // self.scale)
        if tuple(lr.shape[-2:]) != want:
            raise ValueError(
                f"pre-generated LR {name} in {self.lr_folder} is {tuple(lr.shape[-2:])}, but HR"
                f" {tuple(hr_shape[-2:])} / scale {self.scale} is {want}: wrong scale or wrong folder?"
            )
        return lr


class TrainPairs(_Pairs):
    """(LR, HR) training pairs: aligned random crop, dihedral augmentation, LR on the fly or read.

    HR crop of ``patch`` = (ph, pw) HR pixels at offsets that are multiples of ``scale`` (None =
    the whole image); augmentation ``op`` in the 8 dihedral symmetries (rotations 0/90/180/270 and
    horizontal flip, per ``rot90``/``hflip``), drawn per sample. A non-square patch cannot be rotated
    by 90° per sample (the batch would mix shapes), so then ``op`` is drawn per global batch.
    On-the-fly LR: ``degradation(hr_patch, index=index, seed=s)`` with ``s`` from (seed, epoch, index).
    Pre-generated LR: the matching LR crop is read and gets the same augmentation.
    """

    def __init__(
        self,
        hr_set: SizedDataset,
        scale: int,
        degradation=None,
        lr_folder: str | Path | None = None,
        patch: tuple[int, int] | None = None,
        hflip: bool = True,
        rot90: bool = True,
        seed: int = 0,
        global_batch: int = 1,
        landmarks: Sequence[np.ndarray | None] | None = None,
    ):
        super().__init__(hr_set, scale, degradation, lr_folder)
        self.patch, self.seed, self.global_batch = patch, int(seed), int(global_batch)
        # per-image HR face landmarks (identity loss): items then carry the face's alignment
        self.landmarks = landmarks
        ops = [0, 1, 2, 3] if rot90 else [0]
        self.ops = ops + [o + 4 for o in ops] if hflip else ops

    def degradation_params(self, index: int, epoch: int) -> dict[str, Any] | None:
        """The parameters sample ``index`` was degraded with in ``epoch`` (e.g. the surveillance chain's
        blur σ, noise σ and JPEG quality), recomputed from the seed the checkpoint's train_config records;
        None for a degradation without per-sample parameters or pre-generated LR."""
        sample = getattr(self.degradation, "sample_params", None)
        if self.lr_folder is not None or sample is None:
            return None
        return dict(sample(int(index), seed=_stream(self.seed, int(epoch), int(index))[3]))

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        index, epoch, pos = (int(k) for k in key)
        words = _stream(self.seed, epoch, index)
        hr, name = self._hr(index)
        lr = self._read_lr(self.lr_folder, name, hr.shape) if self.lr_folder is not None else None
        s = self.scale
        y = x = 0
        if self.patch is not None:
            ph, pw = self.patch
            H, W = hr.shape[-2:]
            if ph > H or pw > W:
                raise ValueError(f"image {name} ({H}x{W}) is smaller than data.patch_size {ph}x{pw}")
            y = (words[0] % ((H - ph) // s + 1)) * s
            x = (words[1] % ((W - pw) // s + 1)) * s
            hr = hr[:, y : y + ph, x : x + pw]
            if lr is not None:
                lr = lr[:, y // s : (y + ph) // s, x // s : (x + pw) // s]
        h, w = hr.shape[-2:]
        if h == w:
            op = self.ops[words[2] % len(self.ops)]
        else:  # rotating by 90° changes the shape: one op for the whole global batch
            op = self.ops[_stream(self.seed, epoch, pos // self.global_batch, 0x5EED)[0] % len(self.ops)]
        hr = dihedral(hr, op).contiguous()
        if lr is None:
            lr = self.degradation(hr, index=index, seed=words[3])
        else:
            lr = dihedral(lr, op).contiguous()
        item = {"lr": lr, "hr": hr, "index": index}
        if self.landmarks is not None:
            from fsr_bench.train.identity import dihedral_points, face_affine

            pts = self.landmarks[index]
            if pts is not None:
                pts = dihedral_points(np.asarray(pts, dtype=np.float64) - [x, y], op, h, w)
            item["face_affine"] = torch.from_numpy(face_affine(pts))
        return item


class ValPairs(_Pairs):
    """(LR, HR) validation pairs: whole (mod-cropped) images; degradation seed fixed per index."""

    def __init__(self, hr_set: SizedDataset, scale: int, degradation=None, lr_folder=None, seed: int = 0):
        super().__init__(hr_set, scale, degradation, lr_folder)
        self.seed = int(seed)

    def __getitem__(self, index: int) -> dict[str, Any]:
        hr, name = self._hr(int(index))
        if self.lr_folder is not None:
            lr = self._read_lr(self.lr_folder, name, hr.shape)
        else:
            lr = self.degradation(hr, index=int(index), seed=self.seed)
        return {"lr": lr, "hr": hr, "index": int(index), "name": name}


def check_sizes(hr_set, patch: tuple[int, int] | None, scale: int, batch: int, where: str) -> tuple[int, int]:
    """Fail early (with names) on images smaller than the crop or whole images of mixed sizes.

    Reads image headers only. Returns the (H, W) of the first image.
    """
    if hasattr(hr_set, "image_size"):
        sizes = [tuple(hr_set.image_size(i)) for i in range(len(hr_set))]
        names = list(getattr(hr_set, "names", range(len(hr_set))))
    else:
        sizes = [tuple(hr_set[i]["hr"].shape[-2:]) for i in range(len(hr_set))]
        names = [hr_set[i].get("name", i) for i in range(len(hr_set))]
    if patch is not None:
        ph, pw = patch
        small = [(n, s) for n, s in zip(names, sizes) if s[0] < ph or s[1] < pw]
        if small:
            shown = ", ".join(f"{n} ({s[0]}x{s[1]})" for n, s in small[:3])
            raise ValueError(
                f"{len(small)} image(s) of {where} are smaller than data.patch_size {ph}x{pw} (HR px):"
                f" {shown}{' …' if len(small) > 3 else ''}. Lower data.patch_size, give the dataset an"
                " hr_size, or remove those images."
            )
    else:
        mod = {(h - h % scale, w - w % scale) for h, w in sizes}
        if min(min(m) for m in mod) < scale:
            raise ValueError(f"{where} has images smaller than the scale {scale}")
        if len(mod) > 1 and batch > 1:
            counts: dict[tuple[int, int], int] = {}
            for h, w in sizes:
                counts[(h, w)] = counts.get((h, w), 0) + 1
            common = ", ".join(f"{h}x{w}: {c}" for (h, w), c in sorted(counts.items(), key=lambda t: -t[1])[:4])
            raise ValueError(
                f"whole-image training needs one image size, but {where} mixes sizes ({common});"
                " set data.patch_size, or hr_size in the dataset block, or data.batch_size=1"
            )
    return sizes[0]


def as_patch(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
