"""Image-folder datasets of HR faces, shared by training (``fsr_bench.train``) and the benchmark runner.

* :class:`FaceFolder` — every image under a root (flat ``root/*.png`` or identity sub-folders
  ``root/<id>/*.jpg``), optionally restricted by a list file (identity folder names or relative
  image paths, one per line), optionally brought to a fixed HR size. Item ``i`` is
  ``{"hr": (3, H, W) float32 in [0, 1], "name": "<relative path without suffix>", "index": i}``.
* :data:`DATASET_PRESETS` — the paper's datasets as HR conventions:

  ====================  ========================================================================
  ``ffhq``              HR resized to 256×256 with MATLAB bicubic (paper: "all HR images are
                        resized to 256×256"); FFHQ ships 1024×1024 (or 128×128 thumbnails).
  ``celeba``            aligned CelebA crops (178×218, W×H) **center-cropped** to 216×176 (H×W);
                        the paper says "resized to 216×176", which for 218×178 crops is a 1-px
                        border trim — cropping keeps pixels exactly as published.
  ``faces256``          the shared development faces (``../shared/data/faces256``), used as they
                        are (256×256, FFHQ-style alignment).
  ``folder``            no preset: any folder, sizes as given by ``hr_size`` / ``hr_transform``.
  ``package_faces``     the two public-domain faces shipped inside installed packages (quickstart).
  ====================  ========================================================================

* :func:`make_split` — the paper's random 3800/100/100 train/val/test split of a folder, written as
  list files of relative paths (read back through ``list_file``).
* :func:`build_dataset` — a dataset from a config block ``{type: ffhq, root: ..., list_file: ...}``;
  unknown types and keys are errors naming them. Paths may use ``${FSR_BENCH_DATA}`` (or any
  ``${VAR}``): the value comes from ``data_root=`` (a setting) or else the environment.

HR images that are resized are quantised to 8 bits afterwards (``fsr_bench.data.io.to_uint8``),
exactly as a resized ground-truth PNG on disk would be, so training, evaluation and a pre-resized
copy of the dataset all see the same pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch.utils.data import Dataset

from fsr_bench.config_io import expand_vars
from fsr_bench.data.io import FsrBenchDataError, ImageReadError, list_images, read_image, to_uint8
from fsr_bench.registry import Registry

__all__ = [
    "same_split",
    "split_identity",
    "DATASETS",
    "DATASET_PRESETS",
    "DatasetType",
    "DATA_ROOT_ENV",
    "DatasetConfigError",
    "FaceFolder",
    "build_dataset",
    "check_dataset_spec",
    "expand_path",
    "make_split",
]

#: Environment variable holding the folder that contains the datasets (``ffhq/``, ``celeba/``).
DATA_ROOT_ENV = "FSR_BENCH_DATA"

#: Preset name -> FaceFolder keyword defaults (see the module docstring).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "ffhq": {"hr_size": (256, 256), "hr_transform": "resize"},
    "celeba": {"hr_size": (216, 176), "hr_transform": "center_crop"},
    "faces256": {"hr_size": None, "hr_transform": "resize"},
    "folder": {},
}

_FOLDER_KEYS = ("root", "list_file", "hr_size", "hr_transform", "on_error", "cache")
_PACKAGE_KEYS = ("hr_size", "names")


class SizedDataset(Protocol):
    """What every registered dataset type builds: a map-style dataset of known length, items
    ``{"hr": (3, H, W) float tensor, "name": str, ...}`` (torch's ``Dataset`` declares no ``__len__``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


class DatasetConfigError(FsrBenchDataError):
    """A dataset block or folder that cannot be used (unknown key, missing root, no images, …)."""


# -- paths ----------------------------------------------------------------------------------------


def expand_path(
    value: str | os.PathLike[str],
    where: str = "path",
    data_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Expand ``~`` and ``${VAR}``, ``${VAR:-default}``, ``$VAR`` in a path (the one expander,
    :func:`fsr_bench.config_io.expand_vars`); an unset variable without a default is an error.

    ``${FSR_BENCH_DATA}`` takes ``data_root`` when given (a config setting), else the environment.
    Relative results are relative to the current directory.
    """
    text = str(value)

    def missing(var: str) -> Exception:
        hint = (
            f" Set it to the folder that holds your datasets, e.g. `export {DATA_ROOT_ENV}=/data/faces`"
            f" (with ffhq/ and celeba/ inside), or set data.data_root in the training config."
            if var == DATA_ROOT_ENV
            else f" Set it (export {var}=...) or write the path out."
        )
        return DatasetConfigError(f"{where} is {text!r}, but the environment variable {var} is not set.{hint}")

    values = {DATA_ROOT_ENV: str(data_root)} if data_root is not None else None
    return Path(os.path.expanduser(expand_vars(text, missing, values=values, bare=True)))


def _as_size(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise DatasetConfigError(f"{where}: hr_size must be an int or [H, W], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise DatasetConfigError(f"{where}: hr_size must be a positive int or [H, W], got {value!r}")
    return int(value[0]), int(value[1])


# -- the dataset ----------------------------------------------------------------------------------
class FaceFolder(Dataset):
    """HR face images under ``root``; see the module docstring.

    Args:
        root: dataset folder (flat or ``<identity>/<image>`` layout).
        list_file: optional list of identity folders or relative image paths to keep.
        hr_size: ``None`` (images as they are), an int (square) or ``(H, W)``.
        hr_transform: how images that are not ``hr_size`` get there: ``"resize"`` (MATLAB bicubic,
            then 8-bit quantisation) or ``"center_crop"`` (images smaller than ``hr_size`` are errors).
        on_error: ``"raise"`` — an unreadable image is an error naming it; ``"skip"`` — every file's
            header is checked once here and failures are left out and recorded in ``skipped``
            (``(path, reason)``); a file that passes the header check but fails to decode later is
            replaced by the next good image and recorded too (in that process).
        cache: keep decoded HR images in memory as uint8 after the first read (per process).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        list_file: str | os.PathLike[str] | None = None,
        hr_size: int | Sequence[int] | None = None,
        hr_transform: str = "resize",
        on_error: str = "raise",
        cache: bool = False,
    ):
        if hr_transform not in ("resize", "center_crop"):
            raise DatasetConfigError(f"hr_transform must be 'resize' or 'center_crop', got {hr_transform!r}")
        if on_error not in ("raise", "skip"):
            raise DatasetConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root)
        self.list_file = Path(list_file) if list_file is not None else None
        self.hr_size = _as_size(hr_size, "FaceFolder")
        self.hr_transform = hr_transform
        self.on_error = on_error
        self.cache = bool(cache)
        self._cache: dict[int, torch.Tensor] = {}
        self.skipped: list[tuple[Path, str]] = []
        if not self.root.is_dir():
            raise DatasetConfigError(
                f"dataset root {self.root} does not exist or is not a folder"
                f" (resolved from {os.getcwd()}); check the path"
            )
        try:
            paths = list_images(self.root, self.list_file)
        except FsrBenchDataError as exc:
            raise DatasetConfigError(f"empty or unusable dataset: {exc}") from exc
        if on_error == "skip":
            kept = []
            for p in paths:
                reason = self._header_problem(p)
                if reason is None:
                    kept.append(p)
                else:
                    self.skipped.append((p, reason))
            paths = kept
        if not paths:
            where = f" (list file {self.list_file})" if self.list_file else ""
            raise DatasetConfigError(
                f"dataset {self.root}{where} is empty: no readable images"
                + (f" ({len(self.skipped)} skipped as unreadable)" if self.skipped else "")
            )
        self.paths: list[Path] = paths
        self.names: list[str] = [p.relative_to(self.root).with_suffix("").as_posix() for p in paths]

    # -- checks ---------------------------------------------------------------------------------
    def _header_problem(self, path: Path) -> str | None:
        """Why ``path`` cannot be used (cheap: header + structure check), or None."""
        from PIL import Image

        try:
            with Image.open(path) as img:
                img.verify()
                w, h = img.size
        except Exception as exc:  # corrupt files raise many types
            return f"unreadable ({type(exc).__name__}: {exc})"
        if self.hr_size is not None and self.hr_transform == "center_crop":
            if h < self.hr_size[0] or w < self.hr_size[1]:
                return f"{h}x{w} is smaller than the center crop {self.hr_size[0]}x{self.hr_size[1]}"
        return None

    def native_size(self, i: int) -> tuple[int, int]:
        """(H, W) of file ``i`` as stored, from its header (no decoding)."""
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as img:
                w, h = img.size
        except Exception as exc:
            raise ImageReadError(self.paths[i], f"cannot read the header ({exc})") from exc
        return h, w

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of item ``i`` as returned (``hr_size`` when set), without decoding pixels."""
        return self.hr_size if self.hr_size is not None else self.native_size(i)

    # -- Dataset --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> torch.Tensor:
        if i in self._cache:
            return self._cache[i].float().div_(255.0)
        path = self.paths[i]
        x = read_image(path)  # (3, H, W) float [0, 1]
        if self.hr_size is not None and tuple(x.shape[-2:]) != self.hr_size:
            h, w = x.shape[-2:]
            th, tw = self.hr_size
            if self.hr_transform == "center_crop":
                if h < th or w < tw:
                    raise DatasetConfigError(
                        f"image {path} is {h}x{w}, smaller than the center crop {th}x{tw} (H x W);"
                        " is this the right dataset preset?"
                    )
                top, left = (h - th) // 2, (w - tw) // 2
                x = x[:, top : top + th, left : left + tw].contiguous()
            else:
                from fsr_bench.data.resize import imresize

                x = to_uint8(imresize(x, size=(th, tw))).float().div_(255.0)
        if self.cache:
            self._cache[i] = to_uint8(x)
        return x

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not 0 <= i < len(self.paths):
            raise IndexError(f"index {i} out of range for a dataset of {len(self.paths)} images")
        if self.on_error == "raise":
            return {"hr": self._load(i), "name": self.names[i], "index": i}
        for k in range(len(self.paths)):
            j = (i + k) % len(self.paths)
            try:
                return {"hr": self._load(j), "name": self.names[j], "index": j}
            except (ImageReadError, DatasetConfigError) as exc:
                self.skipped.append((self.paths[j], str(exc)))
        raise DatasetConfigError(f"no image of {self.root} could be read")

    def describe(self) -> dict[str, Any]:
        """Provenance: where the images came from and how they were brought to HR size."""
        return {
            "type": "folder",
            "root": str(self.root),
            "list_file": str(self.list_file) if self.list_file else None,
            "n_images": len(self),
            "hr_size": list(self.hr_size) if self.hr_size else None,
            "hr_transform": self.hr_transform if self.hr_size else None,
            "skipped": len(self.skipped),
        }

    def __repr__(self) -> str:
        return f"FaceFolder({self.root}, n={len(self)}, hr_size={self.hr_size}, {self.hr_transform})"


# -- splits ---------------------------------------------------------------------------------------
def make_split(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sizes: Sequence[int] = (3800, 100, 100),
    seed: int = 0,
    names: Sequence[str] = ("train", "val", "test"),
    list_file: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Randomly split the images under ``root`` into list files ``out_dir/{train,val,test}.txt``.

    The paper: FFHQ and CelebA, 3800 train / 100 val / 100 test chosen at random. Entries are
    relative paths (``00042.png`` or ``7203/007444.jpg``), sorted within each file; the same
    ``root`` content and ``seed`` always give the same files (NumPy PCG64 permutation of the sorted
    listing). Images beyond ``sum(sizes)`` are left out. Returns ``{name: path}``.
    """
    import numpy as np

    if len(sizes) != len(names):
        raise ValueError(f"sizes {tuple(sizes)} and names {tuple(names)} differ in length")
    if any(int(s) < 0 for s in sizes):
        raise ValueError(f"split sizes must be non-negative, got {tuple(sizes)}")
    root = Path(root)
    try:
        images = list_images(root, list_file)
    except FsrBenchDataError as exc:
        raise DatasetConfigError(f"cannot split {root}: {exc}") from exc
    rel = [p.relative_to(root).as_posix() for p in images]
    need = sum(int(s) for s in sizes)
    if need > len(rel):
        raise DatasetConfigError(
            f"cannot split {len(rel)} images of {root} into {'/'.join(map(str, sizes))}"
            f" ({need} needed); pass smaller sizes"
        )
    order = np.random.default_rng(seed).permutation(len(rel))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    start = 0
    for name, size in zip(names, sizes):
        chosen = sorted(rel[j] for j in order[start : start + int(size)])
        start += int(size)
        path = out / f"{name}.txt"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(
            f"# {name}: {len(chosen)} of {len(rel)} images of {root}, make_split seed={seed}\n"
            + "".join(f"{c}\n" for c in chosen),
            encoding="utf-8",
        )
        os.replace(tmp, path)
        written[name] = path
    return written


