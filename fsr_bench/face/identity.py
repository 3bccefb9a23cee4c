"""Identity similarity of a super-resolved face to its HR original (a reconstruction metric).

Per image ``i`` and a registered recogniser φ (cosine of L2-normalised embeddings, the score every
fsr-bench recogniser uses)::

    cos_i   = ⟨φ(A_i(SR_i)), φ(A_i(HR_i))⟩          angle_i = degrees(arccos(clip(cos_i, −1, 1)))

``A_i`` is the recogniser's crop (ArcFace 5-point warp; dlib's face chip) **fixed on the HR image**:
the detector (MTCNN by default, the recognition protocol's) runs once on HR, the recogniser's
alignment is estimated there (:meth:`~fsr_bench.face.recogniser.Recogniser.reference_alignment`)
and applied unchanged to SR and HR alike (:meth:`~fsr_bench.face.recogniser.Recogniser.align_to`),
so an SR artefact can neither move nor re-shape the crop — the same reason the identity training
loss (:mod:`fsr_bench.train.identity`) warps both with the HR landmarks. An HR image where no face
is found has no identity value (None per image); the runner counts those images and leaves them out
of the means, never silently.

The angle is reported beside the cosine because means of cosines near 1 hide differences: 0.95 and
0.99 are 18.2° and 8.1°. The mean angle is the mean of per-image angles (not the angle of the mean
cosine).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["HRFace", "IdentitySimilarity", "angle_degrees"]


def angle_degrees(cosine: float) -> float:
    """Angle between two unit vectors of cosine ``cosine`` (clipped against rounding beyond ±1)."""
    return math.degrees(math.acos(min(1.0, max(-1.0, float(cosine)))))


@dataclass
class HRFace:
    """One HR image's reference: its alignment and embedding, or ``detected=False``."""

    detected: bool
    alignment: Any = None
    embedding: torch.Tensor | None = None  # (D,) L2-normalised


class IdentitySimilarity:
    """SR↔HR identity similarity with one recogniser, the alignment fixed on HR (module docstring).

    ``aligner``: a :class:`~fsr_bench.face.detect.FaceAligner` (its detector's box and landmarks are
    used; its own crops are not), ``recogniser``: a built recogniser.
    """

    def __init__(self, recogniser: Any, aligner: Any):
        self.recogniser, self.aligner = recogniser, aligner

    def describe(self) -> dict[str, Any]:
        rec = {k: v for k, v in self.recogniser.describe().items() if k not in ("device", "weights_path")}
        det = {k: v for k, v in self.aligner.describe().items()
               if k not in ("alignment", "template", "output_size")}
        return {
            "recogniser": rec,
            "detector": det,
            "alignment": "estimated once on the HR image (detector box + landmarks on HR, the recogniser's "
                         "own crop fitted there) and applied unchanged to SR and HR",
            "score": "cosine of L2-normalised embeddings; angle = degrees(arccos(cosine))",
            "undetected_hr": "images whose HR has no detected face get no identity value; counted in "
                             "n_identity_undetected and left out of the means",
        }

    def references(self, hr: Sequence[torch.Tensor]) -> list[HRFace]:
        """Detect, align and embed each HR image ``(3, H, W)`` RGB [0, 1]."""
        found = self.aligner.align([h.float() for h in hr])
        out = [HRFace(False) for _ in hr]
        todo = [i for i in range(len(hr)) if bool(found.detected[i])]
        if not todo:
            return out
        alignments = [self.recogniser.reference_alignment(hr[i].float(), found.boxes[i].numpy(),
                                                          found.landmarks[i].numpy()) for i in todo]
        crops = torch.stack([self.recogniser.align_to(hr[i].float(), a) for i, a in zip(todo, alignments)])
        emb = self.recogniser.embed(crops).float()
        for k, i in enumerate(todo):
            out[i] = HRFace(True, alignments[k], emb[k].clone())
        return out

    def cosines(self, sr: Sequence[torch.Tensor], refs: Sequence[HRFace]) -> list[float | None]:
        """Cosine of each SR image's embedding with its HR reference's (None: no face on HR)."""
        if len(sr) != len(refs):
            raise ValueError(f"{len(sr)} SR images for {len(refs)} HR references")
        todo = [i for i, r in enumerate(refs) if r.detected]
        out: list[float | None] = [None] * len(sr)
        if not todo:
            return out
        crops = torch.stack([self.recogniser.align_to(sr[i].float(), refs[i].alignment) for i in todo])
        emb = self.recogniser.embed(crops).float()
        for k, i in enumerate(todo):
            ref = refs[i].embedding
            assert ref is not None  # detected references carry their embedding
            out[i] = float(torch.dot(emb[k].double(), ref.double()))
        return out
