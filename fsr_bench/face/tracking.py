"""A greedy IoU tracker: one person's faces across video frames share a track id.

The simplest tracker that works for faces at surveillance frame rates (Bochinski, Eiselein, Sikora,
"High-Speed Tracking-by-Detection Without Using Image Information", AVSS 2017 — the IOU tracker):
in each frame, pairs (track, detection) are taken in decreasing IoU of the track's last box with the
detection's box, each track and detection used at most once, and a pair is accepted only above
``min_iou``. Unmatched detections open new tracks; a track unmatched for more than ``max_age``
consecutive updates is closed and its id never reused. No appearance model and no motion model:
crossing faces can swap ids, which the per-frame JSON makes visible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IoUTracker", "box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), boxes (x1, y1, x2, y2)
    in continuous coordinates (area = width · height, no +1): an (n, m) array."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    missed: int = 0


class IoUTracker:
    """``update(boxes) -> ids``: call once per processed frame, in frame order.

    ``min_iou`` (0.3): below it a detection is a new person. With a frame stride, faces move further
    between updates; lower ``min_iou`` or the stride if ids break. ``max_age`` (5): updates a track
    survives without a match (a missed detection, a brief occlusion).
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 5):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self.min_iou = float(min_iou)
        self.max_age = int(max_age)
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def n_tracks(self) -> int:
        """How many tracks were opened so far (ids 0 … n_tracks − 1)."""
        return self._next_id

    def describe(self) -> dict[str, object]:
        return {"tracker": "greedy IoU (Bochinski et al. 2017)", "min_iou": self.min_iou, "max_age": self.max_age}

    def update(self, boxes: np.ndarray) -> list[int]:
        """Track ids for this frame's ``boxes`` (k, 4), in the same order."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids: list[int | None] = [None] * len(boxes)
        matched: set[int] = set()
        if self._tracks and len(boxes):
            iou = box_iou(np.stack([t.box for t in self._tracks]), boxes)
            # all pairs, best first; ties broken by (track, detection) order so the result is deterministic
            order = sorted(((-iou[t, d], t, d) for t in range(iou.shape[0]) for d in range(iou.shape[1])))
            for neg, t, d in order:
                if -neg < self.min_iou:
                    break
                if t in matched or ids[d] is not None:
                    continue
                matched.add(t)
                ids[d] = self._tracks[t].id
                self._tracks[t].box, self._tracks[t].missed = boxes[d], 0
        kept = []
        for t, track in enumerate(self._tracks):
            if t not in matched:
                track.missed += 1
            if track.missed <= self.max_age:
                kept.append(track)
        self._tracks = kept
        for d in range(len(boxes)):
            if ids[d] is None:
                ids[d] = self._next_id
                self._tracks.append(_Track(self._next_id, boxes[d]))
                self._next_id += 1
        return [int(i) for i in ids if i is not None]
