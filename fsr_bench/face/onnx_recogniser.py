"""Any ONNX face-embedding model as a recogniser (``onnx:<path>``), loaded by insightface.

``insightface.model_zoo.get_model`` (deepinsight/insightface, ``model_zoo/model_zoo.py`` and
``arcface_onnx.py``) opens the file in onnxruntime, routes it by its graph (a 112×112-style square
input and one output → ``ArcFaceONNX``, a recognition model; five or more outputs → ``SCRFD``, a
detector) and reads its input name and shapes. A batch dimension fixed at 1 (e.g. the shared
``MobileFaceNet.onnx``) is served by looping over samples, a symbolic one gets whole batches.

Pixel normalisation cannot be read reliably from a graph, and a wrong guess silently degrades every
number downstream, so it is chosen explicitly (or looked up for files whose SHA-256 we know):

* ``"insightface"`` — what insightface itself uses for the file: ``255·x`` when one of the graph's
  first eight nodes is a ``Sub``/``_minus`` and one a ``Mul``/``_mul`` (old MXNet exports that
  normalise internally), else ``(255·x − 127.5) / 127.5``. Right for the models of insightface's
  packs (``buffalo_l/w600k_r50.onnx``, ``buffalo_s/w600k_mbf.onnx``, ``antelopev2/glintr100.onnx``);
* ``"arcface"``  — ``(255·x − 127.5) / 127.5`` regardless of the graph;
* ``"imagenet"`` — ``(x − mean) / std`` with ImageNet statistics: the shared ``MobileFaceNet.onnx``
  exported from foamliu/MobileFaceNet (insightface's rule would pick "arcface" for it — wrong);
* ``"raw255"``   — ``255·x`` regardless of the graph.

Where the files come from: insightface's model packs (``buffalo_l``, ``buffalo_m``, ``buffalo_s``,
``buffalo_sc``, ``antelopev2``), downloaded with internet by
``insightface.app.FaceAnalysis(name=<pack>)`` into ``~/.insightface/models/<pack>/``; nothing is
downloaded here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fsr_bench.face import register_recogniser
from fsr_bench.face.recogniser import Recogniser
from fsr_bench.weights import WeightsUnavailable, sha256_file

__all__ = ["NORMALIZATIONS", "KNOWN_MODELS", "OnnxRecogniser", "onnx", "onnx_session_kwargs"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)

#: name → (function on an NCHW float32 RGB [0,1] array, description recorded by describe())
NORMALIZATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "arcface": (lambda x: (x * 255.0 - 127.5) / 127.5, "(255*x - 127.5) / 127.5 (insightface)"),
    "imagenet": (
        lambda x: (x - _IMAGENET_MEAN) / _IMAGENET_STD,
        "(x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225) (ImageNet)",
    ),
    "raw255": (lambda x: x * 255.0, "255*x (the graph normalises internally)"),
}
#: resolved per file from insightface's reading of the graph (see the module docstring)
INSIGHTFACE = "insightface"

#: SHA-256 of ONNX files whose input convention we have verified → normalisation
KNOWN_MODELS: dict[str, str] = {
    # shared/weights/mobilefacenet/MobileFaceNet.onnx (foamliu MobileFaceNet export), MODEL.md
    "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507": "imagenet",
}

_WHERE_FROM = (
    "ONNX recognition models come in insightface's packs, e.g. buffalo_l/w600k_r50.onnx or "
    "buffalo_s/w600k_mbf.onnx (MobileFaceNet, WebFace600K): with internet, `python -c \"from "
    "insightface.app import FaceAnalysis; FaceAnalysis(name='buffalo_s')\"` unpacks one into "
    "~/.insightface/models/<pack>/. The shared MobileFaceNet export is "
    "shared/weights/mobilefacenet/MobileFaceNet.onnx."
)


def onnx_session_kwargs(device: str | torch.device) -> dict:
    """``get_model`` keyword arguments: providers for a torch device string (never a silent CPU
    fallback) and quiet session options (onnxruntime warnings would drown benchmark output)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return {"providers": _providers(device), "sess_options": options}


def _providers(device: str | torch.device) -> list[str]:
    import onnxruntime as ort

    kind = torch.device(device).type
    available = ort.get_available_providers()
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise RuntimeError(
        f"onnxruntime has no provider for device {str(device)!r} (available: {available}); "
        "install onnxruntime-gpu for CUDA, or use device='cpu'"
    )


