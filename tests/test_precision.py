"""Inference precision helper: bf16 stays close to fp32, channels-last changes nothing, ``auto``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fsr_bench.models import create_model
from fsr_bench.models import precision as P

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A real checkpoint makes the real-face check meaningful (random weights would compare noise).
CKPT_ENV = "FSR_BENCH_PRECISION_CHECKPOINT"


@pytest.fixture(scope="module")
def tiny_tanet():
    torch.manual_seed(0)
    return create_model("tanet_x4", channels=16, num_modules=2, num_resblocks=1, num_blocks=1,
                        num_heads=2, pos_grid=4).eval()


@pytest.fixture(scope="module")
def lr_batch():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_bf16_close_to_fp32_but_really_bf16(tiny_tanet, lr_batch):
    ref = P.infer(tiny_tanet, lr_batch, "fp32", channels_last=False)
    out = P.infer(tiny_tanet, lr_batch, "bf16", channels_last=True)
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == ref.shape
    err = _rel_err(out, ref)
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 ~ 0.4%); a few layers may compound it a
    # few times over, but not to 5%. Non-zero proves autocast really ran in bf16.
    assert 0 < err < 0.05, err


def test_channels_last_is_the_same_function_in_fp32(tiny_tanet, lr_batch):
    ref = P.infer(tiny_tanet, lr_batch, "fp32", channels_last=False)
    model = P.prepare(tiny_tanet, "cpu", channels_last=True)
    out = P.infer(model, lr_batch, "fp32", channels_last=True)
    model.to(memory_format=torch.contiguous_format)  # the fixture is shared
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_infer_does_not_track_gradients(tiny_tanet, lr_batch):
    assert not P.infer(tiny_tanet, lr_batch, "bf16", channels_last=False).requires_grad


def test_auto_is_bf16_only_with_native_cpu_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert P.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ())
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert P.resolve_precision("bf16", "cpu") == "bf16"  # explicit bf16 stays allowed (emulated)


def test_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(P.PrecisionError, match="fp16 or fp32"):
        P.resolve_precision("bf16", "cuda")


def test_cpu_flags_match_proc_cpuinfo():
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo (not Linux)")
    flags = set()
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert set(P.cpu_bf16_flags()) == flags & {"avx512_bf16", "amx_bf16"}


def test_fp16_on_cpu_and_unknown_precisions_are_refused():
    with pytest.raises(P.PrecisionError, match="fp16 is not supported on the CPU"):
        P.resolve_precision("fp16", "cpu")
    with pytest.raises(P.PrecisionError, match="one of fp32, bf16, fp16, auto"):
        P.resolve_precision("float32", "cpu")


def test_describe_names_dtype_and_layout():
    assert P.describe("fp32", False) == "fp32, NCHW"
    assert P.describe("bf16", True) == "bf16 autocast (fp32 weights), channels-last"


def _val_faces(faces256: Path, split: Path, n: int) -> list[Path]:
    ids = split.read_text().split()
    files = sorted(p for i in ids for p in (faces256 / i).glob("*.jpg"))
    return files[:n]


def test_bf16_on_real_faces_is_close_enough_for_sr_and_validation(faces256, shared_dir):
    """bf16 (``sr``'s default, training validation) must stay within 0.05 dB PSNR / 1e-3 SSIM of fp32
    on real faces with trained weights: far below the gap between checkpoints that validation ranks.

    Whether ``run`` may default to bf16 is the issue's stricter rule (< 0.01 dB, < 1e-4), measured on
    the whole val split by ``benchmarks/precision_faces.py``; ``run`` stays fp32 until it passes.
    """
    ckpt = os.environ.get(CKPT_ENV)  # default: the TANet-S x8 that ships inside fsr-bench
    from fsr_bench.data.degradations import build_degradation
    from fsr_bench.data.io import read_image
    from fsr_bench.metrics.functional import psnr, ssim

    net = create_model(checkpoint=ckpt) if ckpt else create_model("tanet_s_x8", pretrained=True)
    model = P.prepare(net, "cpu", channels_last=True)
    s = model.scale
    files = _val_faces(faces256, shared_dir / "data" / "splits" / "faces256_val.txt", 20)
    assert len(files) == 20
    hr = torch.stack([read_image(f) for f in files])
    lr = build_degradation({"type": "bicubic", "scale": s})(hr, index=list(range(len(hr))))  # 8-bit LR
    scores = {}
    for prec in ("fp32", "bf16"):
        sr = torch.cat([P.infer(model, lr[i:i + 4], prec, channels_last=True) for i in range(0, len(lr), 4)])
        scores[prec] = (float(psnr(sr, hr, crop_border=s).mean()), float(ssim(sr, hr, crop_border=s).mean()))
    d_psnr = scores["bf16"][0] - scores["fp32"][0]
    d_ssim = scores["bf16"][1] - scores["fp32"][1]
    assert d_psnr != 0  # really ran in bf16
    assert abs(d_psnr) < 0.05 and abs(d_ssim) < 1e-3, (d_psnr, d_ssim)
