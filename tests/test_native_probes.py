"""Native low-resolution probes (``data.type: native_identity_folder``): a gallery root of HR images
beside a probe root of real LR faces, no synthetic degradation, no "HR probes" row.

The end-to-end test makes its LR probes outside fsr-bench (PIL resize + JPEG of LFW *dev* faces)
and recomputes the first rows' numbers by hand: embeddings straight from the detector/aligner and
the recogniser, cosine, matching accuracy and rank-1 with numpy.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fsr_bench.protocol import ProtocolError, load_protocol_dict
from fsr_bench.results import OperatingPoints

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tree(root, ids, n, size=(48, 64)):
    from PIL import Image

    for i, name in enumerate(ids):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            Image.new("RGB", size, (20 * i, 7 * j, 0)).save(d / f"{j}.png")
    return root


def _doc(gallery, probes, **extra):
    return {"kind": "recognition", "name": "native",
            "data": {"type": "native_identity_folder", "gallery_root": str(gallery), "probe_root": str(probes),
                     **extra.pop("data", {})},
            "models": [{"name": "bicubic_x4", "label": "Bicubic"}], **extra}


# -- schema and the adapter (no faces needed) --------------------------------------------------------
def test_no_hr_probes_row_and_an_explicit_one_is_refused(tmp_path):
    g, p = _tree(tmp_path / "g", ["a", "b"], 2), _tree(tmp_path / "p", ["a"], 2, (12, 16))
    proto = load_protocol_dict(_doc(g, p))
    assert proto.references.hr_probes and not proto.hr_probes_row  # the default: absent, not an error
    with pytest.raises(ProtocolError, match="references.hr_probes: native_identity_folder probes are natively"):
        load_protocol_dict(_doc(g, p, references={"hr_probes": True}))
    with pytest.raises(ProtocolError, match="nothing to run"):
        load_protocol_dict(_doc(g, p, models=[], references={"lr_image": False}))
    synthetic = load_protocol_dict({"kind": "recognition", "name": "s", "data": {"type": "identity_folder",
                                                                                "root": str(g)}})
    assert synthetic.hr_probes_row  # synthetic probes keep theirs


def test_adapter_reads_probes_as_stored_and_checks_the_roots(tmp_path):
    from fsr_bench.data.io import FsrBenchDataError
    from fsr_bench.data.native_folders import NativeIdentityFolderSet

    g = _tree(tmp_path / "g", ["a", "b", "c"], 2)
    p = _tree(tmp_path / "p", ["a", "b"], 3, (12, 16))
    ds = NativeIdentityFolderSet(gallery_root=g, probe_root=p)
    assert [x.subject for x in ds.gallery] == ["a", "b", "c"]  # c: a distractor (no probe)
    assert [x.path.name for x in ds.gallery] == ["0.png"] * 3
    assert len(ds.probes) == 6 and ds.describe()["n_distractors"] == 1
    images = ds.read_probe(ds.probes[0])
    assert images.hr is None and tuple(images.lr.shape) == (3, 16, 12)  # as stored: no degradation
    from PIL import Image

    want = np.asarray(Image.open(ds.probes[0].path).convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(images.lr.permute(1, 2, 0).numpy(), want, atol=1e-7)
    resized = NativeIdentityFolderSet(gallery_root=g, probe_root=p, lr_size=(8, 6))
    assert tuple(resized.read_probe(resized.probes[0]).lr.shape) == (3, 8, 6)
    assert len(NativeIdentityFolderSet(gallery_root=g, probe_root=p, distractors=False).gallery) == 2
    _tree(p, ["zz"], 1, (12, 16))
    with pytest.raises(FsrBenchDataError, match="have probes but no image under gallery_root.*zz"):
        NativeIdentityFolderSet(gallery_root=g, probe_root=p)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    assert len(NativeIdentityFolderSet(gallery_root=g, probe_root=p, list_file=tmp_path / "ids.txt").gallery) == 2
    (tmp_path / "imgs.txt").write_text("a/0.png\n")
    with pytest.raises(FsrBenchDataError, match="is an image path"):
        NativeIdentityFolderSet(gallery_root=g, probe_root=p, list_file=tmp_path / "imgs.txt")


def test_calibration_is_hr_vs_hr_from_the_gallery_on_disjoint_subjects(tmp_path):
    from fsr_bench.data.identity_folders import RECOGNITION_SETS
    from fsr_bench.run.recognition import calibration_blocks

    ids = [f"id{i:02d}" for i in range(10)]
    g, p = _tree(tmp_path / "g", ids, 3), _tree(tmp_path / "p", ids, 2, (12, 16))
    proto = load_protocol_dict(_doc(g, p, calibration={"fraction": 0.4, "fars": [0.1]}))
    ev_block, cal_block = calibration_blocks(proto)
    build = RECOGNITION_SETS.get("native_identity_folder").builder
    ev, cal = build(ev_block), build(cal_block)
    cal_ids = {x.subject for x in cal.gallery}
    assert len(cal_ids) == 4 and cal_ids.isdisjoint({x.subject for x in ev.gallery} | {x.subject for x in ev.probes})
    assert ev.describe()["calibration_subject_probes_left_out"] == 8  # 4 subjects x 2 LR probes
    # calibration probes are the subjects' other gallery-root images, as stored (HR, uncropped)
    assert all(x.path.parent.parent == g for x in cal.probes) and len(cal.probes) == 8
    assert tuple(cal.read_probe(cal.probes[0]).hr.shape) == (3, 64, 48)
    with pytest.raises(ProtocolError, match="exactly one of list_file"):
        load_protocol_dict(_doc(g, p, calibration={"fars": [0.1]}))


def test_bundled_native_protocol_validates():
    from conftest import REPO

    from fsr_bench.protocol import load_protocol

    proto = load_protocol(REPO / "protocols" / "native_lr_example_x4.yaml")
    assert proto.data.type == "native_identity_folder" and not proto.hr_probes_row
    assert proto.recognition.names == ["mobilefacenet", "dlib"] and proto.calibration is not None


# -- end to end: LR probes made outside fsr-bench from LFW dev faces ----------------------------------
def _lfw_native_tree(lfw, dev_list, tmp_path, n_ids=8):
    """Gallery: three LFW images per identity as stored. Probes: two others, centre crop 160x120 ->
    PIL bicubic 42x56 -> JPEG quality 40 (the LR faces of a camera, made without fsr-bench)."""
    from PIL import Image

    listed = [line.strip() for line in dev_list.read_text().splitlines() if line.strip()]
    usable = [name for name in listed if len(list((lfw / name).glob("*.jpg"))) >= 5]
    chosen = usable[:: max(1, len(usable) // n_ids)][:n_ids]  # spread over the dev list, dev identities only
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for name in chosen:
        files = sorted((lfw / name).glob("*.jpg"))
        (gallery / name).mkdir(parents=True)
        (probes / name).mkdir(parents=True)
        for f in files[:3]:
            Image.open(f).convert("RGB").save(gallery / name / f"{f.stem}.png")
        for f in files[3:5]:
            im = Image.open(f).convert("RGB").crop((65, 45, 185, 205))  # (left, top, right, bottom): 120x160
            im.resize((42, 56), Image.BICUBIC).save(probes / name / f"{f.stem}.jpg", quality=40)
    return gallery, probes, chosen


def _embed(aligner, recogniser, images):
    found = aligner.align(images)
    emb = np.zeros((len(images), recogniser.embedding_dim))
    if bool(found.detected.any()):
        emb[found.detected.numpy()] = recogniser.embed(found.faces[found.detected]).double().numpy()
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12), found.detected.numpy().astype(bool)


@pytest.mark.shared
@pytest.mark.slow
def test_native_lfw_probes_end_to_end_against_a_hand_computation(tmp_path, shared_dir):
    pytest.importorskip("dlib")
    import torch
    from PIL import Image

    from fsr_bench.cli import app
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.models import create_model

    data = shared_dir / "data"
    gallery, probes, chosen = _lfw_native_tree(data / "lfw", data / "splits" / "lfw_dev.txt", tmp_path)
    doc = _doc(gallery, probes, data={"scale": 4},
               recognition={"recognisers": ["mobilefacenet", "dlib"], "bootstrap": {"n": 50}},
               calibration={"fraction": 0.5, "seed": 0, "fars": [0.1, 0.05]},
               run={"device": "cpu", "batch_size": 4, "num_samples": 1})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "results.json").read_text())
    rows = {r["label"]: r for r in result["models"]}
    assert list(rows) == ["LR image", "Bicubic"]  # no "HR probes" row ...
    assert "HR probes" in result["conventions"]["absent_references"]  # ... and the run says why
    assert result["conventions"]["degradation"]["type"] == "native_lr"
    cal = result["conventions"]["calibration"]["per_recogniser"]
    eval_ids = sorted(set(chosen) - set(cal["mobilefacenet"]["subjects"]))
    assert len(cal["mobilefacenet"]["subjects"]) == 4 and len(eval_ids) == 4

    # by hand: gallery = first gallery image of each evaluation identity, probes = the JPEG files
    def read(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)

    g_imgs = [read(sorted((gallery / i).iterdir())[0]) for i in eval_ids]
    p_files = [f for i in eval_ids for f in sorted((probes / i).iterdir())]
    p_subject = np.array([eval_ids.index(f.parent.name) for f in p_files])
    lr = [read(f) for f in p_files]
    bicubic = create_model("bicubic_x4")
    sr = [(torch.round(bicubic(x[None])[0].clamp(0, 1) * 255) / 255) for x in lr]  # the 8-bit SR convention
    with open(out / "per_probe.csv") as f:
        per_probe = list(csv.DictReader(f))
    for name in ("mobilefacenet", "dlib"):
        recogniser = create_recogniser(name, device="cpu", flip=True)
        aligner = FaceAligner(min_face_size=20, thresholds=(0.6, 0.7, 0.7), factor=0.709, selection="center",
                              batch_size=16, device="cpu", recogniser=recogniser)
        eg, dg = _embed(aligner, recogniser, g_imgs)
        assert dg.all()
        for label, images in (("LR image", lr), ("Bicubic", sr)):
            ep, dp = _embed(aligner, recogniser, images)
            s = ep @ eg.T
            own = np.where(dp, s[np.arange(len(p_files)), p_subject], -np.inf)
            got = rows[label]["by_recogniser"][name]["metrics"]
            lines = [r for r in per_probe if r["recogniser"] == name and r["label"] == label]
            assert [r["probe"] for r in lines] == [f"{f.parent.name}/{f.stem}" for f in p_files]
            for line, want, detected in zip(lines, own, dp):
                assert (line["similarity"] != "") == bool(detected)
                if detected:
                    assert float(line["similarity"]) == pytest.approx(want, abs=2e-3)
            assert got["matching_accuracy"] == pytest.approx(np.mean(own >= 0.4))
            top = np.argmax(np.where(dp[:, None], s, -np.inf), axis=1)
            assert got["rank1"] == pytest.approx(np.mean(dp & (top == p_subject)))
            assert got["detection_rate"] == pytest.approx(dp.mean())
            ops = OperatingPoints.model_validate(rows[label]["by_recogniser"][name]["operating_points"])
            assert ops.at_far(0.1) is not None and ops.at_far(0.05) is not None, (name, label)
            assert ops.fixed.threshold == 0.4 and ops.fixed.far is not None, (name, label)
    assert rows["Bicubic"]["ci95"]  # bootstrap CIs as for synthetic probes

    report = (out / "report" / "report.md").read_text()
    assert "*HR probes* row absent — not run: the probes are natively low-resolution" in report
    assert "Operating points" in report and "dlib" in report
