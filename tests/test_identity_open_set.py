"""Identity folders as an open-set search: unmated identities and single-image distractors.
Expected sets are counted by hand from the tiny tree built here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsr_bench.data.identity_folders import IdentityFolderSet
from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.metrics.operating_points import open_set_identification

DEG = {"crop": None, "lr_size": [8, 6], "preset": None, "degradation": {"type": "bicubic", "scale": 2}}
COUNTS = {"a": 3, "b": 2, "c": 1, "d": 4, "e": 2, "f": 1}  # c and f: one image each


def _tree(root: Path) -> Path:
    for identity, n in COUNTS.items():
        for i in range(1, n + 1):
            path = root / identity / f"{identity}_{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((40, 30, 3), 10 * i + len(identity), dtype=np.uint8)).save(path)
    return root


@pytest.fixture
def root(tmp_path) -> Path:
    return _tree(tmp_path / "ids")


def test_defaults_stay_closed_set(root):
    ds = IdentityFolderSet(root, probe_degradation=DEG)
    assert [g.subject for g in ds.gallery] == ["a", "b", "d", "e"]
    d = ds.describe()
    assert (d["n_unmated_identities"], d["n_distractors"], d["single_image_identities_left_out"]) == (0, 0, 2)


def test_unmated_identities_and_distractors(root):
    ds = IdentityFolderSet(root, probe_degradation=DEG, unmated_identities=2, single_image_distractors=True, seed=4)
    gallery = [g.subject for g in ds.gallery]
    unmated = {"a", "b", "d", "e"} - set(gallery)
    assert len(unmated) == 2 and gallery[-2:] == ["c", "f"]  # distractors after the enrolled
    for u in unmated:  # every image of an unmated identity probes, none enrols
        assert sorted(p.name for p in ds.probes if p.subject == u) == [f"{u}/{u}_{i:04d}" for i in range(1, COUNTS[u] + 1)]
    for m in {"a", "b", "d", "e"} - unmated:  # enrolled: first image enrols, the rest probe
        assert len([p for p in ds.probes if p.subject == m]) == COUNTS[m] - 1
    d = ds.describe()
    assert (d["n_subjects"], d["n_distractors"], d["n_unmated_identities"]) == (2, 2, 2)
    assert d["n_unmated_probes"] == sum(COUNTS[u] for u in unmated)
    assert [p.index for p in ds.probes] == list(range(len(ds.probes)))
    again = IdentityFolderSet(root, probe_degradation=DEG, unmated_identities=2, seed=4)
    assert {g.subject for g in again.gallery} == set(gallery) - {"c", "f"}  # the draw depends on seed only
    # the metric sees exactly these mated / unmated probes
    scores = np.random.default_rng(0).uniform(size=(len(ds.probes), len(ds.gallery)))
    res = open_set_identification(scores, [p.subject for p in ds.probes], gallery, fpirs=[1.0])
    assert (res.n_unmated, res.n_mated) == (d["n_unmated_probes"], len(ds.probes) - d["n_unmated_probes"])


def test_unmated_identities_bad_values(root):
    with pytest.raises(FsrBenchDataError, match="leaves none of the 4 identities"):
        IdentityFolderSet(root, probe_degradation=DEG, unmated_identities=4)
    with pytest.raises(FsrBenchDataError, match="unmated_identities must be a positive integer"):
        IdentityFolderSet(root, probe_degradation=DEG, unmated_identities=0)
