"""Visual comparison grids: paper Fig. 4 (reconstruction) and Fig. 5 (surveillance recognition).

Why it looks like this:

* LR is nearest-upsampled to the output size, so the reader sees the pixels the model was given
  (a smooth upsampling would flatter the input and hide how little information there is).
* Under every tile, a zoomed crop (default: the eye region of an aligned face, where the paper
  points out distortions) with a rectangle on the tile showing where it comes from. The box is a
  fraction of the image, so it works for any size (256×256 FFHQ, 216×176 CelebA).
* Each SR tile carries its own PSNR/SSIM from ``per_image.csv`` (best of the row in bold), and each
  recognition tile its cosine similarity from ``per_probe.csv``, coloured by match/no match at the
  run's threshold: the picture and the number side by side.
* Images are read with :func:`fsr_bench.data.io.read_image`, the toolkit's one image reader.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from fsr_bench.reporting.load import (
    RECOGNITION,
    RECONSTRUCTION,
    ProbeScore,
    ReportInputError,
    Run,
    Sample,
    file_forms,
)
from fsr_bench.reporting.plots import STYLE, Colour
from fsr_bench.reporting.tables import RECONSTRUCTION_METRICS, best_flags

__all__ = ["CropBox", "DEFAULT_CROP_BOX", "parse_crop_box", "recognition_grid", "reconstruction_grid"]

TILE_INCHES = 1.75  # one column, gap included
_GAP, _LEFT, _TOP, _CAPTION, _ROW_GAP = 0.06, 0.3, 0.75, 0.28, 0.12  # inches
_TITLE_CHARS, _TITLE_LINE = 19, 0.17  # column titles wrap to fit a tile; inches per extra line
_MATCH, _NO_MATCH, _MUTED = "#1a7f37", "#c0392b", "0.45"


@dataclass(frozen=True)
class CropBox:
    """A zoom box as fractions of the image: left, top, right, bottom in [0, 1]."""

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.left < self.right <= 1.0 and 0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(
                f"crop box {self.as_text()} must satisfy 0 <= left < right <= 1 and"
                " 0 <= top < bottom <= 1 (fractions of the image width/height)"
            )

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels, at least one pixel wide and high."""
        x0, y0 = int(round(self.left * width)), int(round(self.top * height))
        x1 = max(x0 + 1, int(round(self.right * width)))
        y1 = max(y0 + 1, int(round(self.bottom * height)))
        return x0, y0, min(x1, width), min(y1, height)

    def as_text(self) -> str:
        return f"{self.left:g},{self.top:g},{self.right:g},{self.bottom:g}"


#: Eye region of an FFHQ/CelebA-style aligned face: centred, upper middle (eyes sit near 46% height).
DEFAULT_CROP_BOX = CropBox(0.26, 0.34, 0.74, 0.58)


def parse_crop_box(text: str) -> CropBox:
    """``"left,top,right,bottom"`` fractions (e.g. ``"0.26,0.34,0.74,0.58"``) -> :class:`CropBox`."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(
            f"crop box {text!r} must be four comma-separated fractions left,top,right,bottom,"
            " e.g. 0.26,0.34,0.74,0.58"
        )
    return CropBox(*values)


# -- image helpers ---------------------------------------------------------------------------------
def _load(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 via the toolkit's reader; a corrupt file is a ReportInputError naming it."""
    from fsr_bench.data.io import ImageReadError, read_image, to_uint8

    try:
        return to_uint8(read_image(path)).permute(1, 2, 0).numpy()
    except ImageReadError as exc:
        raise ReportInputError(str(exc)) from exc


def _nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize: keeps the LR pixels visible as blocks."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.NEAREST))


