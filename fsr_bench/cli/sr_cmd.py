"""``fsr-bench sr``: super-resolve a user's own images (files or folders)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fsr_bench.cli._common import catches_errors, fail
from fsr_bench.errors import FsrBenchError


@catches_errors
def sr(
    images: List[Path] = typer.Argument(None, help="image files and/or folders (searched recursively)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered model name or pretrained id MODEL.TAG (see `fsr-bench list models`); default: the best shipped model at --scale"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="weights; an fsr-bench checkpoint also names its model"),
    pretrained: bool = typer.Option(False, "--pretrained", help="the model's registered pretrained weights (shipped or downloaded once, sha256-checked)"),
    scale: int = typer.Option(4, "--scale", "-s", help="with no --model/--checkpoint: the scale whose best shipped model is used (`fsr-bench list models` marks it)"),
    out: Path = typer.Option(Path("sr_out"), "--out", "-o", help="output folder"),
    device: str = typer.Option("auto", help="cpu | cuda | auto"),
    precision: str = typer.Option(
        "auto", help="fp32 | bf16 | fp16 | auto (bf16 where the CPU/GPU runs it natively, else fp32)"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last",
                                       help="NHWC activations (faster convolutions on CPU and GPU)"),
    tile: Optional[int] = typer.Option(None, "--tile", help="super-resolve in N x N LR tiles (large inputs; TANet's global attention then works per tile)"),
    overlap: int = typer.Option(16, "--overlap", help="LR pixels of context around each tile (with --tile)"),
    example: bool = typer.Option(False, "--example", help="use the face that ships with scikit-image (astronaut) as input"),
    random_init: bool = typer.Option(False, "--random-init", help="allow a learned model without weights (debugging only; outputs are meaningless)"),
    on_error: str = typer.Option("skip", "--on-error", help="skip: process the other images and list the failures at the end (exit 1); stop: stop at the first"),
    max_pixels: float = typer.Option(16e6, "--max-pixels", help="refuse an image whose output would have more pixels than this (memory guard)"),
    faces: bool = typer.Option(False, "--faces", help="inputs are camera frames or videos: detect every face, super-resolve the crops, paste back, one JSON per frame"),
    detector: str = typer.Option("mtcnn", "--detector", help="with --faces: a registered face detector (mtcnn, scrfd, plug-ins)"),
    detector_weights: Optional[str] = typer.Option(None, "--detector-weights", help="with --faces: the detector's weights file (scrfd: an insightface det_*.onnx)"),
    detector_device: Optional[str] = typer.Option(None, "--detector-device", help="with --faces: where the detector runs on whole frames (default: --device; cpu keeps frames off the accelerator)"),
    min_face: int = typer.Option(20, "--min-face", help="with --faces: smallest face kept, native pixels (the box's longer side)"),
    upsample: float = typer.Option(1.0, "--upsample", help="with --faces: upscale frames by this before detection (finds smaller faces; slower)"),
    min_score: float = typer.Option(0.0, "--min-score", help="with --faces: drop detections below this confidence (on top of the detector's thresholds)"),
    margin: float = typer.Option(0.25, "--margin", help="with --faces: context around each box per side, fraction of its longer side"),
    batch_size: int = typer.Option(16, "--batch-size", help="with --faces: face crops per forward"),
    paste: bool = typer.Option(True, "--paste/--no-paste", help="with --faces: paste the SR faces back into the (upscaled) frame"),
    paste_scale: Optional[int] = typer.Option(None, "--paste-scale", help="with --faces: scale of the pasted frame (default: the model's; 1 keeps the frame size)"),
    feather: float = typer.Option(0.1, "--feather", help="with --faces: blend ramp, fraction of the pasted face's side"),
    stride: int = typer.Option(1, "--stride", help="with --faces, videos: process every N-th frame"),
    min_iou: float = typer.Option(0.3, "--track-iou", help="with --faces, videos: IoU that continues a track"),
    video_format: Optional[str] = typer.Option(None, "--video-format", help="with --faces: pasted video as mp4 (H.264) or mkv (FFV1, lossless); default mkv for .mkv inputs, else mp4"),
    watchlist: Optional[Path] = typer.Option(None, "--watchlist", help="with --faces: identity folders DIR/<identity>/<image>; every track answered (best match, score, rank-5)"),
    watchlist_threshold: Optional[str] = typer.Option(None, "--watchlist-threshold", help="with --watchlist: a cosine threshold, or a recognition run folder / results.json whose calibrated threshold is used"),
    watchlist_far: float = typer.Option(1e-3, "--watchlist-far", help="with --watchlist-threshold RUN: the calibrated FAR whose threshold is used"),
    recogniser: str = typer.Option("mobilefacenet", "--recogniser", help="with --watchlist: a registered recogniser (see `fsr-bench list recognisers`)"),
    recogniser_weights: Optional[str] = typer.Option(None, "--recogniser-weights", help="with --watchlist: the recogniser's weights file"),
    force: bool = typer.Option(False, "--force", help="with --faces: replace the outputs of an earlier job in OUT/<name>_<model>/ (refused without)"),
) -> None:
    """Super-resolve LR face images; writes PNGs named like the inputs into OUT (a folder's
    sub-folders are kept; inputs whose names collide get their extension or a number added).

    With no --model/--checkpoint: the shipped model with the highest faces256 val PSNR at --scale
    (x4 unless given; `fsr-bench list models` marks the default and says why).
    Defaults to the fastest mode this hardware supports (``--precision auto``, channels-last);
    ``--precision fp32 --no-channels-last`` reproduces the reference path exactly.

    With --faces the inputs are camera frames or videos: every face is detected, its crop
    super-resolved and pasted back, and each frame gets a JSON (README: "Frames and video").
    """
    from fsr_bench.data.io import list_images, read_image, write_image
    from fsr_bench.models import create_model, tiling
    from fsr_bench.models.precision import PrecisionError, describe, infer, prepare, resolve_precision
    from fsr_bench.models.pretrained import list_pretrained
    from fsr_bench.models.tiling import tiled_forward
    from fsr_bench.progress import progress_bar

    if on_error not in ("skip", "stop"):
        raise fail(f"--on-error {on_error!r}: use skip or stop")
    if model is None and checkpoint is None:  # the embedded default: the best shipped model, no argument needed
        from fsr_bench.models.pretrained import default_pretrained, default_reason

        chosen = default_pretrained(scale)
        model, pretrained = chosen.id, True
        typer.echo(f"model: {chosen.id} ({default_reason(chosen, scale)})")
    if checkpoint is not None and not checkpoint.is_file():
        raise fail(f"--checkpoint {checkpoint}: no such file")
    try:
        net = create_model(model, checkpoint=checkpoint, pretrained=pretrained)
    except FsrBenchError:
        raise
    except (OSError, RuntimeError, TypeError, ValueError, EOFError) as exc:  # truncated or foreign file
        raise fail(f"--checkpoint {checkpoint}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if checkpoint is None and not pretrained and net.num_parameters() > 0 and not random_init:
        hint = (" Pass --pretrained for its shipped weights." if any(e.model == net.name for e in list_pretrained().values())
                else " Train one with `fsr-bench train`.")
        raise fail(
            f"{net.name} has learned parameters but no --checkpoint was given; its output would come "
            f"from random weights.{hint} (--random-init to debug.)"
        )
    from fsr_bench.devices import is_out_of_memory, resolve_device

    dev = resolve_device(device, option="--device")
    try:
        precision = resolve_precision(precision, dev)
    except PrecisionError as exc:
        raise fail(f"--precision: {exc}") from None
    net = prepare(net, dev, channels_last)  # type: ignore[assignment]  # same module, moved and in eval mode
    if faces:
        from fsr_bench.run.frames import FrameOptions, claim_job_folders, collect_inputs

        if example:
            raise fail("--example is a face crop; --faces takes frames or videos as arguments")
        inputs = collect_inputs(images or [])  # before the watchlist's enrolment: bad paths fail fast
        if not inputs:
            raise fail("no input frames or videos: pass image/video files or folders")

        options = FrameOptions(
            detector=detector, detector_weights=detector_weights,
            detector_device=None if detector_device is None else str(resolve_device(detector_device, option="--detector-device")),
            min_face=min_face, upsample=upsample,
            min_score=min_score, margin=margin, batch_size=batch_size, paste=paste, paste_scale=paste_scale,
            feather=feather, stride=stride, min_iou=min_iou, tile=tile, overlap=overlap, max_pixels=max_pixels,
            video_format=video_format)
        options.check()  # before the watchlist's enrolment and the detector: bad options fail fast
        names = _job_names(inputs, net.name, checkpoint)
        threshold, source = None, None
        if watchlist is not None:
            from fsr_bench.run.watchlist import Watchlist, resolve_threshold

            if watchlist_threshold is None:
                raise fail("--watchlist needs --watchlist-threshold: a cosine threshold you state, or a recognition "
                           "run folder whose calibrated threshold (at --watchlist-far) is used")
            threshold, source = resolve_threshold(watchlist_threshold, recogniser, watchlist_far)
        elif watchlist_threshold is not None:
            raise fail("--watchlist-threshold is for --watchlist")
        claim_job_folders([(p, out / n) for p, n in zip(inputs, names)], force)  # before the enrolment
        watch = None
        if watchlist is not None:
            assert threshold is not None and source is not None
            watch = Watchlist(watchlist, recogniser, recogniser_weights, threshold, source, str(dev))
        _sr_faces(inputs, names, out, net, options, checkpoint, pretrained, precision, channels_last, str(dev),
                  on_error, watch)
        return
    if watchlist is not None:
        raise fail("--watchlist needs --faces (it answers tracks of detected faces)")

    sources: list[tuple[Path, Path | None]] = []  # (output name without the model suffix, input)
    if example:
        sources.append((Path("astronaut"), None))
    for item in images or []:
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise fail(f"{item}: the folder holds no images (png, jpg, ...)")
            sources += [(p.relative_to(item), p) for p in found]
        elif item.is_file():
            sources.append((Path(item.name), item))
        else:
            raise fail(f"{item}: no such file or folder")
    if not sources:
        raise fail("no input images: pass files/folders or --example")
    names, renamed = _output_names([rel for rel, _ in sources], net.name)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"--out {out}: cannot create the folder ({exc.strerror or exc}); choose a writable folder") from None
    failures: list[str] = []
    for (_, path), name in zip(progress_bar(sources, desc=f"sr {net.name}", unit="img"), names):
        try:
            lr = example_face() if path is None else read_image(path)
            pixels = lr.shape[-2] * lr.shape[-1] * net.scale ** 2
            # --tile lifts --max-pixels (the model's memory then depends on the tile), up to the budget of
            # the assembled output, which tiles do not bound
            limit = max(max_pixels, tiling.MAX_ASSEMBLED_PIXELS) if tile else max_pixels
            if pixels > limit:
                way_out = (f"with --tile the assembled output is limited to max(--max-pixels, "
                           f"{tiling.MAX_ASSEMBLED_PIXELS / 1e6:.0f} MP): crop the image or use --faces for frames"
                           if tile else "use --tile 256, crop the face first")
                raise _TooLarge(f"{path}: {lr.shape[-1]}x{lr.shape[-2]} at x{net.scale} makes "
                                f"{pixels / 1e6:.1f} MP, more than {limit / 1e6:.1f} MP; {way_out}, or raise "
                                "--max-pixels if the memory allows (12 bytes per output pixel)")
            try:
                if tile:  # memory is bounded by the tile, not the image
                    try:
                        sr_img = tiled_forward(net, lr.unsqueeze(0), tile=tile, overlap=overlap, progress=True,
                                               forward=lambda x: infer(net, x.to(dev), precision, channels_last))
                    except ValueError as exc:
                        raise fail(f"--tile: {exc}") from None
                    sr_img = sr_img[0].clamp(0, 1).cpu()
                else:
                    sr_img = infer(net, lr.unsqueeze(0).to(dev), precision, channels_last)[0].clamp(0, 1).cpu()
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise _TooLarge(f"{path}: out of memory at {lr.shape[-1]}x{lr.shape[-2]} x{net.scale}; use --tile "
                                "256 (or a smaller one), a smaller input, or --device cpu") from None
            write_image(sr_img, out / name)
        except OSError as exc:  # the output cannot be written: every other image would fail too
            raise fail(f"cannot write {exc.filename or out / name}: {exc.strerror or exc}; "
                       "choose a writable --out") from None
        except FsrBenchError as exc:
            if on_error == "stop":
                raise fail(f"{exc} (stopped: --on-error stop)") from None
            failures.append(str(exc))
    for old, new in renamed:
        typer.echo(f"note: {old} shares its output name with another input; written as {new}")
    typer.echo(f"wrote {len(sources) - len(failures)} image(s) x{net.scale} to {out}/"
               f" ({describe(precision, channels_last, dev)}{f', {tile}-px tiles' if tile else ''})")
    if failures:
        for message in failures:
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _job_names(sources: list[Path], model: str, checkpoint: Optional[Path]) -> list[str]:
    """``<stem>_<model>`` per input; with --checkpoint also the first 8 hex of its sha256, so two
    checkpoints of one model never share a job folder."""
    if checkpoint is not None:
        from fsr_bench.atomic import sha256_file

        model = f"{model}_{sha256_file(checkpoint)[:8]}"
    names, _ = _output_names([Path(p.name) for p in sources], model)
    return [n.removesuffix(".png") for n in names]


def _sr_faces(sources: list[Path], names: list[str], out: Path, net, options, checkpoint: Optional[Path],
              pretrained: bool, precision: str, channels_last: bool, device: str, on_error: str,
              watchlist=None) -> None:
    """``--faces``: frames and videos through :func:`fsr_bench.run.frames.run_faces`."""
    from fsr_bench.models.precision import describe, infer
    from fsr_bench.protocol import ModelSpec
    from fsr_bench.run.common import checkpoint_sha
    from fsr_bench.run.frames import run_faces

    spec = ModelSpec(name=net.name, checkpoint=None if checkpoint is None else str(checkpoint), pretrained=pretrained)
    model_info = {"name": net.name, "scale": net.scale, "checkpoint": spec.checkpoint,
                  "checkpoint_sha256": checkpoint_sha(spec), "pretrained": pretrained}
    failures: list[str] = []

    def handle(exc: FsrBenchError) -> None:
        if on_error == "stop":
            raise fail(f"{exc} (stopped: --on-error stop)") from None
        failures.append(str(exc))

    try:
        jobs = run_faces(list(zip(sources, names)), out, net,
                         lambda x: infer(net, x.to(device), precision, channels_last), options, model_info,
                         describe(precision, channels_last, device), device, handle, watchlist)
    except OSError as exc:
        raise fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}; choose a writable --out") from None
    for job in jobs:
        what = (f"{job.frames} frame(s), {job.faces} face(s)" + (f" in {job.tracks} track(s)" if job.tracks else ""))
        typer.echo(f"{job.source}: {what} -> {job.out_dir}/" + (f" (pasted: {job.pasted.name})" if job.pasted else ""))
        answers = job.watchlist or {}
        for track in answers.get("tracks", []):
            verdict = "match" if track["match"] else "no match"
            typer.echo(f"  {track['track']}: {track['best']} {track['score']:.3f} ({verdict} at "
                       f"{answers['threshold']:.3f}; {track['n_faces']} face(s))")
        if job.frames_without_faces:
            typer.echo(f"note: {job.source}: no face found in {job.frames_without_faces} of {job.frames} frame(s) "
                       f"(--min-face {options.min_face}; try --upsample 2 or a lower --min-face for small faces)")
    typer.echo(f"x{net.scale} {net.name} ({describe(precision, channels_last, device)}), detector {options.detector}")
    if failures:
        for message in failures:
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


class _TooLarge(FsrBenchError):
    """An input over the ``--max-pixels`` budget."""


def _output_names(rels: list[Path], model: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``a/x.png`` -> ``a/x_<model>.png``; names that collide get their extension (``x_jpg``), then
    a number. Returns the names and the (input, output) pairs that were renamed."""
    plain = [(rel.parent / f"{rel.stem}_{model}.png").as_posix() for rel in rels]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    names: list[str] = []
    renamed: list[tuple[str, str]] = []
    taken: set[str] = set()
    for rel, name in zip(rels, plain):
        if counts[name] > 1:
            base = (rel.parent / f"{rel.stem}_{rel.suffix.lstrip('.') or 'noext'}_{model}").as_posix()
            name, n = f"{base}.png", 2
            while name in taken or name in counts:
                name, n = f"{base}_{n}.png", n + 1
            renamed.append((rel.as_posix(), name))
        taken.add(name)
        names.append(name)
    return names, renamed


def example_face(side: int = 64):
    """The astronaut portrait bundled with scikit-image, face-cropped and shrunk to ``side``²."""
    import torch
    from skimage import data

    from fsr_bench.data.resize import imresize

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255.0  # (3, 512, 512)
    face = img[:, 20:276, 100:356]  # 256x256 around the face
    return imresize(face, size=(side, side)).clamp(0, 1)
