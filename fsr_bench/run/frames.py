"""``fsr-bench sr FRAME_OR_VIDEO… --faces``: detect every face in camera frames, super-resolve the
crops, paste them back, and say what was found in one JSON per frame.

Pipeline (per chunk of ``frame_batch`` frames, so a long clip streams through bounded memory):

1. **detect** with a registered detector (:func:`fsr_bench.face.create_detector`: ``mtcnn``,
   ``scrfd``, plug-ins) on the frame, optionally upsampled by ``upsample`` first (bicubic) so that
   faces below the detector's own minimum become visible; boxes and landmarks are mapped back to
   native frame pixels. Faces whose box's longer side is below ``min_face`` native pixels are
   dropped (a detector whose builder takes ``min_face_size`` — MTCNN — is also told, scaled by
   ``upsample``, so it does not search for them);
2. **track** (videos): a greedy IoU tracker (:class:`fsr_bench.face.tracking.IoUTracker`) gives one
   person's faces a shared id;
3. **crop** a square around each box at native resolution: side = the box's longer side times
   ``1 + 2·margin``, rounded up to a multiple of ``crop_multiple`` (so crops of similar faces share
   a size and batch together), moved inside the frame (the extra context is real pixels, never
   padding);
4. **super-resolve** the crops, same-size crops batched (``batch_size``), through the one inference
   path of ``fsr-bench sr`` (:func:`fsr_bench.models.precision.infer`, and
   :func:`fsr_bench.models.tiling.tiled_forward` for crops above ``tile``). Only crops reach the
   model: a 4K frame never does;
5. **paste back** (optional) each SR face, feathered (:mod:`fsr_bench.face.paste`), into the frame
   upscaled by ``paste_scale`` (default: the model's scale; bicubic ``align_corners=False``, the
   pixel-area convention in which LR pixel ``x`` covers HR pixels ``[x·s, (x+1)·s)``), at the crop's
   square scaled by the same factor;
6. **write** each SR face (PNG), the pasted frame (PNG) or clip (video), and one JSON per frame
   (:class:`fsr_bench.results.FrameRecord`).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from fsr_bench import atomic
from fsr_bench.data.io import is_image_file, read_image, write_image
from fsr_bench.data.video import VideoError, is_video_file, probe_video, read_frames, write_video
from fsr_bench.devices import is_out_of_memory
from fsr_bench.errors import FsrBenchError
from fsr_bench.face import DETECTORS, create_detector
from fsr_bench.face.detect import Detector, Faces
from fsr_bench.face.paste import paste_face
from fsr_bench.face.tracking import IoUTracker
from fsr_bench.models.tiling import MAX_ASSEMBLED_PIXELS
from fsr_bench.results import FaceRecord, FrameRecord

if TYPE_CHECKING:
    from fsr_bench.models.base import SuperResolver
    from fsr_bench.run.watchlist import Watchlist

__all__ = ["FaceJob", "FrameOptions", "FramesError", "claim_job_folders", "crop_square", "detect_faces", "run_faces"]

# MTCNN's 5 landmarks: left eye, right eye, nose, mouth corners ("left" = image left)
CONVENTIONS = {
    "box_xyxy": "x1, y1, x2, y2 in native input-frame pixels (continuous: a pixel spans [x, x+1))",
    "landmarks_xy": "five (x, y) points in native frame pixels: left eye, right eye, nose tip, left and "
                    "right mouth corner (left = image left)",
    "inter_eye_px": "Euclidean distance between the two eye landmarks, native frame pixels",
    "face_px": "the box's longer side, native frame pixels (what min_face is compared with)",
    "crop_xywh": "the square super-resolved: native pixels [x, x+w) x [y, y+h)",
    "paste_xywh": "where the SR face went in the pasted frame (its pixels, paste_scale x the crop)",
    "score": "the detector's confidence for the face",
    "track_id": "same id = same person across frames of one video (greedy IoU tracker); null for a still image",
}


# detector input per call, in (upsampled) pixels: a few 1080p frames; memory grows with it
DETECT_PIXELS = 16e6
# the pasted frame (float32 RGB, and as much again while it is upscaled): the budget of any assembled output
PASTE_PIXELS = MAX_ASSEMBLED_PIXELS


class FramesError(FsrBenchError, ValueError):
    """Bad ``--faces`` options or input; the message says what to change."""


@dataclass(frozen=True)
class FrameOptions:
    detector: str = "mtcnn"
    detector_weights: str | None = None
    detector_device: str | None = None  # None: the model's device
    min_face: int = 20  # native pixels (the box's longer side)
    upsample: float = 1.0  # frame scale before detection (> 1 finds smaller faces)
    min_score: float = 0.0  # detector confidence floor on top of the detector's own thresholds
    margin: float = 0.25  # context around the box on each side, as a fraction of its longer side
    crop_multiple: int = 8  # crop sides are rounded up to this (batching; the model's size_multiple)
    batch_size: int = 16  # crops per forward
    frame_batch: int = 8  # frames detected and super-resolved together
    paste: bool = True
    paste_scale: int | None = None  # None: the model's scale
    feather: float = 0.1  # blend ramp width as a fraction of the pasted square's side
    stride: int = 1  # video: every stride-th frame
    min_iou: float = 0.3  # tracker
    max_age: int = 5  # tracker
    tile: int | None = None  # crops larger than this go through tiled_forward
    overlap: int = 16
    max_pixels: float = 16e6  # SR output pixels per crop (memory guard), as `fsr-bench sr --max-pixels`
    video_format: str | None = None  # "mp4" | "mkv"; None: mkv for an .mkv input, else mp4

    def check(self) -> None:
        if self.min_face < 1:
            raise FramesError(f"--min-face must be >= 1 pixel, got {self.min_face}")
        if not (self.upsample >= 1.0 and math.isfinite(self.upsample)):
            raise FramesError(f"--upsample must be >= 1 (a factor applied before detection), got {self.upsample}")
        if not 0 <= self.margin <= 2:
            raise FramesError(f"--margin must be in [0, 2] (fraction of the face box per side), got {self.margin}")
        if self.batch_size < 1 or self.frame_batch < 1 or self.stride < 1 or self.crop_multiple < 1:
            raise FramesError("--batch-size, --frame-batch, --stride and the crop multiple must be >= 1")
        if self.paste_scale is not None and self.paste_scale < 1:
            raise FramesError(f"--paste-scale must be >= 1, got {self.paste_scale}")
        if not 0 <= self.feather <= 0.5:
            raise FramesError(f"--feather must be in [0, 0.5] (fraction of the pasted side), got {self.feather}")
        if self.video_format not in (None, "mp4", "mkv"):
            raise FramesError(f"--video-format {self.video_format!r}: use mp4 or mkv")
        if not 0 <= self.min_score <= 1:
            raise FramesError(f"--min-score must be in [0, 1] (a detector confidence), got {self.min_score}")
        if not 0 <= self.min_iou <= 1:
            raise FramesError(f"--track-iou must be in [0, 1] (box overlap that continues a track), got {self.min_iou}")


@dataclass
class FaceJob:
    """What was done to one input, for the command's summary."""

    source: Path
    out_dir: Path
    frames: int = 0
    faces: int = 0
    frames_without_faces: int = 0
    tracks: int = 0
    pasted: Path | None = None
    watchlist: dict[str, Any] | None = None  # the answers written to watchlist.json


