"""fsr_bench.data.matlists: MATLAB cell arrays written by scipy.io.savemat (as the QMUL lists are) read back."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.data.matlists import load_mat, mat_ints, mat_pairs, mat_strings


def _cells(items, shape):
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out.flat[i] = item
    return out


@pytest.fixture
def lists(tmp_path):
    path = tmp_path / "gallery.mat"
    names = ["1_001.jpg", "1_002.jpg", "2_001.jpg"]
    savemat(path, {
        "gallery_set": _cells(names, (3, 1)),  # a column cell array, as MATLAB writes {'a'; 'b'}
        "gallery_ids": np.array([[1.0], [1.0], [2.0]]),  # MATLAB doubles
        "positive_pairs_names": _cells(["1_001.jpg", "1_002.jpg", "2_001.jpg", "1_001.jpg"], (2, 2)),
        "row_set": _cells(names, (1, 3)),
        "half_ids": np.array([[1.5]]),
    })
    return path, names


def test_cell_arrays_flatten_to_the_names_and_labels_matlab_wrote(lists):
    path, names = lists
    data = load_mat(path, ["gallery_set", "gallery_ids", "positive_pairs_names", "row_set"], "tinyface")
    assert mat_strings(data["gallery_set"], path, "gallery_set") == names
    assert mat_strings(data["row_set"], path, "row_set") == names  # a row cell array reads the same
    ids = mat_ints(data["gallery_ids"], path, "gallery_ids")
    assert ids == [1, 1, 2] and all(type(i) is int for i in ids)
    # the 2 x 2 cell as built above (row by row): one pair per row
    assert mat_pairs(data["positive_pairs_names"], path, "positive_pairs_names") == [
        ("1_001.jpg", "1_002.jpg"), ("2_001.jpg", "1_001.jpg")]


def test_bad_lists_are_named(lists, tmp_path):
    path, _ = lists
    with pytest.raises(FsrBenchDataError, match=r"has no variable\(s\) \['probe_set'\]; it holds \[.*'gallery_ids'"):
        load_mat(path, ["gallery_set", "probe_set"], "tinyface")
    with pytest.raises(FsrBenchDataError, match="missing; restore it from the release archive"):
        load_mat(tmp_path / "absent.mat", ["x"], "tinyface")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(FsrBenchDataError, match="cannot read .*junk.mat as a MATLAB .mat file"):
        load_mat(tmp_path / "junk.mat", ["x"], "tinyface")
    data = load_mat(path, ["half_ids", "gallery_set"], "tinyface")
    with pytest.raises(FsrBenchDataError, match="half_ids must hold integer identity labels"):
        mat_ints(data["half_ids"], path, "half_ids")
    with pytest.raises(FsrBenchDataError, match=r"must be an N x 2 cell array of file names, got shape \(3, 1\)"):
        mat_pairs(data["gallery_set"], path, "gallery_set")
    with pytest.raises(FsrBenchDataError, match="must be a cell array of file names"):
        mat_strings(np.array([[1.0, 2.0]]), path, "gallery_set")
