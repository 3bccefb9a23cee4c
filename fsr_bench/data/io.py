"""The only image reader and writer in fsr-bench, and the one 8-bit quantisation convention.

Why one module: PSNR differences of 0.1 dB — the size of the gaps papers report — come from
details such as how alpha is flattened, whether EXIF rotation is applied, or whether 0.5 rounds up
or to even. Keeping every read, write and quantisation here keeps those details in one place.

Conventions (all deliberate, all tested in ``tests/test_io.py``):

* ``read_image`` returns float32 RGB ``(3, H, W)`` in [0, 1], EXIF orientation applied
  (``PIL.ImageOps.exif_transpose``), so a phone photo is upright exactly as a viewer shows it.
* Grayscale is replicated to three channels; palette/CMYK/etc. go through Pillow's ``convert``.
* Alpha (RGBA, LA, PA, palette transparency) is composited **on white**: transparent face crops
  are normally shown on a white page, and white keeps the result independent of whatever colour
  values happen to be stored under fully transparent pixels (dropping alpha would expose them).
* 16-bit grayscale PNG/TIFF (Pillow modes ``I;16*`` and ``I``) is divided by 65535. Pillow has no
  48-bit RGB mode and decodes 16-bit RGB PNGs to 8 bits itself; that precision is lost before we
  see it. 32-bit float images (mode ``F``) have no agreed value range and are refused.
* A truncated or corrupt file is an error (:class:`ImageReadError`), never a half-grey image:
  Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced off while decoding.
* ``to_uint8`` rounds half up (``floor(255 x + 0.5)``), as MATLAB's ``im2uint8`` does for
  non-negative values; ``torch.round`` would round half to even.

References: Pillow handbook, "Image file formats" and "Concepts: modes"
(https://pillow.readthedocs.io/en/stable/handbook/concepts.html#modes); MATLAB ``im2uint8``.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError

__all__ = [
    "IMAGE_SUFFIXES",
    "FsrBenchDataError",
    "ImageReadError",
    "is_image_file",
    "list_images",
    "read_image",
    "read_list_file",
    "to_uint8",
    "write_image",
]

#: File suffixes (lower-case) that ``list_images`` treats as images.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)

# Writers: suffix -> Pillow format. Only PNG (lossless: SR outputs, LR inputs) and JPEG.
_WRITE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_MAX_LISTED_PROBLEMS = 20


class FsrBenchDataError(FsrBenchError, ValueError):
    """Base class for data problems a user must fix (bad file, bad list, bad config)."""


class ImageReadError(FsrBenchDataError):
    """An image that cannot be read. ``path`` and ``reason`` are kept as attributes."""

    #: torch's DataLoader re-raises a worker's exception as ``type(message=<its traceback text>)``
    #: when the class has a ``message``; :meth:`__init__` keeps the original one line from it.
    message = "cannot read image"

    def __init__(self, path: str | os.PathLike[str] | None = None, reason: str | None = None, *,
                 message: str | None = None):
        if message is not None:  # from a DataLoader worker: the message, without the traceback
            lines = [line.split(f"{type(self).__name__}: ", 1)[1] for line in message.splitlines()
                     if f"{type(self).__name__}: " in line]
            text = lines[-1] if lines else message
            self.path, self.reason = (Path(path) if path is not None else None), text
            super().__init__(text)
            return
        self.path = Path(path if path is not None else "?")
        self.reason = reason or "unreadable"
        super().__init__(
            f"cannot read image {self.path}: {reason}. Check that the file exists and opens in an"
            " image viewer; re-export or re-download it, or remove it from the dataset/list file."
        )

    def __reduce__(self):  # keep it picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


# -- quantisation ---------------------------------------------------------------------------------
def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1], scale by 255 and round half up: the toolkit's single 8-bit convention.

    This is what saving a PNG does to a float image, and what every PSNR/SSIM in fsr-bench is
    computed after (``fsr_bench.metrics``). Any shape; same device; returns ``torch.uint8``.
    uint8 input is returned unchanged. NaN is refused, because clamping would hide a broken model
    behind a plausible-looking number.
    """
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise TypeError(f"to_uint8 expects a float tensor in [0, 1] (or uint8); got {image.dtype}")
    x = image.detach()
    if torch.isnan(x).any():
        raise ValueError(
            "to_uint8: the image contains NaN values (a model or degradation produced NaN);"
            " refusing to quantise them into plausible pixels"
        )
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