# -- the job folders ----
#: what a job writes into ``OUT/<name>/`` besides ``<stem>_pasted.*``: a forced rerun removes these
JOB_ENTRIES = ("frames", "faces", "watchlist.json")


def claim_job_folders(jobs: Sequence[tuple[Path, Path]], force: bool) -> None:
    """Each (input, job folder) holds one run: a non-empty folder is refused (its frames, faces and
    watchlist answers would mix with this run's), or with ``force`` emptied of a job's outputs first."""
    import shutil

    used = [(src, folder) for src, folder in jobs if folder.is_dir() and any(folder.iterdir())]
    if used and not force:
        more = f" (and {len(used) - 1} more)" if len(used) > 1 else ""
        raise FramesError(f"{used[0][1]} already holds an `sr --faces` job{more}; its frames, faces and watchlist "
                          "answers would mix with this run's. Choose another --out, or pass --force to replace it")
    for src, folder in used:
        for entry in JOB_ENTRIES:
            path = folder / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for pasted in folder.glob(f"{src.stem}_pasted.*"):
            pasted.unlink()


# -- geometry --------------------------------------------------------------------------------------
def crop_square(box: Sequence[float], height: int, width: int, margin: float, multiple: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the native-resolution square crop around ``box`` (see the module docstring).

    The square is centred on the box, side rounded up to ``multiple``, then shifted to lie inside
    the frame; a side larger than the frame's shorter side shrinks to the largest multiple that fits
    (or the shorter side itself for frames smaller than ``multiple``)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    want = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    side = max(multiple, int(math.ceil(want / multiple)) * multiple)
    fit = min(height, width)
    if side > fit:
        side = fit // multiple * multiple or fit
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def _face_px(box: np.ndarray) -> np.ndarray:
    return np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])


