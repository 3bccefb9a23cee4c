"""LFW-style verification accuracy of the recognition pipeline (MTCNN → alignment → recogniser).

    python benchmarks/lfw_verification.py                         # 3000 + 3000 pairs, seed 0
    python benchmarks/lfw_verification.py --pairs-per-fold 100    # quicker: 1000 + 1000 pairs
    python benchmarks/lfw_verification.py --recogniser onnx:../shared/weights/mobilefacenet/MobileFaceNet.onnx
    python benchmarks/lfw_verification.py --recogniser dlib       # -> lfw_verification_dlib.json

Why: every SCface number fsr-bench reports rests on this pipeline. If detection, alignment,
normalisation or flip-augmentation were subtly wrong, verification accuracy on clean LFW faces
would drop well below the recogniser's published figure (MODEL.md: 98.92 % on the standard LFW
pairs; dlib: 99.38 %); the target here is >= 98 % on our own pairs. Every recogniser gets the same
MTCNN detections; each crops them its own way (``FaceAligner(recogniser=...)``: ArcFace 112×112 for
MobileFaceNet and ONNX models, dlib's 150×150 chips for dlib).

Pairs (seeded, reproducible): the 840 identities of ``shared/data/splits/lfw_dev.txt`` — never the
held-out ones — are shuffled and split into 10 identity-disjoint groups, like LFW View 2's folds.
Within each group, ``pairs-per-fold`` genuine pairs (an identity drawn uniformly, then two distinct
images of it; so George-Bush-sized classes do not dominate) and as many impostor pairs (two
distinct identities, one image each) are drawn without repetition. Accuracy is the LFW 10-fold
protocol (threshold chosen on 9 folds, applied to the 10th; mean ± population std).

Second condition, "shrunk": each aligned 112×112 face is resized to 28×32 (width × height, the
aspect of a surveillance face crop; MODEL.md's setting) and back to 112×112 with MATLAB-style
bicubic (``fsr_bench.data.resize.imresize``, antialiased). Detection runs on the original image, so
this isolates the recogniser's sensitivity to lost detail — the gap a super-resolver should close.
For another crop size the shrunk size scales with it (dlib's 150×150 chip: 38×43); the chip's field
of view differs from the ArcFace crop's, so "shrunk" numbers compare across recognisers only roughly.

Recognisers with a native score besides cosine (``descriptors()`` and ``native_threshold``;
dlib: Euclidean distance of raw descriptors, threshold 0.6) also get ``results.native``: the same
10-fold accuracy on that score, and the accuracy of the fixed native rule.

Images whose face MTCNN misses are kept: their pairs score -inf ("no match"), and the count is
reported. Per-image embeddings are cached in ``$FSR_BENCH_HOME/cache/lfw_verification`` (outside
the repository), keyed by everything that changes them, so reruns skip detection and embedding.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fsr_bench.atomic import write_json
from fsr_bench.data.io import read_image
from fsr_bench.data.resize import imresize
from fsr_bench.face import create_recogniser
from fsr_bench.face.detect import FaceAligner
from fsr_bench.metrics.recognition import eer, tar_at_far, verification_accuracy_10fold
from fsr_bench.provenance import collect, stable_hash
from fsr_bench.weights import fsr_bench_home

ROOT = Path(__file__).resolve().parents[1]
N_FOLDS = 10
DEFAULT_PER_FOLD = 300
REFERENCES = {
    "mobilefacenet": "MODEL.md: 98.92% ± 0.59 (standard LFW pairs), 96.47% shrunk to 28x32",
    "dlib": "dlib blog (King 2017): 99.38% on the standard LFW pairs (dlib's own alignment)",
}


def machine_description() -> str:
    """CPU model and core count (from /proc/cpuinfo where available) and the current load."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} logical CPUs{load}"


