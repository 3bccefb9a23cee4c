"""The recognition protocol: scoring conventions, the identity-folder adapter, and an end-to-end
run on a handful of real LFW development identities (HR probes must beat bicubic-upsampled LR
probes by a wide margin; a rerun with one more model computes only that model)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from fsr_bench.data.identity_folders import IdentityFolderSet, build_probe_degradation
from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.metrics.recognition import score_row
from fsr_bench.protocol import ProtocolError, load_protocol, load_protocol_dict
from fsr_bench.results import COLUMNS
from fsr_bench.run.recognition import run_recognition

SUMMARY_COLUMNS, PER_PROBE_COLUMNS = (list(COLUMNS["recognition"][k]) for k in ("summary", "per_probe"))


# -- scoring conventions (pure) --------------------------------------------------------------------
def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_score_row_counts_undetected_probes_as_failures():
    # 3 subjects with orthogonal gallery embeddings; 4 probes
    g = np.eye(3)
    p = _unit([[1, 0.1, 0], [0.2, 1, 0], [0, 0, 1], [1, 0, 0]])  # probe 3 (subject 2) looks like 0
    det = np.array([True, True, False, True])  # probe 2 undetected
    subj = np.array([0, 1, 2, 2])
    s = score_row(p, det, g, np.ones(3, bool), subj, threshold=0.4, bootstrap_n=0)
    m = s.metrics
    assert m["n_probes"] == 4 and m["detection_rate"] == 0.75
    assert m["matching_accuracy"] == 0.5  # probes 0, 1 matched; the undetected one stays in the denominator
    assert m["n_matched"] == 2
    # average over the probes that reached the recogniser (0, 1, 3)
    expected = (p[0, 0] + p[1, 1] + 0.0) / 3
    assert math.isclose(m["average_similarity"], expected, rel_tol=1e-9)
    assert s.similarity[2] is None and s.rank[2] is None and s.matched[2] is False
    assert s.rank[:2] == [1, 1] and s.rank[3] == 3  # own subject's similarity 0; the two others >= it
    assert m["rank1"] == 0.5 and s.cmc[:3] == [0.5, 0.5, 0.75]  # undetected: a miss at every rank
    assert m["rank5"] == 0.75
    assert 0 <= m["eer"] <= 1 and len(s.roc["far"]) == len(s.roc["tar"]) <= 200
    assert s.roc["far"][0] == 0.0 and s.roc["far"][-1] == 1.0 and s.roc["tar"][-1] == 1.0


def test_score_row_no_detection_gives_dash_and_zero():
    g = np.eye(2)
    s = score_row(np.zeros((3, 2)), np.zeros(3, bool), g, np.ones(2, bool), np.array([0, 1, 1]),
                  bootstrap_n=50)
    assert s.metrics["average_similarity"] is None  # the paper's "-"
    assert "average_similarity" in s.unavailable
    assert s.metrics["matching_accuracy"] == 0 and s.metrics["detection_rate"] == 0 and s.metrics["rank1"] == 0
    assert s.metrics["tar_at_far_1e-3"] == 0
    assert "average_similarity" not in s.ci95 and s.ci95["matching_accuracy"] == [0.0, 0.0]


def test_score_row_undetected_gallery_face_makes_its_probes_unscorable():
    g = np.eye(2)
    p = _unit([[1, 0], [0, 1]])
    s = score_row(p, np.ones(2, bool), g, np.array([True, False]), np.array([0, 1]), bootstrap_n=0)
    assert s.matched == [True, False] and s.similarity[1] is None and s.rank[1] is None
    assert s.metrics["matching_accuracy"] == 0.5 and s.metrics["average_similarity"] == pytest.approx(1.0)
    assert s.metrics["detection_rate"] == 1.0 and s.metrics["rank1"] == 0.5


def test_score_row_groups_and_subject_bootstrap():
    rng = np.random.default_rng(0)
    g = _unit(rng.normal(size=(20, 16)))
    subj = np.repeat(np.arange(20), 3)
    p = _unit(g[subj] + rng.normal(scale=0.6, size=(60, 16)))
    dist = np.tile(["d1", "d2", "d3"], 20)
    s = score_row(p, np.ones(60, bool), g, np.ones(20, bool), subj, distances=dist.tolist(),
                  cameras=["cam1"] * 60, bootstrap_n=300, bootstrap_seed=1)
    assert set(s.per_distance) == {"d1", "d2", "d3"} and set(s.per_camera) == {"cam1"}
    assert sum(v["n_probes"] for v in s.per_distance.values()) == 60
    assert s.per_camera["cam1"]["matching_accuracy"] == pytest.approx(s.metrics["matching_accuracy"])
    for key in ("matching_accuracy", "rank1", "average_similarity"):
        lo, hi = s.ci95[key]
        assert lo <= s.metrics[key] <= hi and lo < hi
    again = score_row(p, np.ones(60, bool), g, np.ones(20, bool), subj, bootstrap_n=300, bootstrap_seed=1)
    assert again.ci95 == s.ci95  # seeded
    # CMC agrees with the per-probe ranks
    ranks = np.array(s.rank)
    assert [float(np.mean(ranks <= k)) for k in range(1, 11)] == pytest.approx(s.cmc)


# -- identity folders ------------------------------------------------------------------------------
def _folder_tree(root: Path, counts: dict[str, int], size=(250, 250)) -> Path:
    for identity, n in counts.items():
        for i in range(1, n + 1):
            path = root / identity / f"{identity}_{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = np.random.default_rng([len(identity), i]).integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
            Image.fromarray(arr).save(path)
    return root


def test_identity_folders_gallery_probes_and_seeded_draws(tmp_path):
    root = _folder_tree(tmp_path / "ids", {"a": 3, "b": 2, "c": 1, "d": 6, "e": 2}, size=(40, 30))
    deg = {"crop": None, "lr_size": [8, 6], "preset": None, "degradation": {"type": "bicubic", "scale": 2}}
    ds = IdentityFolderSet(root, probe_degradation=deg)
    assert [g.subject for g in ds.gallery] == ["a", "b", "d", "e"]  # "c" has one image: no probe
    assert ds.gallery[0].path.name == "a_0001.png"  # first image, sorted
    assert [p.name for p in ds.probes if p.subject == "a"] == ["a/a_0002", "a/a_0003"]
    assert len(ds.probes) == 2 + 1 + 5 + 1 and ds.describe()["single_image_identities_left_out"] == 1
    assert ds.scale == 2
    small = IdentityFolderSet(root, max_identities=2, max_probes_per_identity=2, seed=3, probe_degradation=deg)
    assert len(small.gallery) == 2 and all(
        sum(p.subject == g.subject for p in small.probes) <= 2 for g in small.gallery)
    same = IdentityFolderSet(root, max_identities=2, max_probes_per_identity=2, seed=3, probe_degradation=deg)
    assert [p.name for p in same.probes] == [p.name for p in small.probes]
    # gallery list: explicit enrolment images, problems listed together
    (tmp_path / "gal.txt").write_text("a/a_0003.png\nb/b_0002.png\nd/d_0001.png\ne/e_0001.png\n")
    listed = IdentityFolderSet(root, gallery_list=tmp_path / "gal.txt", probe_degradation=deg)
    assert listed.gallery[0].path.name == "a_0003.png"
    assert "a/a_0003" not in [p.name for p in listed.probes]
    (tmp_path / "bad.txt").write_text("a/a_0009.png\nb/b_0001.png\n")
    with pytest.raises(FsrBenchDataError) as info:
        IdentityFolderSet(root, gallery_list=tmp_path / "bad.txt", probe_degradation=deg)
    assert "a/a_0009.png" in str(info.value) and "d (no gallery entry)" in str(info.value)


def test_probe_degradation_preset_is_the_paper_setting(tmp_path):
    deg = build_probe_degradation(None)
    assert deg.lr_size == (28, 21) and deg.scale == 8 and deg.hr_face_size == (224, 168)
    root = _folder_tree(tmp_path / "ids", {"a": 2})
    ds = IdentityFolderSet(root, probe_degradation={"crop": [160, 120]})
    im = ds.read_probe(ds.probes[0])
    assert tuple(im.hr.shape) == (3, 160, 120) and tuple(im.lr.shape) == (3, 28, 21)  # hr: the face crop
    # a surveillance chain is seeded per probe: same seed, same LR; another seed, another LR
    noisy = IdentityFolderSet(root, probe_degradation={
        "crop": [160, 120], "degradation": {"type": "surveillance", "scale": 8}})
    a, b = noisy.read_probe(noisy.probes[0], seed=1).lr, noisy.read_probe(noisy.probes[0], seed=1).lr
    c = noisy.read_probe(noisy.probes[0], seed=2).lr
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(FsrBenchDataError, match="crop"):
        IdentityFolderSet(root, probe_degradation={"crop": [300, 120]}).read_probe(ds.probes[0])
    with pytest.raises(FsrBenchDataError, match="unknown key"):
        build_probe_degradation({"lr_sise": [28, 21]})


def _protocol(root: Path, models: list[dict], **data) -> dict:
    return {
        "kind": "recognition", "name": "t",
        "data": {"type": "identity_folder", "root": str(root), **data},
        "models": models,
        "recognition": {"bootstrap": {"n": 200}},
        "run": {"device": "cpu", "batch_size": 8, "num_samples": 2},
    }


def test_bad_models_fail_before_any_detection(tmp_path):
    root = _folder_tree(tmp_path / "ids", {"a": 2, "b": 2})
    p = load_protocol_dict(_protocol(root, [{"name": "bicubic_x4"}]))
    with pytest.raises(ProtocolError, match="x4 but this protocol's probes are made for x8"):
        run_recognition(p, tmp_path / "out", progress=False, log=lambda s: None)
    p = load_protocol_dict(_protocol(root, [{"name": "tanet_x8"}]))
    with pytest.raises(ProtocolError, match="no checkpoint"):
        run_recognition(p, tmp_path / "out", progress=False, log=lambda s: None)
    assert not list((tmp_path / "out" / "cache").glob("faces_*.pt"))  # nothing was detected
    bad = _protocol(root, [])
    bad["data"]["max_identity"] = 3
    with pytest.raises(ProtocolError, match="max_identity"):
        load_protocol_dict(bad)
    with pytest.raises(ProtocolError, match="reserved"):
        load_protocol_dict(_protocol(root, [{"name": "bicubic_x8", "label": "HR probes"}]))
    with pytest.raises(ProtocolError, match="no identity folder holds two"):
        run_recognition(load_protocol_dict(_protocol(_folder_tree(tmp_path / "one", {"a": 1}), [])),
                        tmp_path / "out2", progress=False, log=lambda s: None)


def test_lfw_protocol_file_validates():
    p = load_protocol(REPO / "protocols" / "lfw_surveillance_x8.yaml")
    assert p.data.type == "identity_folder" and p.data.max_identities == 100
    assert p.data.probe_degradation.crop == (160, 120) and p.data.probe_degradation.preset == "tanet_21x28_x8"
    assert [m.name for m in p.models] == ["bicubic_x8", "tanet_s_x8"] and p.models[1].pretrained
    assert p.references.hr_probes and p.references.lr_image


# -- end to end on real LFW faces ------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
def test_lfw_end_to_end_hr_beats_bicubic_and_reruns_reuse_work(tmp_path, shared_dir):
    data = shared_dir / "data"
    doc = _protocol(data / "lfw", [{"name": "bicubic_x8", "label": "Bicubic"}],
                    list_file=str(data / "splits" / "lfw_dev.txt"), max_identities=8,
                    max_probes_per_identity=2, probe_degradation={"crop": [160, 120]})
    out = tmp_path / "run"
    logs: list[str] = []
    first = run_recognition(load_protocol_dict(doc), out, progress=False, log=logs.append)
    rows = {r["label"]: r for r in first["models"]}
    assert list(rows) == ["LR image", "Bicubic", "HR probes"]
    hr, bic = rows["HR probes"]["metrics"], rows["Bicubic"]["metrics"]
    n = hr["n_probes"]
    assert n >= 10 and bic["n_probes"] == n
    assert hr["detection_rate"] == 1.0
    assert hr["matching_accuracy"] >= bic["matching_accuracy"] + 0.25, (hr, bic)
    assert hr["average_similarity"] >= bic["average_similarity"] + 0.15, (hr, bic)
    assert hr["rank1"] >= bic["rank1"] and hr["eer"] <= bic["eer"]
    assert rows["Bicubic"]["scale"] == 8 and rows["Bicubic"]["name"] == "bicubic_x8"
    assert rows["HR probes"]["name"] == "reference" and rows["HR probes"]["scale"] is None

    # the folder format the report reads
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "recognition" and res["conventions"]["threshold"] == 0.4
    assert res["conventions"]["degradation"]["scale"] == 8 and res["conventions"]["degradation"]["lr_size"] == [28, 21]
    assert res["conventions"]["recogniser"]["name"] == "mobilefacenet"
    entry = res["models"][1]
    for key in ("matching_accuracy", "average_similarity", "detection_rate", "rank1", "rank5",
                "tar_at_far_1e-2", "tar_at_far_1e-3", "eer", "n_probes", "n_matched"):
        assert key in entry["metrics"]
    assert set(entry["ci95"]) == {"matching_accuracy", "rank1", "average_similarity"}
    assert list(entry["per_distance"]) == ["all"] and list(entry["per_camera"]) == ["all"]
    assert len(entry["cmc"]) == 10 and len(entry["roc"]["far"]) <= 200
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == SUMMARY_COLUMNS and [r["label"] for r in summary] == list(rows)
    with open(out / "per_probe.csv") as f:
        per_probe = list(csv.DictReader(f))
    assert list(per_probe[0]) == PER_PROBE_COLUMNS and len(per_probe) == 3 * n
    stems = sorted(p.name for p in (out / "samples").iterdir())
    assert len(stems) == 2
    for stem in stems:
        names = {p.name for p in (out / "samples" / stem).iterdir()}
        assert names == {".key", "lr.png", "gallery.png", "LR_image.png", "Bicubic.png", "HR_probes.png"}
    lr = Image.open(out / "samples" / stems[0] / "lr.png")
    assert lr.size == (21, 28) and Image.open(out / "samples" / stems[0] / "Bicubic.png").size == (168, 224)
    from fsr_bench.reporting.load import load_run  # the report's reader accepts the folder

    loaded = load_run(out)
    assert loaded.scale == 8 and [r.label for r in loaded.rows] == list(rows) and loaded.absent == ()

    # rerun with one more model: only that model's SR and faces are computed
    doc["models"].append({"name": "bicubic_x8", "label": "Bilinear", "overrides": {"kernel": "bilinear"}})
    second = run_recognition(load_protocol_dict(doc), out, progress=False, log=logs.append)
    work = {r["label"]: r["work"] for r in second["models"]}
    for label in ("LR image", "Bicubic", "HR probes"):
        assert work[label]["faces_computed"] == 0 and work[label]["sr_computed"] == 0, (label, work)
    assert work["Bicubic"]["sr_reused"] == n
    assert work["Bilinear"]["sr_computed"] == n and work["Bilinear"]["faces_computed"] == n
    again = {r["label"]: r["metrics"] for r in second["models"]}
    for label in rows:
        assert again[label] == rows[label]["metrics"]


def test_crop_null_on_a_tiny_file_is_an_error():  # issue 11 item 12
    from fsr_bench.data.io import FsrBenchDataError

    deg = build_probe_degradation({"crop": None})
    with pytest.raises(FsrBenchDataError, match=r"tiny\.png: image is 1x1.*probe_degradation\.lr_size"):
        deg(torch.rand(3, 1, 1), index=0, seed=0, source="tiny.png")
    face, hr, lr = deg(torch.rand(3, 250, 250), index=0, seed=0, source="ok.png")
    assert tuple(lr.shape[-2:]) == deg.lr_size


def test_every_probe_file_is_checked_before_computing(tmp_path):  # issue 11 item 12
    from fsr_bench.data.identity_folders import identity_folder
    from fsr_bench.data.io import FsrBenchDataError

    root = _folder_tree(tmp_path / "ids", {"a": 3, "b": 3}, size=(40, 30))
    (root / "b" / "b_0003.png").write_bytes(b"garbage")  # the last probe: read last by a run
    deg = {"crop": None, "lr_size": [8, 6], "preset": None, "degradation": {"type": "bicubic", "scale": 2}}
    with pytest.raises(FsrBenchDataError, match=r"(?s)1 unusable image.*b_0003\.png"):
        identity_folder({"root": str(root), "probe_degradation": deg})
