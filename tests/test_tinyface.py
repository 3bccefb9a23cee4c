"""TinyFace adapter on synthetic trees in the official layout (tiny JPEGs, .mat lists written with
scipy.io.savemat as the release's MATLAB cell arrays). Expected counts are those of the tree built
here, counted by hand in the comments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.data.tinyface import DOWNLOAD_URL, TinyFaceLayoutError, TinyFaceSet, subject_of

GALLERY = ["1_1.jpg", "1_2.jpg", "2_1.jpg", "3_1.jpg", "10_1.jpg"]  # 4 subjects, 5 images
PROBES = ["1_3.jpg", "2_2.jpg", "2_3.jpg", "10_2.jpg"]  # 4 probes, subject 3 has none
DISTRACTORS = ["d_0001.jpg", "d_0002.jpg", "d_0003.jpg", "shard_a/d_0004.jpg", "shard_a/d_0005.jpg"]


def _jpg(path: Path, value: int, size=(16, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    arr[::2, ::3] = 255 - value % 256
    Image.fromarray(arr).save(path, format="JPEG")


def make_tree(root: Path, with_mats: bool = True) -> Path:
    test = root / "Testing_Set"
    for i, n in enumerate(GALLERY):
        _jpg(test / "Gallery_Match" / n, 10 * i)
    for i, n in enumerate(PROBES):
        _jpg(test / "Probe" / n, 7 * i)
    for i, n in enumerate(DISTRACTORS):
        _jpg(test / "Gallery_Distractor" / n, 3 * i)
    if with_mats:
        savemat(test / "gallery_match_img_ID_pairs.mat", {
            "gallery_set": np.asarray([[n] for n in GALLERY], dtype=object),
            "gallery_ids": np.asarray([[int(n.split("_")[0])] for n in GALLERY], dtype=np.float64)})
        savemat(test / "probe_img_ID_pairs.mat", {
            "probe_set": np.asarray([[n] for n in PROBES], dtype=object),
            "probe_ids": np.asarray([[int(n.split("_")[0])] for n in PROBES], dtype=np.float64)})
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "tinyface")


def test_naming_rule():
    assert subject_of("123_4") == "123" and subject_of("007_1") == "7"
    assert subject_of("abc_1") is None and subject_of("123") is None


def test_official_layout_with_lists(tree):
    ds = TinyFaceSet(tree)
    match = [g for g in ds.gallery if not g.subject.startswith("distractor/")]
    assert [g.subject for g in match] == ["1", "1", "2", "3", "10"]
    distractors = [g.subject for g in ds.gallery if g.subject.startswith("distractor/")]
    assert distractors == ["distractor/d_0001", "distractor/d_0002", "distractor/d_0003",
                           "distractor/shard_a/d_0004", "distractor/shard_a/d_0005"]
    assert [(p.subject, p.name, p.index) for p in ds.probes] == [
        ("1", "1_3", 0), ("2", "2_2", 1), ("2", "2_3", 2), ("10", "10_2", 3)]
    d = ds.describe()
    assert (d["n_subjects"], d["n_gallery_match_images"], d["n_distractors"], d["n_probes"]) == (4, 5, 5, 4)
    assert "gallery_match_img_ID_pairs.mat" in d["labels"]


def test_without_lists_the_naming_rule_labels(tmp_path):
    ds = TinyFaceSet(make_tree(tmp_path / "t", with_mats=False), distractors=False)
    assert sorted({g.subject for g in ds.gallery}, key=int) == ["1", "2", "3", "10"]
    assert len(ds.gallery) == 5 and len(ds.probes) == 4
    assert "file names" in ds.describe()["labels"]


def test_seeded_distractor_subset(tree):
    a, b = TinyFaceSet(tree, max_distractors=2, seed=1), TinyFaceSet(tree, max_distractors=2, seed=1)
    pick = [g.subject for g in a.gallery if g.subject.startswith("distractor/")]
    assert len(pick) == 2 and pick == [g.subject for g in b.gallery if g.subject.startswith("distractor/")]
    assert a.describe()["n_distractors_available"] == 5
    assert len(TinyFaceSet(tree, distractors=False).gallery) == 5


def test_read_probe_native_and_resized(tree):
    ds = TinyFaceSet(tree, distractors=False)
    native = ds.read_probe(ds.probes[0])
    assert tuple(native.hr.shape) == (3, 20, 16) and tuple(native.lr.shape) == (3, 20, 16)
    resized = TinyFaceSet(tree, distractors=False, lr_size=(28, 21)).read_probe(ds.probes[0])
    assert tuple(resized.lr.shape) == (3, 28, 21) and tuple(resized.hr.shape) == (3, 20, 16)
    # 8-bit values, as every LR probe in fsr-bench
    assert np.allclose(resized.lr.numpy() * 255, np.round(resized.lr.numpy() * 255))


def test_missing_dataset_names_folder_and_download_page(tmp_path):
    with pytest.raises(TinyFaceLayoutError, match=rf"does not exist.*{DOWNLOAD_URL}.*Testing_Set/"):
        TinyFaceSet(tmp_path / "nowhere")
    with pytest.raises(TinyFaceLayoutError, match="no Testing_Set/ folder"):
        TinyFaceSet(tmp_path)


def test_root_pointing_inside_is_explained(tree):
    with pytest.raises(TinyFaceLayoutError, match="Testing_Set folder itself"):
        TinyFaceSet(tree / "Testing_Set")


def test_all_layout_problems_in_one_error(tree):
    test = tree / "Testing_Set"
    (test / "Gallery_Match" / "2_1.jpg").unlink()  # listed but missing
    _jpg(test / "Probe" / "2_9.jpg", 1)  # present but not listed
    savemat(test / "probe_img_ID_pairs.mat", {  # 10_2 labelled 11
        "probe_set": np.asarray([[n] for n in PROBES], dtype=object),
        "probe_ids": np.asarray([[1], [2], [2], [11]], dtype=np.float64)})
    with pytest.raises(TinyFaceLayoutError) as err:
        TinyFaceSet(tree)
    msg = str(err.value)
    assert "Gallery_Match/2_1.jpg" in msg and "Probe/2_9.jpg" in msg
    assert "Probe/10_2.jpg: label 11, name says 10" in msg
    assert "probe subjects with no Gallery_Match image" in msg and "- 2" in msg  # 2's gallery is gone


def test_misnamed_file_and_missing_distractors(tmp_path):
    root = make_tree(tmp_path / "t", with_mats=False)
    _jpg(root / "Testing_Set" / "Probe" / "face.jpg", 3)
    with pytest.raises(TinyFaceLayoutError, match=r"(?s)names not <subjectid>_<n>.*Probe/face.jpg"):
        TinyFaceSet(root, distractors=False)
    (root / "Testing_Set" / "Probe" / "face.jpg").unlink()
    import shutil

    shutil.rmtree(root / "Testing_Set" / "Gallery_Distractor")
    with pytest.raises(TinyFaceLayoutError, match="(?s)Gallery_Distractor is missing.*distractors: false"):
        TinyFaceSet(root)


def test_bad_mat_file(tree):
    (tree / "Testing_Set" / "probe_img_ID_pairs.mat").write_bytes(b"not a mat file")
    with pytest.raises(FsrBenchDataError, match="cannot read .*probe_img_ID_pairs.mat as a MATLAB"):
        TinyFaceSet(tree)
    savemat(tree / "Testing_Set" / "probe_img_ID_pairs.mat", {"names": np.zeros(1)})
    with pytest.raises(FsrBenchDataError, match=r"no variable\(s\) \['probe_set', 'probe_ids'\]"):
        TinyFaceSet(tree)


def test_unreadable_and_missing_files_in_one_error_before_any_reading(tree):  # issue 11 item 12
    test = tree / "Testing_Set"
    (test / "Gallery_Match" / "3_1.jpg").write_bytes(b"not a jpeg")  # enrolled, unreadable
    (test / "Probe" / "2_3.jpg").write_bytes(b"")  # a probe, empty
    (test / "Gallery_Distractor" / "shard_a" / "d_0005.jpg").write_bytes(b"\x00" * 10)
    (test / "Probe" / "1_3.jpg").unlink()  # listed but missing
    with pytest.raises(TinyFaceLayoutError) as err:
        TinyFaceSet(tree)
    msg = str(err.value)
    assert "unreadable images (3)" in msg, msg
    for name in ("Gallery_Match/3_1.jpg", "Probe/2_3.jpg", "shard_a/d_0005.jpg", "Probe/1_3.jpg"):
        assert name in msg, name
    # with distractors: false the broken distractor is no input of the run, so no error
    for name, value in (("Probe/1_3.jpg", 1), ("Probe/2_3.jpg", 2), ("Gallery_Match/3_1.jpg", 3)):
        _jpg(test / name, value)
    ok = TinyFaceSet(tree, distractors=False)
    assert len(ok.gallery) == len(GALLERY) and len(ok.probes) == len(PROBES)
