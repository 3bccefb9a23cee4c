"""SCface (Grgic, Delac, Grgic, "SCface — surveillance cameras face database", MTAP 2011) as a
recognition set: HD frontal mugshots enrol, surveillance images probe.

Official layout (as distributed; the names Idiap's ``bob.db.scface`` parses)::

    ROOT/mugshot_frontal_cropped_all/NNN_frontal.JPG                 gallery, one per subject
    ROOT/surveillance_cameras_distance_D/camK/NNN_camK_D.jpg          probes

* ``NNN`` = subject 001–130; ``D`` = distance 1 (4.20 m, farthest), 2 (2.60 m), 3 (1.00 m, closest);
* ``K`` = camera: 1–5 visible-light (the default, as in bob's protocols and the TANet paper),
  6–7 the infrared night-vision captures at the same three distances (selectable with
  ``cameras: [6, 7]``). ``surveillance_cameras_IR_cam8/NNN_cam8.jpg`` are IR *mugshots*, not
  probes, and are not used. Camera folders named ``cam_K`` (seen in some copies) are accepted too;
  file suffixes are matched case-insensitively.
* Subject groups (bob.db.scface): ``world`` 1–43, ``dev`` 44–87, ``eval`` 88–130; ``all`` = the
  TANet paper's setting (all 130 subjects are test candidates). The bob protocols ``combined`` /
  ``close`` / ``medium`` / ``far`` are ``distances: [1,2,3]`` / ``[3]`` / ``[2]`` / ``[1]`` with
  cameras 1–5: dev = 44 enrolments + 660 probes (combined) or 220 (one distance), eval = 43 + 645
  or 215.

Layout validation: every expected gallery and probe file of the selected subjects, distances and
cameras must exist; all missing ones — together with any image in those folders whose name does
not follow the pattern (the usual cause of a "missing" file) — are listed in **one** error.

Probes (what :meth:`SCfaceSet.read_probe` returns):

* ``face_crop.enabled`` — for full surveillance frames: MTCNN finds the face (the most probable
  detection by default), the box is enlarged by ``enlarge`` and widened/narrowed to the LR aspect
  ratio (W:H = 21:28 for the paper's size), pixels outside the frame are edge-replicated. Boxes are
  cached on disk keyed by the file's sha256 and the crop settings, so a rerun never re-detects.
  A frame without a face is an error listing the files (``on_failure: error``) or a probe that
  counts as undetected in every row (``on_failure: undetected``) — never silently dropped.
* ``hr`` = the native face crop (or the image as stored when cropping is off): the "HR probes"
  reference; ``lr`` = ``hr`` resized to ``lr_size`` with MATLAB bicubic (antialiased) and rounded to
  8 bits — the paper's 21×28 LR face — or ``hr`` itself when ``lr_size`` is null.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from fsr_bench.atomic import sha256_file
from fsr_bench.data.identity_folders import (
    RECOGNITION_SETS,
    GalleryItem,
    ListedSet,
    ProbeImages,
    ProbeItem,
    header_problems,
    quantize,
)
from fsr_bench.data.io import IMAGE_SUFFIXES, FsrBenchDataError, read_image

if TYPE_CHECKING:
    from fsr_bench.face.detect import Selection  # the detector is imported only when cropping

__all__ = [
    "BOB_PROTOCOLS",
    "CAMERAS",
    "DISTANCES",
    "DISTANCE_METRES",
    "GALLERY_DIR",
    "IR_CAMERAS",
    "N_SUBJECTS",
    "SUBJECT_GROUPS",
    "VISIBLE_CAMERAS",
    "CalibrationSplit",
    "FaceCrop",
    "SCfaceLayoutError",
    "SCfaceSet",
    "bob_protocol",
    "calibration_split",
    "probe_dir",
    "subjects_of",
]

N_SUBJECTS = 130
DISTANCES: tuple[int, ...] = (1, 2, 3)
DISTANCE_METRES = {1: 4.20, 2: 2.60, 3: 1.00}
VISIBLE_CAMERAS: tuple[int, ...] = (1, 2, 3, 4, 5)
IR_CAMERAS: tuple[int, ...] = (6, 7)
CAMERAS = VISIBLE_CAMERAS + IR_CAMERAS
GALLERY_DIR = "mugshot_frontal_cropped_all"
SUBJECT_GROUPS: dict[str, tuple[int, int]] = {
    "all": (1, 130), "world": (1, 43), "dev": (44, 87), "eval": (88, 130),
}
#: bob.db.scface protocols: which distances a protocol's probes come from (cameras 1-5 always).
BOB_PROTOCOLS: dict[str, tuple[int, ...]] = {"combined": (1, 2, 3), "close": (3,), "medium": (2,), "far": (1,)}
_BOB_GROUPS = ("world", "dev", "eval")
_MAX_LISTED = 25
_GALLERY_RE = re.compile(r"^(\d{3})_frontal$", re.IGNORECASE)
_PROBE_RE = re.compile(r"^(\d{3})_cam(\d+)_(\d)$", re.IGNORECASE)


class SCfaceLayoutError(FsrBenchDataError):
    """The SCface folder does not hold the expected files; the message lists every problem."""


def probe_dir(distance: int) -> str:
    return f"surveillance_cameras_distance_{distance}"


def subjects_of(selection: str | Iterable[int]) -> list[int]:
    """Subject ids of a group name (``all``/``world``/``dev``/``eval``) or an explicit list."""
    if isinstance(selection, str):
        if selection not in SUBJECT_GROUPS:
            raise FsrBenchDataError(
                f"subjects: {selection!r} is not a group; use one of {', '.join(SUBJECT_GROUPS)} or a "
                "list of subject numbers 1-130"
            )
        lo, hi = SUBJECT_GROUPS[selection]
        return list(range(lo, hi + 1))
    ids = sorted({int(s) for s in selection})
    bad = [s for s in ids if not 1 <= s <= N_SUBJECTS]
    if not ids or bad:
        raise FsrBenchDataError(f"subjects must be numbers 1-{N_SUBJECTS}; got {list(selection)!r}")
    return ids


def bob_protocol(protocol: str, group: str) -> dict[str, Any]:
    """:class:`SCfaceSet` keyword arguments of a bob.db.scface protocol and subject group.

    ``protocol``: ``combined`` (distances 1-3), ``close`` (3, 1.00 m), ``medium`` (2, 2.60 m),
    ``far`` (1, 4.20 m); ``group``: ``world`` (subjects 1-43, bob's training group), ``dev``
    (44-87, for tuning thresholds), ``eval`` (88-130, for reporting). Visible cameras 1-5.
    """
    if protocol not in BOB_PROTOCOLS:
        raise FsrBenchDataError(f"SCface protocol {protocol!r} is not one of bob's: {', '.join(BOB_PROTOCOLS)}")
    if group not in _BOB_GROUPS:
        raise FsrBenchDataError(f"SCface group {group!r} is not one of bob's: {', '.join(_BOB_GROUPS)}")
    return {"subjects": group, "distances": list(BOB_PROTOCOLS[protocol]), "cameras": list(VISIBLE_CAMERAS)}


@dataclass(frozen=True)
class CalibrationSplit:
    """Which SCface subjects set the decision thresholds and which are reported on.

    ``calibration`` / ``evaluation`` are :class:`SCfaceSet` keyword arguments (add ``root``,
    ``face_crop``, ``lr_size`` …). Calibration scores are the calibration group's probes through
    the "HR probes" pipeline (native surveillance crop, no SR) against its mugshots — genuine =
    own mugshot, impostor = every other subject's — so with bob's ``combined`` dev group there are
    660 genuine and 660 × 43 = 28,380 impostor comparisons (FAR down to 1e-4 is measurable), with
    one distance 220 and 9,460 (1e-4 is not). The groups' subjects are disjoint by construction.
    """

    protocol: str
    calibration_group: str
    evaluation_group: str
    calibration: dict[str, Any]
    evaluation: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {
            "source": "bob.db.scface protocols (Idiap)",
            "protocol": self.protocol,
            "distances": list(BOB_PROTOCOLS[self.protocol]),
            "calibration_group": self.calibration_group,
            "calibration_subject_range": list(SUBJECT_GROUPS[self.calibration_group]),
            "evaluation_group": self.evaluation_group,
            "evaluation_subject_range": list(SUBJECT_GROUPS[self.evaluation_group]),
            "calibration_scores": "calibration probes at native resolution (no SR) vs calibration mugshots",
        }


def calibration_split(protocol: str = "combined", calibration: str = "dev", evaluation: str = "eval") -> CalibrationSplit:
    """bob's practice by default: thresholds on ``dev``, results on ``eval`` (``world`` may calibrate too)."""
    if calibration == evaluation:
        raise FsrBenchDataError(
            f"calibration and evaluation are both the {calibration!r} group; a threshold must be set on "
            "other subjects than it is tested on (bob: calibrate on dev, report on eval)"
        )
    return CalibrationSplit(protocol, calibration, evaluation,
                            bob_protocol(protocol, calibration), bob_protocol(protocol, evaluation))


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


# -- face cropping for full frames -----------------------------------------------------------------
@dataclass
class FaceCrop:
    """MTCNN face crops of full surveillance frames, with an on-disk box cache (see module doc)."""

    aspect_hw: tuple[int, int] = (28, 21)
    min_face_size: int = 12
    selection: Selection = "probability"
    enlarge: float = 1.3
    on_failure: str = "error"
    cache_dir: str | Path | None = None
    device: str = "cpu"
    _aligner: Any = field(default=None, init=False, repr=False)
    _boxes: dict[str, list[float] | None] = field(default_factory=dict, init=False, repr=False)
    _dirty: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.on_failure not in ("error", "undetected"):
            raise FsrBenchDataError(f"face_crop.on_failure must be 'error' or 'undetected', got {self.on_failure!r}")
        if not self.enlarge > 0:
            raise FsrBenchDataError(f"face_crop.enlarge must be > 0, got {self.enlarge!r}")
        if self.cache_file and self.cache_file.is_file():
            try:
                self._boxes = json.loads(self.cache_file.read_text())["boxes"]
            except (OSError, ValueError, KeyError):
                self._boxes = {}  # a damaged cache only costs a re-detection

    def settings(self) -> dict[str, Any]:
        return {"detector": "MTCNN (facenet-pytorch)", "min_face_size": self.min_face_size,
                "selection": self.selection, "enlarge": self.enlarge,
                "aspect_hw": list(self.aspect_hw), "on_failure": self.on_failure,
                "outside_frame": "edge-replicated"}

    @property
    def cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        from fsr_bench.provenance import stable_hash

        key = stable_hash({k: v for k, v in self.settings().items() if k != "on_failure"})[:16]
        return Path(self.cache_dir) / f"scface_face_boxes_{key}.json"

    def boxes(self, paths: Sequence[Path], progress: bool = False) -> dict[Path, list[float] | None]:
        """Face box (x1, y1, x2, y2) per file, or None where MTCNN found no face."""
        from fsr_bench.progress import progress_bar

        shas = {p: sha256_file(p) for p in paths}
        todo = [p for p in paths if shas[p] not in self._boxes]
        if todo:
            if self._aligner is None:
                from fsr_bench.face.detect import FaceAligner

                self._aligner = FaceAligner(min_face_size=self.min_face_size, selection=self.selection,
                                            batch_size=8, device=self.device)
            bar = progress_bar(total=len(todo), desc="SCface face crop (MTCNN)", unit="img", disable=not progress,
                       leave=False)
            for start in range(0, len(todo), 8):  # same-size frames go through MTCNN together
                chunk = todo[start : start + 8]
                found = self._aligner.align([read_image(p) for p in chunk])
                for i, p in enumerate(chunk):
                    self._boxes[shas[p]] = found.boxes[i].tolist() if bool(found.detected[i]) else None
                self._dirty = True
                self.save()  # progress survives an interrupted run
                bar.update(len(chunk))
            bar.close()
        return {p: self._boxes[shas[p]] for p in paths}

    def save(self) -> None:
        if self._dirty and self.cache_file is not None:
            from fsr_bench import atomic

            atomic.write_json(self.cache_file, {"settings": self.settings(), "boxes": self._boxes})
            self._dirty = False

    def crop(self, image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
        """Crop the enlarged box with the target aspect ratio, edge-replicating outside the frame."""
        x1, y1, x2, y2 = (float(v) for v in box)
        ah, aw = self.aspect_hw
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        h = max(y2 - y1, (x2 - x1) * ah / aw) * self.enlarge  # cover the box in both directions
        w = h * aw / ah
        top, left = int(round(cy - h / 2)), int(round(cx - w / 2))
        hh, ww = max(1, int(round(h))), max(1, int(round(w)))
        H, W = image.shape[-2:]
        pad = (max(0, -left), max(0, left + ww - W), max(0, -top), max(0, top + hh - H))
        if any(pad):
            image = F.pad(image[None], pad, mode="replicate")[0]
            top, left = top + pad[2], left + pad[0]
        return image[:, top : top + hh, left : left + ww]


# -- the adapter -----------------------------------------------------------------------------------
@dataclass
class SCfaceSet(ListedSet):
    """SCface gallery + probes for the selected subjects, distances and cameras (see module doc).

    Args:
        root: the folder holding ``mugshot_frontal_cropped_all/`` and the distance folders.
        subjects: ``"all"`` (the paper), ``"world"``, ``"dev"``, ``"eval"`` (bob groups) or a list.
        distances: any of 1, 2, 3.
        cameras: any of 1–7 (1–5 visible, 6–7 infrared).
        face_crop: ``None``/``{"enabled": False}`` or keyword arguments of :class:`FaceCrop`
            (``enabled``, ``min_face_size``, ``selection``, ``enlarge``, ``on_failure``).
        lr_size: ``(H, W)`` of the LR probe; ``None`` keeps the native crop.
        scale: the SR factor the protocol is for (models must match it).
        cache_dir: where face boxes are cached (the runner passes ``OUT/cache``).
    """

    root: Path  # a str is made a Path in __post_init__
    subjects: str | Sequence[int] = "all"
    distances: Sequence[int] = DISTANCES
    cameras: Sequence[int] = VISIBLE_CAMERAS
    face_crop: dict[str, Any] | None = None
    lr_size: tuple[int, int] | None = (28, 21)
    scale: int = 8
    name: str = "SCface"
    cache_dir: str | Path | None = None
    device: str = "cpu"
    progress: bool = False
    _gallery: list[GalleryItem] = field(init=False, repr=False)
    _probes: list[ProbeItem] = field(init=False, repr=False)
    _ignored: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.subject_ids = subjects_of(self.subjects)
        self.distances = self._check_list(self.distances, DISTANCES, "distances")
        self.cameras = self._check_list(self.cameras, CAMERAS, "cameras")
        if self.lr_size is not None:
            self.lr_size = (int(self.lr_size[0]), int(self.lr_size[1]))
        crop = dict(self.face_crop or {})
        enabled = bool(crop.pop("enabled", False))
        self.cropper: FaceCrop | None = None
        if enabled:
            aspect = self.lr_size or (28, 21)
            self.cropper = FaceCrop(aspect_hw=aspect, cache_dir=self.cache_dir, device=self.device, **crop)
        self._check_root()
        self._gallery, self._probes, self._ignored = self._scan()
        self._boxes: dict[Path, list[float] | None] = {}
        if self.cropper is not None:
            self._boxes = self.cropper.boxes([p.path for p in self._probes], progress=self.progress)
            failed = [p.path for p in self._probes if self._boxes[p.path] is None]
            if failed and self.cropper.on_failure == "error":
                shown = "\n  - ".join(str(p.relative_to(self.root)) for p in failed[:_MAX_LISTED])
                more = f"\n  … and {len(failed) - _MAX_LISTED} more" if len(failed) > _MAX_LISTED else ""
                raise SCfaceLayoutError(
                    f"face_crop: MTCNN found no face in {len(failed)} of {len(self._probes)} surveillance "
                    f"frames under {self.root}:\n  - {shown}{more}\nLower face_crop.min_face_size (>= 12), "
                    "or set face_crop.on_failure: undetected to count them as undetected probes."
                )

    @staticmethod
    def _check_list(values: Sequence[int], valid: Sequence[int], key: str) -> tuple[int, ...]:
        out = tuple(sorted({int(v) for v in values}))
        bad = [v for v in out if v not in valid]
        if not out or bad:
            raise FsrBenchDataError(f"{key} must be a non-empty subset of {list(valid)}; got {list(values)!r}")
        return out

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise SCfaceLayoutError(
                f"SCface root {self.root} does not exist. Point it at the folder holding {GALLERY_DIR}/ "
                "and surveillance_cameras_distance_1/ … (export FSR_BENCH_DATA so that "
                "$FSR_BENCH_DATA/SCface is that folder, or --set data.root=/path/to/SCface). SCface is "
                "licensed, not downloadable: request it from its authors at https://www.scface.org/"
            )
        if not (self.root / GALLERY_DIR).is_dir():
            nested = [p for p in self.root.iterdir() if p.is_dir() and (p / GALLERY_DIR).is_dir()]
            hint = f"; it is inside {nested[0]} — use that as the root" if nested else ""
            raise SCfaceLayoutError(f"{self.root} has no {GALLERY_DIR}/ folder{hint}")

    def _camera_dir(self, distance: int, camera: int) -> Path:
        base = self.root / probe_dir(distance)
        for name in (f"cam{camera}", f"cam_{camera}"):
            if (base / name).is_dir():
                return base / name
        return base / f"cam{camera}"

    def _scan(self) -> tuple[list[GalleryItem], list[ProbeItem], list[str]]:
        missing: list[str] = []
        misnamed: list[str] = []
        duplicates: list[str] = []
        ignored: list[str] = []
        wanted = set(self.subject_ids)

        def index(files: list[Path], parse: Callable[[str], tuple | None], folder: str) -> dict[tuple, Path]:
            found: dict[tuple, Path] = {}
            for f in files:
                key = parse(f.stem)
                if key is None:
                    misnamed.append(f"{folder}/{f.name}")
                elif key in found:
                    duplicates.append(f"{folder}/{f.name} and {found[key].name}")
                else:
                    found[key] = f
            return found

        gallery_files = index(
            _images_in(self.root / GALLERY_DIR),
            lambda s: (int(m.group(1)),) if (m := _GALLERY_RE.match(s)) else None, GALLERY_DIR)
        gallery = []
        for s in self.subject_ids:
            if (s,) in gallery_files:
                gallery.append(GalleryItem(f"{s:03d}", gallery_files[(s,)]))
            else:
                missing.append(f"{GALLERY_DIR}/{s:03d}_frontal.JPG")

        probes: list[ProbeItem] = []
        for d in self.distances:
            for k in self.cameras:
                folder = self._camera_dir(d, k)
                rel = folder.relative_to(self.root).as_posix()
                if not folder.is_dir():
                    missing.append(f"{rel}/ (the whole folder: {len(self.subject_ids)} images NNN_cam{k}_{d}.jpg)")
                    continue

                def parse(stem: str, d: int = d, k: int = k) -> tuple | None:
                    m = _PROBE_RE.match(stem)
                    if not m or int(m.group(2)) != k or int(m.group(3)) != d:
                        return None
                    return (int(m.group(1)),)

                files = index(_images_in(folder), parse, rel)
                for s in self.subject_ids:
                    f = files.get((s,))
                    if f is None:
                        missing.append(f"{rel}/{s:03d}_cam{k}_{d}.jpg")
                    else:
                        probes.append(ProbeItem(name=f.stem, subject=f"{s:03d}", path=f, index=len(probes),
                                                distance=f"d{d}", camera=f"cam{k}"))
                ignored += [f"{rel}/{p.name}" for key, p in files.items() if key[0] not in wanted]
        # every file the run will read, header-checked now: one error before the face crop's MTCNN
        unreadable = header_problems([g.path for g in gallery] + [p.path for p in probes])
        if missing or duplicates or unreadable:
            raise SCfaceLayoutError(self._layout_message(missing, misnamed, duplicates, unreadable))
        return gallery, probes, misnamed + ignored

    def _layout_message(self, missing: list[str], misnamed: list[str], duplicates: list[str],
                        unreadable: list[str]) -> str:
        def block(title: str, items: list[str]) -> str:
            if not items:
                return ""
            more = f"\n    … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            return f"\n  {title} ({len(items)}):\n    - " + "\n    - ".join(items[:_MAX_LISTED]) + more

        return (
            f"SCface layout problems under {self.root} (subjects {self.subjects!r}, distances "
            f"{list(self.distances)}, cameras {list(self.cameras)}):"
            + block("missing files", missing)
            + block("misnamed files: the name does not follow the pattern (renamed or misplaced?)", misnamed)
            + block("two files for one image (e.g. .jpg and .JPG)", duplicates)
            + block("unreadable images", unreadable)
            + "\nExpected the official layout: mugshot_frontal_cropped_all/NNN_frontal.JPG and "
            "surveillance_cameras_distance_D/camK/NNN_camK_D.jpg (NNN = 001-130). Restore the files, or "
            "narrow data.subjects / data.distances / data.cameras to what you have."
        )

    # -- RecognitionSet (gallery/probes/read_gallery from ListedSet) ---------------------------
    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        """``seed`` is unused: SCface probes are real, not synthesised."""
        image = read_image(item.path)
        if self.cropper is not None:
            box = self._boxes.get(item.path)
            if box is None:
                return ProbeImages(hr=None, lr=None)  # on_failure: undetected
            image = self.cropper.crop(image, box)
        if self.lr_size is None:
            return ProbeImages(hr=image, lr=quantize(image))
        from fsr_bench.data.resize import imresize

        return ProbeImages(hr=image, lr=quantize(imresize(image, size=self.lr_size)))

    def describe(self) -> dict[str, Any]:
        return {
            "type": "scface",
            "name": self.name,
            "root": str(self.root),
            "subjects": self.subjects if isinstance(self.subjects, str) else list(self.subject_ids),
            "n_subjects": len(self._gallery),
            "distances": [f"d{d} ({DISTANCE_METRES[d]:.2f} m)" for d in self.distances],
            "cameras": [f"cam{k} ({'IR' if k in IR_CAMERAS else 'visible'})" for k in self.cameras],
            "n_probes": len(self._probes),
            "gallery": f"{GALLERY_DIR}/NNN_frontal.* (HD frontal mugshot)",
            "face_crop": self.cropper.settings() if self.cropper else None,
            "n_face_crop_failures": sum(1 for b in self._boxes.values() if b is None) if self.cropper else 0,
            "ignored_files": len(self._ignored),
        }

    def describe_degradation(self) -> dict[str, Any]:
        return {
            "type": "real_surveillance",
            "note": "real low-resolution surveillance images; no synthetic degradation",
            "face_crop": bool(self.cropper),
            "lr_size": list(self.lr_size) if self.lr_size else None,
            "lr_resize": "MATLAB bicubic (antialiased), 8-bit rounding" if self.lr_size else None,
            "scale": self.scale,
        }


@RECOGNITION_SETS.register("scface")
def scface(block: Mapping[str, Any], *, cache_dir: Path | None = None, device: str = "cpu",
           progress: bool = False) -> SCfaceSet:
    """The official SCface layout; MTCNN face crops are cached in ``cache_dir`` on ``device``."""
    return SCfaceSet(root=block["root"], subjects=block["subjects"], distances=block["distances"],
                     cameras=block["cameras"], face_crop=block["face_crop"], lr_size=block["lr_size"],
                     scale=block["scale"], cache_dir=cache_dir, device=device, progress=progress)