# -- reading --------------------------------------------------------------------------------------
_TRUNCATION_LOCK = threading.Lock()


@contextmanager
def _refuse_truncated_images() -> Iterator[None]:
    """Make Pillow raise on truncated data even if another library switched that off globally.

    ``LOAD_TRUNCATED_IMAGES`` is a module global in Pillow; when it is already False (the default
    and the common case) nothing is touched, so parallel readers do not serialise on the lock.
    """
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _TRUNCATION_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode(path: Path) -> Image.Image:
    """Open, fully decode and EXIF-orient one file; any decoder failure becomes ImageReadError."""
    try:
        with _refuse_truncated_images(), Image.open(path) as img:
            img.load()  # decoding happens here; Image.open only reads the header
            return ImageOps.exif_transpose(img)  # always a new, fully loaded image
    except Image.UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image format Pillow recognises") from exc
    except Exception as exc:  # corrupt files raise OSError, SyntaxError, struct.error, ...
        raise ImageReadError(path, f"decoding failed ({type(exc).__name__}: {exc})") from exc


def _to_rgb_float(img: Image.Image, path: Path) -> np.ndarray:
    """Any Pillow mode -> float32 (H, W, 3) in [0, 1] following the module's conventions."""
    if img.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(
                path,
                "32-bit integer pixels outside 0..65535 (only 8- and 16-bit images are"
                " supported; convert it to a 16-bit PNG)",
            )
        gray = values.astype(np.float32) / 65535.0
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise ImageReadError(
            path,
            "32-bit float images have no agreed value range; convert it to an 8- or 16-bit PNG",
        )
    has_alpha = "A" in img.getbands() or "a" in img.getbands()
    if img.mode == "P" and "transparency" in img.info:
        has_alpha = True
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[:, :, :3], rgba[:, :, 3:]
        return rgb * alpha + (1.0 - alpha)  # composite on white
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file as float32 RGB ``(3, H, W)`` in [0, 1] (see module docstring).

    Raises :class:`ImageReadError` naming the file for a missing, unreadable, truncated or
    unsupported file.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "no such file")
    if not p.is_file():
        raise ImageReadError(p, "not a regular file (is it a folder?)")
    img = _decode(p)
    array = _to_rgb_float(img, p)  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (3, H, W)


# -- writing --------------------------------------------------------------------------------------
def write_image(
    image: torch.Tensor, path: str | os.PathLike[str], *, jpeg_quality: int = 95
) -> Path:
    """Write an RGB ``(3, H, W)`` or ``(1, 3, H, W)`` image in [0, 1] to PNG or JPEG, atomically.

    Values are quantised with :func:`to_uint8`. The file is written to a temporary name in the
    same folder and moved into place with ``os.replace``, so an interrupted run never leaves a
    half-written image that a later run would mistake for finished work. Parent folders are
    created. JPEG uses Pillow's defaults (4:2:0 chroma subsampling) with ``jpeg_quality``.
    """
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot write {p}: unsupported suffix {p.suffix!r}; use .png (lossless, recommended"
            " for SR outputs) or .jpg/.jpeg"
        )
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(
            f"write_image expects an RGB tensor (3, H, W) or (1, 3, H, W) in [0, 1]; got shape"
            f" {tuple(image.shape)} for {p}"
        )
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    pixels = to_uint8(image).permute(1, 2, 0).contiguous().cpu().numpy()  # (H, W, 3) uint8
    options = {"quality": int(jpeg_quality)} if fmt == "JPEG" else {}
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return atomic.write_bytes(p, buf.getvalue())  # the one atomic writer (temp file cleaned on failure)


