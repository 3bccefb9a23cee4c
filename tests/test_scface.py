"""SCface adapter on a synthetic tree laid out exactly like the official distribution.

The tree holds tiny generated images (not faces) for all 130 subjects, visible cameras 1-5 and IR
cameras 6-7 at the three distances, plus the IR mugshot folder the adapter must ignore. Counts are
checked against Idiap's bob.db.scface protocol numbers (dev: 44 enrolments + 660 probes, eval:
43 + 645; one distance: 220 / 215).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsr_bench.data.scface import (
    GALLERY_DIR,
    SCfaceLayoutError,
    SCfaceSet,
    probe_dir,
    subjects_of,
)


def _png(path: Path, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    arr[::3, ::2] = 255 - value % 256  # some structure so resizing is not trivial
    Image.fromarray(arr).save(path)


def make_tree(root: Path, subjects=range(1, 131), cameras=range(1, 8), cam_folder="cam{k}") -> Path:
    """mugshot_frontal_cropped_all/NNN_frontal.JPG + surveillance_cameras_distance_D/camK/NNN_camK_D.jpg."""
    for s in subjects:
        # the gallery ships as upper-case .JPG; write JPEG bytes like the real files
        path = root / GALLERY_DIR / f"{s:03d}_frontal.JPG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 32, 3), s, dtype=np.uint8)).save(path, format="JPEG")
        _png(root / "surveillance_cameras_IR_cam8" / f"{s:03d}_cam8.png", (8, 8), s)  # IR mugshots
        for d in (1, 2, 3):
            for k in cameras:
                folder = root / probe_dir(d) / cam_folder.format(k=k)
                f = folder / f"{s:03d}_cam{k}_{d}.jpg"
                f.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((12 + 4 * d, 10 + 2 * d, 3), s + k, dtype=np.uint8)).save(f, format="JPEG")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("scface") / "SCface")


def test_all_130_subjects_visible_cameras_by_default(tree):
    ds = SCfaceSet(tree, lr_size=None)
    assert len(ds.gallery) == 130 and ds.gallery[0].subject == "001" and ds.gallery[-1].subject == "130"
    assert ds.gallery[0].path.name == "001_frontal.JPG"
    assert len(ds.probes) == 130 * 5 * 3
    assert {p.camera for p in ds.probes} == {f"cam{k}" for k in range(1, 6)}
    assert {p.distance for p in ds.probes} == {"d1", "d2", "d3"}
    p = next(p for p in ds.probes if p.name == "042_cam3_2")
    assert (p.subject, p.distance, p.camera) == ("042", "d2", "cam3")
    assert p.path == tree / "surveillance_cameras_distance_2" / "cam3" / "042_cam3_2.jpg"
    assert [q.index for q in ds.probes] == list(range(len(ds.probes)))
    assert len({q.name for q in ds.probes}) == len(ds.probes)
    d = ds.describe()
    assert d["n_subjects"] == 130 and d["n_probes"] == 1950 and d["type"] == "scface"
    assert ds.describe_degradation()["scale"] == 8


@pytest.mark.parametrize(
    "group, distances, n_gallery, n_probes",
    [
        ("dev", [1, 2, 3], 44, 660),  # bob.db.scface "combined", dev
        ("eval", [1, 2, 3], 43, 645),  # "combined", eval
        ("dev", [3], 44, 220),  # "close", dev
        ("eval", [1], 43, 215),  # "far", eval
        ("world", [2], 43, 215),
    ],
)
def test_bob_groups_and_distance_protocols(tree, group, distances, n_gallery, n_probes):
    ds = SCfaceSet(tree, subjects=group, distances=distances, lr_size=None)
    assert len(ds.gallery) == n_gallery
    assert len(ds.probes) == n_probes
    assert {p.distance for p in ds.probes} == {f"d{d}" for d in distances}
    ids = [int(g.subject) for g in ds.gallery]
    assert ids == subjects_of(group)
    assert {p.subject for p in ds.probes} == {g.subject for g in ds.gallery}


def test_subject_groups_are_bobs():
    assert subjects_of("world") == list(range(1, 44))
    assert subjects_of("dev") == list(range(44, 88))
    assert subjects_of("eval") == list(range(88, 131))
    assert subjects_of("all") == list(range(1, 131))
    assert subjects_of([5, 3, 3]) == [3, 5]
    with pytest.raises(ValueError, match="group"):
        subjects_of("test")
    with pytest.raises(ValueError, match="1-130"):
        subjects_of([0, 131])


def test_ir_cameras_are_selectable(tree):
    ds = SCfaceSet(tree, cameras=[6, 7], subjects=[1, 2], lr_size=None)
    assert len(ds.probes) == 2 * 2 * 3
    assert {p.camera for p in ds.probes} == {"cam6", "cam7"}
    assert "IR" in " ".join(ds.describe()["cameras"])


def test_camera_and_distance_validation(tree):
    with pytest.raises(ValueError, match="cameras"):
        SCfaceSet(tree, cameras=[8])  # cam8 holds IR mugshots, not probes
    with pytest.raises(ValueError, match="distances"):
        SCfaceSet(tree, distances=[4])


def test_read_probe_gives_native_hr_and_21x28_lr(tree):
    ds = SCfaceSet(tree, subjects=[7], distances=[1], cameras=[1])
    (p,) = ds.probes
    images = ds.read_probe(p)
    assert tuple(images.hr.shape) == (3, 16, 12)  # native size of the synthetic d1 frame
    assert tuple(images.lr.shape) == (3, 28, 21)  # the paper's 21x28 LR face (H, W)
    assert images.lr.min() >= 0 and images.lr.max() <= 1
    assert np.allclose(images.lr.numpy() * 255, np.round(images.lr.numpy() * 255), atol=1e-4)  # 8-bit
    g = ds.read_gallery(ds.gallery[0])
    assert tuple(g.shape) == (3, 40, 32)
    native = SCfaceSet(tree, subjects=[7], distances=[1], cameras=[1], lr_size=None)
    assert tuple(native.read_probe(native.probes[0]).lr.shape) == (3, 16, 12)


def test_cam_underscore_folders_are_accepted(tmp_path):
    root = make_tree(tmp_path / "SCface", subjects=[1, 2], cameras=[1, 2], cam_folder="cam_{k}")
    ds = SCfaceSet(root, subjects=[1, 2], cameras=[1, 2], lr_size=None)
    assert len(ds.probes) == 2 * 2 * 3
    assert ds.probes[0].path.parent.name == "cam_1"


def test_missing_and_misnamed_files_are_listed_in_one_error(tmp_path):
    root = make_tree(tmp_path / "SCface", subjects=[1, 2, 3], cameras=[1, 2])
    (root / GALLERY_DIR / "002_frontal.JPG").unlink()
    (root / probe_dir(2) / "cam1" / "003_cam1_2.jpg").unlink()
    # a renamed file: distance label does not match its folder
    (root / probe_dir(3) / "cam2" / "001_cam2_3.jpg").rename(root / probe_dir(3) / "cam2" / "001_cam2_1.jpg")
    shutil.rmtree(root / probe_dir(1) / "cam2")
    with pytest.raises(SCfaceLayoutError) as info:
        SCfaceSet(root, subjects=[1, 2, 3], cameras=[1, 2])
    msg = str(info.value)
    for expected in ("mugshot_frontal_cropped_all/002_frontal.JPG",
                     "surveillance_cameras_distance_2/cam1/003_cam1_2.jpg",
                     "surveillance_cameras_distance_3/cam2/001_cam2_3.jpg",  # missing …
                     "surveillance_cameras_distance_3/cam2/001_cam2_1.jpg",  # … because misnamed
                     "surveillance_cameras_distance_1/cam2/ (the whole folder: 3 images"):
        assert expected in msg, expected
    assert "missing files (4)" in msg  # 1 gallery + 1 + 1 + a whole camera folder
    assert "(renamed or misplaced?) (1)" in msg
    assert "NNN_camK_D" in msg and "data.subjects" in msg  # says what to do
    # narrowing the selection to what exists is the documented fix
    ok = SCfaceSet(root, subjects=[1, 3], cameras=[1], distances=[1, 3])
    assert len(ok.probes) == 2 * 1 * 2


def test_duplicate_suffix_variants_are_an_error(tmp_path):
    root = make_tree(tmp_path / "SCface", subjects=[1], cameras=[1])
    src = root / probe_dir(1) / "cam1" / "001_cam1_1.jpg"
    shutil.copy(src, src.with_suffix(".JPG"))
    with pytest.raises(SCfaceLayoutError, match="two files for one image"):
        SCfaceSet(root, subjects=[1], cameras=[1])


def test_root_errors_say_how_to_point_at_the_data(tmp_path):
    with pytest.raises(SCfaceLayoutError, match="FSR_BENCH_DATA"):
        SCfaceSet(tmp_path / "nowhere")
    make_tree(tmp_path / "outer" / "SCface_database", subjects=[1], cameras=[1])
    with pytest.raises(SCfaceLayoutError, match="SCface_database"):
        SCfaceSet(tmp_path / "outer")


def test_scface_protocol_file_validates(monkeypatch):
    from fsr_bench.protocol import load_protocol

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("FSR_BENCH_DATA", raising=False)
    p = load_protocol(repo / "protocols" / "scface_x8.yaml")
    assert p.kind == "recognition" and p.data.type == "scface"
    assert p.data.root == "data/SCface"  # ${FSR_BENCH_DATA:-data}/SCface
    assert p.data.lr_size == (28, 21) and p.data.scale == 8 and p.recognition.threshold == 0.4
    assert p.data.subjects == "all" and p.data.cameras == [1, 2, 3, 4, 5]
    monkeypatch.setenv("FSR_BENCH_DATA", "/datasets")
    p = load_protocol(repo / "protocols" / "scface_x8.yaml", ["data.subjects=dev", "data.distances=[1]"])
    assert p.data.root == "/datasets/SCface" and p.data.subjects == "dev" and p.data.distances == [1]


@pytest.mark.shared
def test_face_crop_finds_the_face_in_a_full_frame(tmp_path, lfw_dir):
    """A real face pasted small into a 680x556 grey frame: the crop must land on it, at 3:4."""
    from fsr_bench.data.io import read_image

    face = Image.open(sorted((lfw_dir / "Aaron_Sorkin").iterdir())[0]).convert("RGB").resize((100, 100))
    root = make_tree(tmp_path / "SCface", subjects=[1], cameras=[1], )
    frame = Image.new("RGB", (680, 556), (90, 90, 90))
    frame.paste(face, (400, 120))
    frame.save(root / probe_dir(1) / "cam1" / "001_cam1_1.jpg", quality=95)
    for d in (2, 3):  # frames without a face
        Image.new("RGB", (680, 556), (90, 90, 90)).save(root / probe_dir(d) / "cam1" / f"001_cam1_{d}.jpg")
    cache = tmp_path / "cache"
    with pytest.raises(SCfaceLayoutError, match="no face in 2 of 3"):
        SCfaceSet(root, subjects=[1], cameras=[1], face_crop={"enabled": True}, cache_dir=cache)
    ds = SCfaceSet(root, subjects=[1], cameras=[1], face_crop={"enabled": True, "on_failure": "undetected"},
                   cache_dir=cache)
    d1 = next(p for p in ds.probes if p.distance == "d1")
    box = ds._boxes[d1.path]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert 420 < cx < 480 and 140 < cy < 200  # inside the pasted face (400..500, 120..220)
    images = ds.read_probe(d1)
    h, w = images.hr.shape[-2:]
    assert abs(w / h - 21 / 28) < 0.05 and tuple(images.lr.shape) == (3, 28, 21)
    crop = images.hr.mean(0)
    assert crop.std() > 0.05  # a face, not the flat grey background
    assert all(ds.read_probe(p).lr is None for p in ds.probes if p.distance != "d1")  # undetected
    # boxes are cached by file content: a second build does not run MTCNN
    cached = list(cache.glob("scface_face_boxes_*.json"))
    assert len(cached) == 1
    again = SCfaceSet(root, subjects=[1], cameras=[1], face_crop={"enabled": True, "on_failure": "undetected"},
                      cache_dir=cache)
    assert again.cropper._aligner is None and again._boxes[d1.path] == box
    assert read_image(d1.path).shape[-2:] == (556, 680)


@pytest.mark.shared
@pytest.mark.slow
def test_scface_protocol_end_to_end_on_an_official_layout_of_real_faces(tmp_path, lfw_dir):
    """Gallery = one LFW image per person as NNN_frontal.JPG; probes = another image of the person,
    face-cropped at 3:4, stored per distance/camera like SCface surveillance crops."""
    import csv

    from fsr_bench.run.recognition import run_recognition
    from fsr_bench.protocol import load_protocol_dict
    from fsr_bench.reporting.load import load_run

    people = ["Aaron_Sorkin", "Abdullah_Gul", "Adrien_Brody"]
    root = tmp_path / "SCface"
    for s, person in enumerate(people, start=1):
        files = sorted((lfw_dir / person).iterdir())
        (root / GALLERY_DIR).mkdir(parents=True, exist_ok=True)
        Image.open(files[0]).save(root / GALLERY_DIR / f"{s:03d}_frontal.JPG", format="JPEG", quality=95)
        face = Image.open(files[1]).convert("RGB").crop((65, 45, 185, 205))  # 120x160 face region
        for d, side in ((1, 30), (2, 60)):  # farther = smaller
            f = root / probe_dir(d) / "cam1" / f"{s:03d}_cam1_{d}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            face.resize((side * 3 // 4, side), Image.BICUBIC).save(f, quality=90)
    doc = {
        "kind": "recognition", "name": "scface_tiny",
        "data": {"type": "scface", "root": str(root), "subjects": [1, 2, 3], "distances": [1, 2],
                 "cameras": [1], "face_crop": {"enabled": False}},
        "models": [{"name": "bicubic_x8", "label": "Bicubic"}],
        "recognition": {"bootstrap": {"n": 100}},
        "run": {"device": "cpu", "num_samples": 1},
    }
    out = tmp_path / "run"
    res = run_recognition(load_protocol_dict(doc), out, progress=False, log=lambda s: None)
    rows = {r["label"]: r for r in res["models"]}
    assert list(rows) == ["LR image", "Bicubic", "HR probes"]
    for r in rows.values():
        assert r["metrics"]["n_probes"] == 6
        assert set(r["per_distance"]) == {"d1", "d2"} and set(r["per_camera"]) == {"cam1"}
        assert r["per_distance"]["d1"]["n_probes"] == 3
    assert rows["HR probes"]["metrics"]["detection_rate"] > 0.5
    assert res["conventions"]["dataset"]["type"] == "scface"
    assert res["conventions"]["degradation"]["lr_size"] == [28, 21] and res["gallery"]["n_detected"] == 3
    with open(out / "per_probe.csv") as f:
        probes = list(csv.DictReader(f))
    assert {(p["distance"], p["camera"]) for p in probes} == {("d1", "cam1"), ("d2", "cam1")}
    assert {p["probe"] for p in probes} == {f"{s:03d}_cam1_{d}" for s in (1, 2, 3) for d in (1, 2)}
    (sample,) = (out / "samples").iterdir()
    assert sample.name == "001_cam1_1" and (sample / "gallery.png").is_file()
    assert load_run(out).scale == 8


# -- bob protocols driving a calibration split -----------------------------------------------------
@pytest.mark.parametrize("protocol, n_cal_probes, n_eval_probes", [
    ("combined", 44 * 5 * 3, 43 * 5 * 3),  # subjects x cameras 1-5 x distances
    ("far", 44 * 5, 43 * 5),
])
def test_calibration_split_builds_disjoint_bob_sets(tree, protocol, n_cal_probes, n_eval_probes):
    from fsr_bench.data.scface import calibration_split
    from fsr_bench.metrics.operating_points import assert_disjoint_subjects, calibrate_thresholds, split_scores

    split = calibration_split(protocol)
    cal = SCfaceSet(tree, lr_size=None, **split.calibration)
    ev = SCfaceSet(tree, lr_size=None, **split.evaluation)
    assert (len(cal.gallery), len(cal.probes), len(ev.gallery), len(ev.probes)) == (44, n_cal_probes, 43, n_eval_probes)
    assert_disjoint_subjects([g.subject for g in cal.gallery], [g.subject for g in ev.gallery])
    # every calibration probe against every calibration mugshot: 1 genuine, 43 impostors each
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, size=(len(cal.probes), len(cal.gallery)))
    genuine, impostor = split_scores(scores, [p.subject for p in cal.probes], [g.subject for g in cal.gallery])
    assert (genuine.size, impostor.size) == (n_cal_probes, n_cal_probes * 43)
    # FAR 1e-4 needs >= 10,000 impostors: combined dev has 28,380, one distance only 9,460
    if n_cal_probes * 43 >= 10_000:
        assert len(calibrate_thresholds(genuine, impostor, fars=[1e-4]).points) == 1
    else:
        with pytest.raises(ValueError, match="10000 impostor comparisons"):
            calibrate_thresholds(genuine, impostor, fars=[1e-4])
    d = split.describe()
    assert d["calibration_group"] == "dev" and d["evaluation_subject_range"] == [88, 130]


def test_calibration_split_refusals():
    from fsr_bench.data.io import FsrBenchDataError
    from fsr_bench.data.scface import bob_protocol, calibration_split

    assert bob_protocol("close", "world") == {"subjects": "world", "distances": [3], "cameras": [1, 2, 3, 4, 5]}
    with pytest.raises(FsrBenchDataError, match="both the 'eval' group"):
        calibration_split("combined", "eval", "eval")
    with pytest.raises(FsrBenchDataError, match="not one of bob's: combined, close, medium, far"):
        calibration_split("near")
    with pytest.raises(FsrBenchDataError, match="group 'test'"):
        calibration_split("combined", "test")


def test_unreadable_files_are_listed_with_the_missing_before_the_face_crop(tmp_path, monkeypatch):
    """issue 11 item 12: every input checked before the MTCNN face crop (or any model) runs."""
    from fsr_bench.data import scface

    root = make_tree(tmp_path / "SCface", subjects=[1, 2, 3], cameras=[1])
    (root / GALLERY_DIR / "001_frontal.JPG").write_bytes(b"garbage")
    (root / probe_dir(2) / "cam1" / "003_cam1_2.jpg").write_bytes(b"")
    (root / probe_dir(3) / "cam1" / "002_cam1_3.jpg").unlink()

    def no_detector(self, *a, **k):
        raise AssertionError("the face crop ran before the files were checked")

    monkeypatch.setattr(scface.FaceCrop, "boxes", no_detector)
    with pytest.raises(SCfaceLayoutError) as info:
        SCfaceSet(root, subjects=[1, 2, 3], cameras=[1], face_crop={"enabled": True}, cache_dir=tmp_path / "c")
    msg = str(info.value)
    assert "unreadable images (2)" in msg and "missing files (1)" in msg, msg
    for name in ("mugshot_frontal_cropped_all/001_frontal.JPG", "surveillance_cameras_distance_2/cam1/003_cam1_2.jpg",
                 "surveillance_cameras_distance_3/cam1/002_cam1_3.jpg"):
        assert name in msg, name
