"""Detection and alignment: exact geometry on synthetic data, MTCNN on real LFW dev faces."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fsr_bench.data.io import read_image
from fsr_bench.face import create_detector, list_detectors
from fsr_bench.face.align import arcface_matrix
from fsr_bench.face.detect import Detector, FaceAligner, Faces, MTCNNDetector, align_with_landmarks
from fsr_bench.face.recogniser import ARCFACE_TEMPLATE_112 as TEMPLATE
from fsr_bench.registry import RegistryError
from fsr_bench.weights import WeightsUnavailable

LFW_FILES = ("Colin_Powell/Colin_Powell_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
             "Gerhard_Schroeder/Gerhard_Schroeder_0001.jpg", "Ariel_Sharon/Ariel_Sharon_0001.jpg")


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]]
    )


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


@pytest.fixture(scope="module")
def lfw_images(shared_dir) -> list[torch.Tensor]:
    dev = set((shared_dir / "data/splits/lfw_dev.txt").read_text().split())
    assert all(f.split("/")[0] in dev for f in LFW_FILES)
    return [read_image(shared_dir / "data/lfw" / f) for f in LFW_FILES]


# -- geometry ----------------------------------------------------------------------------------
def test_align_with_landmarks_puts_points_on_the_template():
    # five bright dots at landmarks of a rotated, shrunk, shifted "face"; after alignment they
    # must land on the template's pixels
    m = similarity(1.8, -15.0, 30.0, 12.0)  # template → image
    pts = apply(m, TEMPLATE)
    img = torch.zeros(3, 260, 260)
    for x, y in np.round(pts).astype(int):
        img[:, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    out = align_with_landmarks(img, np.round(pts))
    assert out.shape == (1, 3, 112, 112)
    for x, y in TEMPLATE:
        patch = out[0, 0, round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2]
        assert float(patch.max()) > 0.5, (x, y)
    assert float(out.sum()) < 3 * 5 * 9  # nothing else lit up
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        align_with_landmarks(img, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="one point"):
        align_with_landmarks(img, np.ones((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        align_with_landmarks(img, np.full((5, 2), np.nan))


@pytest.mark.parametrize("scale,angle,tx,ty", [(1.0, 0.0, 0.0, 0.0), (0.37, 23.0, -12.5, 40.0),
                                               (2.5, -170.0, 3.0, -7.0)])
def test_arcface_matrix_recovers_a_known_transform(scale, angle, tx, ty):
    m = similarity(scale, angle, tx, ty)  # image → crop
    pts = apply(np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2], TEMPLATE)  # the crop's template in the image
    np.testing.assert_allclose(arcface_matrix(pts), m, atol=1e-3 * max(1.0, scale))


# -- MTCNN -------------------------------------------------------------------------------------
def test_mtcnn_detects_and_aligns_lfw_faces(aligner, lfw_images):
    res = aligner.align(lfw_images)
    assert res.faces.shape == (4, 3, 112, 112) and bool(res.detected.all())
    assert res.detection_rate == 1.0
    assert float(res.probs.min()) > 0.95
    for i in range(4):  # least-squares residual of the 5-point fit (turned heads move the nose)
        m = arcface_matrix(res.landmarks[i].numpy())
        assert np.abs(apply(m, res.landmarks[i].numpy()) - TEMPLATE).max() < 10.0
    # end to end: detect again in the aligned crops (padded: MTCNN's landmarks are biased on tight
    # crops); the eyes sit near the template's eyes, and no landmark is off systematically
    pad = 56
    again = FaceAligner(min_face_size=40).align(
        torch.nn.functional.pad(res.faces, (pad,) * 4, value=0.5)
    )
    assert bool(again.detected.all())
    found = again.landmarks.numpy() - pad  # (4, 5, 2) in aligned-crop pixels
    assert np.abs(found[:, :2] - TEMPLATE[:2]).max() < 5.0
    assert np.abs((found - TEMPLATE).mean(axis=0)).max() < 2.0


def test_blank_and_tiny_images_are_reported_undetected(aligner, lfw_images):
    images = [torch.full((3, 250, 250), 0.5), lfw_images[0], torch.rand(3, 10, 12), lfw_images[1]]
    res = aligner.align(images)  # mixed sizes are grouped internally; order is preserved
    assert res.detected.tolist() == [False, True, False, True]
    assert res.num_faces.tolist()[0] == 0 and res.num_faces.tolist()[2] == 0
    assert float(res.faces[0].abs().max()) == 0.0  # no centre-crop fallback
    assert bool(torch.isnan(res.landmarks[0]).all()) and math.isnan(float(res.probs[2]))
    same = aligner.align([lfw_images[1]])
    torch.testing.assert_close(res.faces[3], same.faces[0])


def test_selection_largest_versus_center(lfw_images):
    # canvas 260×520: a big face at the left, a smaller one at the centre
    canvas = torch.full((3, 260, 520), 0.5)
    big = torch.nn.functional.interpolate(lfw_images[0][None], size=(180, 180), mode="area")[0]
    small = torch.nn.functional.interpolate(lfw_images[1][None], size=(120, 120), mode="area")[0]
    canvas[:, 40:220, 0:180] = big
    canvas[:, 70:190, 200:320] = small
    for selection, expected_cx in (("largest", 90), ("center", 260)):
        res = FaceAligner(selection=selection).align([canvas])
        assert int(res.num_faces[0]) >= 2
        box = res.boxes[0].numpy()
        assert abs((box[0] + box[2]) / 2 - expected_cx) < 20, selection
    with pytest.raises(ValueError, match="selection"):
        FaceAligner(selection="middle")  # type: ignore[arg-type]


# -- the detector registry -----------------------------------------------------------------------
def test_detectors_are_registered_and_mtcnn_builds_by_name(lfw_images):
    assert {"mtcnn", "scrfd"} <= set(list_detectors())
    det = create_detector("mtcnn", min_face_size=40)
    assert isinstance(det, MTCNNDetector) and det.name == "mtcnn" and det.min_side == 40
    found = det.detect(lfw_images[0][None])
    assert len(found) == 1 and len(found[0]) >= 1
    assert found[0].boxes.shape[1:] == (4,) and found[0].landmarks.shape[1:] == (5, 2)
    # the same detections by name or through a built detector
    by_name = FaceAligner("mtcnn", min_face_size=40, selection="center").align(lfw_images[:2])
    built = FaceAligner(det, selection="center").align(lfw_images[:2])
    torch.testing.assert_close(by_name.faces, built.faces)
    assert FaceAligner(det).describe()["detector_name"] == "mtcnn"
    with pytest.raises(ValueError, match="create_detector"):
        FaceAligner(det, min_face_size=12)
    with pytest.raises(ValueError, match="no weights file"):
        create_detector("mtcnn", weights="mtcnn.pt")
    with pytest.raises(RegistryError, match="mtcnn"):
        create_detector("mtcn")


def test_a_plugin_detector_drives_the_aligner(lfw_images):
    """Any Detector works: one that returns fixed landmarks gives exactly the ArcFace crop of them."""
    pts = apply(similarity(2.0, 5.0, 15.0, 10.0), TEMPLATE)

    class Fixed(Detector):
        name = "fixed"

        def detect(self, batch):
            box = np.array([[pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]])
            return [Faces(box, np.array([0.99]), pts[None]) for _ in batch]

        def describe(self):
            return {"detector": "fixed"}

    res = FaceAligner(Fixed()).align(lfw_images[:1])
    assert bool(res.detected.all()) and res.faces.shape == (1, 3, 112, 112)
    torch.testing.assert_close(res.faces, align_with_landmarks(lfw_images[0], pts))


def test_scrfd_without_its_file_names_the_file_and_the_packs(tmp_path, monkeypatch):
    monkeypatch.setattr("fsr_bench.face.scrfd.DEFAULT_SCRFD", tmp_path / "buffalo_l" / "det_10g.onnx")
    for weights in (None, tmp_path / "scrfd_10g_bnkps.onnx"):
        with pytest.raises(WeightsUnavailable) as err:
            create_detector("scrfd", weights=weights)
        message = str(err.value)
        for needle in ("det_10g.onnx", "scrfd_10g_bnkps.onnx", "buffalo_l", "FaceAnalysis"):
            assert needle in message, (needle, message)
    with pytest.raises(WeightsUnavailable, match="det_10g.onnx"):
        FaceAligner("scrfd")


def test_scrfd_refuses_a_recognition_model(shared_dir):
    """insightface routes the file by its graph; a recognition model is not silently used as one."""
    onnx_file = shared_dir / "weights/mobilefacenet/MobileFaceNet.onnx"
    with pytest.raises(ValueError, match="not an SCRFD detection model.*ArcFaceONNX"):
        create_detector("scrfd", weights=onnx_file)


def _toy_scrfd(path, size=64, face=((3, 4), 0.9, (2, 2, 2, 3),
                                    ((-1, -0.5), (1, -0.5), (0, 0.5), (-0.8, 1.5), (0.8, 1.5)))):
    """An ONNX graph with SCRFD's output layout (3 strides × scores/boxes/keypoints, 2 anchors,
    no batch axis) whose outputs are constants: one face on the stride-8 grid cell ``(row, col)``
    with score, box distances (l, t, r, b) and five keypoint offsets, in stride units."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (row, col), score, dist, kps = face
    nodes, outputs = [], []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in (8, 16, 32):
            n = (size // stride) ** 2 * 2
            value = np.zeros((n, width), np.float32)
            if stride == 8:
                k = (row * (size // 8) + col) * 2
                value[k] = {"score": [score], "bbox": dist, "kps": np.ravel(kps)}[kind]
            name = f"{kind}_{stride}"
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value)))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, width]))
    graph = helper.make_graph(nodes, "toy_scrfd",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
                              outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    centre = np.array([col * 8.0, row * 8.0])
    box = np.r_[centre - np.array(dist[:2]) * 8, centre + np.array(dist[2:]) * 8]
    return box, centre + np.array(kps) * 8


def test_scrfd_loads_through_insightface_and_feeds_the_aligner(tmp_path):
    """The real loading path on a stand-in graph with SCRFD's layout: insightface routes it to its
    SCRFD class, decodes boxes and keypoints (image resized to the model's 64×64 input and back),
    and our wrapper hands them to FaceAligner in the template's order."""
    path = tmp_path / "scrfd_toy_bnkps.onnx"
    box, kps = _toy_scrfd(path)
    det = create_detector("scrfd", weights=path)
    assert det.name == "scrfd" and det.describe()["weights_file"] == path.name
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    found = det.detect(image[None])[0]
    assert len(found) == 1 and found.probs[0] == pytest.approx(0.9)
    np.testing.assert_allclose(found.boxes[0], 2 * box, atol=1e-4)  # 128 px image, 64 px input
    np.testing.assert_allclose(found.landmarks[0], 2 * kps, atol=1e-4)
    res = FaceAligner(det).align([image])
    assert bool(res.detected.all())
    torch.testing.assert_close(res.faces[0], align_with_landmarks(image, 2 * kps)[0])
    # below det_thresh: nothing, reported undetected
    assert not bool(FaceAligner(create_detector("scrfd", weights=path, det_thresh=0.95))
                    .align([image]).detected.any())
