"""QMUL-SurvFace adapters on synthetic trees in the official layout (tiny JPEGs; the .mat lists
written with scipy.io.savemat as MATLAB cell arrays). Expected counts are those of the tree built
here, counted by hand in the comments."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.data.survface import (
    DOWNLOAD_URL,
    SurvFaceIdentificationSet,
    SurvFaceLayoutError,
    SurvFaceVerificationSet,
)

GALLERY = {"101_cam1_1.jpg": 101, "101_cam2_5.jpg": 101, "102_cam1_2.jpg": 102, "103_cam3_1.jpg": 103}
MATED = {"101_cam4_9.jpg": 101, "102_cam2_3.jpg": 102, "103_cam1_7.jpg": 103}
UNMATED = ["201_cam1_1.jpg", "201_cam2_2.jpg", "202_cam5_1.jpg"]
POSITIVE = [("1_cam1_1.jpg", "1_cam2_1.jpg"), ("2_cam1_1.jpg", "2_cam3_4.jpg")]
NEGATIVE = [("1_cam1_1.jpg", "2_cam1_1.jpg"), ("3_cam1_1.jpg", "1_cam2_1.jpg"), ("3_cam1_1.jpg", "2_cam3_4.jpg")]


def _jpg(path: Path, value: int, size=(20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    arr[1::2, ::3] = 255 - value % 256
    Image.fromarray(arr).save(path, format="JPEG")


def _cell(names) -> np.ndarray:
    return np.asarray([[n] for n in names], dtype=object)


def make_tree(root: Path, mats_in_evaluation_dir: bool = False) -> Path:
    ver = root / "Face_Verification_Test_Set"
    for i, n in enumerate(sorted({n for pair in POSITIVE + NEGATIVE for n in pair})):
        _jpg(ver / "verification_images" / n, 20 * i)
    savemat(ver / "positive_pairs_names.mat", {"positive_pairs_names": np.asarray(POSITIVE, dtype=object)})
    savemat(ver / "negative_pairs_names.mat", {"negative_pairs_names": np.asarray(NEGATIVE, dtype=object)})
    ident = root / "Face_Identification_Test_Set"
    for folder, names in (("gallery", GALLERY), ("mated_probe", MATED), ("unmated_probe", UNMATED)):
        for i, n in enumerate(names):
            _jpg(ident / folder / n, 30 * i)
    mats = root / "Face_Identification_Evaluation" if mats_in_evaluation_dir else ident
    mats.mkdir(parents=True, exist_ok=True)
    savemat(mats / "gallery_img_ID_pairs.mat", {
        "gallery_set": _cell(GALLERY), "gallery_ids": np.asarray([[v] for v in GALLERY.values()], dtype=np.float64)})
    savemat(mats / "mated_probe_img_ID_pairs.mat", {
        "mated_probe_set": _cell(MATED), "mated_probe_ids": np.asarray([[v] for v in MATED.values()], dtype=np.float64)})
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "QMUL-SurvFace")


# -- 1:1 -------------------------------------------------------------------------------------------
def test_verification_pairs(tree):
    ds = SurvFaceVerificationSet(tree)
    got = [(p.first.name, p.second.name, p.same) for p in ds.pairs]
    assert got == [(a, b, True) for a, b in POSITIVE] + [(a, b, False) for a, b in NEGATIVE]
    assert len(ds.images) == 5  # 1_cam1_1, 1_cam2_1, 2_cam1_1, 2_cam3_4, 3_cam1_1
    d = ds.describe()
    assert (d["n_positive_pairs"], d["n_negative_pairs"]) == (2, 3)
    img = ds.read_image(ds.images[0])
    assert tuple(img.lr.shape) == (3, 24, 20)


def test_verification_subset_and_missing_image(tree):
    ds = SurvFaceVerificationSet(tree, max_pairs=1, seed=3)
    assert sum(p.same for p in ds.pairs) == 1 and sum(not p.same for p in ds.pairs) == 1
    (tree / "Face_Verification_Test_Set" / "verification_images" / "3_cam1_1.jpg").unlink()
    with pytest.raises(SurvFaceLayoutError, match="(?s)missing.*verification_images/3_cam1_1.jpg"):
        SurvFaceVerificationSet(tree)


def test_verification_bad_pair_file(tree):
    savemat(tree / "Face_Verification_Test_Set" / "positive_pairs_names.mat",
            {"positive_pairs_names": _cell(["1_cam1_1.jpg"])})  # N x 1, not N x 2
    with pytest.raises(FsrBenchDataError, match="N x 2 cell array"):
        SurvFaceVerificationSet(tree)


# -- 1:N -------------------------------------------------------------------------------------------
def test_identification_sets(tree):
    ds = SurvFaceIdentificationSet(tree)
    assert [(g.path.name, g.subject) for g in ds.gallery] == [(n, str(v)) for n, v in GALLERY.items()]
    assert ds.enrolled_subjects == ["101", "102", "103"]
    probes = [(p.name, p.subject, p.camera, p.index) for p in ds.probes]
    assert probes == [
        ("mated/101_cam4_9", "101", "cam4", 0), ("mated/102_cam2_3", "102", "cam2", 1),
        ("mated/103_cam1_7", "103", "cam1", 2), ("unmated/201_cam1_1", "201", "cam1", 3),
        ("unmated/201_cam2_2", "201", "cam2", 4), ("unmated/202_cam5_1", "202", "cam5", 5),
    ]
    d = ds.describe()
    assert (d["n_subjects"], d["n_gallery_images"], d["n_mated_probes"], d["n_unmated_probes"]) == (3, 4, 3, 3)
    resized = SurvFaceIdentificationSet(tree, lr_size=(28, 21)).read_probe(ds.probes[0])
    assert tuple(resized.lr.shape) == (3, 28, 21) and tuple(resized.hr.shape) == (3, 24, 20)


def test_identification_lists_in_evaluation_folder(tmp_path):
    ds = SurvFaceIdentificationSet(make_tree(tmp_path / "s", mats_in_evaluation_dir=True))
    assert len(ds.gallery) == 4 and len(ds.probes) == 6


def test_identification_seeded_subsets(tree):
    a = SurvFaceIdentificationSet(tree, max_mated_probes=2, max_unmated_probes=1, seed=5)
    b = SurvFaceIdentificationSet(tree, max_mated_probes=2, max_unmated_probes=1, seed=5)
    assert [p.name for p in a.probes] == [p.name for p in b.probes]
    assert a.describe()["n_mated_probes"] == 2 and a.describe()["n_unmated_probes"] == 1
    assert [p.index for p in a.probes] == [0, 1, 2]
    with pytest.raises(FsrBenchDataError, match="max_mated_probes must be a positive integer"):
        SurvFaceIdentificationSet(tree, max_mated_probes=0)


def test_identification_problems_in_one_error(tree):
    ident = tree / "Face_Identification_Test_Set"
    (ident / "gallery" / "103_cam3_1.jpg").unlink()  # listed, missing -> subject 103 not enrolled
    _jpg(ident / "mated_probe" / "101_cam9_9.jpg", 5)  # not listed
    _jpg(ident / "unmated_probe" / "102_cam1_1.jpg", 5)  # an enrolled subject among the unmated
    _jpg(ident / "unmated_probe" / "noname.jpg", 5)
    with pytest.raises(SurvFaceLayoutError) as err:
        SurvFaceIdentificationSet(tree)
    msg = str(err.value)
    for expected in ("gallery/103_cam3_1.jpg", "mated_probe/101_cam9_9.jpg", "unmated_probe/102_cam1_1.jpg (subject 102)",
                     "unmated_probe/noname.jpg", "mated probe subjects with no gallery image (1):\n    - 103"):
        assert expected in msg


def test_missing_dataset_and_folders(tmp_path, tree):
    with pytest.raises(SurvFaceLayoutError, match=rf"does not exist.*{DOWNLOAD_URL}.*Face_Identification_Test_Set/"):
        SurvFaceIdentificationSet(tmp_path / "nowhere")
    with pytest.raises(SurvFaceLayoutError, match="no Face_Verification_Test_Set/ folder"):
        SurvFaceVerificationSet(tree / "Face_Identification_Test_Set")
    with pytest.raises(SurvFaceLayoutError, match="inside .*QMUL-SurvFace — use that as the root"):
        SurvFaceIdentificationSet(tree.parent)
    shutil.rmtree(tree / "Face_Identification_Test_Set" / "unmated_probe")
    with pytest.raises(SurvFaceLayoutError, match=rf"unmated_probe/ is missing.*{DOWNLOAD_URL}"):
        SurvFaceIdentificationSet(tree)
    (tree / "Face_Identification_Test_Set" / "unmated_probe").mkdir()
    (tree / "Face_Identification_Test_Set" / "gallery_img_ID_pairs.mat").unlink()
    with pytest.raises(SurvFaceLayoutError, match="gallery_img_ID_pairs.mat is missing"):
        SurvFaceIdentificationSet(tree)


def test_unreadable_and_missing_files_in_one_error(tree):  # issue 11 item 12
    ident = tree / "Face_Identification_Test_Set"
    (ident / "gallery" / "102_cam1_2.jpg").write_bytes(b"garbage")
    (ident / "mated_probe" / "101_cam4_9.jpg").write_bytes(b"")
    (ident / "unmated_probe" / "202_cam5_1.jpg").write_bytes(b"\x89PNG broken")
    (ident / "gallery" / "101_cam2_5.jpg").unlink()  # listed but missing
    with pytest.raises(SurvFaceLayoutError) as err:
        SurvFaceIdentificationSet(tree)
    msg = str(err.value)
    assert "unreadable images (3)" in msg, msg
    for name in ("gallery/102_cam1_2.jpg", "mated_probe/101_cam4_9.jpg", "unmated_probe/202_cam5_1.jpg",
                 "gallery/101_cam2_5.jpg"):
        assert name in msg, name
    ver = tree / "Face_Verification_Test_Set" / "verification_images"
    (ver / "2_cam3_4.jpg").write_bytes(b"garbage")
    (ver / "3_cam1_1.jpg").unlink()
    with pytest.raises(SurvFaceLayoutError) as err:
        SurvFaceVerificationSet(tree)
    msg = str(err.value)
    assert "unreadable images (1)" in msg and "2_cam3_4.jpg" in msg and "3_cam1_1.jpg" in msg, msg
