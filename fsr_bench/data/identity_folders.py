"""Recognition sets from any ``root/<identity>/<image>`` folder: one gallery face per identity, the
other images become surveillance-like probes through a named, seeded degradation.

Why this exists: SCface (the TANet paper's recognition test set) is licensed and cannot be
downloaded freely, so anyone without it can still run the same protocol — detector, recogniser,
metrics, references — on LFW or any identity-folder set, with the LR probes made to look like the
paper's ``21×28`` surveillance faces.

Shared vocabulary of both recognition adapters (this module and :mod:`fsr_bench.data.scface`):

* :class:`GalleryItem` — one enrolment image per subject (the HD face);
* :class:`ProbeItem` — one probe image with its subject, distance and camera labels (identity
  folders have neither, both are ``"all"``); ``index`` is its position in the full probe list and
  seeds its degradation, so a probe's LR never depends on batching or on ``run.limit``;
* :class:`ProbeImages` — what :meth:`read_probe` returns: ``hr`` (the probe's face region at the
  native resolution of the dataset, no degradation, no SR — the "HR probes" reference) and ``lr``
  (the LR probe given to the super-resolvers and to the "LR image" reference). Both adapters give
  ``hr`` the same framing as ``lr`` (identity folders: the centre crop; SCface: the face crop), so
  the HR row differs from an SR row only by the resolution lost and recovered.

Probe degradation (:class:`FaceProbeDegradation`), in order:

1. centre crop ``crop = (H, W)`` source pixels — the face region (``None``: the largest centre
   crop with the LR aspect ratio). For LFW deep-funneled (250×250) MTCNN face boxes are ≈125 px
   tall and centred, so ``crop: [160, 120]`` keeps the face at ≈80 % of the crop height;
2. MATLAB-bicubic resize of that crop to ``lr_size × scale`` (the size of the SR output, e.g.
   224×168 for ×8), rounded to 8 bits — the "HR face" the LR is made from;
3. any :mod:`fsr_bench.data.degradations` degradation with that ``scale`` (``bicubic`` or
   ``surveillance`` = blur, noise, JPEG), seeded by ``(run.seed, probe index)`` → LR of ``lr_size``.

The preset ``tanet_21x28_x8`` (the default) is the paper's setting: ``lr_size = (28, 21)`` (H, W),
MATLAB-bicubic ×8 downscaling, so ×8 SR returns 224×168 images to the detector.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from fsr_bench.data.io import FsrBenchDataError, list_images, read_image, read_list_file, to_uint8
from fsr_bench.registry import Registry

__all__ = [
    "RECOGNITION_SETS",
    "PROBE_PRESETS",
    "FaceProbeDegradation",
    "GalleryItem",
    "IdentityFolderSet",
    "ProbeImages",
    "ProbeItem",
    "RecognitionSet",
    "build_probe_degradation",
    "choose_gallery",
    "group_by_identity",
    "header_problems",
    "quantize",
    "split_identities",
]

#: Named probe degradations. ``tanet_21x28_x8``: the TANet paper's SCface setting (21×28 LR face,
#: ×8 super-resolution to 168×224).
PROBE_PRESETS: dict[str, dict[str, Any]] = {
    "tanet_21x28_x8": {"lr_size": (28, 21), "degradation": {"type": "bicubic", "scale": 8}},
}


# -- shared recognition-set vocabulary -------------------------------------------------------------
@dataclass(frozen=True)
class GalleryItem:
    """The enrolment image of one subject."""

    subject: str
    path: Path


@dataclass(frozen=True)
class ProbeItem:
    """One probe. ``name`` is unique within the set (used in per_probe.csv and sample folders)."""

    name: str
    subject: str
    path: Path
    index: int  # position in the full probe list; seeds the degradation
    distance: str = "all"  # "d1" | "d2" | "d3" for SCface
    camera: str = "all"  # "cam1" … for SCface


@dataclass
class ProbeImages:
    """A probe read from disk: ``hr`` for the "HR probes" reference, ``lr`` for SR and "LR image".

    ``lr`` is ``None`` when the probe could not be made (an SCface full frame where no face was
    found for cropping and ``on_failure: undetected``); such a probe counts as not detected in
    every row, never dropped.
    """

    hr: torch.Tensor | None  # (3, H, W) float [0, 1]
    lr: torch.Tensor | None  # (3, h, w) float [0, 1], 8-bit values


@runtime_checkable
class RecognitionSet(Protocol):
    """What :func:`fsr_bench.run.recognition.run_recognition` needs from a dataset adapter."""

    name: str
    scale: int  # the SR factor the set's LR probes are made for

    @property
    def gallery(self) -> list[GalleryItem]: ...

    @property
    def probes(self) -> list[ProbeItem]: ...

    def read_gallery(self, item: GalleryItem) -> torch.Tensor: ...

    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages: ...

    def describe(self) -> dict[str, Any]: ...

    def describe_degradation(self) -> dict[str, Any] | None: ...


class ListedSet:
    """The accessors every adapter shares: subclasses fill ``_gallery`` and ``_probes``."""

    _gallery: list[GalleryItem]
    _probes: list[ProbeItem]

    @property
    def gallery(self) -> list[GalleryItem]:
        return list(self._gallery)

    @property
    def probes(self) -> list[ProbeItem]:
        return list(self._probes)

    def read_gallery(self, item: GalleryItem) -> torch.Tensor:
        return read_image(item.path)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit round trip of a saved PNG (fsr_bench's single convention, ``to_uint8``)."""
    return to_uint8(x).to(torch.float32) / 255.0


