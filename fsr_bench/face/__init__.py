"""Face recognisers and detectors: ``create_recogniser`` / ``create_detector`` and friends.

A recogniser builder is a function ``name(weights=None, device="cpu", **options) -> Recogniser``
decorated with ``@register_recogniser``. Built-ins: ``mobilefacenet`` (PyTorch, pretrained, 128-d),
``dlib`` (dlib's ResNet, 128-d, its own face-chip alignment) and ``onnx`` (any insightface-style
ONNX embedding model). Detectors are the same: ``name(weights=None, device="cpu", **options) ->
Detector`` decorated with ``@register_detector``; built-ins ``mtcnn`` (facenet-pytorch) and
``scrfd`` (insightface's SCRFD, given its ONNX file). Third-party packages register through the
entry-point groups ``fsr_bench.recognisers`` and ``fsr_bench.detectors``, exactly like
super-resolvers do with ``fsr_bench.models``::

    [project.entry-points."fsr_bench.recognisers"]
    my_recogniser = "my_package.my_recogniser"   # importing the module runs its decorator

Names of the form ``onnx:<path>`` build the ``onnx`` recogniser on that file, so a protocol file can
say ``recogniser: onnx:~/.insightface/models/buffalo_s/w600k_mbf.onnx``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, cast

from fsr_bench.registry import Registry, RegistryError

if TYPE_CHECKING:  # keep `import fsr_bench.face` free of torch until a recogniser is built
    from fsr_bench.face.detect import Detector
    from fsr_bench.face.recogniser import Recogniser

__all__ = [
    "ENTRY_POINT_GROUP",
    "RECOGNISERS",
    "register_recogniser",
    "create_recogniser",
    "list_recognisers",
    "DETECTOR_ENTRY_POINT_GROUP",
    "DETECTORS",
    "register_detector",
    "create_detector",
    "list_detectors",
]

ENTRY_POINT_GROUP = "fsr_bench.recognisers"
DETECTOR_ENTRY_POINT_GROUP = "fsr_bench.detectors"
ONNX_PREFIX = "onnx:"

RECOGNISERS: Registry[Callable[..., "Recogniser"]] = Registry(
    "recogniser",
    ENTRY_POINT_GROUP,
    builtin_modules=(
        "fsr_bench.face.mobilefacenet",
        "fsr_bench.face.dlib_recogniser",
        "fsr_bench.face.onnx_recogniser",
    ),
    listing="fsr-bench list recognisers",
)

DETECTORS: Registry[Callable[..., "Detector"]] = Registry(
    "detector",
    DETECTOR_ENTRY_POINT_GROUP,
    builtin_modules=("fsr_bench.face.detect", "fsr_bench.face.scrfd"),
    listing="fsr-bench list detectors",
)


def register_recogniser(fn: Callable[..., "Recogniser"] | None = None, *, name: str | None = None):
    """Register a builder. Usable bare (``@register_recogniser``) or with ``name=``."""
    if fn is not None:
        return RECOGNISERS.register(name)(fn)
    return RECOGNISERS.register(name)


def list_recognisers(pattern: str = "*") -> list[str]:
    """Registered recogniser names matching a shell-style ``pattern``."""
    return RECOGNISERS.names(pattern)


def create_recogniser(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    **options: Any,
) -> "Recogniser":
    """Build a registered recogniser with pretrained weights (never random ones).

    ``create_recogniser("mobilefacenet")`` resolves the weights (explicit ``weights`` > cache >
    download; see :mod:`fsr_bench.weights`). ``create_recogniser("onnx:/path/model.onnx",
    normalization="arcface")`` wraps an ONNX model. ``options`` go to the builder (e.g. ``flip``).
    """
    if name.startswith(ONNX_PREFIX):
        path = name[len(ONNX_PREFIX) :]
        if not path:
            raise RegistryError("recogniser 'onnx:' needs a file path: 'onnx:/path/to/model.onnx'")
        if weights is not None and os.fspath(weights) != path:
            raise ValueError(
                f"conflicting ONNX files: name {name!r} and weights={os.fspath(weights)!r}; "
                "give the path once"
            )
        weights, name = path, "onnx"
    entry = RECOGNISERS.get(name)
    recogniser = entry.builder(weights=weights, device=device, **options)
    recogniser.name = name if name != "onnx" else f"{ONNX_PREFIX}{os.fspath(cast('str', weights))}"  # the file's path
    return recogniser


# -- detectors -----------------------------------------------------------------------------------
def register_detector(fn: Callable[..., "Detector"] | None = None, *, name: str | None = None):
    """Register a detector builder. Usable bare (``@register_detector``) or with ``name=``."""
    if fn is not None:
        return DETECTORS.register(name)(fn)
    return DETECTORS.register(name)


def list_detectors(pattern: str = "*") -> list[str]:
    """Registered face-detector names matching a shell-style ``pattern``."""
    return DETECTORS.names(pattern)


def create_detector(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    **options: Any,
) -> "Detector":
    """Build a registered face detector: ``create_detector("mtcnn", min_face_size=12)``,
    ``create_detector("scrfd", weights="~/.insightface/models/buffalo_l/det_10g.onnx")``."""
    detector = DETECTORS.get(name).builder(weights=weights, device=device, **options)
    detector.name = name
    return detector
