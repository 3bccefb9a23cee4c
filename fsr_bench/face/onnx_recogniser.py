"""Any ONNX face-embedding model as a recogniser (``onnx:<path>``), run with onnxruntime.

Follows the conventions of the insightface model zoo (deepinsight/insightface,
``python-package/insightface/model_zoo/arcface_onnx.py``): one NCHW float input of 112×112 RGB
aligned to the ArcFace template, the first output is the embedding. The input name and shape are
read from the model; a batch dimension fixed at 1 (e.g. the shared ``MobileFaceNet.onnx``) is served
by looping over samples, a symbolic one gets whole batches.

Pixel normalisation cannot be read reliably from a graph, and a wrong guess silently degrades every
number downstream, so it is chosen explicitly (or looked up for files whose SHA-256 we know):

* ``"arcface"``  — ``(255·x − 127.5) / 127.5``: insightface recognition models such as
  ``w600k_mbf.onnx`` (MobileFaceNet, WebFace600K) and ``w600k_r50.onnx``;
* ``"imagenet"`` — ``(x − mean) / std`` with ImageNet statistics: the shared ``MobileFaceNet.onnx``
  exported from foamliu/MobileFaceNet;
* ``"raw255"``   — ``255·x``: graphs that normalise internally (insightface treats models whose
  first nodes are ``Sub``/``Mul`` this way).
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

__all__ = ["NORMALIZATIONS", "KNOWN_MODELS", "OnnxRecogniser", "onnx"]

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

#: SHA-256 of ONNX files whose input convention we have verified → normalisation
KNOWN_MODELS: dict[str, str] = {
    # shared/weights/mobilefacenet/MobileFaceNet.onnx (foamliu MobileFaceNet export), MODEL.md
    "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507": "imagenet",
}


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
    """An onnxruntime session behind the :class:`Recogniser` contract."""

    def __init__(
        self,
        path: str | os.PathLike,
        normalization: str | None = None,
        device: str | torch.device = "cpu",
        flip: bool = True,
        batch_size: int = 64,
    ):
        import onnxruntime as ort

        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"ONNX model {path} does not exist")
        sha = sha256_file(path)
        if normalization is None:
            normalization = KNOWN_MODELS.get(sha)
            if normalization is None:
                raise ValueError(
                    f"cannot tell the input normalisation of {path} (unknown file, SHA-256 {sha}). "
                    f"Pass normalization= one of {sorted(NORMALIZATIONS)}: 'arcface' for insightface "
                    "models (w600k_mbf.onnx, w600k_r50.onnx), 'imagenet' for foamliu's "
                    "MobileFaceNet export, 'raw255' if the graph starts with its own Sub/Mul."
                )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; choose from {sorted(NORMALIZATIONS)}"
            )
        self._normalize, norm_text = NORMALIZATIONS[normalization]
        self.normalization_key = normalization

        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime warnings would drown benchmark output
        self.session = ort.InferenceSession(str(path), options, providers=_providers(device))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        shape = list(inputs[0].shape)  # e.g. [1, 3, 112, 112] or ['None', 3, 112, 112]
        if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != self.input_size:
            raise ValueError(
                f"{path}: input {self.input_name!r} has shape {shape}; fsr-bench supports NCHW "
                f"RGB models with input {self.input_size} (the ArcFace alignment size)"
            )
        # A fixed integer batch of 1 must be fed one sample at a time; a symbolic one takes batches.
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        if self.fixed_batch not in (None, 1):
            raise ValueError(f"{path}: fixed batch size {self.fixed_batch} is not supported")
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise ValueError(f"{path}: output {self.output_name!r} has shape {out_shape}, not (N, D)")

        super().__init__(
            embedding_dim=out_shape[1],
            normalization=f"x in [0,1] RGB; {norm_text}",
            weights_path=str(path),
            weights_sha256=sha,
            flip=flip,
            batch_size=batch_size,
            device=device,
        )

    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        x = self._normalize(aligned.detach().cpu().numpy().astype(np.float32, copy=False))
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch == 1:
            rows = [
                self.session.run([self.output_name], {self.input_name: x[i : i + 1]})[0]
                for i in range(x.shape[0])
            ]
            out = np.concatenate(rows, axis=0)
        else:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
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
            "the 'onnx' recogniser needs a model file: create_recogniser('onnx:/path/model.onnx')"
        )
    return OnnxRecogniser(
        weights, normalization=normalization, device=device, flip=flip, batch_size=batch_size
    )
