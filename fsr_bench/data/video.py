"""Video in and out through PyAV (the ``av`` wheel bundles FFmpeg's libraries; no system ffmpeg).

Frames travel as the images of :mod:`fsr_bench.data.io` do: float32 RGB ``(3, H, W)`` in [0, 1],
converted by FFmpeg's swscale from whatever the stream stores (``yuv420p`` for most camera files).
Reading decodes every frame in order and keeps every ``stride``-th one (index 0, stride, 2·stride, …),
each with its presentation time in seconds; seeking would be faster for large strides but lands
on key frames, so the kept indices would depend on the encoder's GOP.

Writing picks the codec from the suffix: ``.mp4`` → H.264 (libx264, ``yuv420p``, CRF 18 — visually
lossless, what players accept), ``.mkv`` → FFV1 on ``bgr0`` (bit-exact RGB, for checks that compare
pixels). Even frame sizes are required by ``yuv420p``; an odd size is refused with advice rather than
cropped silently. Output is written to a temporary file and renamed into place
(:func:`fsr_bench.atomic.write_with`), so an interrupted run leaves no playable half file.

References: PyAV documentation (https://pyav.basswood-io.com/), FFmpeg codec docs for libx264 and FFV1.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from fsr_bench import atomic
from fsr_bench.data.io import FsrBenchDataError, to_uint8

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoFrame",
    "VideoInfo",
    "is_video_file",
    "probe_video",
    "read_frames",
    "write_video",
]

#: Suffixes (lower-case) read as video; the container is probed, so any FFmpeg demuxer works.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                                            ".ts", ".wmv", ".flv"})

# suffix -> (container format, codec, pixel format, codec options)
_WRITERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".mp4": ("mp4", "libx264", "yuv420p", {"crf": "18", "preset": "veryfast"}),
    ".mkv": ("matroska", "ffv1", "bgr0", {}),
}


class VideoError(FsrBenchDataError):
    """A video that cannot be read or written; the message names the file and what to do."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # average frame rate the container states (0.0 if it states none)
    frames: int | None  # frame count the container states; None where it does not (count by decoding)
    codec: str


@dataclass(frozen=True)
class VideoFrame:
    index: int  # 0-based position among all decoded frames (before the stride)
    time: float | None  # presentation time in seconds (None if the stream has no timestamps)
    image: torch.Tensor  # (3, H, W) float32 RGB in [0, 1]


def is_video_file(path: str | os.PathLike[str]) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES


def _open(path: Path) -> Any:
    import av

    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if not path.is_file():
        raise VideoError(f"{path}: not a regular file (is it a folder?)")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"cannot read video {path}: {exc}; is it a video file FFmpeg can decode?") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    return container


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Stream properties without decoding (the frame count is the container's claim, if any)."""
    p = Path(path)
    container = _open(p)
    try:
        s = container.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        return VideoInfo(int(s.codec_context.width), int(s.codec_context.height),
                         float(rate) if rate else 0.0, int(s.frames) or None, s.codec_context.name)
    finally:
        container.close()


def read_frames(path: str | os.PathLike[str], stride: int = 1) -> Iterator[VideoFrame]:
    """Every ``stride``-th decoded frame of the first video stream, in order.

    Raises :class:`VideoError` for a missing or undecodable file, or one with no frame at all
    (after the iterator is exhausted: the count is only known by decoding).
    """
    import av

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    p = Path(path)
    container = _open(p)
    n = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if n % stride == 0:
                    rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0
                    yield VideoFrame(n, float(frame.time) if frame.time is not None else None, image)
                n += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot decode video {p} after {n} frame(s): {exc}") from None
    finally:
        container.close()
    if n == 0:
        raise VideoError(f"{p}: the video holds no decodable frame")


def write_video(path: str | os.PathLike[str], frames: Iterable[torch.Tensor], fps: float) -> int:
    """Encode RGB ``(3, H, W)`` [0, 1] frames (all the same size) to ``path``; returns the count.

    The codec follows the suffix (see the module docstring). ``frames`` may be a generator: frames
    are encoded as they come, so a long clip never sits in memory whole.
    """
    import av

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _WRITERS:
        raise VideoError(f"cannot write {p}: unsupported suffix {suffix!r}; use .mp4 (H.264) or .mkv "
                         "(FFV1, lossless)")
    if not fps > 0:
        raise VideoError(f"cannot write {p}: frame rate must be positive, got {fps}")
    fmt, codec, pix_fmt, options = _WRITERS[suffix]
    rate = Fraction(fps).limit_denominator(1001)
    count = 0

    def fill(f: BinaryIO) -> None:
        nonlocal count
        with av.open(f, "w", format=fmt) as out:
            stream: Any = None
            for img in frames:
                h, w = int(img.shape[-2]), int(img.shape[-1])
                if stream is None:
                    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
                        raise VideoError(f"cannot write {p}: {w}x{h} is odd, which H.264 yuv420p cannot "
                                         "store; write .mkv instead or choose an even size")
                    stream = out.add_stream(codec, rate=rate, options=options)
                    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                elif (h, w) != (stream.height, stream.width):
                    raise VideoError(f"cannot write {p}: frame {count} is {w}x{h}, the first was "
                                     f"{stream.width}x{stream.height}")
                rgb = to_uint8(img).permute(1, 2, 0).contiguous().cpu().numpy()
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
                count += 1
            if stream is None:
                raise VideoError(f"cannot write {p}: no frames to write")
            for packet in stream.encode():  # flush the encoder's delayed frames
                out.mux(packet)

    try:
        atomic.write_with(p, fill)
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot write video {p}: {exc}") from None
    return count
