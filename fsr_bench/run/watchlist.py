"""``--watchlist DIR``: who, among enrolled identities, each track of super-resolved faces is.

* **Enrolment**: ``DIR/<identity>/<image>`` — every image through the registered detector
  (MTCNN, largest face) and the recogniser's own alignment; an identity's template is the
  L2-normalised mean of its images' L2-normalised embeddings. Images where no face is found are
  listed and left out; an identity left with none is an error.
* **Probes**: each SR face is aligned with the *frame detector's* five landmarks carried into the SR
  face (native ``(x, y)`` → ``((x − x0)·s, (y − y0)·s)`` for a crop at ``(x0, y0)`` and scale ``s``),
  so SR artefacts cannot move the alignment and a face too degraded to re-detect is still answered.
  A track's embedding is the normalised mean of its faces' embeddings (a still image: each face is
  its own track).
* **Answer** per track: cosine similarity to every template, the rank-5 list, the best identity and
  whether its score reaches the threshold (and per face, from the face's own embedding: best
  identity, score, match). The threshold is stated (a number) or read from a
  recognition run's calibration (``conventions.calibration.per_recogniser.<recogniser>.thresholds``
  at the chosen FAR, set on HR-vs-HR pairs of subjects disjoint from its evaluation subjects;
  :mod:`fsr_bench.metrics.operating_points`). A calibrated threshold transfers only to the same
  recogniser, detector and alignment convention, which the answer records.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsr_bench.errors import FsrBenchError

__all__ = ["Watchlist", "WatchlistError", "resolve_threshold"]

RANKS = 5


class WatchlistError(FsrBenchError, ValueError):
    """A watchlist folder, recogniser or threshold that cannot be used; the message says why."""


def _cosine_threshold(value: Any, where: str) -> float:
    """A threshold, stated or read: a finite number in [-1, 1] (a bool, a string, a list are not)."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not -1.0 <= number <= 1.0:
        raise WatchlistError(f"{where} = {value!r}: a cosine threshold must be a number in [-1, 1]")
    return float(number)