def read_native_probe(path: Path, lr_size: tuple[int, int] | None) -> ProbeImages:
    """A real low-resolution probe (TinyFace, SurvFace): the file is both "HR" and, resized to
    ``lr_size`` with MATLAB bicubic when set, the LR input; 8-bit as a decoded image is."""
    image = read_image(path)
    if lr_size is None:
        return ProbeImages(hr=image, lr=quantize(image))
    from fsr_bench.data.resize import imresize

    return ProbeImages(hr=image, lr=quantize(imresize(image, size=lr_size)))


def header_problems(paths: Sequence[Path], check: Callable[[Path, int, int], object] | None = None) -> list[str]:
    """``"<file>: <reason>"`` for every file in ``paths`` whose image header cannot be read (or that
    ``check(path, h, w)`` refuses with an FsrBenchDataError), so an adapter can list every bad input
    in one error before any detector or model runs. Only the header is read (cheap on 100k files);
    a file whose pixel data is truncated still fails later, when it is decoded, naming the file."""
    from PIL import Image

    problems: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                w, h = img.size
            if check is not None:
                check(path, h, w)
        except FsrBenchDataError as exc:
            problems.append(str(exc))
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
        except Exception as exc:  # not an image, permission denied, a folder, ...
            problems.append(f"{path}: cannot read the image header ({type(exc).__name__}: {exc})")
    return problems


def native_lr_degradation(kind: str, note: str, lr_size: tuple[int, int] | None, scale: int) -> dict[str, Any]:
    """``describe_degradation`` of a set whose probes are natively low resolution."""
    return {
        "type": kind,
        "note": note,
        "lr_size": list(lr_size) if lr_size else None,
        "lr_resize": "MATLAB bicubic (antialiased), 8-bit rounding" if lr_size else None,
        "scale": scale,
    }


