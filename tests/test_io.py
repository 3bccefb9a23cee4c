"""read_image / write_image / to_uint8 / list_images: every normalisation and every failure mode."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from fsr_bench.data.io import (
    FsrBenchDataError,
    ImageReadError,
    list_images,
    read_image,
    to_uint8,
    write_image,
)


# -- reading --------------------------------------------------------------------------------------
def test_png_roundtrip_is_exact_after_quantisation(tmp_path):
    x = torch.rand(3, 17, 23)
    path = write_image(x, tmp_path / "a.png")
    y = read_image(path)
    assert y.dtype == torch.float32 and y.shape == (3, 17, 23)
    assert torch.equal(to_uint8(y), to_uint8(x))


def test_grayscale_becomes_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    y = read_image(tmp_path / "g.png")
    assert y.shape == (3, 3, 4)
    for c in range(3):
        np.testing.assert_allclose(y[c].numpy(), gray / 255.0, atol=1e-7)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent -> white
    rgba[0, 1] = (10, 20, 30, 255)  # opaque -> itself
    rgba[0, 2] = (0, 0, 0, 51)  # 20 % black over white -> 0.8
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    y = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(y[:, 0, 0].numpy(), [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(y[:, 0, 1].numpy(), np.array([10, 20, 30]) / 255, atol=1e-6)
    np.testing.assert_allclose(y[:, 0, 2].numpy(), [0.8, 0.8, 0.8], atol=1e-6)


def test_la_and_palette_transparency_are_composited(tmp_path):
    la = np.array([[[0, 0], [0, 255]]], dtype=np.uint8)  # (1, 2, 2): transparent, opaque black
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    y = read_image(tmp_path / "la.png")
    np.testing.assert_allclose(y[:, 0, :].numpy().T, [[1, 1, 1], [0, 0, 0]], atol=1e-6)

    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0  # index 0 (red) is transparent
    pal.save(tmp_path / "p.png", transparency=0)
    y = read_image(tmp_path / "p.png")
    np.testing.assert_allclose(y[:, 0, 0].numpy(), [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(y[:, 0, 1].numpy(), [0, 0, 1], atol=1e-6)


def test_16bit_png_divides_by_65535(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    y = read_image(tmp_path / "d.png")
    assert y.shape == (3, 1, 4)
    np.testing.assert_allclose(y[1, 0].numpy(), values[0] / 65535.0, atol=1e-7)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # H=20, W=40: left red, right blue
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    y = read_image(tmp_path / "r.jpg")
    assert y.shape == (3, 40, 20)  # upright: now taller than wide
    top, bottom = y[:, :15].mean(dim=(1, 2)), y[:, 25:].mean(dim=(1, 2))
    assert top[0] > 0.9 and top[2] < 0.1  # the former left (red) half is on top
    assert bottom[2] > 0.9 and bottom[0] < 0.1


def _truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full, quality=90)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_jpeg_is_an_error(tmp_path):
    cut = _truncated_jpeg(tmp_path)
    with pytest.raises(ImageReadError, match="cut.jpg") as info:
        read_image(cut)
    assert info.value.path == cut


def test_truncated_jpeg_is_an_error_even_if_pillow_was_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(_truncated_jpeg(tmp_path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


def test_random_bytes_missing_file_and_folder_are_errors(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ImageReadError, match="junk.png"):
        read_image(junk)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_image_read_error_is_a_value_error_and_pickles(tmp_path):
    err = ImageReadError(tmp_path / "x.png", "broken")
    assert isinstance(err, FsrBenchDataError) and isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert back.path == err.path and back.reason == "broken" and str(back) == str(err)


# -- writing & quantisation -----------------------------------------------------------------------
def test_to_uint8_clamps_and_rounds_half_up():
    x = torch.tensor(
        [-0.2, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 254.6 / 255, 1.3], dtype=torch.float64
    )
    assert to_uint8(x).tolist() == [0, 0, 1, 2, 3, 255, 255]
    assert to_uint8(x).dtype == torch.uint8
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([float("nan")]))


def test_write_accepts_batch_of_one_and_jpeg(tmp_path):
    x = torch.rand(1, 3, 8, 8)
    write_image(x, tmp_path / "sub" / "b.jpg")
    assert read_image(tmp_path / "sub" / "b.jpg").shape == (3, 8, 8)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["b.jpg"]  # no temp files left


def test_write_rejects_bad_shape_and_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        write_image(torch.rand(2, 3, 8, 8), tmp_path / "x.png")
    with pytest.raises(ValueError, match="unsupported suffix"):
        write_image(torch.rand(3, 8, 8), tmp_path / "x.gif")


# -- listing --------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    for rel in [
        "id1/a.jpg",
        "id1/B.PNG",
        "id2/c.png",
        "id2/sub/d.webp",
        ".hidden/x.png",
        "flat.jpg",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")  # listing does not decode
    (tmp_path / "id2" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    return tmp_path


def _rel(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_list_images_recursive_and_flat(tree):
    assert _rel(list_images(tree), tree) == [
        "flat.jpg",
        "id1/B.PNG",
        "id1/a.jpg",
        "id2/c.png",
        "id2/sub/d.webp",
    ]
    assert _rel(list_images(tree, recursive=False), tree) == ["flat.jpg"]


def test_list_file_of_identities(tree):
    lst = tree / "ids.txt"
    lst.write_text("# validation identities\nid2\n\n  id1  \n")
    assert _rel(list_images(tree, lst), tree) == [
        "id1/B.PNG",
        "id1/a.jpg",
        "id2/c.png",
        "id2/sub/d.webp",
    ]
    assert _rel(list_images(tree, lst, recursive=False), tree) == [
        "id1/B.PNG",
        "id1/a.jpg",
        "id2/c.png",
    ]


def test_list_file_of_relative_paths(tree):
    lst = tree / "files.txt"
    lst.write_text("id2/c.png\n./id1/a.jpg\nid2\\sub\\d.webp\n")
    assert _rel(list_images(tree, lst), tree) == ["id1/a.jpg", "id2/c.png", "id2/sub/d.webp"]


def test_list_file_missing_entries_are_reported_together(tree):
    lst = tree / "bad.txt"
    lst.write_text("id1\nghost\nid1/zzz.jpg\nempty\n")
    with pytest.raises(FsrBenchDataError) as info:
        list_images(tree, lst)
    msg = str(info.value)
    assert "3 of 4 entries" in msg and "bad.txt" in msg
    assert "ghost (no such identity folder)" in msg
    assert "id1/zzz.jpg (no such image file)" in msg
    assert "empty (folder contains no images)" in msg


def test_list_file_lists_at_most_20_problems(tree):
    lst = tree / "many.txt"
    lst.write_text("\n".join(f"missing{i}" for i in range(25)))
    with pytest.raises(FsrBenchDataError, match="and 5 more"):
        list_images(tree, lst)


def test_list_images_bad_root_and_empty(tmp_path):
    with pytest.raises(FsrBenchDataError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(FsrBenchDataError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(FsrBenchDataError, match="list file"):
        list_images(tmp_path, tmp_path / "missing.txt")


def test_real_split_on_shared_faces(faces256, shared_dir):
    images = list_images(faces256, shared_dir / "data" / "splits" / "faces256_val.txt")
    assert len(images) == 219  # README: validation split, 20 ids, 219 images
    assert images == sorted(images, key=lambda p: p.parts)
    x = read_image(images[0])
    assert x.shape == (3, 256, 256) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_truncated_jpeg_in_a_dataloader_worker_names_the_file(tmp_path):  # issue 11 item 9
    import torch
    from torch.utils.data import DataLoader, Dataset

    from fsr_bench.data.io import ImageReadError, read_image, write_image

    write_image(torch.rand(3, 32, 32), tmp_path / "x.jpg")
    data = (tmp_path / "x.jpg").read_bytes()
    (tmp_path / "x.jpg").write_bytes(data[: len(data) // 3])

    class Files(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return read_image(tmp_path / "x.jpg")

    with pytest.raises(ImageReadError) as err:
        next(iter(DataLoader(Files(), num_workers=1)))
    text = str(err.value)
    assert str(tmp_path / "x.jpg") in text and "Traceback" not in text and "\n" not in text
