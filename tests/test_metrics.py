"""PSNR/SSIM against scikit-image and hand-computed values; LPIPS availability and loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fsr_bench.data.io import to_uint8
from fsr_bench.metrics import (
    LPIPSMetric,
    MeanMetric,
    MetricConventions,
    MetricUnavailable,
    ReconstructionMetrics,
    lpips_available,
    mps,
    psnr,
    rgb_to_y,
    ssim,
)
from fsr_bench.metrics import lpips as lpips_module

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _pair(seed: int = 0, shape=(3, 40, 36), noise: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(shape, generator=g, dtype=torch.float64)
    sr = (hr + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return sr, hr


def _uint8_hwc(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).permute(1, 2, 0).numpy()


def _y_255(x: torch.Tensor) -> np.ndarray:
    """Y on the 0-255 scale of the quantised image, as a NumPy (H, W) array."""
    return rgb_to_y(to_uint8(x).double() / 255)[0].numpy()


# -- rgb_to_y -------------------------------------------------------------------------------------
def test_rgb_to_y_known_values():
    colours = torch.tensor(
        [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64
    )
    y = rgb_to_y(colours.T.reshape(3, 1, 5))[0, 0]
    np.testing.assert_allclose(
        y.numpy(), [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9
    )
    assert rgb_to_y(torch.rand(2, 3, 4, 5)).shape == (2, 1, 4, 5)


# -- PSNR -----------------------------------------------------------------------------------------
def test_psnr_matches_skimage_rgb_and_y():
    sr, hr = _pair()
    rgb = peak_signal_noise_ratio(_uint8_hwc(hr), _uint8_hwc(sr), data_range=255)
    assert float(psnr(sr, hr, y_channel=False)) == pytest.approx(rgb, abs=1e-10)
    y = peak_signal_noise_ratio(_y_255(hr), _y_255(sr), data_range=255)
    assert float(psnr(sr, hr)) == pytest.approx(y, abs=1e-10)


def test_psnr_hand_computed_constant_offset():
    hr = torch.full((3, 16, 16), 100 / 255, dtype=torch.float64)
    sr = hr + 10 / 255  # every channel +10 -> RGB MSE 100; Y offset 10 * 219 / 255
    assert float(psnr(sr, hr, y_channel=False)) == pytest.approx(
        10 * math.log10(255**2 / 100), abs=1e-9
    )
    y_offset = 10 * (65.481 + 128.553 + 24.966) / 255
    assert float(psnr(sr, hr)) == pytest.approx(10 * math.log10(255**2 / y_offset**2), abs=1e-9)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    _, hr = _pair()
    assert math.isinf(float(psnr(hr, hr)))
    assert float(ssim(hr, hr)) == pytest.approx(1.0, abs=1e-12)


def test_crop_border_ignores_border_errors():
    _, hr = _pair()
    sr = hr.clone()
    sr[:, :4, :] = 0  # damage the top 4 rows only
    assert math.isfinite(float(psnr(sr, hr, crop_border=3)))
    assert math.isinf(float(psnr(sr, hr, crop_border=4)))
    with pytest.raises(ValueError, match="removes the whole"):
        psnr(sr, hr, crop_border=20)


def test_quantize_flag():
    hr = torch.full((3, 16, 16), 0.5, dtype=torch.float64)
    sr = hr + 0.4 / 255  # rounds to the same 8-bit value
    assert math.isinf(float(psnr(sr, hr)))
    assert math.isfinite(float(psnr(sr, hr, quantize=False)))


def test_batches_return_per_image_values():
    sr, hr = _pair(shape=(4, 3, 24, 24))
    p, s = psnr(sr, hr), ssim(sr, hr)
    assert p.shape == (4,) and s.shape == (4,) and p.dtype == torch.float64
    assert float(p[2]) == pytest.approx(float(psnr(sr[2], hr[2])), abs=1e-12)
    assert float(s[3]) == pytest.approx(float(ssim(sr[3], hr[3])), abs=1e-12)
    assert psnr(sr[0], hr[0]).ndim == 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))


# -- SSIM -----------------------------------------------------------------------------------------
SKIMAGE_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


@pytest.mark.parametrize("seed,noise", [(0, 0.05), (1, 0.2), (2, 0.01)])
def test_ssim_matches_skimage_y(seed, noise):
    sr, hr = _pair(seed, noise=noise)
    expected = structural_similarity(_y_255(hr), _y_255(sr), **SKIMAGE_SSIM)
    assert float(ssim(sr, hr)) == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_skimage_rgb_channel_mean():
    sr, hr = _pair(3)
    a, b = _uint8_hwc(hr).astype(np.float64), _uint8_hwc(sr).astype(np.float64)
    expected = structural_similarity(a, b, channel_axis=2, **SKIMAGE_SSIM)
    assert float(ssim(sr, hr, y_channel=False)) == pytest.approx(expected, abs=1e-6)


def test_ssim_with_crop_and_too_small_images():
    sr, hr = _pair(4)
    c = 4
    expected = structural_similarity(_y_255(hr)[c:-c, c:-c], _y_255(sr)[c:-c, c:-c], **SKIMAGE_SSIM)
    assert float(ssim(sr, hr, crop_border=c)) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(3, 10, 30), torch.rand(3, 10, 30))


# -- MPS and conventions --------------------------------------------------------------------------
def test_mps_formula():
    assert mps(0.8, 0.2) == pytest.approx(0.8)
    assert mps(0.8910, 0.1590) == pytest.approx(0.8660)  # TANet FFHQ x4 row
    assert torch.allclose(
        mps(torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5])), torch.tensor([1.0, 0.5])
    )


def test_conventions_describe_and_bound_metrics():
    conv = MetricConventions(crop_border=8, y_channel=False)
    d = conv.describe()
    for key in (
        "y_channel",
        "crop_border",
        "quantize",
        "ssim_window",
        "lpips_net",
        "lpips_version",
    ):
        assert key in d
    assert d["crop_border"] == 8 and d["y_formula"] == "RGB"
    sr, hr = _pair(shape=(3, 48, 48))
    assert float(conv.psnr(sr, hr)) == float(psnr(sr, hr, crop_border=8, y_channel=False))
    assert float(conv.ssim(sr, hr)) == float(ssim(sr, hr, crop_border=8, y_channel=False))


# -- LPIPS ----------------------------------------------------------------------------------------
@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # no converted trunk from the user's own $FSR_BENCH_HOME, and downloads allowed (test-controlled)
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path / "fsr_bench_home"))
    monkeypatch.delenv("FSR_BENCH_OFFLINE", raising=False)
    return tmp_path


def test_lpips_unavailable_without_backbone(empty_torch_home):
    ok, reason = lpips_available()
    assert not ok
    assert ALEXNET_FILE in reason and "TORCH_HOME" in reason and str(empty_torch_home) in reason
    with pytest.raises(MetricUnavailable) as info:
        LPIPSMetric(allow_download=False)
    msg = str(info.value)
    assert ALEXNET_FILE in msg
    assert "https://download.pytorch.org/models/" + ALEXNET_FILE in msg
    assert "$TORCH_HOME/hub/checkpoints/" in msg
    assert not (empty_torch_home / "hub" / "checkpoints" / ALEXNET_FILE).exists()


def test_lpips_failed_download_is_reported(empty_torch_home, monkeypatch):
    def offline(url, dest, timeout=60):
        raise OSError("network unreachable")

    monkeypatch.setattr(lpips_module, "_download", offline)
    with pytest.raises(MetricUnavailable, match="Downloading it failed.*network unreachable"):
        LPIPSMetric()


def test_stateful_reports_lpips_unavailable(empty_torch_home):
    metrics = ReconstructionMetrics.create(MetricConventions(), allow_download=False)
    sr, hr = _pair(shape=(2, 3, 32, 32))
    rows = metrics.update(sr, hr, names=["a", "b"])
    assert rows[0]["lpips"] is None and rows[0]["mps"] is None
    out = metrics.compute()
    assert out["n"] == 2 and out["lpips"] is None and out["mps"] is None
    assert out["lpips_status"].startswith("unavailable") and ALEXNET_FILE in out["lpips_status"]
    assert out["psnr"] == pytest.approx(float(psnr(sr, hr).mean()), abs=1e-12)
    assert out["ssim"] == pytest.approx(float(ssim(sr, hr).mean()), abs=1e-12)
    with pytest.raises(ValueError, match="already scored"):
        metrics.update(sr[:1], hr[:1], names=["a"])
    with pytest.raises(MetricUnavailable):
        ReconstructionMetrics.create(allow_download=False, require_lpips=True)


@pytest.fixture
def fake_alexnet_home(empty_torch_home):
    """A torch hub cache holding an (untrained) AlexNet under the real file name."""
    import torchvision

    state = torchvision.models.alexnet(weights=None).state_dict()
    folder = empty_torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / ALEXNET_FILE)
    return state


def test_lpips_loads_backbone_from_cache(fake_alexnet_home):
    ok, _ = lpips_available()
    assert ok
    metric = LPIPSMetric(allow_download=False)
    # the trunk really came from the cached file (not a fresh random init)
    first_conv = metric.model.net.slice1[0].weight
    assert torch.equal(first_conv, fake_alexnet_home["features.0.weight"])
    sr, hr = _pair(shape=(2, 3, 64, 64))
    same = metric(hr, hr)
    assert same.shape == (2,) and float(same.abs().max()) < 1e-6
    assert float(metric(sr[0], hr[0])) > 0

    metrics = ReconstructionMetrics(MetricConventions(), lpips=metric)
    metrics.update(sr, hr)
    out = metrics.compute()
    assert out["lpips_status"] == "ok" and out["lpips"] > 0
    assert out["mps"] == pytest.approx(0.5 * (out["ssim"] + 1 - out["lpips"]), abs=1e-12)


def test_mean_metric():
    m = MeanMetric()
    assert m.compute() is None
    m.update(torch.tensor([1.0, 2.0]))
    m.update(6.0)
    assert m.compute() == pytest.approx(3.0)
    m.reset()
    assert m.count == 0


def test_one_rule_for_exact_reconstructions_in_runner_metrics_and_trainer():
    """An image reproduced exactly (PSNR inf) is counted and left out of the mean PSNR — in the
    runner's ReconstructionMetrics and in the trainer's validation sums alike."""
    from torch import nn

    from fsr_bench.train.trainer import score_pairs

    sr, hr = (t.float() for t in _pair(shape=(2, 3, 32, 32)))  # float32, as a model outputs
    sr[1] = hr[1]  # the second image is exact
    metrics = ReconstructionMetrics(MetricConventions(crop_border=1))
    metrics.update(sr, hr, names=["a", "b"])
    out = metrics.compute()
    expected = float(psnr(sr[:1], hr[:1], crop_border=1)[0])  # the finite one alone
    assert out["n_infinite_psnr"] == 1 and out["psnr"] == pytest.approx(expected, abs=1e-12)
    assert out["ssim"] == pytest.approx(float(ssim(sr, hr, crop_border=1).mean()), abs=1e-12)

    class Identity(nn.Module):  # scale 1: the LR "input" is the SR output
        scale = 1

        def forward(self, x):
            return x

    pairs = [{"lr": sr[i], "hr": hr[i], "index": i, "name": str(i)} for i in range(2)]
    total, ssim_sum, n, n_exact = score_pairs(Identity(), pairs, torch.device("cpu")).tolist()
    assert (n, n_exact) == (2, 1) and total / (n - n_exact) == pytest.approx(expected, abs=1e-9)
    metrics.reset()
    metrics.update(hr, hr)
    assert metrics.compute()["psnr"] is None  # every image exact: undefined, never a made-up number