# -- config blocks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetType:
    """A dataset ``type``: the keys its block accepts and how it is built (``build(kwargs, where,
    data_root)``). Registered in :data:`DATASETS`; plug-ins use the entry-point group
    ``fsr_bench.datasets`` and ``DATASETS.register("name")(DatasetType(...))``."""

    keys: tuple[str, ...]
    build: Callable[[dict[str, Any], str, str | os.PathLike[str] | None], SizedDataset]
    needs_root: bool = True


DATASETS: Registry[DatasetType] = Registry("dataset type", "fsr_bench.datasets")  # type: ignore[type-var]


def _folder_type(preset: Mapping[str, Any]) -> DatasetType:
    def build(kwargs: dict[str, Any], where: str, data_root: str | os.PathLike[str] | None) -> SizedDataset:
        kwargs = {**preset, **kwargs}
        kwargs["root"] = expand_path(kwargs["root"], f"{where}.root", data_root)
        if kwargs.get("list_file") is not None:
            kwargs["list_file"] = expand_path(kwargs["list_file"], f"{where}.list_file", data_root)
        return FaceFolder(**kwargs)

    return DatasetType(_FOLDER_KEYS, build)


def _package_faces(kwargs: dict[str, Any], where: str, data_root: str | os.PathLike[str] | None) -> SizedDataset:
    from fsr_bench.data.package_faces import PackageFaces

    if "names" in kwargs:
        kwargs["names"] = tuple(kwargs["names"])
    return PackageFaces(**kwargs)


