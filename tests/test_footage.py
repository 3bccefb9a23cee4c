"""``kind: footage``: labelled clips and frames through ``sr --faces`` per row (No SR + models), one
watchlist, one identification table per track and per face at every operating point.

The table's formulas are checked on written-out units; end to end, a clip and still frames composed
from LFW *dev* faces go through ``fsr-bench run`` and every face's and track's answer is recomputed
by hand from the written SR faces and frame records with the recogniser and numpy."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fsr_bench.protocol import ProtocolError, load_protocol_dict
from fsr_bench.results import OperatingPoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _doc(tmp_path, **extra):
    return {"kind": "footage", "name": "f", "data": {"root": str(tmp_path / "footage")},
            "watchlist": {"root": str(tmp_path / "watch")}, **extra}


def test_schema_no_sr_row_thresholds_and_reserved_label(tmp_path):
    p = load_protocol_dict(_doc(tmp_path))
    assert p.references.no_sr and p.thresholds.stated == [0.4] and not p.models
    with pytest.raises(ProtocolError, match="nothing to run"):
        load_protocol_dict(_doc(tmp_path, references={"no_sr": False}))
    with pytest.raises(ProtocolError, match="state a threshold"):
        load_protocol_dict(_doc(tmp_path, thresholds={"stated": []}))
    with pytest.raises(ProtocolError, match="reserved"):
        load_protocol_dict(_doc(tmp_path, models=[{"name": "bicubic_x4", "label": "No SR"}]))
    with pytest.raises(ProtocolError, match="less than or equal to 1"):
        load_protocol_dict(_doc(tmp_path, thresholds={"stated": [1.5]}))


def test_identification_level_formulas_written_out():
    from fsr_bench.run.footage import identification_level

    units = [  # identity, on the watchlist, best answer, score
        {"identity": "a", "mated": True, "best": "a", "score": 0.8},  # right, accepted at both
        {"identity": "a", "mated": True, "best": "a", "score": 0.3},  # right, accepted only at 0.2
        {"identity": "b", "mated": True, "best": "a", "score": 0.5},  # wrong, accepted at both
        {"identity": "x", "mated": False, "best": "b", "score": 0.25},  # unknown person, accepted at 0.2
    ]
    points = [OperatingPoint(label="0.4", threshold=0.4, source={}), OperatingPoint(label="0.2", threshold=0.2, source={})]
    lv = identification_level(units, points)
    assert (lv.n, lv.n_mated) == (4, 3)
    assert lv.rank1 == pytest.approx(2 / 3)
    assert lv.tar == pytest.approx({"0.4": 1 / 3, "0.2": 2 / 3})
    assert lv.wrong_id == pytest.approx({"0.4": 1 / 4, "0.2": 2 / 4})
    empty = identification_level([], points)
    assert empty.rank1 is None and empty.tar == {"0.4": None, "0.2": None}
    assert lv.ci95 == {}  # no bootstrap asked for
    # 95 % CIs resample identities. Rank-1 over the mated a (2 right) and b (1 wrong): the resamples
    # {a,a} 1.0, {b,b} 0.0 (1/4 each), {a,b} 2/3 -> percentiles 2.5/97.5 = 0.0 / 1.0. WrongID@0.4 over
    # a (0/2), b (1/1), x (0/1): 0 unless b is drawn; all three b (1.0) has probability 1/27 > 2.5 %
    ci = identification_level(units, points, bootstrap_n=2000, bootstrap_seed=0).ci95
    assert ci["rank1"] == [0.0, 1.0] and ci["wrong_id@0.4"] == [0.0, 1.0]
    assert set(ci) == {"rank1", "tar@0.4", "tar@0.2", "wrong_id@0.4", "wrong_id@0.2"}


def test_inputs_must_be_labelled_folders(tmp_path):
    from fsr_bench.run.footage import labelled_inputs

    with pytest.raises(ProtocolError, match="no such folder"):
        labelled_inputs(tmp_path / "nope", None)
    (tmp_path / "f").mkdir()
    with pytest.raises(ProtocolError, match="no identity folder"):
        labelled_inputs(tmp_path / "f", None)
    (tmp_path / "f" / "alice").mkdir()
    with pytest.raises(ProtocolError, match="alice"):
        labelled_inputs(tmp_path / "f", None)
    (tmp_path / "list.txt").write_text("bob\n")
    with pytest.raises(ProtocolError, match="no folder under .* for bob"):
        labelled_inputs(tmp_path / "f", str(tmp_path / "list.txt"))


def test_bundled_footage_protocol_validates():
    from conftest import REPO

    from fsr_bench.protocol import load_protocol

    p = load_protocol(REPO / "protocols" / "footage_example_x4.yaml")
    assert p.kind == "footage" and p.references.no_sr and [m.name for m in p.models] == ["bicubic_x4", "tanet_s_x4"]


# -- end to end on footage composed from LFW dev faces --------------------------------------------
def _background(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.linspace(0.25, 0.6, w).expand(3, h, w) + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def _face(path, side):
    from fsr_bench.data.io import read_image
    from fsr_bench.data.resize import imresize

    return imresize(read_image(path)[:, 50:200, 50:200], size=(side, side)).clamp(0, 1)  # LFW's centred face


def _compose(lfw, dev_list, tmp_path):
    """watch/<id>/: two images of three dev identities; footage/<id>/: a 4-frame clip of a third
    image moving, and a still of a fourth; footage/<unknown>/: a still of a dev identity not enrolled."""
    from fsr_bench.data.io import write_image
    from fsr_bench.data.video import write_video

    listed = [line.strip() for line in dev_list.read_text().splitlines() if line.strip()]
    usable = [n for n in listed if len(list((lfw / n).glob("*.jpg"))) >= 4]
    chosen = usable[:: max(1, len(usable) // 4)][:4]  # dev identities only, spread over the list
    enrolled, unknown = chosen[:3], chosen[3]
    for name in enrolled:
        files = sorted((lfw / name).glob("*.jpg"))
        (tmp_path / "watch" / name).mkdir(parents=True)
        for f in files[:2]:
            (tmp_path / "watch" / name / f.name).symlink_to(f)
        face = _face(files[2], 64)
        frames = []
        for t in range(4):
            frame = _background(144, 192, seed=t)
            frame[:, 40 + t : 104 + t, 50 + 5 * t : 114 + 5 * t] = face
            frames.append(frame)
        write_video(tmp_path / "footage" / name / "clip.mkv", frames, fps=5)
        still = _background(128, 160)
        still[:, 30:86, 50:106] = _face(files[3], 56)
        write_image(still, tmp_path / "footage" / name / "still.png")
    still = _background(128, 160, seed=9)
    still[:, 30:86, 50:106] = _face(sorted((lfw / unknown).glob("*.jpg"))[0], 56)
    write_image(still, tmp_path / "footage" / unknown / "still.png")
    return enrolled, unknown


def _calibration_run(folder: Path) -> Path:
    """A recognition results.json with a calibration block (schema-valid; thresholds chosen here)."""
    from fsr_bench.results import RecognitionRow, RunResult, write_run

    run = RunResult(kind="recognition", protocol_name="cal", conventions={
        "calibration": {"per_recogniser": {"mobilefacenet": {"thresholds": {"0.01": 0.25, "0.001": 0.35}}}}},
        models=[RecognitionRow(label="HR", name="hr", metrics={"matching_accuracy": 1.0, "detection_rate": 1.0})])
    folder.mkdir(parents=True)
    write_run(folder, run)
    return folder


@pytest.mark.shared
@pytest.mark.slow
def test_labelled_footage_end_to_end_against_a_hand_computation(tmp_path, shared_dir):
    from fsr_bench.cli import app
    from fsr_bench.data.io import list_images, read_image
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner

    data = shared_dir / "data"
    enrolled, unknown = _compose(data / "lfw", data / "splits" / "lfw_dev.txt", tmp_path)
    doc = _doc(tmp_path, models=[{"name": "bicubic_x4", "label": "Bicubic"}],
               thresholds={"stated": [0.3], "calibration_run": str(_calibration_run(tmp_path / "cal"))},
               faces={"min_face": 16}, run={"device": "cpu"})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml"), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "footage.json").read_text())
    ops = {p["label"]: p["threshold"] for p in result["operating_points"]}
    assert ops == {"0.3": 0.3, "cal 0.01": 0.25, "cal 0.001": 0.35}
    rows = {r["label"]: r for r in result["rows"]}
    assert list(rows) == ["No SR", "Bicubic"] and rows["No SR"]["scale"] == 1 and rows["Bicubic"]["scale"] == 4

    # by hand: templates from the watchlist images, each face's embedding from its SR face + landmarks
    recogniser = create_recogniser("mobilefacenet", device="cpu")
    aligner = FaceAligner("mtcnn", recogniser=recogniser, selection="largest", device="cpu")
    names = sorted(enrolled)
    templates = []
    for name in names:
        found = aligner.align([read_image(f) for f in list_images(tmp_path / "watch" / name)])
        e = recogniser.embed(found.faces[found.detected]).double().numpy()
        t = e.mean(0)
        templates.append(t / np.linalg.norm(t))
    templates = np.stack(templates)

    def answer(e):
        s = templates @ (e / np.linalg.norm(e))
        return names[int(np.argmax(s))], float(np.max(s))

    counts = {}
    for label, row in rows.items():
        scale = row["scale"]
        faces, tracks = [], []
        for job in sorted((out / "rows" / label.replace(" ", "_")).glob("*/*")):
            identity = job.parent.name
            per_track: dict[str, list[np.ndarray]] = {}
            for record in sorted((job / "frames").glob("*.json")):
                r = json.loads(record.read_text())
                for j, f in enumerate(r["faces"]):
                    sr = read_image(job / f["sr_file"])
                    x0, y0 = f["crop_xywh"][:2]
                    lm = (np.array(f["landmarks_xy"]) - np.array([x0, y0])) * scale
                    assert list(sr.shape[1:]) == [scale * f["crop_xywh"][3], scale * f["crop_xywh"][2]]
                    aligned = recogniser.align(sr, np.array([0, 0, sr.shape[-1], sr.shape[-2]], float), lm)
                    e = recogniser.embed(aligned[None])[0].double().numpy()
                    faces.append((identity, *answer(e)))
                    key = f"t{f['track_id']}" if f["track_id"] is not None else f"f{j}"
                    per_track.setdefault(key, []).append(e)
            tracks += [(identity, *answer(np.sum(es, axis=0))) for es in per_track.values()]
        counts[label] = (len(tracks), len(faces))
        for level, units in (("track", tracks), ("face", faces)):
            got = row[level]
            mated = [u for u in units if u[0] in names]
            assert (got["n"], got["n_mated"]) == (len(units), len(mated)), (label, level)
            assert got["rank1"] == pytest.approx(np.mean([u[0] == u[1] for u in mated]), abs=1e-9)
            lo, hi = got["ci95"]["rank1"]  # bootstrap over identities (default n 1000)
            assert lo <= got["rank1"] <= hi and set(got["ci95"]) == {"rank1", *(f"{m}@{op}" for m in ("tar", "wrong_id")
                                                                         for op in ops)}
            for op, t in ops.items():
                # a score within 2e-3 of t could flip between PNG-rounded faces and the in-memory ones
                assert not any(abs(u[2] - t) < 2e-3 for u in units), "a unit sits on the threshold"
                assert got["tar"][op] == pytest.approx(np.mean([u[0] == u[1] and u[2] >= t for u in mated]))
                assert got["wrong_id"][op] == pytest.approx(np.mean([u[0] != u[1] and u[2] >= t for u in units]))
    # the detector runs on the native frames: every row answers the same units; the clips are tracked
    assert counts["No SR"] == counts["Bicubic"] and counts["No SR"][0] >= 3 + 3 + 1
    assert counts["No SR"][1] >= 3 * 4 + 3 + 1

    with open(out / "identification.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["label"], r["level"]) for r in table] == [("No SR", "track"), ("No SR", "face"),
                                                         ("Bicubic", "track"), ("Bicubic", "face")]
    for r in table:
        level = rows[r["label"]][r["level"]]
        assert float(r["rank1"]) == pytest.approx(level["rank1"])
        assert float(r["wrong_id@cal 0.001"]) == pytest.approx(level["wrong_id"]["cal 0.001"])
    report = (out / "report" / "report.md").read_text()
    for heading in ("Per track", "Per face", "TAR@0.3", "WrongID@cal 0.01", "TAR@cal 0.001", "No SR (reference)",
                    "calibrated at FAR 0.001"):
        assert heading in report, heading


def test_report_command_renders_a_footage_folder_with_every_operating_point(tmp_path):
    from fsr_bench import results
    from fsr_bench.cli import app

    level = results.FootageLevel(n=4, n_mated=3, rank1=2 / 3, tar={"0.4": 1 / 3, "cal 0.001": 0.0},
                                 wrong_id={"0.4": 0.25, "cal 0.001": 0.0})
    rows = [results.FootageRow(label=label, name=label, role=role, scale=scale, n_inputs=2, n_inputs_without_faces=0,
                               track=level, face=level, seconds=1.0)
            for label, role, scale in (("No SR", "reference", 1), ("Bicubic", "model", 4))]
    points = [results.OperatingPoint(label="0.4", threshold=0.4, source={"kind": "stated", "value": 0.4}),
              results.OperatingPoint(label="cal 0.001", threshold=0.61, source={
                  "kind": "calibrated", "target_far": 0.001, "protocol_name": "lfw", "protocol_hash": "ab" * 8,
                  "recogniser": "mobilefacenet", "far_reached": 0.0009})]
    result = results.FootageResult(protocol_name="f", protocol_hash="cd" * 8, protocol={}, conventions={},
                                   provenance={}, watchlist={"identities": 3}, operating_points=points, rows=rows)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "footage.json").write_text(result.model_dump_json())
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "r" / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| Bicubic"))
    # n (mated), rank-1, TAR@0.4, TAR@cal, WrongID@0.4, WrongID@cal: one decimal, as written out here
    assert [c.strip() for c in line.split("|")[1:-1]] == ["Bicubic", "4 (3)", "66.7%", "33.3%", "0.0%", "25.0%", "0.0%"]
    assert "No SR (reference)" in text and text.count("| No SR") == 2  # per track and per face
    assert "cosine threshold 0.6100 — calibrated at FAR 0.001" in text and "FAR reached there 0.09%" in text
    (tmp_path / "run" / "footage.json").write_text("{}")
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert bad.exit_code != 0 and "not a footage result" in bad.output


def test_inputs_that_would_share_a_job_folder_are_refused_before_enrolment(tmp_path):
    from PIL import Image

    from fsr_bench.run.footage import run_footage

    (tmp_path / "footage" / "alice" / "x").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "footage" / "alice" / "x_y.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "footage" / "alice" / "x" / "y.png")
    protocol = load_protocol_dict(_doc(tmp_path, run={"device": "cpu"}))  # watch/ does not exist: not reached
    with pytest.raises(ProtocolError, match="share the job folder name alice/x_y.png"):
        run_footage(protocol, tmp_path / "out", log=lambda _: None)


def test_bad_recogniser_detector_and_paths_are_found_before_any_row(tmp_path):
    from fsr_bench.run.preflight import check_protocol

    (tmp_path / "footage").mkdir()
    (tmp_path / "watch").mkdir()
    protocol = load_protocol_dict(_doc(tmp_path, watchlist={"root": str(tmp_path / "watch"), "recogniser": "nope_rec"},
                                       faces={"detector": "nope_det"}, data={"root": str(tmp_path / "missing")}))
    with pytest.raises(ProtocolError) as err:
        check_protocol(protocol)
    text = str(err.value)
    assert "3 problem(s)" in text and "watchlist.recogniser" in text and "faces.detector" in text
    assert "data.root" in text
