"""SCRFD face detector (Guo, Deng, Lattas, Zafeiriou, "Sample and Computation Redistribution for
Efficient Face Detection", ICLR 2022) through ``insightface.model_zoo.get_model``.

SCRFD finds far smaller faces than MTCNN and gives the same five landmarks in the same order (left
eye, right eye, nose, left and right mouth corner), so it plugs into :class:`FaceAligner` unchanged:
``FaceAligner("scrfd", weights="~/.insightface/models/buffalo_l/det_10g.onnx")``.

Its weights are not redistributable with fsr-bench and there is no stable per-file URL: they come
inside insightface's model packs (deepinsight/insightface, ``model_zoo``): ``buffalo_l`` →
``det_10g.onnx``, ``buffalo_m`` → ``det_2.5g.onnx``, ``buffalo_s`` / ``buffalo_sc`` →
``det_500m.onnx``, ``antelopev2`` → ``scrfd_10g_bnkps.onnx``. With internet,
``insightface.app.FaceAnalysis(name="buffalo_l")`` downloads and unpacks a pack into
``~/.insightface/models/<pack>/``; that default location is searched for ``buffalo_l/det_10g.onnx``
when no file is given. Only models with the keypoint branch (``*_bnkps`` / the packs' detectors)
are accepted: alignment needs the five landmarks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsr_bench.face import register_detector
from fsr_bench.face.detect import Detector, Faces
from fsr_bench.face.onnx_recogniser import onnx_session_kwargs
from fsr_bench.weights import WeightsUnavailable, sha256_file

__all__ = ["DEFAULT_SCRFD", "SCRFDDetector", "scrfd"]

#: Where insightface's own downloader puts the default pack's detector.
DEFAULT_SCRFD = Path("~/.insightface/models/buffalo_l/det_10g.onnx")

_WHERE_FROM = (
    "SCRFD weights come in insightface's model packs: buffalo_l/det_10g.onnx (default), "
    "buffalo_m/det_2.5g.onnx, buffalo_s/det_500m.onnx, antelopev2/scrfd_10g_bnkps.onnx. With "
    "internet, `python -c \"from insightface.app import FaceAnalysis; FaceAnalysis(name='buffalo_l')\"` "
    "downloads buffalo_l into ~/.insightface/models/ (or fetch buffalo_l.zip from "
    "https://github.com/deepinsight/insightface/releases and unzip it there); then pass "
    "weights=<path to the .onnx> or leave it unset for the buffalo_l default."
)


class SCRFDDetector(Detector):
    """insightface's ``SCRFD`` model behind the :class:`Detector` contract.

    ``det_thresh`` (0.5) and ``nms_thresh`` (0.4) are insightface's defaults (``FaceAnalysis``);
    ``input_size`` is the (width, height) every image is letterboxed to (640×640 as in
    ``FaceAnalysis.prepare``; small images are upsampled, which is what lets SCRFD see tiny faces).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        det_thresh: float = 0.5,
        nms_thresh: float = 0.4,
        input_size: tuple[int, int] = (640, 640),
        device: str | torch.device = "cpu",
    ):
        from insightface.model_zoo import get_model
        from insightface.model_zoo.scrfd import SCRFD

        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"SCRFD model {path} does not exist. {_WHERE_FROM}")
        model = get_model(str(path), **onnx_session_kwargs(device))
        if not isinstance(model, SCRFD):
            raise ValueError(
                f"{path} is not an SCRFD detection model (insightface routes it to "
                f"{type(model).__name__ if model is not None else 'nothing'}). {_WHERE_FROM}"
            )
        if not model.use_kps:
            raise ValueError(f"{path}: this SCRFD model has no landmark outputs; alignment needs "
                             "the five keypoints (use a *_bnkps model or a pack's det_*.onnx)")
        self.device = torch.device(device)
        model.prepare(ctx_id=0 if self.device.type == "cuda" else -1, det_thresh=float(det_thresh),
                      nms_thresh=float(nms_thresh), input_size=tuple(int(v) for v in input_size))
        self.model = model
        self.path = path
        self.sha256 = sha256_file(path)
        self.det_thresh, self.nms_thresh = float(det_thresh), float(nms_thresh)
        self.input_size = tuple(int(v) for v in input_size)

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        return {
            "detector": f"SCRFD (insightface {metadata.version('insightface')})",
            "weights_file": self.path.name,
            "weights_sha256": self.sha256,
            "det_thresh": self.det_thresh,
            "nms_thresh": self.nms_thresh,
            "input_size_wh": list(self.input_size),
        }

    def detect(self, batch: torch.Tensor) -> list[Faces]:
        # insightface models take OpenCV images: BGR uint8 (HWC). Quantise like MTCNN does so both
        # detectors see the bytes a decoded image file would give.
        images = (batch.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        out = []
        for rgb in images.cpu().numpy():
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            det, kps = self.model.detect(bgr, input_size=self.input_size)
            if det is None or len(det) == 0:
                out.append(Faces.none())
                continue
            out.append(Faces(np.asarray(det[:, :4], np.float64), np.asarray(det[:, 4], np.float64),
                             np.asarray(kps, np.float64).reshape(-1, 5, 2)))
        return out


@register_detector
def scrfd(
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    det_thresh: float = 0.5,
    nms_thresh: float = 0.4,
    input_size: tuple[int, int] = (640, 640),
) -> SCRFDDetector:
    """SCRFD from an insightface pack; ``weights`` defaults to ``~/.insightface/models/buffalo_l/det_10g.onnx``."""
    path = Path(weights).expanduser() if weights is not None else DEFAULT_SCRFD.expanduser()
    if not path.is_file():
        given = "given" if weights is not None else "default"
        raise WeightsUnavailable(f"SCRFD weights not found ({given} path {path}). {_WHERE_FROM}")
    return SCRFDDetector(path, det_thresh=det_thresh, nms_thresh=nms_thresh, input_size=input_size,
                         device=device)