def _size(value: Any, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise FsrBenchDataError(f"{key} must be [H, W] with positive integers, got {value!r}")
    return int(value[0]), int(value[1])


# -- the probe degradation -------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceProbeDegradation:
    """Face region → HR face at the SR output size → named degradation → LR of ``lr_size``.

    See the module docstring. ``degradation`` is a built :mod:`fsr_bench.data.degradations`
    object whose ``scale`` is the SR factor.
    """

    lr_size: tuple[int, int]
    degradation: Any
    crop: tuple[int, int] | None = None
    preset: str | None = None

    @property
    def scale(self) -> int:
        return int(self.degradation.scale)

    @property
    def hr_face_size(self) -> tuple[int, int]:
        return self.lr_size[0] * self.scale, self.lr_size[1] * self.scale

    def describe(self) -> dict[str, Any]:
        return {
            "type": "face_probe",
            "preset": self.preset,
            "crop": list(self.crop) if self.crop else None,
            "crop_rule": "centre crop (H, W) of the source image" if self.crop
            else "largest centre crop with the LR aspect ratio",
            "lr_size": list(self.lr_size),
            "hr_face_size": list(self.hr_face_size),
            "hr_face_resize": "MATLAB bicubic (antialiased), 8-bit rounding",
            "scale": self.scale,
            "degradation": self.degradation.describe(),
        }

    def _crop_box(self, h: int, w: int, source: str) -> tuple[int, int, int, int]:
        if self.crop is not None:
            ch, cw = self.crop
            if ch > h or cw > w:
                raise FsrBenchDataError(
                    f"{source}: image is {h}x{w} (HxW) but probe_degradation.crop is {ch}x{cw}; "
                    "use a smaller crop (or null for the largest centre crop)"
                )
        else:
            lh, lw = self.lr_size
            ch, cw = (h, max(1, round(h * lw / lh))) if h * lw <= w * lh else (max(1, round(w * lh / lw)), w)
            if ch < lh or cw < lw:  # the "HR" probe would be an upsampled speck
                raise FsrBenchDataError(
                    f"{source}: image is {h}x{w} (HxW), smaller than the LR probe "
                    f"(probe_degradation.lr_size {lh}x{lw}), so crop: null cannot make an HR face of it; "
                    "remove the file from the set (or its list file)"
                )
        top, left = (h - ch) // 2, (w - cw) // 2
        return top, left, ch, cw

    def __call__(self, image: torch.Tensor, index: int, seed: int, source: str = "image"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(3, H, W)`` source → (native face crop, HR face ``(3, lr_h·s, lr_w·s)``, LR ``(3, lr_h, lr_w)``)."""
        from fsr_bench.data.resize import imresize

        top, left, ch, cw = self._crop_box(int(image.shape[-2]), int(image.shape[-1]), source)
        face = image[:, top : top + ch, left : left + cw]
        hr_face = quantize(imresize(face, size=self.hr_face_size))  # (3, lr_h*s, lr_w*s)
        lr = self.degradation(hr_face, index=index, seed=seed)  # (3, lr_h, lr_w)
        if tuple(lr.shape[-2:]) != self.lr_size:  # a degradation with another scale slipped in
            raise FsrBenchDataError(
                f"probe degradation produced {tuple(lr.shape[-2:])}, expected lr_size {self.lr_size}"
            )
        return face, hr_face, lr


def build_probe_degradation(spec: Mapping[str, Any] | FaceProbeDegradation | None) -> FaceProbeDegradation:
    """Build from ``{preset, crop, lr_size, degradation}``; unset keys come from the preset.

    ``None`` or ``{}`` is the default preset ``tanet_21x28_x8``. ``preset: null`` requires both
    ``lr_size`` and ``degradation``.
    """
    from fsr_bench.data.degradations import build_degradation

    if isinstance(spec, FaceProbeDegradation):
        return spec
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"preset", "crop", "lr_size", "degradation"})
    if unknown:
        raise FsrBenchDataError(
            f"probe_degradation: unknown key(s) {', '.join(unknown)}; valid: preset, crop, lr_size, "
            "degradation"
        )
    preset = spec.get("preset", "tanet_21x28_x8")
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PROBE_PRESETS:
            raise FsrBenchDataError(
                f"probe_degradation.preset {preset!r} is unknown; valid: {', '.join(PROBE_PRESETS)} "
                "(or null with explicit lr_size and degradation)"
            )
        base = dict(PROBE_PRESETS[preset])
    lr_size = _size(spec.get("lr_size") or base.get("lr_size"), "probe_degradation.lr_size")
    deg_spec = spec.get("degradation") or base.get("degradation")
    if lr_size is None or deg_spec is None:
        raise FsrBenchDataError(
            "probe_degradation needs lr_size and degradation (or a preset such as tanet_21x28_x8)"
        )
    return FaceProbeDegradation(
        lr_size=lr_size,
        degradation=build_degradation(deg_spec),
        crop=_size(spec.get("crop"), "probe_degradation.crop"),
        preset=preset,
    )


# -- the layout root/<identity>/<image> (shared with fsr_bench.data.native_folders) -------------------
def group_by_identity(root: Path, images: list[Path]) -> dict[str, list[Path]]:
    """``images`` under ``root`` by identity folder (sorted); images directly in ``root`` and no
    identity folder at all is an error (a flat folder is not an identity set)."""
    groups: dict[str, list[Path]] = {}
    flat = []
    for p in images:
        parts = p.relative_to(root).parts
        if len(parts) < 2:
            flat.append(p.name)
            continue
        groups.setdefault(parts[0], []).append(p)
    if flat and not groups:
        raise FsrBenchDataError(
            f"{root} holds images directly ({', '.join(flat[:3])}, …) but no identity "
            "sub-folders; the layout must be root/<identity>/<image>"
        )
    return {k: sorted(v) for k, v in groups.items()}


def choose_gallery(root: Path, gallery_list: str | Path | None, by_identity: dict[str, list[Path]],
                   identities: list[str]) -> dict[str, Path]:
    """The enrolment image of each of ``identities``: ``gallery_list`` (``<identity>/<image>`` under
    ``root``, one per identity; every problem listed in one error) or the first image, sorted."""
    if gallery_list is None:
        return {i: by_identity[i][0] for i in identities}
    chosen: dict[str, Path] = {}
    problems: list[str] = []
    for entry in read_list_file(gallery_list):
        path = root / entry
        identity = Path(entry).parts[0]
        if not path.is_file():
            problems.append(f"{entry} (no such image under {root})")
        elif identity in chosen:
            problems.append(f"{entry} (a second gallery image for {identity})")
        else:
            chosen[identity] = path
    missing = [i for i in identities if i not in chosen]
    problems += [f"{i} (no gallery entry)" for i in missing[:20]]
    if len(missing) > 20:
        problems.append(f"… and {len(missing) - 20} more identities without a gallery entry")
    if problems:
        raise FsrBenchDataError(
            f"gallery_list {gallery_list}: {len(problems)} problem(s):\n  - "
            + "\n  - ".join(problems)
            + "\nEach line must be <identity>/<image> relative to the root, one per identity."
        )
    return {i: chosen[i] for i in identities}


# -- the adapter -----------------------------------------------------------------------------------
@dataclass
class IdentityFolderSet(ListedSet):
    """Gallery + degraded probes from ``root/<identity>/<image>``.

    Args:
        root: dataset folder with one sub-folder per identity.
        list_file: identities (or relative image paths) to use, one per line; default all.
        gallery_list: relative image paths, one per identity, that enrol it; default the first
            image of each identity in sorted order.
        max_identities: use at most this many identities, drawn with ``seed`` (then sorted), so a
            small development run is still a fair sample rather than the alphabet's first names.
        max_probes_per_identity: at most this many probes per identity, drawn with ``seed``
            (LFW's Colin Powell alone has 236 images).
        seed: seeds both draws; independent of ``run.seed``, which seeds the degradation.
        probe_degradation: see :func:`build_probe_degradation`.
        name: dataset name recorded in results (default: the root folder's name).
        unmated_identities: for open-set identification, this many of the identities (drawn with
            ``seed``, a draw of its own) are **not enrolled**: all their images become unmated
            probes. ``None``: closed set, every probe's subject is enrolled.
        single_image_distractors: enrol the identities with a single image (which cannot give a
            probe) as distractors — gallery subjects no probe belongs to, as TinyFace's
            Gallery_Distractor and NIST FRVT's large galleries.
        include_identities / exclude_identities: keep only / leave out these identities (before
            every draw) — how a protocol separates calibration and evaluation subjects
            (:func:`split_identities`).

    Identities with a single image cannot give a probe and are otherwise left out (counted in
    :meth:`describe`).
    """

    root: Path  # a str is made a Path in __post_init__
    list_file: str | Path | None = None
    gallery_list: str | Path | None = None
    max_identities: int | None = None
    max_probes_per_identity: int | None = None
    seed: int = 0
    probe_degradation: Any = None
    name: str | None = None
    unmated_identities: int | None = None
    single_image_distractors: bool = False
    include_identities: frozenset[str] | None = None
    exclude_identities: frozenset[str] = frozenset()
    _gallery: list[GalleryItem] = field(init=False, repr=False)
    _probes: list[ProbeItem] = field(init=False, repr=False)
    _n_single: int = field(init=False, repr=False, default=0)
    _unmated: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.name = self.name or self.root.name
        for key in ("max_identities", "max_probes_per_identity", "unmated_identities"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise FsrBenchDataError(f"{key} must be a positive integer or null, got {value!r}")
        self.degradation = build_probe_degradation(self.probe_degradation)
        self.scale = self.degradation.scale
        by_identity = group_by_identity(self.root, list_images(self.root, self.list_file))
        if self.include_identities is not None:
            by_identity = {k: v for k, v in by_identity.items() if k in self.include_identities}
        by_identity = {k: v for k, v in by_identity.items() if k not in self.exclude_identities}
        self._n_single = sum(1 for imgs in by_identity.values() if len(imgs) < 2)
        eligible = sorted(k for k, imgs in by_identity.items() if len(imgs) >= 2)
        if not eligible:
            raise FsrBenchDataError(
                f"{self.root}: no identity folder holds two or more images, so there is no probe "
                "to test; the layout must be root/<identity>/<image>"
            )
        if self.max_identities is not None and self.max_identities < len(eligible):
            rng = np.random.default_rng(self.seed)
            eligible = sorted(rng.choice(eligible, size=self.max_identities, replace=False).tolist())
        if self.unmated_identities is not None:
            if self.unmated_identities >= len(eligible):
                raise FsrBenchDataError(
                    f"unmated_identities = {self.unmated_identities} leaves none of the {len(eligible)} "
                    "identities with probes enrolled; use fewer"
                )
            rng = np.random.default_rng([self.seed, 0x756E6D61])  # independent of the other draws
            self._unmated = frozenset(rng.choice(eligible, size=self.unmated_identities, replace=False).tolist())
        enrol = choose_gallery(self.root, self.gallery_list, by_identity, [i for i in eligible if i not in self._unmated])
        self._gallery, self._probes = [], []
        for identity in eligible:
            g = enrol.get(identity)  # None: not enrolled, every image probes
            if g is not None:
                self._gallery.append(GalleryItem(identity, g))
            rest = [p for p in by_identity[identity] if p != g]
            if self.max_probes_per_identity is not None and len(rest) > self.max_probes_per_identity:
                rng = np.random.default_rng([self.seed, zlib.crc32(identity.encode())])
                keep = sorted(rng.choice(len(rest), size=self.max_probes_per_identity, replace=False))
                rest = [rest[i] for i in keep]
            for p in rest:
                rel = p.relative_to(self.root).with_suffix("").as_posix()
                self._probes.append(ProbeItem(name=rel, subject=identity, path=p, index=len(self._probes)))
        if self.single_image_distractors:
            self._gallery += [GalleryItem(k, imgs[0]) for k, imgs in sorted(by_identity.items()) if len(imgs) == 1]

    def check_files(self) -> None:
        """Read every gallery and probe file's header before any computing: a bad file is reported
        (all of them, at once) before the detector and the models spend minutes on the others."""
        problems = header_problems([g.path for g in self._gallery])
        problems += header_problems([p.path for p in self._probes],
                                    lambda path, h, w: self.degradation._crop_box(h, w, str(path)))
        if problems:
            shown = problems[:10]
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise FsrBenchDataError(f"{len(problems)} unusable image(s) in {self.root}:\n  - " + "\n  - ".join(shown)
                                    + more + "\nRemove them (or leave them out with list_file / gallery_list).")

    # -- RecognitionSet (gallery/probes/read_gallery from ListedSet) ---------------------------
    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        face, _, lr = self.degradation(read_image(item.path), index=item.index, seed=seed, source=str(item.path))
        return ProbeImages(hr=face, lr=lr)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "identity_folder",
            "name": self.name,
            "root": str(self.root),
            "list_file": str(self.list_file) if self.list_file else None,
            "gallery": "gallery_list" if self.gallery_list else "first image of each identity (sorted)",
            "gallery_list": str(self.gallery_list) if self.gallery_list else None,
            "n_subjects": len(self._gallery) - (self._n_single if self.single_image_distractors else 0),
            "n_probes": len(self._probes),
            "max_identities": self.max_identities,
            "max_probes_per_identity": self.max_probes_per_identity,
            "selection_seed": self.seed,
            "single_image_identities_left_out": 0 if self.single_image_distractors else self._n_single,
            "n_distractors": self._n_single if self.single_image_distractors else 0,
            "n_unmated_identities": len(self._unmated),
            "n_unmated_probes": sum(1 for p in self._probes if p.subject in self._unmated),
        }

    def describe_degradation(self) -> dict[str, Any]:
        return self.degradation.describe()


def split_identities(root: str | Path, list_file: str | Path | None, fraction: float, seed: int
                     ) -> tuple[frozenset[str], frozenset[str]]:
    """Deterministic seeded split of a set's identities into (calibration, evaluation).

    Rule: the identity folders holding at least one listed image, sorted by name, permuted with
    ``numpy.random.default_rng([seed, 0x63616C])``; the first ``round(fraction * n)`` calibrate,
    the rest are evaluated. Disjoint by construction, and the same on every machine.
    """
    if not 0.0 < fraction < 1.0:
        raise FsrBenchDataError(f"calibration.fraction must be in (0, 1), got {fraction!r}")
    root = Path(root)
    names = sorted({p.relative_to(root).parts[0] for p in list_images(root, list_file)
                    if len(p.relative_to(root).parts) >= 2})
    n_cal = round(fraction * len(names))
    if n_cal < 1 or n_cal >= len(names):
        raise FsrBenchDataError(
            f"calibration.fraction = {fraction} of {len(names)} identities leaves an empty calibration or "
            "evaluation part; use more identities or another fraction"
        )
    order = np.random.default_rng([seed, 0x63616C]).permutation(len(names))
    cal = frozenset(names[i] for i in order[:n_cal])
    return cal, frozenset(names) - cal


# -- the adapter registry --------------------------------------------------------------------------
#: A recognition protocol's ``data.type`` -> ``builder(block: dict, *, cache_dir, device, progress)``
#: returning a :class:`RecognitionSet`. Plug-ins: entry-point group ``fsr_bench.recognition_sets``.
RECOGNITION_SETS: Registry[Any] = Registry("recognition set", "fsr_bench.recognition_sets",
                                           builtin_modules=("fsr_bench.data.scface", "fsr_bench.data.tinyface",
                                                            "fsr_bench.data.survface",
                                                            "fsr_bench.data.native_folders"))


@RECOGNITION_SETS.register("identity_folder")
def identity_folder(block: Mapping[str, Any], *, cache_dir: Path | None = None, device: str = "cpu",
                    progress: bool = False) -> IdentityFolderSet:
    """Any ``root/<identity>/<image>`` set (no cache or device needed); every file is checked first."""
    dataset = IdentityFolderSet(root=block["root"], list_file=block.get("list_file"),
                             gallery_list=block.get("gallery_list"), max_identities=block.get("max_identities"),
                             max_probes_per_identity=block.get("max_probes_per_identity"),
                             seed=block.get("seed", 0), probe_degradation=block.get("probe_degradation"),
                             name=block.get("name"), unmated_identities=block.get("unmated_identities"),
                             single_image_distractors=bool(block.get("single_image_distractors", False)),
                             include_identities=_identities(block.get("include_identities")),
                             exclude_identities=_identities(block.get("exclude_identities")) or frozenset())
    dataset.check_files()
    return dataset


def _identities(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(str(v) for v in value)
