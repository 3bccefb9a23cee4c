"""imresize against an independent, loop-based NumPy transcription of MATLAB's documented algorithm.

The reference below is written from the description of ``imresize.m`` (cubic kernel a = -0.5,
kernel stretched by 1/scale when downscaling with antialiasing, ``u = x/scale + 0.5(1 - 1/scale)``,
symmetric border mirroring, smallest-scale dimension first) with plain loops and an explicit
reflection loop for the border — deliberately not sharing code or tricks with
``fsr_bench.data.resize``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fsr_bench.data.resize import KERNELS, imresize, output_size, resize


# -- independent reference ------------------------------------------------------------------------
def _ref_cubic(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _ref_reflect(j: int, n: int) -> int:
    """1-based index j folded into 1..n with the edge pixel repeated (symmetric padding)."""
    while j < 1 or j > n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j


def _ref_resize_1d(signal: np.ndarray, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    n = len(signal)
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    out = np.zeros(out_len)
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = math.ceil(width) + 2
        weights, values = [], []
        for k in range(taps):
            j = left + k
            wgt = scale * _ref_cubic(scale * (u - j)) if shrink else _ref_cubic(u - j)
            weights.append(wgt)
            values.append(signal[_ref_reflect(j, n) - 1])
        total = sum(weights)
        out[i - 1] = sum(w * v for w, v in zip(weights, values, strict=True)) / total
    return out


def ref_imresize(
    img: np.ndarray, scale: float | None = None, size=None, antialias=True
) -> np.ndarray:
    """2-D MATLAB imresize (bicubic) with loops."""
    h, w = img.shape
    if size is None:
        out_h, out_w, sh, sw = math.ceil(scale * h), math.ceil(scale * w), scale, scale
    else:
        out_h, out_w = size
        sh, sw = out_h / h, out_w / w
    dims = sorted([(sh, 0), (sw, 1)], key=lambda t: t[0])  # stable: rows first on ties
    out = img.astype(np.float64)
    for s, dim in dims:
        if dim == 0:
            out = np.stack(
                [_ref_resize_1d(out[:, c], out_h, s, antialias) for c in range(out.shape[1])], 1
            )
        else:
            out = np.stack(
                [_ref_resize_1d(out[r, :], out_w, s, antialias) for r in range(out.shape[0])], 0
            )
    return out


# -- tests ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).random((32, 24))


@pytest.mark.parametrize("scale", [1 / 4, 1 / 8, 4, 0.5, 3])
def test_matches_reference_scale(image, scale):
    expected = ref_imresize(image, scale=scale)
    got = imresize(torch.from_numpy(image), scale=scale).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("size", [(13, 7), (8, 6), (40, 9)])
def test_matches_reference_size(image, size):
    expected = ref_imresize(image, size=size)
    got = imresize(torch.from_numpy(image), size=size).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_matches_reference_without_antialias(image):
    expected = ref_imresize(image, scale=1 / 4, antialias=False)
    got = imresize(torch.from_numpy(image), scale=1 / 4, antialias=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_upscale_of_tiny_image_mirrors_borders():
    tiny = np.random.default_rng(1).random((3, 2))
    np.testing.assert_allclose(
        imresize(torch.from_numpy(tiny), scale=8).numpy(), ref_imresize(tiny, scale=8), atol=1e-10
    )


def test_antialias_changes_downscale_only(image):
    x = torch.from_numpy(image)
    assert not torch.allclose(imresize(x, scale=0.25), imresize(x, scale=0.25, antialias=False))
    assert torch.equal(imresize(x, scale=4), imresize(x, scale=4, antialias=False))


@pytest.mark.parametrize("scale", [1 / 8, 1 / 4, 4, 8])
def test_constant_image_stays_constant(scale):
    x = torch.full((2, 3, 32, 40), 0.37)
    y = imresize(x, scale=scale)
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=1e-6)


def test_sizes_batch_and_channels():
    x = torch.rand(2, 3, 64, 48)
    assert imresize(x, scale=1 / 8).shape == (2, 3, 8, 6)
    assert imresize(x, scale=1 / 4).shape == (2, 3, 16, 12)
    assert imresize(imresize(x, scale=1 / 4), scale=4).shape == x.shape
    assert imresize(x[0], size=(10, 11)).shape == (3, 10, 11)
    # batch and channels are independent
    assert torch.allclose(imresize(x, scale=0.25)[1, 2], imresize(x[1, 2], scale=0.25), atol=1e-6)


def test_output_size_follows_matlab_ceil():
    assert output_size((250, 250), scale=1 / 8)[0] == (32, 32)  # ceil(31.25)
    assert output_size((10, 20), size=(5, 5)) == ((5, 5), (0.5, 0.25))
    with pytest.raises(ValueError, match="exactly one"):
        output_size((10, 10))
    with pytest.raises(ValueError, match="positive"):
        output_size((10, 10), scale=0)


def test_differentiable_and_float_only():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    imresize(x, scale=0.5).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(TypeError, match="float"):
        imresize(torch.zeros(3, 8, 8, dtype=torch.uint8), scale=2)


def test_identity_scale_is_exact():
    x = torch.rand(3, 9, 7)
    assert torch.equal(imresize(x, scale=1), x)


def test_pil_bicubic_matches_pillow():
    """``pil_bicubic`` claims to be PIL's BICUBIC; check on a float ('F') image."""
    img = np.random.default_rng(2).random((40, 32)).astype(np.float32)
    for size in [(10, 8), (80, 64)]:
        pil = np.asarray(
            Image.fromarray(img, mode="F").resize(size[::-1], Image.Resampling.BICUBIC)
        )
        ours = resize(torch.from_numpy(img), size, kernel="pil_bicubic").numpy()
        np.testing.assert_allclose(ours, pil, atol=1e-4)


def test_resize_dispatcher():
    x = torch.rand(2, 3, 32, 32)
    for kernel in KERNELS:
        assert resize(x, 1 / 4, kernel=kernel).shape == (2, 3, 8, 8)
        assert resize(x, (16, 8), kernel=kernel).shape == (2, 3, 16, 8)
    assert torch.equal(resize(x, 0.25), imresize(x, scale=0.25))
    with pytest.raises(ValueError, match="valid kernels"):
        resize(x, 2, kernel="lanczos")
    with pytest.raises(ValueError, match="pair of ints"):
        resize(x, (1.5, 2.0))
