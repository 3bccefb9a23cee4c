"""`kind: face_size_sweep` end to end on a tiny LFW subset: sizes, inter-eye distance, curves' numbers
recomputed from each size's per-probe similarities and the calibrated threshold, shared caches, report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import REPO

from fsr_bench.data.io import read_image
from fsr_bench.protocol import ProtocolError, load_protocol, load_protocol_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SWEEP = REPO / "protocols" / "lfw_face_size_sweep.yaml"


def _sets(shared_dir, extra=()):
    lfw = shared_dir / "data" / "lfw"
    dev = shared_dir / "data" / "splits" / "lfw_dev.txt"
    return [
        f"data.root={lfw}", f"data.list_file={dev}", "data.max_identities=6", "data.max_probes_per_identity=2",
        "calibration.max_identities=6", "calibration.max_probes_per_identity=2", "calibration.fars=[0.1]",
        "sweep.far=0.1", "sweep.lr_heights=[16, 21]", "sweep.measure_probes=8",
        "models=[{name: bicubic_x8, label: Bicubic}]", "references.lr_image=false",
        "run.device=cpu", "run.num_samples=1", "run.report=false", *extra]


def _tiny(shared_dir, extra=()):
    return load_protocol(str(SWEEP), _sets(shared_dir, extra))


def _median_eye_distance(paths, crop_hw):
    """facenet-pytorch MTCNN called directly on the centre crops; eyes = landmarks 0 and 1."""
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    ch, cw = crop_hw
    out = []
    for path in paths:
        img = read_image(path)
        top, left = (img.shape[1] - ch) // 2, (img.shape[2] - cw) // 2
        crop = img[:, top : top + ch, left : left + cw]
        boxes, _, pts = mtcnn.detect((crop * 255).round().permute(1, 2, 0)[None].to(torch.float32), landmarks=True)
        if boxes[0] is None:
            continue
        b = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 4)
        k = int(np.argmin(np.hypot((b[:, 0] + b[:, 2]) / 2 - (cw - 1) / 2, (b[:, 1] + b[:, 3]) / 2 - (ch - 1) / 2)))
        p = np.asarray(pts[0], dtype=np.float64).reshape(-1, 5, 2)[k]
        out.append(float(np.hypot(*(p[1] - p[0]))))
    return float(np.median(out))


def test_sweep_on_a_tiny_lfw_subset(shared_dir, tmp_path):
    from typer.testing import CliRunner

    from fsr_bench.cli import app

    sets = [a for s in _sets(shared_dir, ["run.report=true"]) for a in ("--set", s)]
    cli = CliRunner().invoke(app, ["run", str(SWEEP), "-o", str(tmp_path), "-q", *sets])
    assert cli.exit_code == 0, cli.output
    assert "TAR @ calibrated FAR 0.1 — mobilefacenet" in cli.output  # the tables, printed
    doc = json.loads((tmp_path / "sweep.json").read_text())
    # sizes by the 28:21 aspect, rounded half up: 16 -> 12 wide, 21 -> 15.75 -> 16; one crop 160 x 160*21/28
    assert [tuple(p["lr_size"]) for p in doc["points"]] == [(16, 12), (21, 16)]
    assert [tuple(p["crop"]) for p in doc["points"]] == [(160, 120), (160, 120)]

    # inter-eye distance: MTCNN directly on the same first 8 probes' 160x120 crops, times lr_w / crop_w
    first = json.loads((tmp_path / "sizes" / "12x16" / "results.json").read_text())
    probes = [r for r in csv.DictReader(open(tmp_path / "sizes" / "12x16" / "per_probe.csv"))
              if r["label"] == "HR probes"]
    root = shared_dir / "data" / "lfw"
    paths = [root / f"{r['probe']}.jpg" for r in probes[:8]]  # probe names are <identity>/<stem>
    assert all(p.is_file() for p in paths), paths
    ied = _median_eye_distance(paths, (160, 120))
    assert doc["conventions"]["interocular"]["measured"]["source_interocular_px"] == pytest.approx(ied, abs=0.01)
    assert [p["interocular_lr_px"] for p in doc["points"]] == pytest.approx([ied * 12 / 120, ied * 16 / 120])
    assert [p["interocular_sr_px"] for p in doc["points"]] == pytest.approx([ied * 96 / 120, ied * 128 / 120])
    assert "stretches the face horizontally by at most 1.6%" in doc["conventions"]["face_region"]  # 16/21 vs 120/160

    # the curves' numbers, recomputed from each size's per-probe similarities
    threshold = first["models"][0]["operating_points"]["calibrated"][0]["threshold"]
    assert first["models"][0]["operating_points"]["calibrated"][0]["target_far"] == 0.1
    for p in doc["points"]:
        per_probe = list(csv.DictReader(open(tmp_path / p["folder"] / "per_probe.csv")))
        for row in doc["rows"]:
            sims = [float(r["similarity"]) if r["similarity"] not in ("", "-inf") else -np.inf
                    for r in per_probe if r["label"] == row["label"]]
            value = row["values"][[q["label"] for q in doc["points"]].index(p["label"])]
            assert value["matching_accuracy"] == pytest.approx(np.mean(np.array(sims) >= 0.4))
            assert value["tar_at_cal_far"] == pytest.approx(np.mean(np.array(sims) >= threshold))
            assert value["threshold_cal"] == pytest.approx(threshold)  # one threshold for every size
    assert {r["label"] for r in doc["rows"]} == {"Bicubic", "HR probes"}
    lines = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert len(lines) == 2 * 2

    # shared caches: at the second size the gallery and the HR-probe crops are cached, not recomputed
    second = json.loads((tmp_path / "sizes" / "16x21" / "results.json").read_text())
    hr_row = next(r for r in second["models"] if r["label"] == "HR probes")
    assert hr_row["work"]["faces_computed"] == 0 and hr_row["work"]["faces_reused"] > 0
    hr_first = next(r for r in first["models"] if r["label"] == "HR probes")
    assert hr_row["metrics"] == hr_first["metrics"]  # the same face region: the same ceiling at every size

    report = tmp_path / "report" / "report.md"  # written by `fsr-bench run`
    text = report.read_text()
    assert "12x16 (IED" in text and "TAR @ calibrated FAR 0.1 — mobilefacenet" in text
    assert (report.parent / "figures" / "face-size-sweep.png").stat().st_size > 10_000
    assert "every model runs at its own scale" in text


def test_sweep_refusals(shared_dir):
    with pytest.raises(ProtocolError, match="not one of calibration.fars"):
        _tiny(shared_dir, ["sweep.far=0.05"])
    with pytest.raises(ProtocolError, match="repeated sizes"):
        _tiny(shared_dir, ["sweep.lr_heights=[16, 16]"])
    doc = {"kind": "face_size_sweep", "name": "x", "data": {"type": "tinyface", "root": "/nowhere"},
           "calibration": {"fraction": 0.5}}
    with pytest.raises(ProtocolError):
        load_protocol_dict(doc)
