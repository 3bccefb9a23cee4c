"""Native low-resolution probes: a gallery root of HR enrolment images beside a probe root of real
LR face images, both ``root/<identity>/<image>``; no synthetic degradation.

Why this exists: :mod:`fsr_bench.data.identity_folders` makes every probe from an HR image by a
named degradation, so its numbers say how SR copes with *that* degradation. A practitioner's own
question — "does SR help on my camera's faces?" — needs the real LR faces as probes, with HR
enrolment images (mugshots, ID photos) as the gallery. That is this adapter (``data.type:
native_identity_folder``).

Conventions:

* **gallery**: one image per identity of ``gallery_root`` (``gallery_list``, or the first image in
  sorted order), read as stored — the same rule as identity folders. Gallery identities with no
  probe are enrolled as distractors (``distractors: true``, the default);
* **probes**: every image of ``probe_root/<identity>/`` (optionally a seeded draw of
  ``max_probes_per_identity``), read as stored, 8-bit; resized to ``lr_size`` with MATLAB bicubic
  when that is set (so a model of a fixed input size applies). A probe whose identity has no
  gallery image is an error (closed set): enrol it or leave it out with ``list_file``;
* **no "HR probes" row**: the probes are natively low resolution, no HR version of them exists, so
  the runner leaves that reference out and records why (``conventions.absent_references``);
  ``read_probe`` returns ``hr = None`` so nothing can use one by mistake;
* **calibration** (thresholds at target FARs on subjects disjoint from the evaluation subjects) is
  HR-vs-HR from the gallery side (:class:`GalleryCalibrationSet`): a calibration subject's first
  gallery-root image enrols it, its other gallery-root images are the genuine/impostor probes, all
  as stored (no crop, no degradation). Calibration subjects need two or more gallery images; their
  probe-root images are left out of the evaluation (counted in :meth:`describe`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fsr_bench.data.identity_folders import (
    RECOGNITION_SETS,
    GalleryItem,
    IdentityFolderSet,
    ListedSet,
    ProbeImages,
    ProbeItem,
    choose_gallery,
    group_by_identity,
    header_problems,
    native_lr_degradation,
    read_native_probe,
)
from fsr_bench.data.io import FsrBenchDataError, is_image_file, list_images, read_image, read_list_file

__all__ = ["ABSENT_HR_PROBES", "GalleryCalibrationSet", "NativeIdentityFolderSet"]

#: Why the "HR probes" reference row is not run on native LR probes (results.json and the report)
ABSENT_HR_PROBES = ("not run: the probes are natively low-resolution images, no HR version of them exists "
                    "(data.type native_identity_folder); the ceiling to read the rows against is the HR-vs-HR "
                    "calibration (conventions.calibration.per_recogniser.<recogniser>.tar) when calibrated")


def _listed_identities(list_file: str | Path | None) -> frozenset[str] | None:
    if list_file is None:
        return None
    entries = read_list_file(list_file)
    images = [e for e in entries if is_image_file(e)]
    if images:  # an image path names one root only; the two roots hold different files
        raise FsrBenchDataError(f"list file {list_file}: {images[0]} is an image path; native_identity_folder "
                                "list files name identities (folder names), one per line")
    if not entries:
        raise FsrBenchDataError(f"list file {list_file} has no entries (only blanks/comments)")
    return frozenset(entries)


@dataclass
class NativeIdentityFolderSet(ListedSet):
    """Gallery from ``gallery_root``, real LR probes from ``probe_root`` (see the module docstring).

    Args:
        gallery_root / probe_root: ``root/<identity>/<image>`` folders.
        scale: the SR factor the protocol's models must have (the probes are what they are).
        lr_size: ``(H, W)`` every probe is resized to (MATLAB bicubic, 8-bit); ``None`` keeps it.
        list_file: identities to use (folder names, one per line); default every identity.
        gallery_list: ``<identity>/<image>`` under ``gallery_root``, one per identity.
        max_identities / max_probes_per_identity / seed: seeded draws (identities with probes;
            probes of one identity), as :class:`~fsr_bench.data.identity_folders.IdentityFolderSet`.
        distractors: enrol the gallery identities that have no probe.
        exclude_identities: left out (the calibration subjects); their probes are counted.
    """

    gallery_root: Path
    probe_root: Path
    scale: int = 4
    lr_size: tuple[int, int] | None = None
    list_file: str | Path | None = None
    gallery_list: str | Path | None = None
    max_identities: int | None = None
    max_probes_per_identity: int | None = None
    seed: int = 0
    distractors: bool = True
    name: str | None = None
    exclude_identities: frozenset[str] = frozenset()
    _gallery: list[GalleryItem] = field(init=False, repr=False)
    _probes: list[ProbeItem] = field(init=False, repr=False)
    _counts: dict[str, int] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.gallery_root, self.probe_root = Path(self.gallery_root), Path(self.probe_root)
        self.name = self.name or self.probe_root.name
        listed = _listed_identities(self.list_file)
        gallery = group_by_identity(self.gallery_root, list_images(self.gallery_root))
        probes = group_by_identity(self.probe_root, list_images(self.probe_root))
        if listed is not None:
            missing = sorted(listed - set(gallery))
            if missing:
                raise FsrBenchDataError(f"list file {self.list_file}: {len(missing)} identit(ies) have no folder with "
                                        f"images under gallery_root {self.gallery_root}: {', '.join(missing[:10])}")
            gallery = {k: v for k, v in gallery.items() if k in listed}
            probes = {k: v for k, v in probes.items() if k in listed}
        left_out = {k: v for k, v in probes.items() if k in self.exclude_identities}
        gallery = {k: v for k, v in gallery.items() if k not in self.exclude_identities}
        probes = {k: v for k, v in probes.items() if k not in self.exclude_identities}
        unenrolled = sorted(set(probes) - set(gallery))
        if unenrolled:
            raise FsrBenchDataError(
                f"probe_root {self.probe_root}: {len(unenrolled)} identit(ies) have probes but no image under "
                f"gallery_root {self.gallery_root}: {', '.join(unenrolled[:10])}; enrol them (gallery_root/<identity>/) "
                "or leave them out with list_file")
        mated = sorted(probes)
        if not mated:
            raise FsrBenchDataError(f"probe_root {self.probe_root}: no probe of an identity in the gallery; the layout "
                                    "must be probe_root/<identity>/<image> with the gallery's folder names")
        if self.max_identities is not None and self.max_identities < len(mated):
            rng = np.random.default_rng(self.seed)  # the draw of IdentityFolderSet
            mated = sorted(rng.choice(mated, size=self.max_identities, replace=False).tolist())
        enrolled = mated + (sorted(set(gallery) - set(probes)) if self.distractors else [])
        chosen = choose_gallery(self.gallery_root, self.gallery_list, gallery, enrolled)
        self._gallery = [GalleryItem(i, chosen[i]) for i in sorted(enrolled)]
        self._probes = []
        for identity in mated:
            files = probes[identity]
            if self.max_probes_per_identity is not None and len(files) > self.max_probes_per_identity:
                rng = np.random.default_rng([self.seed, zlib.crc32(identity.encode())])
                keep = sorted(rng.choice(len(files), size=self.max_probes_per_identity, replace=False))
                files = [files[i] for i in keep]
            for p in files:
                rel = p.relative_to(self.probe_root).with_suffix("").as_posix()
                self._probes.append(ProbeItem(name=rel, subject=identity, path=p, index=len(self._probes)))
        self._counts = {"n_distractors": len(enrolled) - len(mated),
                        "calibration_subject_probes_left_out": sum(len(v) for v in left_out.values())}

    def check_files(self) -> None:
        """Every gallery and probe header read before any computing; all bad files in one error."""
        problems = header_problems([g.path for g in self._gallery] + [p.path for p in self._probes])
        if problems:
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise FsrBenchDataError(f"{len(problems)} unusable image(s):\n  - " + "\n  - ".join(problems[:10]) + more
                                    + "\nRemove them (or leave their identities out with list_file).")

    # -- RecognitionSet (gallery/probes/read_gallery from ListedSet) ---------------------------
    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        return ProbeImages(hr=None, lr=read_native_probe(item.path, self.lr_size).lr)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "native_identity_folder",
            "name": self.name,
            "gallery_root": str(self.gallery_root),
            "probe_root": str(self.probe_root),
            "list_file": str(self.list_file) if self.list_file else None,
            "gallery": "gallery_list" if self.gallery_list else "first image of each identity (sorted)",
            "gallery_list": str(self.gallery_list) if self.gallery_list else None,
            "n_subjects": len(self._gallery) - self._counts["n_distractors"],
            "n_probes": len(self._probes),
            "max_identities": self.max_identities,
            "max_probes_per_identity": self.max_probes_per_identity,
            "selection_seed": self.seed,
            **self._counts,
        }

    def describe_degradation(self) -> dict[str, Any]:
        return native_lr_degradation("native_lr", "real low-resolution probes as stored; no synthetic degradation, "
                                     "no HR version exists", self.lr_size, self.scale)


class GalleryCalibrationSet(IdentityFolderSet):
    """HR-vs-HR calibration from ``gallery_root``: the calibration subjects' first gallery image
    enrols them, their other gallery images are the probes, read as stored (no crop, no degradation)."""

    def check_files(self) -> None:
        problems = header_problems([g.path for g in self._gallery] + [p.path for p in self._probes])
        if problems:
            raise FsrBenchDataError(f"{len(problems)} unusable calibration image(s) in {self.root}:\n  - "
                                    + "\n  - ".join(problems[:10]))

    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        return ProbeImages(hr=read_image(item.path), lr=None)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "type": "native_identity_folder/gallery_calibration"}

    def describe_degradation(self) -> dict[str, Any]:
        return {"type": "none", "note": "HR-vs-HR: gallery_root images of the calibration subjects, as stored"}


@RECOGNITION_SETS.register("native_identity_folder")
def native_identity_folder(block: Mapping[str, Any], *, cache_dir: Path | None = None, device: str = "cpu",
                           progress: bool = False) -> NativeIdentityFolderSet | GalleryCalibrationSet:
    """Real LR probes beside HR enrolment images; ``role: calibration`` (set by the runner's
    calibration split) builds the HR-vs-HR calibration set of the gallery side instead."""
    dataset: NativeIdentityFolderSet | GalleryCalibrationSet
    if block.get("role") == "calibration":
        include = block.get("include_identities")
        dataset = GalleryCalibrationSet(
            root=block["gallery_root"], list_file=block.get("list_file"), max_identities=block.get("max_identities"),
            max_probes_per_identity=block.get("max_probes_per_identity"), seed=block.get("seed", 0),
            name=f"{block.get('name') or Path(block['gallery_root']).name} (calibration)",
            include_identities=None if include is None else frozenset(include))
    else:
        lr_size = block.get("lr_size")
        dataset = NativeIdentityFolderSet(
            gallery_root=block["gallery_root"], probe_root=block["probe_root"], scale=int(block.get("scale", 4)),
            lr_size=None if lr_size is None else (int(lr_size[0]), int(lr_size[1])),
            list_file=block.get("list_file"), gallery_list=block.get("gallery_list"),
            max_identities=block.get("max_identities"), max_probes_per_identity=block.get("max_probes_per_identity"),
            seed=block.get("seed", 0), distractors=bool(block.get("distractors", True)), name=block.get("name"),
            exclude_identities=frozenset(block.get("exclude_identities") or ()))
    dataset.check_files()
    return dataset
