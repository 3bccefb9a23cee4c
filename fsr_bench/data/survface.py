"""QMUL-SurvFace (Cheng, Zhu, Gong, "Surveillance Face Recognition Challenge", arXiv:1804.09691,
2018): native surveillance faces (on average ≈ 24×20 px) for 1:1 verification and open-set 1:N
identification. Download: https://qmul-survface.github.io/ (``QMUL-SurvFace.zip``).

Official layout (what the release unpacks to; the names its evaluation code reads)::

    ROOT/Face_Verification_Test_Set/verification_images/*.jpg
    ROOT/Face_Verification_Test_Set/positive_pairs_names.mat   positive_pairs_names: N×2 cell of names
    ROOT/Face_Verification_Test_Set/negative_pairs_names.mat   negative_pairs_names: N×2 cell of names
    ROOT/Face_Identification_Test_Set/gallery/*.jpg
    ROOT/Face_Identification_Test_Set/mated_probe/*.jpg
    ROOT/Face_Identification_Test_Set/unmated_probe/*.jpg
    ROOT/Face_Identification_Test_Set/gallery_img_ID_pairs.mat      gallery_set, gallery_ids
    ROOT/Face_Identification_Test_Set/mated_probe_img_ID_pairs.mat  mated_probe_set, mated_probe_ids

Image names are ``<subjectid>_cam<k>_<frame>.jpg``. Some copies keep the two identification
``.mat`` files in ``Face_Identification_Evaluation/`` (next to the MATLAB evaluation code); they
are looked for there when absent from the test-set folder.

Protocols (as the paper defines them):

* **1:1 verification** — :class:`SurvFaceVerificationSet`: the listed positive and negative
  pairs (about 5,300 each); TAR@FAR = 30 %, 10 %, 1 %, 0.1 % (and AUC). Both images of a pair are
  surveillance faces: a super-resolver is applied to both.
* **1:N open-set identification** — :class:`SurvFaceIdentificationSet`: gallery subjects from
  ``gallery_img_ID_pairs.mat``; mated probes (subject enrolled) from ``mated_probe_img_ID_pairs.mat``;
  unmated probes (subjects never enrolled) are every image in ``unmated_probe/``, their subject the
  name's ``<subjectid>`` prefix, which must not be enrolled. Reported as TPIR20@FPIR (FPIR = 0.3,
  0.2, 0.1) — :func:`fsr_bench.metrics.operating_points.open_set_identification` with ``rank=20``.

Gallery images are surveillance faces too, so they are low-resolution; the recognition runner
treats them as it treats any gallery (no SR), which is how the paper's non-SR baselines score.
Probes have no HR version: ``read_probe`` returns the native face as ``hr`` and as ``lr``
(resized with MATLAB bicubic to ``lr_size`` when set), 8-bit rounded.
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
    quantize,
    read_native_probe,
)
from fsr_bench.data.io import IMAGE_SUFFIXES, FsrBenchDataError, read_image
from fsr_bench.data.matlists import load_mat, mat_ints, mat_pairs, mat_strings

__all__ = [
    "DOWNLOAD_URL",
    "IDENTIFICATION_DIR",
    "VERIFICATION_DIR",
    "SurvFaceIdentificationSet",
    "SurvFaceLayoutError",
    "SurvFaceVerificationSet",
    "VerificationPair",
]

DOWNLOAD_URL = "https://qmul-survface.github.io/"
VERIFICATION_DIR = "Face_Verification_Test_Set"
IDENTIFICATION_DIR = "Face_Identification_Test_Set"
_EVALUATION_DIR = "Face_Identification_Evaluation"
_NAME_RE = re.compile(r"^(\d+)_(?:cam(\d+)_)?[^/]*$")
_MAX_LISTED = 25


class SurvFaceLayoutError(FsrBenchDataError):
    """The QMUL-SurvFace folder does not hold the expected files; the message lists every problem."""


def _images(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}


def _block(title: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f"\n    … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {title} ({len(items)}):\n    - " + "\n    - ".join(items[:_MAX_LISTED]) + more


def _folder(root: Path, sub: str, *inner: str) -> Path:
    """``root/sub`` with its ``inner`` folders, or an error that says where to get the data."""
    if not root.is_dir():
        raise SurvFaceLayoutError(
            f"QMUL-SurvFace root {root} does not exist. Download QMUL-SurvFace from {DOWNLOAD_URL} and "
            f"point data.root at the folder holding {VERIFICATION_DIR}/ and {IDENTIFICATION_DIR}/"
        )
    base = root / sub
    if not base.is_dir():
        nested = [p for p in root.iterdir() if p.is_dir() and (p / sub).is_dir()]
        hint = f"; it is inside {nested[0]} — use that as the root" if nested else ""
        raise SurvFaceLayoutError(f"{root} has no {sub}/ folder{hint} (QMUL-SurvFace: {DOWNLOAD_URL})")
    for name in inner:
        if not (base / name).is_dir():
            raise SurvFaceLayoutError(f"{base / name}/ is missing; restore it from the release ({DOWNLOAD_URL})")
    return base


def _camera(stem: str) -> str:
    m = _NAME_RE.match(stem)
    return f"cam{int(m.group(2))}" if m and m.group(2) else "all"


def _draw(items: list, limit: int | None, seed: int, key: str) -> list:
    """At most ``limit`` items, drawn with ``seed`` and kept in their listed order."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise FsrBenchDataError(f"{key} must be a positive integer or null, got {limit!r}")
    if limit is None or limit >= len(items):
        return items
    keep = sorted(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


# -- 1:1 verification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerificationPair:
    """One listed comparison: two images and whether they show the same person."""

    first: Path
    second: Path
    same: bool


@dataclass
class SurvFaceVerificationSet:
    """The QMUL-SurvFace 1:1 pairs (see module doc); ``max_pairs`` draws that many of each kind."""

    root: Path  # a str is made a Path in __post_init__
    max_pairs: int | None = None
    seed: int = 0
    name: str = "QMUL-SurvFace verification"
    pairs: list[VerificationPair] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        base = _folder(self.root, VERIFICATION_DIR, "verification_images")
        files = _images(base / "verification_images")
        self.pairs, missing = [], []
        self.n_listed = {}
        for same, key in ((True, "positive_pairs_names"), (False, "negative_pairs_names")):
            mat = base / f"{key}.mat"
            listed = mat_pairs(load_mat(mat, [key], "QMUL-SurvFace")[key], mat, key)
            self.n_listed[key] = len(listed)
            kept = []
            for a, b in listed:
                pa, pb = files.get(Path(a).name), files.get(Path(b).name)
                missing += [f"verification_images/{n}" for n, p in ((a, pa), (b, pb)) if p is None]
                if pa is not None and pb is not None:
                    kept.append(VerificationPair(pa, pb, same))
            self.pairs += _draw(kept, self.max_pairs, self.seed, "max_pairs")
        unreadable = header_problems(self.images)
        if missing or unreadable:
            raise SurvFaceLayoutError(
                f"QMUL-SurvFace verification: images of the pair files are missing or unreadable under {base}:"
                + _block("missing", sorted(set(missing))) + _block("unreadable images", unreadable)
                + f"\nRestore them from the release ({DOWNLOAD_URL})."
            )

    @property
    def images(self) -> list[Path]:
        """Every image in a kept pair, once, sorted: embed these, then score the pairs."""
        return sorted({p for pair in self.pairs for p in (pair.first, pair.second)})

    def read_image(self, path: Path) -> ProbeImages:
        image = read_image(path)
        return ProbeImages(hr=image, lr=quantize(image))

    def describe(self) -> dict[str, Any]:
        return {
            "type": "survface_verification",
            "name": self.name,
            "root": str(self.root),
            "protocol": "1:1 verification, TAR@FAR = 0.3/0.1/0.01/0.001 (Cheng et al. 2018)",
            "n_positive_pairs": sum(p.same for p in self.pairs),
            "n_negative_pairs": sum(not p.same for p in self.pairs),
            "n_listed": dict(self.n_listed),
            "pair_selection_seed": self.seed if self.max_pairs is not None else None,
            "n_images": len(self.images),
        }


# -- 1:N open-set identification -------------------------------------------------------------------
@dataclass
class SurvFaceIdentificationSet(ListedSet):
    """QMUL-SurvFace gallery, mated and unmated probes (see module doc).

    Args:
        root: the folder holding ``Face_Identification_Test_Set/``.
        max_mated_probes, max_unmated_probes: seeded subsets for development runs.
        lr_size: ``(H, W)`` the native probe is resized to; ``None`` keeps the native size.
        scale: the SR factor the protocol is for.
    """

    root: Path  # a str is made a Path in __post_init__
    max_mated_probes: int | None = None
    max_unmated_probes: int | None = None
    seed: int = 0
    lr_size: tuple[int, int] | None = None
    scale: int = 4
    name: str = "QMUL-SurvFace"
    _gallery: list[GalleryItem] = field(init=False, repr=False)
    _probes: list[ProbeItem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.lr_size is not None:
            self.lr_size = (int(self.lr_size[0]), int(self.lr_size[1]))
        base = _folder(self.root, IDENTIFICATION_DIR, "gallery", "mated_probe", "unmated_probe")
        problems: dict[str, list[str]] = {"missing": [], "unlisted": [], "misnamed": [], "enrolled": []}
        gallery = self._listed(base, "gallery", "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids", problems)
        mated = self._listed(base, "mated_probe", "mated_probe_img_ID_pairs.mat", "mated_probe_set",
                             "mated_probe_ids", problems)
        enrolled = {s for _, s in gallery}
        not_enrolled = sorted({s for _, s in mated} - enrolled, key=int)
        unmated = []
        for n, p in _images(base / "unmated_probe").items():
            m = _NAME_RE.match(p.stem)
            if m is None:
                problems["misnamed"].append(f"unmated_probe/{n}")
            elif str(int(m.group(1))) in enrolled:
                problems["enrolled"].append(f"unmated_probe/{n} (subject {int(m.group(1))})")
            else:
                unmated.append((p, str(int(m.group(1)))))
        self.n_available = {"mated": len(mated), "unmated": len(unmated)}
        mated = _draw(mated, self.max_mated_probes, self.seed, "max_mated_probes")
        unmated = _draw(unmated, self.max_unmated_probes, self.seed + 1, "max_unmated_probes")
        # every file the run will read, header-checked now: one error before any detector runs
        problems["unreadable"] = header_problems([p for p, _ in gallery + mated + unmated])
        if any(problems.values()) or not_enrolled or not unmated:
            raise SurvFaceLayoutError(
                f"QMUL-SurvFace identification layout problems under {base}:"
                + _block("listed in a .mat file but missing", problems["missing"])
                + _block("images in gallery/ or mated_probe/ not in their .mat list", problems["unlisted"])
                + _block("unmated probe names not <subjectid>_cam<k>_<frame>.<ext>", problems["misnamed"])
                + _block("unmated probes whose subject is enrolled", problems["enrolled"])
                + _block("mated probe subjects with no gallery image", not_enrolled)
                + _block("unreadable images", problems["unreadable"])
                + ("\n  unmated_probe/ holds no image" if not unmated else "")
                + f"\nRestore the files from the release ({DOWNLOAD_URL})."
            )
        self._gallery = [GalleryItem(s, p) for p, s in gallery]
        # names are unique across both folders only with the folder in front
        self._probes = [
            ProbeItem(name=f"{kind}/{p.stem}", subject=s, path=p, index=i, camera=_camera(p.stem))
            for i, (kind, (p, s)) in enumerate([("mated", x) for x in mated] + [("unmated", x) for x in unmated])
        ]

    def _listed(self, base: Path, folder: str, mat_name: str, names_key: str, ids_key: str,
                problems: dict[str, list[str]]) -> list[tuple[Path, str]]:
        mat = base / mat_name
        if not mat.is_file() and (self.root / _EVALUATION_DIR / mat_name).is_file():
            mat = self.root / _EVALUATION_DIR / mat_name
        if not mat.is_file():
            raise SurvFaceLayoutError(
                f"{base / mat_name} is missing (also looked in {self.root / _EVALUATION_DIR}); it lists the "
                f"{folder} images and their subjects — restore it from the release ({DOWNLOAD_URL})"
            )
        data = load_mat(mat, [names_key, ids_key], "QMUL-SurvFace")
        names, ids = mat_strings(data[names_key], mat, names_key), mat_ints(data[ids_key], mat, ids_key)
        if len(names) != len(ids):
            raise SurvFaceLayoutError(f"{mat}: {names_key} has {len(names)} names but {ids_key} {len(ids)} labels")
        files = _images(base / folder)
        out = []
        for n, label in zip(names, ids):
            p = files.get(Path(n).name)
            if p is None:
                problems["missing"].append(f"{folder}/{n}")
            else:
                out.append((p, str(label)))
        listed = {Path(n).name for n in names}
        problems["unlisted"] += [f"{folder}/{n}" for n in files if n not in listed]
        return out

    # -- RecognitionSet (gallery/probes/read_gallery from ListedSet) ---------------------------
    def read_probe(self, item: ProbeItem, seed: int = 0) -> ProbeImages:
        """``seed`` is unused: SurvFace probes are real surveillance faces."""
        return read_native_probe(item.path, self.lr_size)

    @property
    def enrolled_subjects(self) -> list[str]:
        return sorted({g.subject for g in self._gallery}, key=int)

    def describe(self) -> dict[str, Any]:
        n_mated = sum(1 for p in self._probes if p.name.startswith("mated/"))
        return {
            "type": "survface_identification",
            "name": self.name,
            "root": str(self.root),
            "protocol": "open-set 1:N identification, TPIR20@FPIR = 0.3/0.2/0.1 (Cheng et al. 2018)",
            "n_subjects": len(self.enrolled_subjects),
            "n_gallery_images": len(self._gallery),
            "n_probes": len(self._probes),
            "n_mated_probes": n_mated,
            "n_unmated_probes": len(self._probes) - n_mated,
            "n_available": dict(self.n_available),
            "probe_selection_seed": self.seed
            if (self.max_mated_probes, self.max_unmated_probes) != (None, None) else None,
        }

    def describe_degradation(self) -> dict[str, Any]:
        return native_lr_degradation("real_surveillance", "native surveillance faces; no synthetic degradation, no HR version exists", self.lr_size, self.scale)


@RECOGNITION_SETS.register("survface")
def survface(block: Mapping[str, Any], *, cache_dir: Path | None = None, device: str = "cpu",
         progress: bool = False) -> SurvFaceIdentificationSet:
    """A recognition protocol's ``data: {type: survface, ...}`` block (no cache or device needed)."""
    return SurvFaceIdentificationSet(root=block["root"], max_mated_probes=block.get("max_mated_probes"),
                                     max_unmated_probes=block.get("max_unmated_probes"), seed=block.get("seed", 0),
                                     lr_size=block.get("lr_size"), scale=block.get("scale", 4),
                                     name=block.get("name") or "QMUL-SurvFace")