for _name, _preset in DATASET_PRESETS.items():
    DATASETS.register(_name)(_folder_type(_preset))
DATASETS.register("package_faces")(DatasetType(_PACKAGE_KEYS, _package_faces, needs_root=False))


def check_dataset_spec(spec: Mapping[str, Any], where: str = "dataset") -> None:
    """Validate the keys and type of a dataset block without touching the disk."""
    if not isinstance(spec, Mapping):
        raise DatasetConfigError(f"{where} must be a mapping like {{type: ffhq, root: ...}}, got {spec!r}")
    kind = spec.get("type")
    valid_types = DATASETS.names()
    if not isinstance(kind, str) or kind not in DATASETS:
        what = "has no 'type'" if kind is None else f"has unknown type {kind!r}"
        raise DatasetConfigError(f"{where} {what}; valid types: {', '.join(valid_types)}")
    dtype: DatasetType = DATASETS.get(kind).builder
    for key in spec:
        if key != "type" and key not in dtype.keys:
            raise DatasetConfigError(
                f"{where}.{key}: unknown key for a dataset of type {kind!r}; valid keys: type, {', '.join(dtype.keys)}"
            )
    if dtype.needs_root and "root" not in spec:
        raise DatasetConfigError(f"{where}: a dataset of type {kind!r} needs 'root'")
    if "hr_size" in spec:
        _as_size(spec["hr_size"], f"{where}.hr_size")


