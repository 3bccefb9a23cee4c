"""fsr_bench.data.folders: layouts, list files, presets, splits, unreadable images, config blocks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fsr_bench.data.folders import (
    DATASET_PRESETS,
    DatasetConfigError,
    FaceFolder,
    build_dataset,
    check_dataset_spec,
    expand_path,
    make_split,
)
from fsr_bench.data.io import ImageReadError, read_image, write_image


def _img(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g)


def _write(path: Path, h: int = 20, w: int = 16, seed: int = 0) -> Path:
    return write_image(_img(h, w, seed), path)


@pytest.fixture()
def flat(tmp_path) -> Path:
    root = tmp_path / "flat"
    for i in range(5):
        _write(root / f"{i:05d}.png", seed=i)
    return root


@pytest.fixture()
def by_identity(tmp_path) -> Path:
    root = tmp_path / "ids"
    for ident in ("7203", "7204", "7205"):
        for j in range(3):
            _write(root / ident / f"{j:06d}.png", seed=j)
    return root


def test_flat_layout(flat):
    ds = FaceFolder(flat)
    assert len(ds) == 5
    item = ds[2]
    assert item["name"] == "00002" and item["index"] == 2
    assert item["hr"].shape == (3, 20, 16) and item["hr"].dtype == torch.float32
    assert torch.equal(item["hr"], read_image(flat / "00002.png"))
    assert ds.paths == sorted(ds.paths)


def test_identity_layout_and_list_files(by_identity, tmp_path):
    ds = FaceFolder(by_identity)
    assert len(ds) == 9 and ds.names[0] == "7203/000000"
    ids = tmp_path / "ids.txt"
    ids.write_text("7204\n# comment\n\n7205\n")
    assert [n.split("/")[0] for n in FaceFolder(by_identity, list_file=ids).names] == ["7204"] * 3 + ["7205"] * 3
    rel = tmp_path / "rel.txt"
    rel.write_text("7203/000001.png\n7205/000002.png\n")
    assert FaceFolder(by_identity, list_file=rel).names == ["7203/000001", "7205/000002"]


def test_empty_and_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetConfigError, match="no images"):
        FaceFolder(tmp_path / "empty")
    with pytest.raises(DatasetConfigError, match="does not exist"):
        FaceFolder(tmp_path / "nope")


def test_presets_sizes(tmp_path):
    assert DATASET_PRESETS["ffhq"]["hr_size"] == (256, 256)
    assert DATASET_PRESETS["celeba"]["hr_size"] == (216, 176)
    assert DATASET_PRESETS["faces256"]["hr_size"] is None
    # FFHQ: any size -> 256x256 by MATLAB bicubic, then 8-bit quantised
    _write(tmp_path / "ffhq" / "00000.png", 300, 300)
    hr = build_dataset({"type": "ffhq", "root": str(tmp_path / "ffhq")})[0]["hr"]
    assert hr.shape == (3, 256, 256)
    assert torch.equal(hr, torch.round(hr * 255) / 255)
    # CelebA: 218x178 aligned crops -> center 216x176, pixels unchanged
    src = _write(tmp_path / "celeba" / "000001.png", 218, 178)
    hr = build_dataset({"type": "celeba", "root": str(tmp_path / "celeba")})[0]["hr"]
    assert hr.shape == (3, 216, 176)
    assert torch.equal(hr, read_image(src)[:, 1:217, 1:177])
    # faces256 / folder: as they are
    assert build_dataset({"type": "faces256", "root": str(tmp_path / "celeba")})[0]["hr"].shape == (3, 218, 178)
    # an explicit hr_size overrides the preset
    assert build_dataset({"type": "ffhq", "root": str(tmp_path / "ffhq"), "hr_size": 64})[0]["hr"].shape == (3, 64, 64)


def test_real_faces256(faces256, shared_dir):
    ds = build_dataset({"type": "faces256", "root": str(faces256),
                        "list_file": str(shared_dir / "data/splits/faces256_val.txt")})
    assert len(ds) == 219
    assert ds[0]["hr"].shape == (3, 256, 256) and ds.image_size(0) == (256, 256)


def test_center_crop_smaller_than_size(tmp_path):
    _write(tmp_path / "c" / "a.png", 200, 178)
    _write(tmp_path / "c" / "b.png", 218, 178)
    ds = FaceFolder(tmp_path / "c", hr_size=(216, 176), hr_transform="center_crop")
    with pytest.raises(DatasetConfigError, match="smaller than the center crop"):
        ds[0]
    skip = FaceFolder(tmp_path / "c", hr_size=(216, 176), hr_transform="center_crop", on_error="skip")
    assert len(skip) == 1 and len(skip.skipped) == 1 and skip.skipped[0][0].name == "a.png"


def test_make_split_deterministic(by_identity, tmp_path):
    a = make_split(by_identity, tmp_path / "a", sizes=(5, 2, 2), seed=0)
    b = make_split(by_identity, tmp_path / "b", sizes=(5, 2, 2), seed=0)
    c = make_split(by_identity, tmp_path / "c", sizes=(5, 2, 2), seed=1)
    read = {k: [line for line in p.read_text().splitlines() if not line.startswith("#")] for k, p in a.items()}
    assert [len(read[k]) for k in ("train", "val", "test")] == [5, 2, 2]
    assert {k: p.read_text() for k, p in a.items()} == {k: p.read_text() for k, p in b.items()}
    assert {k: p.read_text() for k, p in a.items()} != {k: p.read_text() for k, p in c.items()}
    everything = read["train"] + read["val"] + read["test"]
    assert len(set(everything)) == 9  # disjoint, complete
    ds = FaceFolder(by_identity, list_file=a["val"])  # read back as a list file
    assert sorted(f"{n}.png" for n in ds.names) == sorted(read["val"])
    with pytest.raises(DatasetConfigError, match="cannot split"):
        make_split(by_identity, tmp_path / "d", sizes=(3800, 100, 100))


def test_corrupt_image_raise_vs_skip(flat):
    (flat / "00001.png").write_bytes(b"not an image at all")
    (flat / "00003.png").unlink()
    jpg = write_image(_img(128, 128), flat / "00003.jpg").read_bytes()
    (flat / "00003.jpg").write_bytes(jpg[: len(jpg) * 3 // 4])  # truncated JPEG: header fine, data cut
    ds = FaceFolder(flat)
    with pytest.raises(ImageReadError, match="00001.png"):
        ds[1]
    skip = FaceFolder(flat, on_error="skip")
    assert len(skip) == 4 and [p.name for p, _ in skip.skipped] == ["00001.png"]
    # the truncated JPEG passes the header check; decoding it falls back to the next image
    i = skip.names.index("00003")
    item = skip[i]
    assert item["name"] == "00004" and len(skip.skipped) == 2


def test_build_dataset_errors_and_env(flat, monkeypatch, tmp_path):
    with pytest.raises(DatasetConfigError, match=r"data.train.hr_sise: unknown key"):
        check_dataset_spec({"type": "ffhq", "root": "x", "hr_sise": 3}, "data.train")
    with pytest.raises(DatasetConfigError, match="unknown type 'ffqh'"):
        build_dataset({"type": "ffqh", "root": "x"})
    with pytest.raises(DatasetConfigError, match="needs 'root'"):
        build_dataset({"type": "folder"})
    monkeypatch.delenv("FSR_BENCH_DATA", raising=False)
    with pytest.raises(DatasetConfigError, match="FSR_BENCH_DATA is not set"):
        build_dataset({"type": "folder", "root": "${FSR_BENCH_DATA}/flat"})
    # a setting wins over the environment; the environment is used otherwise
    assert expand_path("${FSR_BENCH_DATA}/flat", data_root=tmp_path) == flat
    monkeypatch.setenv("FSR_BENCH_DATA", str(tmp_path))
    assert len(build_dataset({"type": "folder", "root": "${FSR_BENCH_DATA}/flat"})) == 5
    # ${VAR:-default}, as the bundled protocols write it, expands in training data paths too
    monkeypatch.delenv("FSR_BENCH_DATA", raising=False)
    assert len(build_dataset({"type": "folder", "root": f"${{FSR_BENCH_DATA:-{tmp_path}}}/flat"})) == 5
    assert expand_path("${FSR_BENCH_DATA:-/nowhere}/flat", data_root=tmp_path) == flat  # the setting still wins
    monkeypatch.setenv("FSR_BENCH_DATA", str(tmp_path))
    assert expand_path("$FSR_BENCH_DATA/flat") == flat


def test_package_faces_type():
    ds = build_dataset({"type": "package_faces", "hr_size": 32})
    assert len(ds) == 2 and ds[0]["hr"].shape == (3, 32, 32)


@pytest.mark.parametrize("entry", ["../outside", "a/../../outside/x.png", "/etc", "C:/data/x.png"])
def test_list_entries_outside_the_root_are_refused(by_identity, tmp_path, entry):
    """Issue 11 item 5: '..' or absolute entries would add foreign images to a benchmark."""
    from fsr_bench.data.io import FsrBenchDataError, list_images

    lf = tmp_path / "split.txt"
    lf.write_text(f"{sorted(p.name for p in Path(by_identity).iterdir())[0]}\n{entry}\n")
    with pytest.raises(FsrBenchDataError, match=r"outside the dataset root(.|\n)*line 2"):
        list_images(by_identity, lf)