def _letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fit ``image`` inside height×width keeping its aspect ratio, padded with white.

    Tiles are drawn at one fixed box size, so a gallery photo of another shape must not be
    stretched (a stretched face changes what the reader judges).
    """
    if image.shape[:2] == (height, width):
        return image
    scale = min(height / image.shape[0], width / image.shape[1])
    h = max(1, round(image.shape[0] * scale))
    w = max(1, round(image.shape[1] * scale))
    method = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS  # LR stays blocky
    resized = np.asarray(Image.fromarray(image).resize((w, h), method))
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top:top + h, left:left + w] = resized
    return canvas


def _blank(ax: Axes, text: str) -> None:
    ax.set_facecolor("0.93")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color=_MUTED,
            transform=ax.transAxes, wrap=True)


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("0.8")


@dataclass(frozen=True)
class _Tile:
    image: np.ndarray | None
    title: str
    caption: str = ""
    caption_colour: str = "black"
    bold: bool = False
    missing: str = "not saved"


def _draw(tiles: Sequence[Sequence[_Tile]], row_names: Sequence[str], colours: Sequence[str],
          crop: CropBox | None, title: str) -> Figure:
    """Lay out rows of tiles (plus zoomed crops when ``crop``) with titles and captions.

    Positions are computed in inches rather than left to a layout engine: image axes have a fixed
    aspect, and engines then leave large gaps between a tile and its crop.
    """
    n_rows, n_cols = len(tiles), len(tiles[0])
    # Tile box: the first LR tile (LR × scale = the SR output size), else the largest image.
    present = [t.image for row in tiles for t in row if t.image is not None]
    first = tiles[0][0].image if tiles[0][0].image is not None else (
        max(present, key=lambda im: im.shape[0] * im.shape[1]) if present else None)
    h, w = first.shape[:2] if first is not None else (1, 1)
    tile_w = TILE_INCHES - _GAP
    tile_h = tile_w * h / w
    crop_h = 0.0
    if crop is not None:
        x0, y0, x1, y1 = crop.pixels(h, w)
        crop_h = tile_w * (y1 - y0) / (x1 - x0)
    row_h = tile_h + (_GAP + crop_h if crop is not None else 0.0) + _CAPTION
    titles = [textwrap.fill(t.title, _TITLE_CHARS) for t in tiles[0]]  # long labels on 2+ lines
    top_band = _TOP + _TITLE_LINE * (max(t.count("\n") for t in titles))
    width = _LEFT + n_cols * TILE_INCHES
    height = top_band + n_rows * row_h + (n_rows - 1) * _ROW_GAP + 0.1
    fig = Figure(figsize=(width, height))

    def axes(x: float, y_top: float, h_in: float) -> Axes:  # inches from the left / from the top
        ax = fig.add_axes((x / width, 1 - (y_top + h_in) / height, tile_w / width, h_in / height))
        _bare(ax)
        return ax

    for r, row in enumerate(tiles):
        top = top_band + r * (row_h + _ROW_GAP)
        for c, tile in enumerate(row):
            x = _LEFT + c * TILE_INCHES
            ax = axes(x, top, tile_h)
            if r == 0:
                ax.set_title(titles[c], color=colours[c], fontsize=9, fontweight="bold", pad=4)
            if c == 0:
                ax.set_ylabel(row_names[r], fontsize=8)
            zoom_ax = axes(x, top + tile_h + _GAP, crop_h) if crop is not None else None
            if tile.image is None:
                _blank(ax, tile.missing)
                if zoom_ax is not None:
                    _blank(zoom_ax, "")
            else:
                shown = _letterbox(tile.image, h, w)
                ax.imshow(shown, interpolation="nearest" if c == 0 else "antialiased", aspect="auto")
                if zoom_ax is not None and crop is not None:  # zoom_ax exists only with a crop
                    x0, y0, x1, y1 = crop.pixels(h, w)
                    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           edgecolor="#ffd400", linewidth=1.2))
                    zoom_ax.imshow(shown[y0:y1, x0:x1], interpolation="nearest", aspect="auto")
            if tile.caption:
                (zoom_ax or ax).set_xlabel(tile.caption, fontsize=7.5, color=tile.caption_colour,
                                           fontweight="bold" if tile.bold else "normal", labelpad=3)
    fig.suptitle(title, fontweight="bold", y=1 - 0.12 / height, va="top")
    return fig


def _lr_tile(sample: Sample, size: tuple[int, int] | None, scale: int) -> _Tile:
    if sample.lr is None:
        return _Tile(None, f"LR (nearest ×{scale})")
    lr = _load(sample.lr)
    if size is None:
        size = (lr.shape[0] * scale, lr.shape[1] * scale)
    return _Tile(_nearest(lr, *size), f"LR (nearest ×{scale})", f"input {lr.shape[1]}×{lr.shape[0]} px")


# -- public ----------------------------------------------------------------------------------------
def reconstruction_grid(run: Run, colours: Mapping[str, Colour], *, crop: CropBox | None = DEFAULT_CROP_BOX,
                        max_samples: int = 2, title: str | None = None) -> Figure | None:
    """Fig. 4 layout: rows = samples; columns LR | each model | HR; zoomed crop under each tile;
    per-tile PSNR/SSIM from ``per_image.csv``. None when the run saved no samples."""
    if run.kind != RECONSTRUCTION:
        raise ValueError(f"reconstruction_grid needs a reconstruction run, got {run.kind} ({run.path})")
    samples = [s for s in run.samples if s.reference is not None or s.outputs][:max_samples]
    if not samples:
        return None
    labels = [row.label for row in run.rows if any(row.label in s.outputs for s in samples)]
    psnr, ssim = RECONSTRUCTION_METRICS[0], RECONSTRUCTION_METRICS[1]
    rows: list[list[_Tile]] = []
    for sample in samples:
        hr = _load(sample.reference) if sample.reference is not None else None
        outputs = {x: _load(sample.outputs[x]) for x in labels if x in sample.outputs}
        size = hr.shape[:2] if hr is not None else None  # None: LR × scale
        scores = [run.image_scores(label, sample.stem) for label in labels]
        best = best_flags([s.psnr if s else None for s in scores], psnr)
        tiles = [_lr_tile(sample, size, run.scale)]
        for i, (label, score) in enumerate(zip(labels, scores)):
            caption = ""
            if score is not None and score.psnr is not None:
                caption = f"{psnr.format(score.psnr)} dB"
                if score.ssim is not None:
                    caption += f" / {ssim.format(score.ssim)}"
            tiles.append(_Tile(outputs.get(label), label, caption, bold=best[i]))
        tiles.append(_Tile(hr, "HR", "PSNR / SSIM" if any(scores) else "ground truth"))
        rows.append(tiles)
    column_colours = ["0.25", *(_hex(colours.get(x, "black")) for x in labels), "0.25"]
    names = [f"({i + 1}) {s.stem}" for i, s in enumerate(samples)]
    with rc_context(STYLE):
        return _draw(rows, names, column_colours, crop,
                     title or f"{run.protocol_name}: visual comparison ×{run.scale}")


def _probe_score(scores: Sequence[ProbeScore], label: str, folder: str) -> ProbeScore | None:
    """The per_probe.csv entry of ``label`` for the sample folder ``folder``.

    The runner names a sample folder after the probe's file stem, or after its flattened relative
    name when stems repeat (both made file-name safe, see ``file_forms``).
    """
    for s in scores:
        if s.label != label:
            continue
        probe = s.probe.replace("\\", "/")
        if folder in file_forms(probe) | file_forms(Path(probe).stem) | file_forms(probe.replace("/", "_")):
            return s
    return None


def recognition_grid(run: Run, colours: Mapping[str, Colour], *, max_samples: int = 2,
                     title: str | None = None) -> Figure | None:
    """Fig. 5 layout: rows = probes; columns LR | each SR | gallery; each tile annotated with its
    cosine similarity to the gallery face (``per_probe.csv``). None when no samples were saved."""
    if run.kind != RECOGNITION:
        raise ValueError(f"recognition_grid needs a recognition run, got {run.kind} ({run.path})")
    samples = [s for s in run.samples if s.outputs or s.reference is not None][:max_samples]
    if not samples:
        return None
    labels = [row.label for row in run.rows if any(row.label in s.outputs for s in samples)]
    threshold = run.conventions.get("threshold")
    rows: list[list[_Tile]] = []
    for sample in samples:
        outputs = {x: _load(sample.outputs[x]) for x in labels if x in sample.outputs}
        tiles = [_lr_tile(sample, None, run.scale)]  # LR × scale: the SR output size
        subject = ""
        for label in labels:
            score = _probe_score(run.per_probe, label, sample.stem)
            subject = subject or (score.subject if score else "")
            tiles.append(_similarity_tile(outputs.get(label), label, score, threshold))
        gallery = _load(sample.reference) if sample.reference is not None else None
        tiles.append(_Tile(gallery, "Gallery", f"subject {subject}" if subject else "enrolled face"))
        rows.append(tiles)
    column_colours = ["0.25", *(_hex(colours.get(x, "black")) for x in labels), "0.25"]
    names = [f"({i + 1}) {s.stem}" for i, s in enumerate(samples)]
    with rc_context(STYLE):
        return _draw(rows, names, column_colours, None,
                     title or f"{run.protocol_name}: probes after ×{run.scale} SR vs. gallery")


def _similarity_tile(image: np.ndarray | None, label: str, score: ProbeScore | None,
                     threshold: object) -> _Tile:
    if score is None:
        return _Tile(image, label)
    if not score.detected or score.similarity is None:
        return _Tile(image, label, "no face detected", _MUTED)
    if isinstance(threshold, (int, float)):
        match = score.similarity >= threshold
        mark = "✓ match" if match else "✗ no match"
        return _Tile(image, label, f"cos {score.similarity:.4f} {mark}", _MATCH if match else _NO_MATCH,
                     bold=match)
    return _Tile(image, label, f"cos {score.similarity:.4f}")


def _hex(colour: Colour | str) -> str:
    """The method's colour, darkened by a quarter so light hues (olive, pink) read as text."""
    from matplotlib.colors import to_hex, to_rgb

    r, g, b = to_rgb(colour)
    return to_hex((0.75 * r, 0.75 * g, 0.75 * b))