class OnnxRecogniser(Recogniser):
    """insightface's ``ArcFaceONNX`` (its onnxruntime session) behind the :class:`Recogniser` contract."""

    def __init__(
        self,
        path: str | os.PathLike,
        normalization: str | None = None,
        device: str | torch.device = "cpu",
        flip: bool = True,
        batch_size: int = 64,
    ):
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"ONNX model {path} does not exist. {_WHERE_FROM}")
        sha = sha256_file(path)
        if normalization is None:
            normalization = KNOWN_MODELS.get(sha)
            if normalization is None:
                raise ValueError(
                    f"cannot tell the input normalisation of {path} (unknown file, SHA-256 {sha}). "
                    f"Pass normalization= one of {sorted([*NORMALIZATIONS, INSIGHTFACE])}: "
                    "'insightface' for models of insightface's packs (w600k_mbf.onnx, "
                    "w600k_r50.onnx), 'imagenet' for foamliu's MobileFaceNet export."
                )
        if normalization not in (*NORMALIZATIONS, INSIGHTFACE):
            raise ValueError(f"unknown normalization {normalization!r}; choose from "
                             f"{sorted([*NORMALIZATIONS, INSIGHTFACE])}")

        model = get_model(str(path), **onnx_session_kwargs(device))
        if not isinstance(model, ArcFaceONNX):
            kind = type(model).__name__ if model is not None else "no known model type"
            hint = " It is a detector: use it as detector 'scrfd'." if kind == "SCRFD" else ""
            raise ValueError(f"{path} is not a face-recognition (ArcFace-style) ONNX model; "
                             f"insightface routes it to {kind}.{hint}")
        if normalization == INSIGHTFACE:  # insightface's own rule, read from this file's graph
            normalization = "raw255" if model.input_mean == 0.0 else "arcface"
            source = "insightface's rule for this graph"
        else:
            source = "chosen"
        self._normalize, norm_text = NORMALIZATIONS[normalization]
        self.normalization_key = normalization
        self.model = model
        self.session = model.session

        shape = list(model.input_shape)  # e.g. [1, 3, 112, 112] or ['None', 3, 112, 112]
        if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != self.input_size:
            raise ValueError(
                f"{path}: input {model.input_name!r} has shape {shape}; fsr-bench supports NCHW "
                f"RGB models with input {self.input_size} (the ArcFace alignment size)"
            )
        # A fixed integer batch of 1 must be fed one sample at a time; a symbolic one takes batches.
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        if self.fixed_batch not in (None, 1):
            raise ValueError(f"{path}: fixed batch size {self.fixed_batch} is not supported")
        out_shape = model.output_shape
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise ValueError(f"{path}: output {model.output_names[0]!r} has shape {out_shape}, "
                             "not (N, D)")

        super().__init__(
            embedding_dim=out_shape[1],
            normalization=f"x in [0,1] RGB; {norm_text} ({source})",
            weights_path=str(path),
            weights_sha256=sha,
            flip=flip,
            batch_size=batch_size,
            device=device,
        )

    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        # our normalisation, then insightface's session: ArcFaceONNX.forward only knows a scalar
        # mean/std, and the ImageNet convention is per channel
        x = self._normalize(aligned.detach().cpu().numpy().astype(np.float32, copy=False))
        x = np.ascontiguousarray(x, dtype=np.float32)
        names, feed = self.model.output_names, self.model.input_name
        if self.fixed_batch == 1:
            out = np.concatenate([self.session.run(names, {feed: x[i : i + 1]})[0]
                                  for i in range(x.shape[0])], axis=0)
        else:
            out = self.session.run(names, {feed: x})[0]
        return torch.from_numpy(out)


@register_recogniser(name="onnx")
def onnx(
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    normalization: str | None = None,
    flip: bool = True,
    batch_size: int = 64,
) -> OnnxRecogniser:
    """An ONNX embedding model; usually created as ``create_recogniser("onnx:<path>")``."""
    if weights is None:
        raise WeightsUnavailable(
            "the 'onnx' recogniser needs a model file: create_recogniser('onnx:/path/model.onnx'). "
            + _WHERE_FROM
        )
    return OnnxRecogniser(
        weights, normalization=normalization, device=device, flip=flip, batch_size=batch_size
    )
