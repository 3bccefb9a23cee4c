"""Degradations: shapes, seeded determinism, provenance round trip, mod_crop, config errors."""

from __future__ import annotations

import pytest
import torch

from fsr_bench.data.degradations import (
    BicubicDown,
    Degradation,
    DegradationConfigError,
    SurveillanceChain,
    build_degradation,
    gaussian_blur,
    mod_crop,
    mod_crop_size,
    motion_blur,
    motion_kernel,
    needs_mod_crop,
)
from fsr_bench.data.io import to_uint8
from fsr_bench.data.resize import imresize


@pytest.fixture(scope="module")
def hr() -> torch.Tensor:
    return torch.rand(3, 3, 64, 48, generator=torch.Generator().manual_seed(0))


# -- BicubicDown ----------------------------------------------------------------------------------
def test_bicubic_down_is_quantised_matlab_imresize(hr):
    lr = BicubicDown(scale=8)(hr)
    assert lr.shape == (3, 3, 8, 6) and lr.dtype == torch.float32
    expected = to_uint8(imresize(hr, scale=1 / 8)).float() / 255
    assert torch.equal(lr, expected)
    assert BicubicDown(4)(hr[0]).shape == (3, 16, 12)  # single image stays single


def test_bicubic_down_float_option_and_other_kernel(hr):
    lr = BicubicDown(scale=4, quantize=False)(hr)
    assert torch.allclose(lr, imresize(hr, scale=0.25))
    assert BicubicDown(4, kernel="pil_bicubic")(hr).shape == (3, 3, 16, 12)


def test_sizes_not_multiple_of_scale_are_refused():
    with pytest.raises(ValueError, match="mod_crop"):
        BicubicDown(8)(torch.rand(3, 250, 250))


# -- SurveillanceChain ----------------------------------------------------------------------------
def test_surveillance_same_seed_same_lr_different_seed_different(hr):
    chain = SurveillanceChain(scale=4, seed=7)
    a, b = chain(hr, index=10), chain(hr, index=10)
    assert a.shape == (3, 3, 16, 12)
    assert torch.equal(a, b)
    assert not torch.equal(a, chain(hr, index=10, seed=8))
    assert not torch.equal(a, SurveillanceChain(scale=4, seed=8)(hr, index=10))
    assert not torch.equal(a, chain(hr, index=11))


def test_surveillance_image_does_not_depend_on_its_batch(hr):
    chain = SurveillanceChain(scale=4, seed=1)
    batch = chain(hr, index=5)
    assert torch.equal(batch[2], chain(hr[2], index=7))
    assert torch.equal(chain(hr.flip(0), index=[7, 6, 5])[0], batch[2])


def test_surveillance_parameters_in_range_and_fixed_values():
    chain = SurveillanceChain(scale=4, blur_sigma=[0.5, 2.0], noise_sigma=5, jpeg_quality=(30, 40))
    for i in range(20):
        p = chain.sample_params(i)
        assert 0.5 <= p["blur_sigma"] <= 2.0
        assert p["noise_sigma"] == 5.0
        assert 30 <= p["jpeg_quality"] <= 40
    assert chain.blur_sigma == (0.5, 2.0)  # YAML lists become tuples


def test_surveillance_without_noise_and_jpeg_is_blur_plus_bicubic(hr):
    chain = SurveillanceChain(scale=4, blur_sigma=0, noise_sigma=0, jpeg_quality=None)
    assert torch.equal(chain(hr), BicubicDown(4)(hr))
    lr = SurveillanceChain(scale=4, jpeg_quality=None)(hr)
    assert torch.equal(lr, torch.round(lr * 255) / 255)  # still 8-bit


def test_describe_round_trips(hr):
    for deg in [BicubicDown(8), SurveillanceChain(scale=4, seed=3, jpeg_quality=None)]:
        d = deg.describe()
        assert d["type"] == deg.name
        rebuilt = build_degradation(d)
        assert rebuilt == deg and isinstance(rebuilt, Degradation)


def test_gaussian_blur_preserves_constants_and_mean():
    x = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(gaussian_blur(x, 1.5), x, atol=1e-6)
    assert gaussian_blur(x, 0) is x
    assert gaussian_blur(torch.rand(1, 3, 4, 4), 3.0).shape == (1, 3, 4, 4)  # replicate fallback


