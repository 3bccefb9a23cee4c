"""Fit the map from MTCNN face boxes to dlib-detector-style boxes (for the dlib recogniser).

    python benchmarks/dlib_box_map.py            # 400 LFW dev images, seed 0

Why: dlib's 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``) was trained on boxes
from dlib's own HOG detector (dlib.net, "shape_predictor_5_face_landmarks"). fsr-bench detects once
with MTCNN for every recogniser, so detection rates and chosen faces are identical across
recognisers, and MTCNN's boxes are narrower and taller than dlib's. Fed a raw MTCNN box the
predictor's landmarks move by up to ~15 px on some LFW faces, which moves the descriptor. We
therefore shift each MTCNN box edge by a fixed fraction of the box size, the median over LFW dev
images of (HOG edge − MTCNN edge) / MTCNN size. The fitted fractions are written to
``benchmarks/results/dlib_box_map_<device>.json`` and copied into
``fsr_bench/face/dlib_recogniser.py`` (``MTCNN_TO_DLIB_BOX``); ``tests/test_dlib_recogniser.py``
checks them on other LFW dev images.

Images: a seeded sample of images of ``lfw_dev.txt`` identities (never the held-out ones), minus
the identities the tests use. Where HOG finds no face, or its best box overlaps the MTCNN box with
IoU < 0.3, the image is skipped (counted).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from fsr_bench.atomic import write_json
from fsr_bench.data.io import read_image
from fsr_bench.face.detect import FaceAligner
from fsr_bench.provenance import collect

ROOT = Path(__file__).resolve().parents[1]
TEST_IDENTITIES = {"Colin_Powell", "Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon",
                   "Donald_Rumsfeld", "George_W_Bush"}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main(argv: list[str] | None = None) -> int:
    import dlib

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path,
                   default=Path(os.environ.get("FSR_BENCH_SHARED", ROOT.parent / "shared")))
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dlib_box_map_cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    lfw = args.shared / "data/lfw"
    ids = [i for i in (args.shared / "data/splits/lfw_dev.txt").read_text().split()
           if i not in TEST_IDENTITIES]
    files = sorted(str(f.relative_to(lfw)) for i in ids for f in (lfw / i).glob("*.jpg"))
    rng = np.random.default_rng(args.seed)
    chosen = [files[k] for k in sorted(rng.choice(len(files), size=args.images, replace=False))]

    aligner = FaceAligner(selection="center")
    hog = dlib.get_frontal_face_detector()
    rel, skipped = [], 0
    for start in range(0, len(chosen), 32):
        images = [read_image(lfw / f) for f in chosen[start : start + 32]]
        found = aligner.align(images)
        for im, ok, box in zip(images, found.detected.tolist(), found.boxes.numpy()):
            rgb = np.ascontiguousarray((im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            dets = [np.array([d.left(), d.top(), d.right(), d.bottom()], float) for d in hog(rgb, 1)]
            best = max(dets, key=lambda d: iou(d, box), default=None) if ok else None
            if best is None or iou(best, box) < 0.3:
                skipped += 1
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            rel.append((best - box) / np.array([w, h, w, h]))
    rel = np.array(rel)
    median = np.median(rel, axis=0)
    print(f"{len(rel)} images used, {skipped} skipped; (dx1/w, dy1/h, dx2/w, dy2/h) median "
          f"{np.round(median, 4).tolist()}  IQR {np.round(np.subtract(*np.percentile(rel, [75, 25], 0)), 4).tolist()}")
    write_json(args.out, {
        "benchmark": "dlib_box_map",
        "what": "MTCNN box -> dlib HOG-detector box: edge shift as a fraction of the MTCNN box "
                "width (x) / height (y), median over LFW dev images",
        "images_sampled": len(chosen),
        "images_used": int(len(rel)),
        "images_skipped": skipped,
        "seed": args.seed,
        "median_dx1_dy1_dx2_dy2": [round(float(v), 4) for v in median],
        "iqr": [round(float(v), 4) for v in np.subtract(*np.percentile(rel, [75, 25], 0))],
        "dlib": dlib.__version__,
        "provenance": collect("cpu"),
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
