"""Several gallery images per subject (TinyFace Gallery_Match, QMUL-SurvFace gallery): each image is
scored, a subject counts with its best image. Checked against brute-force loops, and end to end on
the official-layout trees of test_tinyface.py / test_survface.py with real faces written into them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import test_survface
import test_tinyface
import torch
from conftest import REPO
from PIL import Image

from fsr_bench.metrics.recognition import score_row
from fsr_bench.protocol import load_protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_ranks(emb_p, det_p, emb_g, det_g, g_subject, p_subject):
    """Per probe: own-subject best score and rank (1 + other subjects whose best >= it), by loops."""
    n_s = max(g_subject) + 1
    out = []
    for i in range(len(emb_p)):
        best = []
        for s in range(n_s):
            vals = [float(np.dot(emb_p[i], emb_g[j])) for j in range(len(emb_g)) if g_subject[j] == s and det_g[j]]
            best.append(max(vals) if vals and det_p[i] else -np.inf)
        own = best[p_subject[i]]
        if own == -np.inf:
            out.append((None, None))
            continue
        out.append((own, 1 + sum(1 for s in range(n_s) if s != p_subject[i] and best[s] >= own)))
    return out


def test_score_row_with_several_images_per_subject_matches_brute_force():
    rng = np.random.default_rng(0)
    g_subject = np.array([0, 0, 1, 2, 2, 2, 3] + list(range(4, 30)))  # 30 subjects, 33 images
    det_g = np.ones(g_subject.size, bool)
    det_g[3] = False  # one of subject 2's images undetected: the others still enrol it
    emb_g = _unit(rng.normal(size=(g_subject.size, 8)))
    p_subject = np.array([0, 0, 1, 2, 3, 5, 9])
    emb_p = _unit(emb_g[[0, 1, 2, 4, 6, 10, 14]] + rng.normal(scale=0.9, size=(7, 8)))
    det_p = np.array([True, True, True, True, True, False, True])
    got = score_row(emb_p, det_p, emb_g, det_g, p_subject, 0.4, bootstrap_n=0, gallery_subject=g_subject)
    want = _brute_ranks(emb_p, det_p, emb_g, det_g, g_subject, p_subject)
    assert got.rank == [r for _, r in want]
    assert got.similarity == pytest.approx([s for s, _ in want], abs=1e-12)
    n = len(p_subject)
    for k in (1, 5, 20):
        assert got.metrics[f"rank{k}"] == pytest.approx(sum(1 for _, r in want if r is not None and r <= k) / n)
    assert got.metrics["matching_accuracy"] == pytest.approx(sum(1 for s, _ in want if s is not None and s >= 0.4) / n)
    # one image per subject: gallery_subject is the identity and changes nothing
    single = np.arange(30)
    keep = [0, 2, 4, 6] + list(range(7, 33))
    a = score_row(emb_p, det_p, emb_g[keep], det_g[keep], p_subject, 0.4, bootstrap_n=0)
    b = score_row(emb_p, det_p, emb_g[keep], det_g[keep], p_subject, 0.4, bootstrap_n=0, gallery_subject=single)
    assert a.metrics == b.metrics and a.rank == b.rank


# -- end to end on the official layouts, with real faces -------------------------------------------
def _faces(lfw, n_people: int, per_person: int):
    """Faces of the first LFW dev identities with enough images (sorted: deterministic)."""
    names = (lfw.parent / "splits" / "lfw_dev.txt").read_text().split()
    people = [sorted((lfw / n).glob("*.jpg")) for n in names if len(list((lfw / n).glob("*.jpg"))) >= per_person]
    return people[:n_people]


def _write_face(src, dst, size):
    """The LFW face region (centre 150x120) at the tree's size, as a native low-resolution face."""
    im = Image.open(src).convert("RGB")
    w, h = im.size
    box = ((w - 120) // 2, (h - 150) // 2, (w + 120) // 2, (h + 150) // 2)
    im.crop(box).resize(size, Image.BICUBIC).save(dst, format="JPEG", quality=95)


#: one recogniser, no bootstrap, no LR-image row: what the gallery tests need from their protocol
GALLERY_SETS = ["recognition.recognisers=[mobilefacenet]", "recognition.bootstrap.n=0", "run.device=cpu",
                "references.lr_image=false", "run.num_samples=1"]


def _run(protocol, tmp_path, monkeypatch, sets):
    """Run protocols/<protocol>.yaml on the tree written under tmp_path: (result, its results.json)."""
    from fsr_bench.run.recognition import run_recognition

    monkeypatch.setenv("FSR_BENCH_DATA", str(tmp_path))
    proto = load_protocol(REPO / "protocols" / f"{protocol}.yaml", sets)
    result = run_recognition(proto, tmp_path / "out", progress=False, log=lambda _: None)
    return result, json.loads((tmp_path / "out" / "results.json").read_text())


def _subject_best(matrix, g_ids):
    subjects = list(dict.fromkeys(g_ids.tolist()))
    cols = [np.flatnonzero(g_ids == s) for s in subjects]
    return subjects, np.stack([matrix[:, c].max(axis=1) for c in cols], axis=1)


def test_tinyface_multi_image_gallery_run(lfw_dir, tmp_path, monkeypatch):
    root = test_tinyface.make_tree(tmp_path / "TinyFace")
    test = root / "Testing_Set"
    people = _faces(lfw_dir, 9, 3)
    subjects = {"1": people[0], "2": people[1], "3": people[2], "10": people[3]}
    used = {k: 0 for k in subjects}
    for name in test_tinyface.GALLERY + test_tinyface.PROBES:
        sid = name.split("_")[0]
        _write_face(subjects[sid][used[sid]], test / ("Gallery_Match" if name in test_tinyface.GALLERY else "Probe")
                    / name, (16, 20))  # TinyFace-sized: 16x20
        used[sid] += 1
    for k, name in enumerate(test_tinyface.DISTRACTORS):
        _write_face(people[4 + k][0], test / "Gallery_Distractor" / name, (16, 20))
    result, saved = _run("tinyface_x4", tmp_path, monkeypatch, GALLERY_SETS)
    # 4 enrolled subjects with 5 Gallery_Match images, plus 5 one-image distractor identities
    assert saved["gallery"]["n_subjects"] == 9 and saved["gallery"]["n_images"] == 10
    assert "no template fusion" in saved["gallery"]["template"]
    scores = np.load(tmp_path / "out" / "scores.npz")
    g_ids, p_ids = scores["gallery_ids"], scores["probe_ids"]
    assert g_ids.size == 10 and list(g_ids).count("1") == 2
    for row in result.models:
        m = scores[f"mobilefacenet|{row.label}"]  # (P, G images); NaN rows: undetected probes
        subjects, best = _subject_best(np.nan_to_num(m, nan=-np.inf), g_ids)
        ranks = []
        for i, sid in enumerate(p_ids):
            own = best[i, subjects.index(sid)]
            ranks.append(None if not np.isfinite(own) else
                         1 + sum(best[i, j] >= own for j in range(len(subjects)) if subjects[j] != sid))
        for k in (1, 5, 20):
            assert row.metrics[f"rank{k}"] == pytest.approx(np.mean([r is not None and r <= k for r in ranks]))
    hr = next(r for r in result.models if r.label == "HR probes")
    assert hr.metrics["detection_rate"] == 1.0 and hr.metrics["rank1"] > 0  # real faces: the set is scored


def test_survface_multi_image_gallery_open_set(lfw_dir, tmp_path, monkeypatch):
    root = test_survface.make_tree(tmp_path / "QMUL-SurvFace")
    ident = root / "Face_Identification_Test_Set"
    extra = [f"{203 + k}_cam1_1.jpg" for k in range(7)]  # 10 unmated probes: FPIR 0.1 and 0.3 measurable
    unmated = {n: int(n.split("_")[0]) for n in [*test_survface.UNMATED, *extra]}
    people = _faces(lfw_dir, 12, 3)
    by_subject = {sid: people[k] for k, sid in enumerate(sorted({*test_survface.GALLERY.values(), *unmated.values()}))}
    used = {k: 0 for k in by_subject}
    for folder, names in (("gallery", test_survface.GALLERY), ("mated_probe", test_survface.MATED),
                          ("unmated_probe", unmated)):
        for name, sid in names.items():
            _write_face(by_subject[sid][used[sid]], ident / folder / name, (20, 24))  # SurvFace-sized
            used[sid] += 1
    result, saved = _run("survface_x4", tmp_path, monkeypatch, GALLERY_SETS)
    assert saved["gallery"]["n_subjects"] == 3 and saved["gallery"]["n_images"] == 4  # subject 101: two images
    scores = np.load(tmp_path / "out" / "scores.npz")
    g_ids, p_ids = scores["gallery_ids"], scores["probe_ids"]
    mated = np.isin(p_ids, g_ids)
    assert mated.sum() == 3 and (~mated).sum() == 10
    checked = 0
    for row in result.models:
        m = np.nan_to_num(scores[f"mobilefacenet|{row.label}"], nan=-np.inf)
        subjects, best = _subject_best(m, g_ids)
        top_unmated = best[~mated].max(axis=1)
        own = {i: best[i, subjects.index(s)] for i, s in enumerate(p_ids) if mated[i]}
        rank = {i: 1 + sum(best[i, j] >= own[i] for j in range(len(subjects)) if subjects[j] != p_ids[i])
                for i in own}
        for fpir in (0.1, 0.3):
            allowed = int(np.floor(fpir * 10 + 1e-9))  # false alarms allowed among 10 unmated probes
            cands = sorted(c for c in [*top_unmated, *own.values()] if np.isfinite(c))
            t = next((c for c in cands if (top_unmated >= c).sum() <= allowed), np.inf)
            for r in (1, 20):
                hits = sum(bool(np.isfinite(own[i]) and own[i] >= t and rank[i] <= r) for i in own)
                assert row.operating_points.at_fpir(fpir).tpir[r] == pytest.approx(hits / 3)
                checked += 1
            assert row.operating_points.at_fpir(fpir).fpir == pytest.approx((top_unmated >= t).sum() / 10)
    assert checked == 4 * len(result.models)
    hr = next(r for r in result.models if r.label == "HR probes")
    assert hr.metrics["detection_rate"] == 1.0


def test_survface_verification_pairs(lfw_dir, tmp_path, monkeypatch):
    """1:1: the listed pairs of test_survface.py's tree, real faces written in; similarities and TAR@FAR
    recomputed from MTCNN + norm_crop + MobileFaceNet called directly on the native images."""
    from facenet_pytorch import MTCNN
    from insightface.utils.face_align import norm_crop

    from fsr_bench.data.io import read_image
    from fsr_bench.face import create_recogniser

    root = test_survface.make_tree(tmp_path / "QMUL-SurvFace")
    folder = root / "Face_Verification_Test_Set" / "verification_images"
    people = _faces(lfw_dir, 3, 2)
    for name in sorted(p.name for p in folder.iterdir()):  # <subject>_cam.. : subject k -> person k-1
        sid, k = int(name.split("_")[0]), int(name.split("_")[1][3:]) - 1
        _write_face(people[sid - 1][min(k, 1)], folder / name, (40, 48))
    result, _ = _run("survface_verification_x4", tmp_path, monkeypatch,
                     ["recognition.recognisers=[mobilefacenet]", "run.device=cpu"])
    assert [r.label for r in result.models] == ["LR image", "Bicubic", "HR probes"]

    rec = create_recogniser("mobilefacenet", device="cpu", flip=False)
    mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=12)

    def embed(path):
        img = read_image(path)
        boxes, _, pts = mtcnn.detect((img * 255).round().permute(1, 2, 0)[None], landmarks=True)
        if boxes[0] is None:
            return None
        b = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 4)
        h, w = img.shape[-2:]
        k = int(np.argmin(np.hypot((b[:, 0] + b[:, 2]) / 2 - (w - 1) / 2, (b[:, 1] + b[:, 3]) / 2 - (h - 1) / 2)))
        crop = norm_crop(np.ascontiguousarray(img.permute(1, 2, 0).numpy()),
                         np.asarray(pts[0], dtype=np.float32).reshape(-1, 5, 2)[k], 112)
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].clamp(0, 1)
        e = (rec.forward_raw(t) + rec.forward_raw(t.flip(-1)))[0].double().numpy()
        return e / np.linalg.norm(e)

    pairs = [(a, b, True) for a, b in test_survface.POSITIVE] + [(a, b, False) for a, b in test_survface.NEGATIVE]
    embs = {n: embed(folder / n) for n in {x for a, b, _ in pairs for x in (a, b)}}
    sims = np.array([float(embs[a] @ embs[b]) if embs[a] is not None and embs[b] is not None else -np.inf
                     for a, b, _ in pairs])
    same = np.array([s for *_, s in pairs])
    hr = next(r for r in result.models if r.label == "HR probes")
    assert np.isfinite(sims).sum() >= 4  # real faces: most pairs are scored
    saved = np.load(tmp_path / "out" / "scores.npz")
    assert saved["mobilefacenet|HR probes"] == pytest.approx(sims.astype(np.float32), abs=2e-5)
    gen, imp = sims[same], sims[~same]
    for far, key in ((0.3, "0.3"), (0.1, "0.1"), (0.01, "1e-2"), (0.001, "1e-3")):
        # largest achievable FAR <= target over the 3 impostors, then the TAR at that threshold
        best = 0.0
        for t in sorted({*gen[np.isfinite(gen)], *imp[np.isfinite(imp)], np.inf}):
            if np.mean(imp >= t) <= far:
                best = max(best, float(np.mean(gen >= t)))
        assert hr.metrics[f"tar_at_far_{key}"] == pytest.approx(best)
    assert hr.metrics["matching_accuracy"] == pytest.approx(np.mean(gen >= 0.4))
    assert hr.unavailable["rank1"].startswith("1:1 verification")
