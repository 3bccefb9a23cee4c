"""How fast does ``fsr-bench sr CLIP --faces`` go, and where does the time go?

    python benchmarks/frames_throughput.py [--size 1280x720] [--frames 12] [--device cpu] [--model tanet_s_x4]

Composes a clip from the shared faces256 validation faces (three faces of 96, 64 and 40 px pasted
on a noisy gradient, moving a few pixels per frame), writes it as H.264 with the project's writer,
then times, on the same frames: decoding alone; detection alone (MTCNN, ``--min-face 20``); SR of
the face crops alone (batched as the pipeline batches them); and the whole pipeline with and
without paste-back (paste scale 2, H.264 out). Figures are wall-clock seconds per frame (one run
each; the machine's load is in the result's provenance). Writes
``benchmarks/results/frames_throughput_<device>.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench.atomic import write_json  # noqa: E402
from fsr_bench.data.io import read_image  # noqa: E402
from fsr_bench.data.resize import imresize  # noqa: E402
from fsr_bench.data.video import read_frames, write_video  # noqa: E402
from fsr_bench.models import create_model  # noqa: E402
from fsr_bench.models.precision import describe, infer, prepare, resolve_precision  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402
from fsr_bench.run.frames import (  # noqa: E402
    FrameOptions,
    build_detector,
    crop_square,
    detect_faces,
    run_faces,
    super_resolve_crops,
)

SIDES = (96, 64, 40)


def compose(shared: Path, w: int, h: int, n: int) -> list[torch.Tensor]:
    ids = (shared / "data/splits/faces256_val.txt").read_text().split()[: len(SIDES)]
    faces = [imresize(read_image(sorted((shared / "data/faces256" / i).glob("*.jpg"))[0]), size=(s, s)).clamp(0, 1)
             for i, s in zip(ids, SIDES)]
    starts = [(w // 12, h // 3), (w // 2, h // 2), (3 * w // 4, h // 5)]
    g = torch.Generator().manual_seed(0)
    frames = []
    for t in range(n):
        frame = (torch.linspace(0.25, 0.6, w).expand(3, h, w) + 0.04 * torch.rand(3, h, w, generator=g)).clamp(0, 1)
        for face, (x, y) in zip(faces, starts):
            s = face.shape[-1]
            frame[:, y + 2 * t : y + 2 * t + s, x + 5 * t : x + 5 * t + s] = face
        frames.append(frame)
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("FSR_BENCH_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="tanet_s_x4")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    precision = resolve_precision(args.precision, args.device)
    net = prepare(create_model(args.model, pretrained=True), args.device, True)
    forward = lambda x: infer(net, x.to(args.device), precision, True)
    options = FrameOptions(paste_scale=2)
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        write_video(clip, compose(args.shared, w, h, args.frames), fps=25)

        t = time.perf_counter()
        frames = [f.image for f in read_frames(clip)]
        figures["decode_s_per_frame"] = (time.perf_counter() - t) / len(frames)

        detector = build_detector(options, args.device)
        t = time.perf_counter()
        found = [detect_faces(detector, f[None], options)[0] for f in frames]
        figures["detect_s_per_frame"] = (time.perf_counter() - t) / len(frames)
        n_faces = sum(len(f) for f in found)
        scores = sorted(float(p) for f in found for p in f.probs)

        crops = [f[:, y0 : y0 + s, x0 : x0 + s] for f, faces in zip(frames, found)
                 for x0, y0, s in (crop_square(b, h, w, options.margin, options.crop_multiple) for b in faces.boxes)]
        t = time.perf_counter()
        super_resolve_crops(net, crops, forward, options)
        figures["sr_s_per_frame"] = (time.perf_counter() - t) / len(frames)

        info = {"name": net.name, "scale": net.scale, "checkpoint": None, "checkpoint_sha256": None, "pretrained": True}
        for label, opts in (("pipeline_no_paste_s_per_frame", replace(options, paste=False)),
                            ("pipeline_paste_x2_h264_s_per_frame", options)):
            t = time.perf_counter()
            run_faces([(clip, label)], Path(tmp) / "out", net, forward, opts, info,
                      describe(precision, True, args.device), args.device, on_error=lambda e: (_ for _ in ()).throw(e))
            figures[label] = (time.perf_counter() - t) / len(frames)

    result = {
        "what": "fsr-bench sr --faces throughput, seconds per frame (wall clock, one run each)",
        "clip": {"size": [w, h], "frames": args.frames, "faces_per_frame": len(SIDES), "face_sides_px": list(SIDES),
                 "faces_pasted": args.frames * len(SIDES), "faces_detected": n_faces,
                 "lowest_detection_scores": [round(v, 3) for v in scores[:5]],
                 "source": "faces256 val split, composed; read back from H.264, as the pipeline reads it"},
        "model": args.model, "inference": describe(precision, True, args.device), "detector": detector.describe(),
        "options": {"min_face": options.min_face, "batch_size": options.batch_size,
                    "frame_batch": options.frame_batch, "paste_scale": options.paste_scale},
        "figures": {k: round(v, 4) for k, v in figures.items()},
        "provenance": {**collect(args.device), "loadavg": os.getloadavg()},
    }
    out = args.out or ROOT / "benchmarks/results" / f"frames_throughput_{args.device.split(':')[0]}.json"
    write_json(out, result)
    print(result["figures"], "->", out)


if __name__ == "__main__":
    main()
