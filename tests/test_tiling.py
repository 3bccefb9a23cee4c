"""Tiled super-resolution and the pixel budget (issue 11 item 8)."""
from __future__ import annotations

import pytest
import torch

from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.tiling import InputTooLargeError, check_input_size, tiled_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_fixed(name: str):
    torch.manual_seed(0)
    model = create_model(name, **(MODELS.get(name).tiny or {})).eval()
    with torch.no_grad():  # random but fixed; no zero-initialised path
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def untiled(model, lr):
    with torch.no_grad():
        return model(lr)


# Receptive fields in LR pixels (radius), counted from the architectures: bicubic's a=-0.5 kernel
# reaches 2 px; tiny tanet_no_global (shallow 3x3, 2 SMFM x 1 residual block of two 3x3, GLAM 3x3,
# first upsampler 3x3, then sub-pixel convs) reaches 1 + 4 + 1 + 1 + 1 = 8 px; tiny SRFBN's
# stride-4 projections over 2 feedback steps are not worth counting by hand (measured: exact from
# overlap 8). An overlap of 12 covers all: tiled must equal untiled.
LOCAL_MODELS = {"bicubic_x4": 2, "bicubic_x8": 2, "tanet_no_global_x4": 8, "srfbn_x4": 12}


@pytest.mark.parametrize("name", sorted(LOCAL_MODELS))
def test_tiled_equals_untiled_when_overlap_covers_receptive_field(name):
    model = tiny_fixed(name)
    torch.manual_seed(1)
    lr = torch.rand(2, 3, 61, 45)  # not a multiple of the tile: partial tiles at bottom and right
    ref = untiled(model, lr)
    tiled = tiled_forward(model, lr, tile=24, overlap=12)
    assert tiled.shape == ref.shape
    assert (tiled - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name", ["bicubic_x4", "tanet_no_global_x4"])
def test_overlap_smaller_than_receptive_field_shows_seams(name):
    """The equality above is not vacuous: without context the tile borders change the output."""
    model = tiny_fixed(name)
    lr = torch.rand(1, 3, 48, 48)
    assert (tiled_forward(model, lr, tile=24, overlap=0) - untiled(model, lr)).abs().max().item() > 1e-2


def test_tanet_tiles_keep_patch_grid_and_bound_the_change():
    """TANet's global attention becomes tile-level: the output changes, within a bound.

    One tile covering the image is exactly the untiled forward; with several tiles the windows
    start on multiples of the 4x4 patch grid, the shape is right and the change stays small
    (random tiny weights: ~5e-3 measured; 0.05 is ~13 8-bit levels).
    """
    model = tiny_fixed("tanet_x4")
    lr = torch.rand(1, 3, 50, 38)  # not a multiple of the 4x4 patch: the last windows are padded
    ref = untiled(model, lr)
    assert torch.equal(tiled_forward(model, lr, tile=64, overlap=8), ref)
    tiled = tiled_forward(model, lr, tile=24, overlap=8)
    assert tiled.shape == ref.shape == (1, 3, 200, 152)
    diff = (tiled - ref).abs()
    assert 0 < diff.max().item() < 0.05


def test_each_tile_is_its_core_plus_overlap(monkeypatch):
    """The model only ever sees a window (core + context), never the whole image."""
    model = tiny_fixed("tanet_no_global_x4")
    seen = []
    original = model.forward_native

    def spy(x):
        seen.append(tuple(x.shape[-2:]))
        return original(x)

    monkeypatch.setattr(model, "forward_native", spy)
    tiled_forward(model, torch.rand(1, 3, 40, 30), tile=16, overlap=4)
    assert len(seen) == 3 * 2 and max(h for h, _ in seen) <= 16 + 2 * 4  # size_multiple 1: no widening


def test_tile_must_respect_size_multiple():
    model = tiny_fixed("tanet_x4")  # size_multiple 4
    with pytest.raises(ValueError, match="multiple of tanet_x4's size_multiple"):
        tiled_forward(model, torch.rand(1, 3, 20, 20), tile=10)
    with pytest.raises(ValueError, match="overlap"):
        tiled_forward(model, torch.rand(1, 3, 20, 20), tile=8, overlap=-1)


def test_pixel_budget_refuses_with_advice():
    model = create_model("bicubic_x4")
    check_input_size(model, 3000, 1000, max_pixels=3_000_000)  # at the budget: fine
    check_input_size(model, 3000, 4000, max_pixels=None)  # no budget
    with pytest.raises(InputTooLargeError) as err:
        check_input_size(model, 3000, 4000, max_pixels=4_000_000, source="frame.png")
    msg = str(err.value)
    assert msg.startswith("frame.png: input 4000x3000 (12.0 Mpx)")
    assert "bicubic_x4" in msg and "16000x12000" in msg and "--tile" in msg and "--max-pixels" in msg
    assert isinstance(err.value, FsrBenchDataError)  # caught by the CLI's data-error handler
