"""Every registered recogniser and detector keeps the contract the runners rely on.

Parametrised over the registries themselves, so a new built-in (or an installed plug-in) is checked
without editing this file; one whose weights this machine lacks is skipped with the reason.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fsr_bench.face import RECOGNISERS, create_detector, create_recogniser, list_detectors, list_recognisers
from fsr_bench.face.detect import Detector, Faces
from fsr_bench.face.recogniser import Recogniser, RecogniserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _build_recogniser(name: str, shared) -> Recogniser:
    weights = shared / "weights" / "mobilefacenet"
    try:
        if name == "onnx":  # built on a file: the shared MobileFaceNet export
            return create_recogniser(f"onnx:{weights / 'MobileFaceNet.onnx'}")
        if name == "mobilefacenet":
            return create_recogniser(name, weights=weights / "mobilefacenet.pt")
        return create_recogniser(name)
    except ImportError as exc:
        pytest.skip(f"{name}: its package is not installed here ({exc})")
    except Exception as exc:  # weights not on this machine: the builder says which file
        pytest.skip(f"{name}: cannot be built on this machine ({str(exc)[:200]})")


@pytest.mark.parametrize("name", list_recognisers())
def test_every_recogniser_embeds_to_unit_vectors_of_its_dimension(name, shared_dir):
    rec = _build_recogniser(name, shared_dir)
    assert isinstance(rec, Recogniser) and RECOGNISERS.get(name).builder is not None
    h, w = rec.input_size
    crops = torch.rand(3, 3, h, w, generator=torch.Generator().manual_seed(0))
    emb = rec.embed(crops)
    assert emb.shape == (3, rec.embedding_dim) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)  # cosine = dot product downstream
    assert torch.allclose(rec.embed(crops[:1]), emb[:1], atol=1e-5)  # a face's embedding does not depend on its batch
    assert rec.embed(crops[:0]).shape == (0, rec.embedding_dim)
    with pytest.raises(RecogniserInputError):
        rec.embed(torch.rand(1, 3, h + 1, w))
    described = rec.describe()
    assert described["embedding_dim"] == rec.embedding_dim and described["weights_sha256"]  # provenance


@pytest.mark.parametrize("name", list_detectors())
def test_every_detector_finds_the_face_of_a_portrait_and_none_in_a_blank_image(name, lfw_dir):
    from fsr_bench.data.io import read_image

    try:
        det = create_detector(name)
    except Exception as exc:  # scrfd needs its ONNX file, which is not shipped
        pytest.skip(f"{name}: cannot be built without its weights here ({str(exc)[:200]})")
    assert isinstance(det, Detector) and det.name == name
    face = read_image(next(iter(sorted(lfw_dir.glob("*/*.jpg")))))  # a 250x250 deep-funneled portrait
    blank = torch.full_like(face, 0.5)
    found = det.detect(torch.stack([face, blank]))
    assert len(found) == 2 and all(isinstance(f, Faces) for f in found)
    portrait, nothing = found
    assert len(portrait.boxes) >= 1 and len(nothing.boxes) == 0
    assert portrait.boxes.shape[1:] == (4,) and portrait.landmarks.shape[1:] == (5, 2)
    assert portrait.probs.shape == (len(portrait.boxes),)
    x1, y1, x2, y2 = portrait.boxes[np.argmax(portrait.probs)]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert 75 < cx < 175 and 75 < cy < 175  # deep-funneled faces are centred
    assert isinstance(det.describe(), dict)