# -- listing --------------------------------------------------------------------------------------
def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the name has an image suffix (case-insensitive) and is not hidden."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _scan(folder: Path, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (and sub-folders when ``recursive``), hidden entries skipped.

    Symlinked folders are followed (datasets are often assembled from links); a set of visited
    real paths stops symlink cycles.
    """
    if not recursive:
        return [p for p in folder.iterdir() if is_image_file(p) and p.is_file()]
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames if is_image_file(f))
    return found


def _sort(paths: Sequence[Path]) -> list[Path]:
    """Deterministic order, independent of file system: by path components, duplicates dropped."""
    return sorted(set(paths), key=lambda p: p.parts)


def read_list_file(list_file: str | os.PathLike[str]) -> list[str]:
    """Entries of a split/list file: one per line; blank lines and ``#`` comment lines ignored.

    Backslashes become ``/`` and a leading ``./`` is dropped, so Windows-made lists work.
    Entries are paths *inside* the dataset root: an absolute path or a ``..`` component would add
    foreign images to a benchmark or training set, so they are refused (all listed in one error).
    Symlinks inside the root are still followed: that is how datasets are assembled.
    """
    lf = Path(list_file)
    if not lf.is_file():
        raise FsrBenchDataError(
            f"list file {lf} does not exist; check the path (split files list identity folders or"
            " relative image paths, one per line)"
        )
    entries: list[str] = []
    escaping: list[str] = []
    for number, line in enumerate(lf.read_text(encoding="utf-8-sig").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry = entry.replace("\\", "/")
        while entry.startswith("./"):
            entry = entry[2:]
        entry = entry.rstrip("/")
        if entry.startswith("/") or (len(entry) > 1 and entry[1] == ":") or ".." in entry.split("/"):
            escaping.append(f"line {number}: {entry}")
        entries.append(entry)
    if escaping:
        shown = "\n  - ".join(escaping[:_MAX_LISTED_PROBLEMS])
        raise FsrBenchDataError(
            f"list file {lf} has {len(escaping)} entries that point outside the dataset root (absolute"
            f" paths or '..'):\n  - {shown}\nEntries must be identity folders or image paths relative to"
            " the root; fix or remove them."
        )
    return entries


def list_images(
    root: str | os.PathLike[str],
    list_file: str | os.PathLike[str] | None = None,
    recursive: bool = True,
) -> list[Path]:
    """Image files under ``root``, sorted deterministically (by path components).

    Layouts: flat (``root/*.png``) or identity sub-folders (``root/<id>/*.jpg``); with
    ``recursive=False`` only files directly in ``root`` (or directly in each listed folder).
    Hidden files and folders (``.name``) are skipped.

    ``list_file`` restricts the result. Each entry is classified on its own: an entry ending in an
    image suffix is a relative image path (``7203/000114.jpg``), anything else is an identity
    folder name (``7203``, ``Aaron_Sorkin``) whose images are all included. Entries that do not
    exist, or folders without images, are reported together in one error (up to 20 shown) —
    a partial split would silently change every number computed on it.

    An empty result is an error too: a benchmark over zero images means a wrong path.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FsrBenchDataError(
            f"image folder {root_path} does not exist or is not a folder; check the dataset path"
        )
    if list_file is None:
        images = _scan(root_path, recursive)
        if not images:
            raise FsrBenchDataError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root_path}"
                f"{' or its sub-folders' if recursive else ''}; check the dataset path"
            )
        return _sort(images)

    entries = read_list_file(list_file)
    if not entries:
        raise FsrBenchDataError(f"list file {list_file} has no entries (only blanks/comments)")
    images = []  # list[Path], as the scan's above
    problems: list[str] = []
    for entry in entries:
        target = root_path / entry
        if is_image_file(entry):
            if target.is_file():
                images.append(target)
            else:
                problems.append(f"{entry} (no such image file)")
        elif target.is_dir():
            found = _scan(target, recursive)
            if found:
                images.extend(found)
            else:
                problems.append(f"{entry} (folder contains no images)")
        else:
            problems.append(f"{entry} (no such identity folder)")
    if problems:
        shown = "\n  - ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise FsrBenchDataError(
            f"{len(problems)} of {len(entries)} entries of list file {list_file} are missing under"
            f" {root_path}:\n  - {shown}{tail}\nCheck that the list file belongs to this dataset"
            " root (entries are identity folder names or image paths relative to the root)."
        )
    return _sort(images)