def _finite_or_none(value: Any) -> float | None:
    """A recorded rate for the answer's provenance; anything but a finite number is recorded as null
    (never a NaN token in watchlist.json)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def resolve_threshold(value: str, recogniser: str, far: float) -> tuple[float, dict[str, Any]]:
    """``value``: a number (a stated threshold) or a recognition run folder / its ``results.json``
    holding a calibrated threshold for ``recogniser`` at ``far``. Returns (threshold, its source).

    The read threshold passes the stated one's checks, under its key's name: a tampered or
    hand-edited results file cannot silently answer every track "no match"."""
    try:
        stated: float | None = float(value)
    except ValueError:
        stated = None
    if stated is not None:
        stated = _cosine_threshold(stated, "--watchlist-threshold")
        return stated, {"kind": "stated", "value": stated}
    from fsr_bench.results import read_run

    path = Path(value)
    if not path.exists():
        raise WatchlistError(f"--watchlist-threshold {path}: not a number, and no such run folder or results.json; "
                             "state a threshold in [-1, 1] or name a recognition run folder")
    file = path / "results.json" if path.is_dir() else path
    run = read_run(file)
    calibration = run.conventions.get("calibration")
    key = "conventions.calibration.per_recogniser"
    if not isinstance(calibration, dict) or not calibration.get("per_recogniser"):
        raise WatchlistError(f"{file}: conventions.calibration is missing — the run had no `calibration:` block; "
                             "rerun its protocol with one, or state a threshold")
    per = calibration["per_recogniser"]
    if not isinstance(per, dict):
        raise WatchlistError(f"{file}: {key} must map recogniser names to their calibration; the file is "
                             "malformed — rerun its protocol, or state a threshold")
    if recogniser not in per:
        raise WatchlistError(f"{file}: no calibration for recogniser {recogniser!r} (it has: {', '.join(per)}); "
                             "choose --recogniser accordingly")
    entry = per[recogniser]
    thresholds = entry.get("thresholds") if isinstance(entry, dict) else None
    if not isinstance(thresholds, dict):
        raise WatchlistError(f"{file}: {key}.{recogniser}.thresholds must map FARs to thresholds; the file is "
                             "malformed — rerun its protocol, or state a threshold")
    far_key = f"{far:g}"
    if far_key not in thresholds:
        raise WatchlistError(f"{file}: {key}.{recogniser}.thresholds has no FAR "
                             f"{far_key} (it has: {', '.join(thresholds)}); choose --watchlist-far from those")
    threshold = _cosine_threshold(thresholds[far_key], f"{file}: {key}.{recogniser}.thresholds.{far_key}")

    def recorded(name: str) -> float | None:
        values = entry.get(name)
        return _finite_or_none(values.get(far_key)) if isinstance(values, dict) else None

    detector = run.conventions.get("detector")
    return threshold, {
        "kind": "calibrated", "run": str(file), "protocol_name": run.protocol_name, "protocol_hash": run.protocol_hash,
        "recogniser": recogniser, "target_far": far, "far_reached": recorded("far_reached"), "tar": recorded("tar"),
        "calibration_detector": detector.get("detector_name") if isinstance(detector, dict) else None,
    }


class Watchlist:
    """Enrolled identity templates and the per-track answers (see the module docstring)."""

    def __init__(self, folder: Path, recogniser: str, recogniser_weights: str | None, threshold: float,
                 threshold_source: dict[str, Any], device: str):
        from fsr_bench.data.io import list_images, read_image
        from fsr_bench.face import create_recogniser
        from fsr_bench.face.detect import FaceAligner

        if not folder.is_dir():
            raise WatchlistError(f"--watchlist {folder}: no such folder (expected DIR/<identity>/<image>)")
        try:
            self.recogniser = create_recogniser(recogniser, weights=recogniser_weights, device=device)
        except (ValueError, TypeError) as exc:
            raise WatchlistError(f"--recogniser {recogniser}: {exc}") from None
        self.threshold, self.threshold_source = float(threshold), threshold_source
        self.folder = folder
        identities = {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir()}
        identities = {k: v for k, v in identities.items() if v}
        if not identities:
            raise WatchlistError(f"--watchlist {folder}: no identity folder with images in it "
                                 "(expected DIR/<identity>/<image>)")
        aligner = FaceAligner("mtcnn", recogniser=self.recogniser, selection="largest", device=device)
        self.detector = aligner.describe()
        names, templates, self.undetected = [], [], []
        for name, files in identities.items():
            aligned = aligner.align([read_image(f) for f in files])
            self.undetected += [str(f) for f, d in zip(files, aligned.detected.tolist()) if not d]
            if not bool(aligned.detected.any()):
                raise WatchlistError(f"--watchlist {folder}: no face found in any image of {name!r}; "
                                     "replace them with images that show the face")
            e = self.recogniser.embed(aligned.faces[aligned.detected])
            templates.append(torch.nn.functional.normalize(e.mean(0), dim=0))
            names.append(name)
        self.names = names
        self.templates = torch.stack(templates).numpy().astype(np.float64)
        self.start()

    def start(self) -> None:
        """Forget the tracks of the previous input (track ids are per input)."""
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._frames: dict[str, list[int]] = {}
        self._faces: list[tuple[str, int, np.ndarray]] = []  # (track, frame, embedding) of every face

    def add(self, key: str, frame_index: int, sr_face: torch.Tensor, landmarks_sr: np.ndarray) -> None:
        """One SR face of track ``key`` with its landmarks in SR-face pixels."""
        box = np.array([0, 0, sr_face.shape[-1], sr_face.shape[-2]], dtype=np.float64)
        aligned = self.recogniser.align(sr_face.float(), box, landmarks_sr)
        e = self.recogniser.embed(aligned[None])[0].numpy().astype(np.float64)
        self._sums[key] = self._sums[key] + e if key in self._sums else e
        self._counts[key] = self._counts.get(key, 0) + 1
        self._frames.setdefault(key, []).append(frame_index)
        self._faces.append((key, frame_index, e))

    def answers(self) -> dict[str, Any]:
        """Per track: best identity, score, match at the threshold, rank-5; plus how they were made."""
        from fsr_bench.metrics.recognition import cosine_similarity_matrix

        tracks = []
        for key, total in self._sums.items():
            scores = cosine_similarity_matrix(total[None], self.templates)[0]
            order = np.argsort(-scores, kind="stable")[:RANKS]
            best = int(order[0])
            tracks.append({
                "track": key, "n_faces": self._counts[key], "frames": self._frames[key],
                "best": self.names[best], "score": float(scores[best]),
                "match": bool(scores[best] >= self.threshold),
                "rank5": [{"identity": self.names[int(i)], "score": float(scores[int(i)])} for i in order],
            })
        faces = []
        if self._faces:
            scores = cosine_similarity_matrix(np.stack([e for _, _, e in self._faces]), self.templates)
            for (key, frame_index, _), row in zip(self._faces, scores):
                best = int(np.argmax(row))  # the first of equal scores, as the tracks' stable sort
                faces.append({"track": key, "frame": frame_index, "best": self.names[best],
                              "score": float(row[best]), "match": bool(row[best] >= self.threshold)})
        return {
            "watchlist": str(self.folder), "identities": len(self.names),
            "threshold": self.threshold, "threshold_source": self.threshold_source,
            "recogniser": self.recogniser.describe(), "enrolment_detector": self.detector,
            "enrolment_undetected": self.undetected,
            "conventions": {
                "template": "L2-normalised mean of an identity's L2-normalised embeddings",
                "track_embedding": "L2-normalised mean of the track's SR-face embeddings",
                "probe_alignment": "frame detector's landmarks carried into the SR face (x - x0)·s",
                "score": "cosine similarity; match: best score >= threshold",
                "faces": "each face answered on its own (its own embedding), in the order found",
            },
            "tracks": tracks,
            "faces": faces,
        }