def build_dataset(
    spec: Mapping[str, Any],
    where: str = "dataset",
    data_root: str | os.PathLike[str] | None = None,
) -> SizedDataset:
    """Build a dataset from ``{type: <registered type>, **kwargs}`` (:data:`DATASETS`).

    For folder types, keys are :class:`FaceFolder` arguments; a preset supplies ``hr_size`` and
    ``hr_transform`` defaults that the block may override. ``root``/``list_file`` may use
    ``${FSR_BENCH_DATA}`` (see :func:`expand_path`).
    """
    check_dataset_spec(spec, where)
    dtype: DatasetType = DATASETS.get(spec["type"]).builder
    return dtype.build({k: v for k, v in spec.items() if k != "type"}, where, data_root)


# -- which images a split is (the selection flag) ------------------------------------------------
def split_identity(spec: Mapping[str, Any], data_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What names a dataset block's images wherever they live: its type, its root's folder name and its
    list file with the file's sha256 (None where it has none, or it cannot be read).

    A training run records this for its validation split (the split its ``best.pt`` was selected on);
    :func:`same_split` compares it with the data a protocol evaluates.
    """
    import hashlib

    root, listed = spec.get("root"), spec.get("list_file")
    list_path = expand_path(listed, "list_file", data_root) if listed else None
    sha = None
    if list_path is not None:
        try:
            sha = hashlib.sha256(list_path.read_bytes()).hexdigest()
        except OSError:
            sha = None
    return {"type": spec.get("type"),
            "root_name": expand_path(root, "root", data_root).resolve().name if root else None,
            "list_file": str(list_path) if list_path is not None else None, "list_sha256": sha}


def same_split(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool | None:
    """Whether two :func:`split_identity` records name the same images: the same list file contents under
    a root of the same folder name, or (neither listed) the same type and root folder name. None: unknown."""
    if not a or not b or not a.get("root_name") or not b.get("root_name"):
        return None
    if a.get("list_file") or b.get("list_file"):
        if not a.get("list_sha256") or not b.get("list_sha256"):
            return None
        return a["list_sha256"] == b["list_sha256"] and a["root_name"] == b["root_name"]
    return a["root_name"] == b["root_name"] and a.get("type") == b.get("type")
