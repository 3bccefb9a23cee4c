"""Face-size sweep arithmetic, checked against the formulas written out by hand here."""
from __future__ import annotations

import math

import pytest
import torch

from fsr_bench.data.face_size_sweep import face_size_sweep, template_interocular_px
from fsr_bench.data.identity_folders import build_probe_degradation
from fsr_bench.data.io import FsrBenchDataError

# ArcFace 112x112 eyes (insightface): (38.2946, 51.6963) and (73.5318, 51.5014)
ARCFACE_IED = math.hypot(73.5318 - 38.2946, 51.5014 - 51.6963)


def test_sizes_crops_and_measured_interocular():
    pts = face_size_sweep([16, 28, 56, 18, 10], crop_height=160, source_interocular_px=40.0)
    # widths 3/4 of the height, half up: 12, 21, 42, 13.5 -> 14, 7.5 -> 8
    assert [p.lr_size for p in pts] == [(16, 12), (28, 21), (56, 42), (18, 14), (10, 8)]
    assert [p.label for p in pts] == ["12x16", "21x28", "42x56", "14x18", "8x10"]
    # crop width keeps the LR aspect at height 160: 160*12/16 = 120, …, 160*14/18 = 124.4 -> 124, 160*8/10 = 128
    assert [p.crop for p in pts] == [(160, 120), (160, 120), (160, 120), (160, 124), (160, 128)]
    # measured IED: 40 source px x lr_w / crop_w
    assert [p.interocular_lr_px for p in pts] == pytest.approx([4.0, 7.0, 14.0, 40 * 14 / 124, 40 * 8 / 128])
    assert pts[1].interocular_sr_px == pytest.approx(56.0) and pts[1].hr_face_size == (224, 168)
    assert {p.interocular_basis for p in pts} == {"measured"}


def test_one_crop_width_for_every_size():
    pts = face_size_sweep([16, 21, 37], crop_height=160, crop_width=120, source_interocular_px=40.0)
    assert [p.lr_size for p in pts] == [(16, 12), (21, 16), (37, 28)]  # 15.75 -> 16, 27.75 -> 28
    assert {p.crop for p in pts} == {(160, 120)}  # not 160 x 122 / 121 as the per-size aspect gives
    assert [p.interocular_lr_px for p in pts] == pytest.approx([40 * 12 / 120, 40 * 16 / 120, 40 * 28 / 120])
    with pytest.raises(FsrBenchDataError, match="crop_width"):
        face_size_sweep([16], crop_width=120)


def test_template_basis():
    assert template_interocular_px() == pytest.approx((ARCFACE_IED, 112.0))
    (p,) = face_size_sweep([28], face_width_fraction=0.8)
    assert p.interocular_lr_px == pytest.approx(0.8 * 21 * ARCFACE_IED / 112)
    assert p.interocular_basis == "template" and p.crop is None


def test_specs_build_working_probe_degradations():
    pts = face_size_sweep([16, 28], scale=4, crop_height=160,
                          degradation={"type": "bicubic"})
    for p in pts:
        spec = p.probe_degradation()
        assert spec == {"preset": None, "crop": [160, p.crop[1]], "lr_size": list(p.lr_size),
                        "degradation": {"type": "bicubic", "scale": 4}}
        deg = build_probe_degradation(spec)
        face, hr, lr = deg(torch.rand(3, 250, 250), index=0, seed=0)
        assert tuple(face.shape[-2:]) == p.crop
        assert tuple(hr.shape[-2:]) == (p.lr_size[0] * 4, p.lr_size[1] * 4)
        assert tuple(lr.shape[-2:]) == p.lr_size


def test_bad_input():
    with pytest.raises(FsrBenchDataError, match="positive integers"):
        face_size_sweep([16, 0])
    with pytest.raises(FsrBenchDataError, match="repeated"):
        face_size_sweep([16, 16])
    with pytest.raises(FsrBenchDataError, match="needs crop_height"):
        face_size_sweep([16], source_interocular_px=40)
    with pytest.raises(FsrBenchDataError, match="differs from the sweep's scale 8"):
        face_size_sweep([16], degradation={"type": "bicubic", "scale": 4})
    with pytest.raises(FsrBenchDataError, match="no 'type'"):
        face_size_sweep([16], degradation={"scale": 8})