def test_optional_steps_are_off_by_default_and_leave_the_other_draws_alone():
    plain = SurveillanceChain(scale=4)
    assert set(plain.describe()) == {"type", "scale", "blur_sigma", "noise_sigma", "jpeg_quality", "kernel", "seed"}
    both = SurveillanceChain(scale=4, motion_length=[2, 9], recompress_scale=[1.5, 3.0])
    for i in range(10):
        p, q = plain.sample_params(i), both.sample_params(i)
        assert {k: q[k] for k in p} == p  # blur, noise and JPEG draws unchanged
        assert 2 <= q["motion_length"] <= 9 and 0 <= q["motion_angle"] < 180 and 1.5 <= q["recompress_scale"] <= 3
    assert build_degradation(both.describe()) == both
    with pytest.raises(DegradationConfigError, match="recompress_scale"):
        SurveillanceChain(scale=4, recompress_scale=0.5)


def test_motion_blur_of_an_edge_is_a_ramp_of_the_motion_length():
    """A straight motion of L px smears a step edge into a linear ramp of width L (box convolution)."""
    length = 9.0
    edge = torch.zeros(1, 1, 40, 64, dtype=torch.float64)
    edge[..., 32:] = 1.0
    k = motion_kernel(length, 0.0)
    assert k.sum().item() == pytest.approx(1.0) and k.shape[0] % 2 == 1
    row = motion_blur(edge, length, 0.0)[0, 0, 20].numpy()
    d = torch.arange(64, dtype=torch.float64).numpy() - 31.5  # pixel centre distance from the edge
    ramp = (0.5 + d / length).clip(0, 1)
    assert abs(row - ramp).max() < 0.06  # the ends of the segment are splatted over a pixel
    # 90 degrees moves vertically: the transposed image blurred at 0 degrees, transposed back
    # (angles are counter-clockwise with y down, so 90 degrees is the segment mirrored in y: same box)
    img = torch.rand(1, 3, 30, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    vertical = motion_blur(img, 6.0, 90.0)
    torch.testing.assert_close(vertical, motion_blur(img.transpose(-1, -2), 6.0, 0.0).transpose(-1, -2))
    assert motion_blur(img, 0.0, 30.0) is img


def test_recompression_is_down_up_then_the_final_downscale(hr):
    chain = SurveillanceChain(scale=4, blur_sigma=0, noise_sigma=0, jpeg_quality=None, recompress_scale=2.0)
    h, w = hr.shape[-2:]
    twice = imresize(imresize(imresize(hr, size=(h // 2, w // 2)), size=(h, w)), size=(h // 4, w // 4))
    assert torch.equal(chain(hr), to_uint8(twice).float() / 255)
    assert not torch.equal(chain(hr), BicubicDown(4)(hr))


# -- mod crop -------------------------------------------------------------------------------------
def test_mod_crop_is_top_left_anchored():
    x = torch.rand(3, 250, 251)
    y = mod_crop(x, 8)
    assert y.shape == (3, 248, 248)
    assert torch.equal(y, x[:, :248, :248])
    assert needs_mod_crop(x, 8) and not needs_mod_crop(y, 8)
    assert not needs_mod_crop((256, 256), 8) and needs_mod_crop((216, 178), 4)
    assert mod_crop_size(216, 178, 8) == (216, 176)
    with pytest.raises(ValueError, match="smaller"):
        mod_crop(torch.rand(3, 4, 4), 8)


# -- config ---------------------------------------------------------------------------------------
def test_build_from_dict_and_string():
    assert build_degradation({"type": "bicubic", "scale": 8}) == BicubicDown(8)
    assert build_degradation("bicubic_x4") == BicubicDown(4)
    assert build_degradation("surveillance_x8") == SurveillanceChain(8)
    chain = SurveillanceChain(4)
    assert build_degradation(chain) is chain


def test_build_errors_name_the_valid_choices():
    with pytest.raises(DegradationConfigError, match="valid types: bicubic, surveillance"):
        build_degradation({"type": "blurry", "scale": 4})
    with pytest.raises(DegradationConfigError, match="valid types"):
        build_degradation({"scale": 4})
    with pytest.raises(
        DegradationConfigError, match=r"unknown key\(s\) sigma.*valid keys: type, scale"
    ):
        build_degradation({"type": "surveillance", "scale": 4, "sigma": 1})
    with pytest.raises(DegradationConfigError, match="needs key"):
        build_degradation("bicubic")
    with pytest.raises(DegradationConfigError, match="positive integer"):
        build_degradation({"type": "bicubic", "scale": 2.5})
    with pytest.raises(DegradationConfigError, match="jpeg_quality"):
        SurveillanceChain(4, jpeg_quality=(80, 20))
    with pytest.raises(DegradationConfigError, match="valid"):
        BicubicDown(4, kernel="area")
    with pytest.raises(DegradationConfigError, match="cannot parse"):
        build_degradation("Bicubic x8!")