# -- pairs -------------------------------------------------------------------------------------
def make_pairs(
    images: dict[str, list[str]], per_fold: int, seed: int
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Identity-disjoint folds of ``per_fold`` genuine + ``per_fold`` impostor pairs, in fold order.

    ``images``: identity → sorted relative image paths. Returns pairs (a, b) and ``is_same``; fold
    k is the contiguous block ``[2·per_fold·k, 2·per_fold·(k+1))``.
    """
    rng = np.random.default_rng(seed)
    ids = sorted(images)
    rng.shuffle(ids)
    pairs: list[tuple[str, str]] = []
    same: list[bool] = []
    for group in np.array_split(np.array(ids), N_FOLDS):
        multi = [i for i in group if len(images[i]) >= 2]
        genuine: set[tuple[str, str]] = set()
        impostor: set[tuple[str, str]] = set()
        for target, draw in ((genuine, "genuine"), (impostor, "impostor")):
            attempts = 0
            while len(target) < per_fold:
                attempts += 1
                if attempts > 100 * per_fold:
                    raise SystemExit(
                        f"cannot draw {per_fold} distinct {draw} pairs from {len(group)} identities;"
                        " lower --pairs-per-fold"
                    )
                if draw == "genuine":
                    files = images[multi[rng.integers(len(multi))]]
                    i, j = rng.choice(len(files), size=2, replace=False)
                    a, b = files[i], files[j]
                else:
                    p, q = rng.choice(len(group), size=2, replace=False)
                    fa, fb = images[group[p]], images[group[q]]
                    a, b = fa[rng.integers(len(fa))], fb[rng.integers(len(fb))]
                target.add((min(a, b), max(a, b)))
        for target, flag in ((genuine, True), (impostor, False)):
            ordered = sorted(target)
            rng.shuffle(ordered)
            pairs += ordered
            same += [flag] * len(ordered)
    return pairs, np.array(same)


# -- embeddings (cached) -----------------------------------------------------------------------
class EmbeddingCache:
    """Per-image results for one configuration in a single ``.npz`` (rewritten atomically).

    A row is (detected, full, shrunk, native); ``native`` is the recogniser's raw descriptor for
    recognisers with a native score (:meth:`descriptors`), else an empty array.
    """

    def __init__(self, folder: Path | None, config: dict):
        self.path = folder / f"{stable_hash(config)[:16]}.npz" if folder else None
        self.rows: dict[str, tuple[bool, np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.path and self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            native = data["native"] if "native" in data else np.zeros((len(data["files"]), 0))
            for f, d, e, s, n in zip(data["files"], data["detected"], data["full"], data["shrunk"],
                                     native):
                self.rows[str(f)] = (bool(d), e, s, n)

    def save(self) -> None:
        if not self.path or not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files = sorted(self.rows)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            files=np.array(files),
            detected=np.array([self.rows[f][0] for f in files]),
            full=np.stack([self.rows[f][1] for f in files]),
            shrunk=np.stack([self.rows[f][2] for f in files]),
            native=np.stack([self.rows[f][3] for f in files]),
        )
        os.replace(tmp, self.path)


def embed_images(
    files: list[str], lfw: Path, aligner: FaceAligner, recogniser, shrink_hw: tuple[int, int],
    cache: EmbeddingCache, chunk: int,
) -> int:
    """Detect, align and embed (full and shrunk) every file not yet cached; returns how many."""
    todo = [f for f in files if f not in cache.rows]
    print(f"{len(files)} images, {len(files) - len(todo)} cached, {len(todo)} to process", flush=True)
    t0 = time.perf_counter()
    dim = recogniser.embedding_dim
    native_dim = dim if hasattr(recogniser, "descriptors") else 0
    for start in range(0, len(todo), chunk):
        batch = todo[start : start + chunk]
        aligned = aligner.align([read_image(lfw / f) for f in batch])
        full = np.zeros((len(batch), dim), np.float32)
        shrunk = np.zeros((len(batch), dim), np.float32)
        native = np.zeros((len(batch), native_dim), np.float32)
        hit = aligned.detected.nonzero().flatten()
        if hit.numel():
            faces = aligned.faces[hit]  # (n, 3, *input_size)
            small = imresize(faces, size=shrink_hw)  # (n, 3, 32, 28) for a 112×112 crop
            back = imresize(small, size=recogniser.input_size).clamp(0, 1)
            full[hit.numpy()] = recogniser.embed(faces).numpy()
            shrunk[hit.numpy()] = recogniser.embed(back).numpy()
            if native_dim:
                native[hit.numpy()] = recogniser.descriptors(faces).numpy()
        for k, f in enumerate(batch):
            cache.rows[f] = (bool(aligned.detected[k]), full[k], shrunk[k], native[k])
        done = start + len(batch)
        rate = done / (time.perf_counter() - t0)
        print(f"  {done}/{len(todo)}  {rate:.1f} img/s  eta {(len(todo) - done) / rate:.0f} s", flush=True)
        if (start // chunk) % 10 == 9:
            cache.save()  # an interrupted run keeps most of its work
    cache.save()
    return len(todo)


# -- scoring -----------------------------------------------------------------------------------
def score(pairs: list[tuple[str, str]], same: np.ndarray, cache: EmbeddingCache, which: int) -> dict:
    sims = np.empty(len(pairs))
    for k, (a, b) in enumerate(pairs):
        (da, *ea), (db, *eb) = cache.rows[a], cache.rows[b]
        sims[k] = float(ea[which] @ eb[which]) if (da and db) else -np.inf
    return _summary(sims, same)


def score_native(pairs: list[tuple[str, str]], same: np.ndarray, cache: EmbeddingCache,
                 threshold: float) -> dict:
    """Euclidean distance of raw descriptors, scored as similarity = −distance."""
    dist = np.empty(len(pairs))
    for k, (a, b) in enumerate(pairs):
        (da, *ea), (db, *eb) = cache.rows[a], cache.rows[b]
        dist[k] = float(np.linalg.norm(ea[2] - eb[2])) if (da and db) else np.inf
    out = _summary(-dist, same)
    out["score"] = "similarity = -(Euclidean distance of raw single-view descriptors)"
    out["fixed_threshold"] = threshold
    out["accuracy_at_fixed_threshold"] = float(np.mean((dist < threshold) == same))
    return out


def _summary(sims: np.ndarray, same: np.ndarray) -> dict:
    res = verification_accuracy_10fold(sims, same, N_FOLDS)
    finite = np.isfinite(sims)
    return {
        "accuracy": res.mean,
        "accuracy_std": res.std,
        "fold_accuracies": res.fold_accuracies.tolist(),
        "thresholds": res.thresholds.tolist(),
        "eer": eer(sims[same & finite], sims[~same & finite]),
        "tar_at_far_1e-2": tar_at_far(sims[same & finite], sims[~same & finite], 1e-2),
        "mean_genuine_similarity": float(sims[same & finite].mean()),
        "mean_impostor_similarity": float(sims[~same & finite].mean()),
    }


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_shared = Path(os.environ.get("FSR_BENCH_SHARED", ROOT.parent / "shared"))
    p.add_argument("--shared", type=Path, default=default_shared, help="the shared data folder")
    p.add_argument("--pairs-per-fold", type=int, default=DEFAULT_PER_FOLD,
                   help="genuine (= impostor) per fold")
    p.add_argument("--machine", default=None, help="machine description for the JSON "
                   "(default: CPU model, cores, and the load average at the start)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recogniser", default="mobilefacenet", help="registered name or onnx:<path>")
    p.add_argument("--weights", default=None, help="explicit weights file for the recogniser")
    p.add_argument("--no-flip", action="store_true", help="single-view embeddings")
    p.add_argument("--selection", default="center", choices=("largest", "probability", "center"),
                   help="which face to keep when MTCNN finds several (LFW: the centred one)")
    p.add_argument("--min-face-size", type=int, default=20)
    p.add_argument("--shrink", default="28x32", help="WIDTHxHEIGHT for the shrunk condition")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest here: MTCNN runs thousands of tiny ops, "
                   "and OpenMP spin-waiting makes them ~10x slower on a shared machine)")
    p.add_argument("--chunk", type=int, default=64, help="images per detection/embedding step")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="default: $FSR_BENCH_HOME/cache/lfw_verification")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/lfw_verification_<device>.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    lfw, split = args.shared / "data" / "lfw", args.shared / "data" / "splits" / "lfw_dev.txt"
    if not split.is_file():
        print(f"error: {split} not found; pass --shared or set FSR_BENCH_SHARED", file=sys.stderr)
        return 2
    w, h = (int(v) for v in args.shrink.lower().split("x"))
    ids = split.read_text().split()
    images = {i: sorted(f"{i}/{p.name}" for p in (lfw / i).glob("*.jpg")) for i in ids}
    pairs, same = make_pairs(images, args.pairs_per_fold, args.seed)
    files = sorted({f for pair in pairs for f in pair})
    print(f"{len(ids)} dev identities; {int(same.sum())} genuine + {int((~same).sum())} impostor "
          f"pairs over {len(files)} images (seed {args.seed})", flush=True)

    device_kind = torch.device(args.device).type
    tag = device_kind if args.recogniser == "mobilefacenet" else args.recogniser
    if args.out is None and not tag.isidentifier():
        print(f"error: give --out for recogniser {args.recogniser!r} (named by a path)", file=sys.stderr)
        return 2
    out = args.out or ROOT / "benchmarks" / "results" / f"lfw_verification_{tag}.json"

    t0 = time.perf_counter()
    recogniser = create_recogniser(args.recogniser, weights=args.weights, device=args.device,
                                   flip=not args.no_flip)
    # the shrunk size scales with the recogniser's crop (28x32 is defined on a 112x112 crop)
    ch, cw = recogniser.input_size
    w, h = round(w * cw / 112), round(h * ch / 112)
    aligner = FaceAligner(min_face_size=args.min_face_size, selection=args.selection,
                          recogniser=recogniser, device=args.device)
    config = {
        "aligner": aligner.describe(),
        "recogniser": {k: v for k, v in recogniser.describe().items() if k not in ("device", "weights_path")},
        "shrink_wh": [w, h],
        "resize": "fsr_bench.data.resize.imresize (MATLAB bicubic, antialiased)",
        "reader": "fsr_bench.data.io.read_image",
    }
    cache_dir = None if args.no_cache else (args.cache_dir or fsr_bench_home() / "cache" / "lfw_verification")
    cache = EmbeddingCache(cache_dir, config)
    processed = embed_images(files, lfw, aligner, recogniser, (h, w), cache, args.chunk)
    elapsed = time.perf_counter() - t0

    detected = np.array([cache.rows[f][0] for f in files])
    results = {"full": score(pairs, same, cache, 0), "shrunk": score(pairs, same, cache, 1)}
    if hasattr(recogniser, "descriptors"):
        results["native"] = score_native(pairs, same, cache, recogniser.native_threshold)
    undetected_pairs = int(sum(not (cache.rows[a][0] and cache.rows[b][0]) for a, b in pairs))
    for name, r in results.items():
        print(f"{name:>7}: accuracy {100 * r['accuracy']:.2f}% ± {100 * r['accuracy_std']:.2f}  "
              f"EER {100 * r['eer']:.2f}%  TAR@FAR=1% {100 * r['tar_at_far_1e-2']:.2f}%")
    print(f"detected {int(detected.sum())}/{len(files)} images; {undetected_pairs} pairs scored as "
          f"no-match; {elapsed:.0f} s")

    write_json(out, {
        "benchmark": "lfw_verification",
        "protocol": {
            "identities": f"{len(ids)} from lfw_dev.txt, 10 identity-disjoint folds",
            "genuine_pairs": int(same.sum()),
            "impostor_pairs": int((~same).sum()),
            "images": len(files),
            "seed": args.seed,
            "accuracy": "LFW 10-fold: threshold best on 9 folds, applied to the 10th; mean ± std (ddof=0)",
            "undetected": "pairs with an undetected face score -inf (no match)",
            "shrunk": f"aligned {cw}x{ch} -> {w}x{h} (WxH) -> {cw}x{ch}, MATLAB bicubic",
            "subset": None if args.pairs_per_fold == DEFAULT_PER_FOLD else (
                f"{args.pairs_per_fold} genuine + {args.pairs_per_fold} impostor pairs per fold "
                f"instead of the default {DEFAULT_PER_FOLD} (a separately drawn, smaller pair set)"),
        },
        "machine": args.machine or machine_description(),
        "config": config,
        "images_detected": int(detected.sum()),
        "pairs_with_undetected_face": undetected_pairs,
        "results": results,
        "runtime_s": round(elapsed, 1),
        "images_processed_this_run": processed,
        "images_from_cache": len(files) - processed,
        "reference": REFERENCES.get(args.recogniser, "none recorded for this recogniser"),
        "provenance": collect(args.device),
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
