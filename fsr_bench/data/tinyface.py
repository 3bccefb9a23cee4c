"""TinyFace (Cheng, Zhu, Gong, "Low-Resolution Face Recognition", ACCV 2018) as a recognition set:
native low-resolution faces (≈ 20×16 px on average), closed-set 1:N identification with a large
distractor gallery. Download: https://qmul-tinyface.github.io/ (``tinyface.zip``).

Official layout (what the release unpacks to; the names its evaluation code reads)::

    ROOT/Testing_Set/Gallery_Match/<subjectid>_<n>.jpg     enrolled faces (4,443 images)
    ROOT/Testing_Set/Probe/<subjectid>_<n>.jpg             probes (3,728), every subject enrolled
    ROOT/Testing_Set/Gallery_Distractor/*.jpg              153,428 faces of people in no probe
    ROOT/Testing_Set/gallery_match_img_ID_pairs.mat        gallery_set (names), gallery_ids
    ROOT/Testing_Set/probe_img_ID_pairs.mat                probe_set (names), probe_ids

The subject of a Gallery_Match or Probe image is the number before the first ``_`` of its name
(the convention of the release's evaluation code). Where the ``.mat`` lists are present they are
the protocol: every listed file must exist, every image in the folder must be listed, and each
listed label must equal the file-name prefix — a disagreement is a damaged copy and an error.
Without them the folders are read by the naming rule (some re-distributed copies drop the lists).

Protocol (the TinyFace paper): closed-set identification, rank-1/5/20 (CMC) of every probe
against Gallery_Match ∪ Gallery_Distractor. Distractors are unknown people; each one is its own
gallery identity (``distractor/<name>``), so each takes one rank position, as the label ``-100``
does in the release's code. ``distractors: false`` leaves them out; ``max_distractors`` draws a
seeded subset for development runs (record it: rank-k falls as the gallery grows).

TinyFace has no HR version of its faces. ``read_probe`` returns the native face as ``hr`` (so the
"HR probes" reference row is the native LR face given to the detector unchanged) and as ``lr``,
resized with MATLAB bicubic to ``lr_size`` when that is set (e.g. the paper's 21×28 so ×8 models
apply), 8-bit rounded as everywhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fsr_bench.data.identity_folders import (
    RECOGNITION_SETS,
    GalleryItem,
    ListedSet,
    ProbeImages,
    ProbeItem,
    header_problems,
    native_lr_degradation,
    read_native_probe,
)
from fsr_bench.data.io import IMAGE_SUFFIXES, FsrBenchDataError
from fsr_bench.data.matlists import load_mat, mat_ints, mat_strings

__all__ = [
    "DISTRACTOR_DIR",
    "DOWNLOAD_URL",
    "GALLERY_DIR",
    "PROBE_DIR",
    "TESTING_DIR",
    "TinyFaceLayoutError",
    "TinyFaceSet",
    "subject_of",
]

DOWNLOAD_URL = "https://qmul-tinyface.github.io/"
TESTING_DIR = "Testing_Set"
GALLERY_DIR = "Gallery_Match"
PROBE_DIR = "Probe"
DISTRACTOR_DIR = "Gallery_Distractor"
#: (folder, .mat file, names key, labels key) of the two labelled roles
_LISTS = {
    GALLERY_DIR: ("gallery_match_img_ID_pairs.mat", "gallery_set", "gallery_ids"),
    PROBE_DIR: ("probe_img_ID_pairs.mat", "probe_set", "probe_ids"),
}
_NAME_RE = re.compile(r"^(\d+)_[^/]+$")
_MAX_LISTED = 25


class TinyFaceLayoutError(FsrBenchDataError):
    """The TinyFace folder does not hold the expected files; the message lists every problem."""


def subject_of(stem: str) -> str | None:
    """``"123_4"`` → ``"123"`` (the TinyFace naming rule); ``None`` if the name does not follow it."""
    m = _NAME_RE.match(stem)
    return str(int(m.group(1))) if m else None


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _block(title: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f"\n    … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {title} ({len(items)}):\n    - " + "\n    - ".join(items[:_MAX_LISTED]) + more


@dataclass
class TinyFaceSet(ListedSet):
    """TinyFace gallery (+ distractors) and probes (see module doc).

    Args:
        root: the folder holding ``Testing_Set/``.
        distractors: add Gallery_Distractor to the gallery (the official protocol).
        max_distractors: at most this many distractors, drawn with ``seed`` (then sorted).
        lr_size: ``(H, W)`` the native probe is resized to; ``None`` keeps the native size.
        scale: the SR factor the protocol is for.
    """

    root: Path  # a str is made a Path in __post_init__
    distractors: bool = True
    max_distractors: int | None = None
    seed: int = 0
    lr_size: tuple[int, int] | None = None
    scale: int = 4
    name: str = "TinyFace"
    _gallery: list[GalleryItem] = field(init=False, repr=False)
    _probes: list[ProbeItem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.max_distractors is not None and (isinstance(self.max_distractors, bool)
                                                 or not isinstance(self.max_distractors, int)
                                                 or self.max_distractors < 0):
            raise FsrBenchDataError(
                f"max_distractors must be a non-negative integer or null, got {self.max_distractors!r}"
            )
        if self.lr_size is not None:
            self.lr_size = (int(self.lr_size[0]), int(self.lr_size[1]))
        test = self._check_root()
        problems: dict[str, list[str]] = {"missing": [], "misnamed": [], "unlisted": [], "label": []}
        self.lists_used: list[str] = []
        labelled = {folder: self._labelled(test, folder, problems) for folder in (GALLERY_DIR, PROBE_DIR)}
        enrolled = {s for _, s in labelled[GALLERY_DIR]}
        not_enrolled = sorted({s for _, s in labelled[PROBE_DIR]} - enrolled, key=int)
        distractors = self._distractors(test)
        # every file the run will read, header-checked now: one error before any detector runs
        unreadable = header_problems([p for p, _ in labelled[GALLERY_DIR]] + [p for _, p in distractors]
                                     + [p for p, _ in labelled[PROBE_DIR]])
        if any(problems.values()) or not_enrolled or unreadable:
            raise TinyFaceLayoutError(
                f"TinyFace layout problems under {test}:"
                + _block("listed in a .mat file but missing", problems["missing"])
                + _block("names not <subjectid>_<n>.<ext>", problems["misnamed"])
                + _block("images in a folder but not in its .mat list", problems["unlisted"])
                + _block(".mat label differs from the file-name subject", problems["label"])
                + _block("probe subjects with no Gallery_Match image (TinyFace is closed-set)", not_enrolled)
                + _block("unreadable images", unreadable)
                + f"\nRestore the files from the release ({DOWNLOAD_URL})."
            )
        self._gallery = [GalleryItem(s, p) for p, s in labelled[GALLERY_DIR]]
        self._gallery += [GalleryItem(s, p) for s, p in distractors]
        self._probes = [ProbeItem(name=p.stem, subject=s, path=p, index=i)
                        for i, (p, s) in enumerate(labelled[PROBE_DIR])]

    def _distractors(self, test: Path) -> list[tuple[str, Path]]:
        """(gallery identity, path) of the distractors in the gallery (none without ``distractors``)."""
        self.n_distractors_available = 0
        if not self.distractors:
            return []
        folder = test / DISTRACTOR_DIR
        if not folder.is_dir():
            raise TinyFaceLayoutError(
                f"{folder} is missing; restore Gallery_Distractor from the release ({DOWNLOAD_URL}) or "
                "set distractors: false (not the official protocol)"
            )
        files = _images(folder, recursive=True)  # some copies shard it into sub-folders
        self.n_distractors_available = len(files)
        if self.max_distractors is not None and self.max_distractors < len(files):
            rng = np.random.default_rng(self.seed)
            files = [files[i] for i in sorted(rng.choice(len(files), self.max_distractors, replace=False))]
        return [(f"distractor/{p.relative_to(folder).with_suffix('').as_posix()}", p) for p in files]

    def _check_root(self) -> Path:
        test = self.root / TESTING_DIR
        if not self.root.is_dir():
            raise TinyFaceLayoutError(
                f"TinyFace root {self.root} does not exist. Download TinyFace from {DOWNLOAD_URL} and point "
                f"data.root at the folder holding {TESTING_DIR}/ (with {GALLERY_DIR}/, {PROBE_DIR}/, "
                f"{DISTRACTOR_DIR}/)"
            )
        if not test.is_dir():
            hint = ""
            if (self.root / GALLERY_DIR).is_dir():
                hint = f"; {self.root} looks like the {TESTING_DIR} folder itself — use its parent as the root"
            else:
                nested = [p for p in self.root.iterdir() if (p / TESTING_DIR).is_dir()]
                hint = f"; it is inside {nested[0]} — use that as the root" if nested else ""
            raise TinyFaceLayoutError(f"{self.root} has no {TESTING_DIR}/ folder{hint} (TinyFace: {DOWNLOAD_URL})")
        for folder in (GALLERY_DIR, PROBE_DIR):
            if not (test / folder).is_dir():
                raise TinyFaceLayoutError(f"{test / folder} is missing; restore it from the release ({DOWNLOAD_URL})")
        return test

    def _labelled(self, test: Path, folder: str, problems: dict[str, list[str]]) -> list[tuple[Path, str]]:
        """(path, subject) of one role, from its .mat list when present, else the naming rule."""
        files = {p.name: p for p in _images(test / folder)}
        mat_name, names_key, ids_key = _LISTS[folder]
        mat = test / mat_name
        if not mat.is_file():
            out = []
            for name, path in files.items():
                s = subject_of(path.stem)
                if s is None:
                    problems["misnamed"].append(f"{folder}/{name}")
                else:
                    out.append((path, s))
            return out
        self.lists_used.append(mat_name)
        data = load_mat(mat, [names_key, ids_key], "TinyFace")
        names, ids = mat_strings(data[names_key], mat, names_key), mat_ints(data[ids_key], mat, ids_key)
        if len(names) != len(ids):
            raise TinyFaceLayoutError(f"{mat}: {names_key} has {len(names)} names but {ids_key} {len(ids)} labels")
        out = []
        for name, label in zip(names, ids):
            p = files.get(Path(name).name)
            if p is None:
                problems["missing"].append(f"{folder}/{name}")
                continue
            s = subject_of(p.stem)
            if s is None:
                problems["misnamed"].append(f"{folder}/{name}")
            elif s != str(label):
                problems["label"].append(f"{folder}/{name}: label {label}, name says {s}")
            else:
                out.append((p, s))
        listed = {Path(n).name for n in names}
        problems["unlisted"] += [f"{folder}/{n}" for n in files if n not in listed]
        return out

    # -- RecognitionSet (gallery/probes/read_gallery from ListedSet) ---------------------------
    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        """``seed`` is unused: TinyFace probes are real low-resolution faces."""
        return read_native_probe(item.path, self.lr_size)

    def describe(self) -> dict[str, Any]:
        n_match = sum(1 for g in self._gallery if not g.subject.startswith("distractor/"))
        return {
            "type": "tinyface",
            "name": self.name,
            "root": str(self.root),
            "protocol": "closed-set 1:N identification, rank-1/5/20 (Cheng et al., ACCV 2018)",
            "labels": "from " + " and ".join(self.lists_used) if self.lists_used
            else "from file names <subjectid>_<n> (no .mat lists found)",
            "n_subjects": len({g.subject for g in self._gallery[:n_match]}),
            "n_gallery_match_images": n_match,
            "n_distractors": len(self._gallery) - n_match,
            "n_distractors_available": self.n_distractors_available,
            "distractor_selection_seed": self.seed if self.max_distractors is not None else None,
            "n_probes": len(self._probes),
        }

    def describe_degradation(self) -> dict[str, Any]:
        return native_lr_degradation("real_low_resolution", "native low-resolution faces; no synthetic degradation, no HR version exists", self.lr_size, self.scale)


@RECOGNITION_SETS.register("tinyface")
def tinyface(block: Mapping[str, Any], *, cache_dir: Path | None = None, device: str = "cpu",
         progress: bool = False) -> TinyFaceSet:
    """A recognition protocol's ``data: {type: tinyface, ...}`` block (no cache or device needed)."""
    return TinyFaceSet(root=block["root"], distractors=bool(block.get("distractors", True)),
                       max_distractors=block.get("max_distractors"), seed=block.get("seed", 0),
                       lr_size=block.get("lr_size"), scale=block.get("scale", 4),
                       name=block.get("name") or "TinyFace")