# -- detection -------------------------------------------------------------------------------------
def build_detector(options: FrameOptions, device: str) -> Detector:
    """The registered detector, told the minimum face size where its builder takes one."""
    kwargs: dict[str, Any] = {}
    builder = DETECTORS.get(options.detector).builder
    if "min_face_size" in inspect.signature(builder).parameters:
        kwargs["min_face_size"] = max(1, int(math.ceil(options.min_face * options.upsample)))
    try:
        return create_detector(options.detector, weights=options.detector_weights, device=device, **kwargs)
    except (ValueError, TypeError) as exc:
        raise FramesError(f"--detector {options.detector}: {exc}") from None


def detect_faces(detector: Detector, frames: torch.Tensor, options: FrameOptions) -> list[Faces]:
    """Faces in a batch of same-size frames ``(b, 3, H, W)``, in native pixels, filtered by
    ``min_face`` and ``min_score``."""
    h, w = int(frames.shape[-2]), int(frames.shape[-1])
    u = options.upsample
    x = frames
    if u != 1.0:
        size = (int(round(h * u)), int(round(w * u)))
        x = F.interpolate(frames, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    if min(x.shape[-2:]) < detector.min_side:
        return [Faces.none() for _ in range(frames.shape[0])]
    out = []
    for found in detector.detect(x):
        if u != 1.0 and len(found):
            # continuous coordinates (a pixel spans [x, x+1)): align_corners=False resizing maps native x
            # to x·s exactly, so boxes and landmarks alike divide by the per-axis factor
            sy, sx = size[0] / h, size[1] / w
            found = Faces(found.boxes / np.array([sx, sy, sx, sy]), found.probs, found.landmarks / np.array([sx, sy]))
        keep = (_face_px(found.boxes) >= options.min_face) & (found.probs >= options.min_score) if len(found) \
            else np.zeros(0, dtype=bool)
        out.append(Faces(found.boxes[keep], found.probs[keep], found.landmarks[keep]))
    return out


# -- super-resolution of crops ---------------------------------------------------------------------
def super_resolve_crops(net: "SuperResolver", crops: list[torch.Tensor], forward: Callable[[torch.Tensor], torch.Tensor],
                        options: FrameOptions) -> list[torch.Tensor]:
    """SR of each crop (3, S, S), same-size crops batched; outputs on the CPU, clamped to [0, 1]."""
    from fsr_bench.models.tiling import tiled_forward

    out: list[torch.Tensor | None] = [None] * len(crops)
    by_side: dict[int, list[int]] = {}
    for i, c in enumerate(crops):
        by_side.setdefault(int(c.shape[-1]), []).append(i)
    for side, idx in by_side.items():
        pixels = (side * net.scale) ** 2
        tiled = options.tile is not None and side > options.tile
        if not tiled and pixels > options.max_pixels:
            raise FramesError(f"a {side}x{side} face crop at x{net.scale} makes {pixels / 1e6:.1f} MP, more than "
                              f"--max-pixels {options.max_pixels / 1e6:.1f} MP; use --tile 256 or raise --max-pixels")
        for start in range(0, len(idx), options.batch_size):
            chunk = idx[start : start + options.batch_size]
            batch = torch.stack([crops[i] for i in chunk])
            if tiled:
                assert options.tile is not None
                sr = tiled_forward(net, batch, tile=options.tile, overlap=options.overlap, forward=forward)
            else:
                sr = forward(batch)
            for i, face in zip(chunk, sr.clamp(0, 1).cpu()):
                out[i] = face
    return [o for o in out if o is not None]


# -- the whole job ---------------------------------------------------------------------------------
@dataclass
class _Frame:
    index: int
    time: float | None
    image: torch.Tensor


@dataclass
class _Ctx:
    """What every frame of a job is processed with."""

    net: "SuperResolver"
    forward: Callable[[torch.Tensor], torch.Tensor]
    options: FrameOptions
    detector: Detector
    paste_scale: int
    common: dict[str, Any]
    watchlist: "Watchlist | None"


def run_faces(
    sources: Sequence[tuple[Path, str]],
    out: Path,
    net: "SuperResolver",
    forward: Callable[[torch.Tensor], torch.Tensor],
    options: FrameOptions,
    model_info: dict[str, Any],
    precision: str,
    device: str,
    on_error: Callable[[FsrBenchError], None],
    watchlist: "Watchlist | None" = None,
) -> list[FaceJob]:
    """Process each (input path, output folder name) into ``out/<name>/``; returns one job per input.

    ``forward``: the model's batched inference (e.g. ``precision.infer`` bound to its options);
    ``model_info``: name, scale, checkpoint, checkpoint_sha256, pretrained — written to every JSON.
    ``on_error`` receives a per-input toolkit error (unreadable file…) and decides: re-raise or go on.
    ``watchlist``: answer every track against it (``out/<name>/watchlist.json``).
    """
    from fsr_bench.progress import progress_bar
    from fsr_bench.provenance import collect

    options.check()
    detector = build_detector(options, options.detector_device or device)
    paste_scale = options.paste_scale or net.scale
    common = {
        "model": model_info,
        "precision": precision,
        "detector": {"name": detector.name, **detector.describe(), "min_face": options.min_face,
                     "upsample": options.upsample, "min_score": options.min_score},
        "options": {k: v for k, v in asdict(options).items()
                    if k not in ("detector", "detector_weights", "detector_device")}
        | {"paste_scale": paste_scale},
        "conventions": CONVENTIONS,
        "provenance": collect(device),
    }
    ctx = _Ctx(net, forward, options, detector, paste_scale, common, watchlist)
    jobs: list[FaceJob] = []
    # one bar over the inputs (a folder of frames); each video also gets its own, per frame
    for path, name in progress_bar(sources, desc="faces", unit="input", disable=len(sources) < 2):
        job = FaceJob(path, out / name)
        if watchlist is not None:
            watchlist.start()
        try:
            if is_video_file(path):
                _run_video(job, ctx, progress_bar)
            else:
                _run_image(job, ctx)
        except FsrBenchError as exc:
            on_error(exc)
            continue
        if watchlist is not None:
            job.watchlist = {"source": str(path), **watchlist.answers()}
            atomic.write_json(job.out_dir / "watchlist.json", job.watchlist)
        jobs.append(job)
    return jobs


def _run_image(job: FaceJob, ctx: _Ctx) -> None:
    image = read_image(job.source)
    frame = _Frame(0, None, image)
    pasted = next(_process_chunk([frame], job, ctx, None, ctx.common))
    job.frames = 1
    if pasted is not None:
        job.pasted = job.out_dir / f"{job.source.stem}_pasted.png"
        write_image(pasted, job.pasted)


def _run_video(job: FaceJob, ctx: _Ctx, progress_bar) -> None:
    options = ctx.options
    info = probe_video(job.source)
    tracker = IoUTracker(options.min_iou, options.max_age)
    total = -(-info.frames // options.stride) if info.frames else None
    bar = progress_bar(total=total, desc=f"faces {job.source.name}", unit="frame")
    video_common = {**ctx.common, "tracker": tracker.describe(),
                    "video": {"fps": info.fps, "width": info.width, "height": info.height, "codec": info.codec,
                              "stride": options.stride}}

    def pasted_frames() -> Iterator[torch.Tensor]:
        chunk: list[_Frame] = []
        for vf in read_frames(job.source, options.stride):
            chunk.append(_Frame(vf.index, vf.time, vf.image))
            if len(chunk) == options.frame_batch:
                yield from _chunk_outputs(chunk)
                chunk = []
        if chunk:
            yield from _chunk_outputs(chunk)

    def _chunk_outputs(chunk: list[_Frame]) -> Iterator[torch.Tensor]:
        for pasted in _process_chunk(chunk, job, ctx, tracker, video_common):
            job.frames += 1
            bar.update()
            if pasted is not None:
                yield pasted

    try:
        if options.paste:
            fmt = options.video_format or ("mkv" if job.source.suffix.lower() == ".mkv" else "mp4")
            target = job.out_dir / f"{job.source.stem}_pasted.{fmt}"
            fps = info.fps / options.stride if info.fps else 25.0 / options.stride
            write_video(target, pasted_frames(), fps)
            job.pasted = target
        else:
            for _ in pasted_frames():
                pass
    finally:
        bar.close()
    if job.frames == 0:  # read_frames raises for a clip with no frame; a stride cannot skip frame 0
        raise VideoError(f"{job.source}: no frame was processed")
    job.tracks = tracker.n_tracks


def _process_chunk(frames: list[_Frame], job: FaceJob, ctx: _Ctx, tracker: IoUTracker | None,
                   common: dict[str, Any]) -> Iterator[torch.Tensor | None]:
    """Detect, track, crop, SR (all crops of the chunk batched together), paste, write; yields each
    frame's pasted image (None when pasting is off)."""
    net, options, detector, paste_scale = ctx.net, ctx.options, ctx.detector, ctx.paste_scale
    found: list[Faces] = []
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        by_size.setdefault((int(f.image.shape[-2]), int(f.image.shape[-1])), []).append(i)
    detections: dict[int, Faces] = {}
    for (h, w), idx in by_size.items():
        # frames per detector call: bounded by pixels (a chunk of upsampled 4K frames would not fit)
        step = max(1, int(DETECT_PIXELS // (h * w * options.upsample ** 2)))
        for start in range(0, len(idx), step):
            part = idx[start : start + step]
            for i, faces in zip(part, detect_faces(detector, torch.stack([frames[i].image for i in part]), options)):
                detections[i] = faces
    found = [detections[i] for i in range(len(frames))]

    crops: list[torch.Tensor] = []
    placed: list[list[tuple[int, int, int]]] = []
    ids: list[list[int | None]] = []
    for f, faces in zip(frames, found):
        h, w = int(f.image.shape[-2]), int(f.image.shape[-1])
        squares = [crop_square(b, h, w, options.margin, options.crop_multiple) for b in faces.boxes]
        placed.append(squares)
        crops += [f.image[:, y0 : y0 + s, x0 : x0 + s] for x0, y0, s in squares]
        ids.append(list(tracker.update(faces.boxes)) if tracker is not None else [None] * len(faces))
    try:
        srs = super_resolve_crops(net, crops, ctx.forward, options) if crops else []
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise FramesError(f"{job.source}: out of memory super-resolving {len(crops)} face crop(s); use --batch-size 1, "
                          "--tile 256, or --device cpu") from None

    k = 0
    for f, faces, squares, track_ids in zip(frames, found, placed, ids):
        canvas = None
        canvas_px = f.image.shape[-2] * f.image.shape[-1] * paste_scale ** 2
        if options.paste and canvas_px > PASTE_PIXELS:
            raise FramesError(f"{job.source}: a {f.image.shape[-1]}x{f.image.shape[-2]} frame pasted at x{paste_scale} "
                              f"makes {canvas_px / 1e6:.1f} MP, more than the paste budget of {PASTE_PIXELS / 1e6:.0f} MP; "
                              "use --paste-scale 1 (or 2), or --no-paste (the SR faces are in faces/ either way)")
        if options.paste:
            canvas = f.image.clone() if paste_scale == 1 else F.interpolate(
                f.image[None], scale_factor=paste_scale, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        records = []
        for j, ((x0, y0, side), track) in enumerate(zip(squares, track_ids)):
            sr = srs[k]
            k += 1
            stem = f"{f.index:06d}_t{track:04d}" if track is not None else f"{f.index:06d}_f{j:02d}"
            rel = f"faces/{stem}.png"
            write_image(sr, job.out_dir / rel)
            paste_xywh = None
            if canvas is not None:
                target = side * paste_scale
                face = sr if target == sr.shape[-1] else F.interpolate(
                    sr[None], size=(target, target), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)
                paste_face(canvas, face, x0 * paste_scale, y0 * paste_scale, options.feather * target)
                paste_xywh = [x0 * paste_scale, y0 * paste_scale, target, target]
            box, pts = faces.boxes[j], faces.landmarks[j]
            if ctx.watchlist is not None:
                key = f"t{track:04d}" if track is not None else f"f{j:02d}"
                ctx.watchlist.add(key, f.index, sr, (pts - np.array([x0, y0])) * net.scale)
            records.append(FaceRecord(
                box_xyxy=[float(v) for v in box], score=float(faces.probs[j]),
                landmarks_xy=[[float(x), float(y)] for x, y in pts],
                inter_eye_px=float(np.hypot(*(pts[1] - pts[0]))), face_px=float(_face_px(box[None])[0]),
                track_id=track, crop_xywh=[x0, y0, side, side], sr_file=rel,
                sr_size_wh=[int(sr.shape[-1]), int(sr.shape[-2])], paste_xywh=paste_xywh))
        record = FrameRecord(source=str(job.source), frame_index=f.index, time_s=f.time,
                             frame_size_wh=[int(f.image.shape[-1]), int(f.image.shape[-2])],
                             n_faces=len(records), faces=records, **common)
        atomic.write_text(job.out_dir / "frames" / f"{f.index:06d}.json", record.model_dump_json(indent=2) + "\n")
        job.faces += len(records)
        job.frames_without_faces += not records
        yield canvas


def collect_inputs(items: Sequence[Path]) -> list[Path]:
    """Files as given; folders searched recursively for images and videos (sorted)."""
    from fsr_bench.data.io import list_images

    found: list[Path] = []
    for item in items:
        if item.is_dir():
            inside = list_images(item) + sorted(p for p in item.rglob("*") if p.is_file() and is_video_file(p))
            if not inside:
                raise FramesError(f"{item}: the folder holds no images or videos")
            found += inside
        elif item.is_file():
            if not (is_image_file(item) or is_video_file(item)):
                raise FramesError(f"{item}: not an image or video file (by its suffix)")
            found.append(item)
        else:
            raise FramesError(f"{item}: no such file or folder")
    return found
