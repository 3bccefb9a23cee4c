"""Distinctive tests for the SRFBN, SPARNet and SISN baselines (``baselines/{srfbn,sparnet,sisn}``).

The registry-wide contract (any size, finite, gradients, fsr-bench checkpoint round trip) is in
``test_models.py``; here: what makes each architecture itself, parameter counts at the paper
defaults (construction only), and loading checkpoints saved in the upstream key layout.
"""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from fsr_bench.models import MODELS, create_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return create_model(name, **{**MODELS.get(name).tiny, **extra})


@functools.lru_cache(maxsize=None)
def default(name: str, **overrides):
    """The paper-default model, built once per test session (construction only, never run)."""
    return create_model(name, **overrides)


def perturb(model):
    """Move every parameter and BatchNorm statistic off its init, so loading is visible."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model


# -- parameter counts at the default (paper / upstream) configs --------------------------------
def _srfbn_parameters(m: int, groups: int, kernel: int) -> int:
    """SRFBN's parameter count written out from upstream's layer list (Paper99/SRFBN_CVPR19,
    ``networks/srfbn_arch.py`` + ``networks/blocks.py``): every (de)conv has a bias, every PReLU one
    weight (``n_prelu=1``), no normalisation; the feedback block's weights are shared by the T
    steps, so T does not count. ``kernel``: the projection (de)conv size (8 at ×4, 12 at ×8)."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731 - Conv2d / ConvTranspose2d
    prelu = 1
    n = conv(3, 4 * m, 3) + prelu + conv(4 * m, m, 1) + prelu  # conv_in, feat_in
    n += conv(2 * m, m, 1) + prelu  # FB compress_in: [f_in, h_{t-1}] -> m
    n += groups * 2 * (conv(m, m, kernel) + prelu)  # upBlocks (deconv), downBlocks (strided conv)
    n += sum(2 * (conv(m * (g + 1), m, 1) + prelu) for g in range(1, groups))  # uptran/downtranBlocks
    n += conv(groups * m, m, 1) + prelu  # compress_out
    n += conv(m, m, kernel) + prelu + conv(m, 3, 3)  # out (deconv + PReLU), conv_out (no activation)
    return n


def test_srfbn_parameter_count_matches_upstream_layer_list_and_readme():
    # upstream train_SRFBN.json: m=64, T=4, G=6; test_SRFBN-S_x4_BI.json: m=32, T=4, G=3
    n = default("srfbn_x4").num_parameters()
    assert n == _srfbn_parameters(64, 6, kernel=8)
    n_s = create_model("srfbn_x4", num_features=32, num_groups=3).num_parameters()
    assert n_s == _srfbn_parameters(32, 3, kernel=8)
    assert default("srfbn_x8").num_parameters() == _srfbn_parameters(64, 6, kernel=12)  # 12×12 projections
    # upstream README: SRFBN 3,631K, SRFBN-S 483K (×4); upstream also counts its two frozen
    # MeanShift 1×1 convs (2 × (9 + 3) = 24 weights), buffers here
    assert abs(n + 24 - 3_631_000) < 500, n
    assert abs(n_s + 24 - 483_000) < 500, n_s


def test_sparnet_parameter_count_matches_released_model():
    # upstream README: "SPARNet (Released) 10.52 M" (16 -> 128, ×8); the network runs at HR size,
    # so ×4 has the same network
    n8 = default("sparnet_x8").num_parameters()
    n4 = default("sparnet_x4").num_parameters()
    assert n8 == n4
    assert abs(n8 - 10.52e6) < 0.005e6, n8


@pytest.mark.parametrize("scale", [4, 8])
def test_sisn_parameter_count_matches_upstream_layer_list(scale):
    """No SISN count is published; recompute it from upstream's layer list (model/sisn.py,
    utils/isab.py, utils/ISA.py, EDSR Upsampler) independently of the implementation."""
    C, G, B, r, s = 64, 10, 10, 4, scale
    inter = max(C * r // 4, 32)
    isa = 9 * C * C + 2 * r * C + (C * inter + inter) + 2 * inter + (inter * r * C + r * C)
    isab = C * C + 2 * C + isa + C * C + 2 * C  # conv1, bn1, ISA, conv3, bn3 (skip unused)
    esag = (B + 1) * isab + 9 * C * C + C
    head = 3 * s * s * 9 * C + C
    tail = int(math.log2(s)) * (9 * C * 4 * C + 4 * C) + 9 * C * 3 + 3
    expected = head + G * esag + 9 * C * C + C + tail
    assert default(f"sisn_x{scale}").num_parameters() == expected
    assert expected == {4: 8_073_795, 8: 8_304_451}[scale]


# -- SRFBN: the feedback ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["srfbn_x4", "srfbn_x8"])
def test_srfbn_one_output_per_step_last_is_forward(name):
    model = tiny(name, num_steps=3).eval()
    lr = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        steps = model.forward_steps(lr)
        out = model(lr)
    assert len(steps) == 3
    assert all(s.shape == (1, 3, 7 * model.scale, 6 * model.scale) for s in steps)
    assert torch.allclose(steps[-1], out, atol=1e-6)
    assert (steps[0] - steps[1]).abs().max() > 1e-5 and (steps[1] - steps[2]).abs().max() > 1e-5


def test_srfbn_hidden_state_of_step_t_feeds_step_t_plus_1():
    model = perturb(tiny("srfbn_x4", num_steps=3)).eval()
    calls = []
    handle = model.block.register_forward_hook(lambda m, args, out: calls.append((args, out)))
    lr = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        steps3 = model.forward_steps(lr)
    handle.remove()
    assert len(calls) == 3
    (f0, h0), _ = calls[0]
    assert torch.equal(f0, h0)  # step 1's "last hidden" is the LR feature itself (upstream)
    for t in range(2):
        (f_next, h_next), out_t = calls[t + 1][0], calls[t][1]
        assert torch.equal(h_next, out_t)  # the feedback connection
        assert torch.equal(f_next, f0)  # the same LR features every step
    # weights are shared across steps: a 1-step model with the same weights gives step 1, and
    # since every step sees the same LR features, steps 2 and 3 differ only through the feedback
    one = tiny("srfbn_x4", num_steps=1).eval()
    one.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(one(lr), steps3[0], atol=1e-6)
        assert not torch.allclose(model(lr), steps3[0], atol=1e-4)


def test_srfbn_global_residual_is_bilinear_and_mean_shift_cancels():
    model = tiny("srfbn_x8").eval()
    with torch.no_grad():
        model.conv_out[0].weight.zero_()
        model.conv_out[0].bias.zero_()
        lr = torch.rand(2, 3, 5, 4)
        base = F.interpolate(lr, scale_factor=8, mode="bilinear", align_corners=False)
        assert torch.allclose(model(lr), base, atol=1e-5)


@pytest.mark.parametrize("scale,kernel,stride,padding", [(4, 8, 4, 2), (8, 12, 8, 2)])
def test_srfbn_projection_geometry_per_scale(scale, kernel, stride, padding):
    model = tiny(f"srfbn_x{scale}")
    for conv in (model.block.upBlocks[0][0], model.block.downBlocks[0][0], model.out[0]):
        assert (conv.kernel_size, conv.stride, conv.padding) == ((kernel,) * 2, (stride,) * 2,
                                                                   (padding,) * 2)
    cfg = default(f"srfbn_x{scale}").config
    assert (cfg.num_features, cfg.num_steps, cfg.num_groups) == (64, 4, 6)


# -- SPARNet: bicubic [-1, 1] input, spatial attention, sizes -----------------------------------
def test_sparnet_network_input_is_bicubic_upsampled_in_minus1_1():
    from fsr_bench.data.resize import imresize

    model = tiny("sparnet_x8").eval()
    seen = []
    handle = model.encoder[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    lr = torch.rand(1, 3, 8, 12)  # a multiple of size_multiple = 4, HR >= 2 * total_stride
    with torch.no_grad():
        model(lr)
    handle.remove()
    assert torch.allclose(seen[0], imresize(lr, scale=8) * 2 - 1, atol=1e-6)


@pytest.mark.parametrize("name,size", [("sparnet_x8", (7, 5)), ("sparnet_x4", (11, 9))])
def test_sparnet_attention_maps_in_unit_interval_with_block_sizes(name, size):
    model = perturb(tiny(name)).eval()
    lr = torch.rand(2, 3, *size)
    with torch.no_grad():
        sr, maps = model.forward_with_attention(lr)
        assert torch.allclose(sr, model(lr), atol=1e-6)
    m, s = model.size_multiple, model.scale
    H, W = (-(-size[0] // m) * m * s, -(-size[1] // m) * m * s)  # padded HR size
    # upstream 128-design: 3 down FAUs, res_depth + 3 - 3 body FAUs, 3 up FAUs
    strides = [2, 4, 8] + [8] * model.config.res_depth + [4, 2, 1]
    assert len(maps) == len(strides)
    for att, st in zip(maps, strides):
        assert att.shape == (2, 1, H // st, W // st)  # 'spar': one spatial map per FAU
        assert (att > 0).all() and (att < 1).all()


def test_sparnet_3d_attention_has_one_map_per_channel():
    model = tiny("sparnet_x8", att_name="spar3d").eval()
    with torch.no_grad():
        _, maps = model.forward_with_attention(torch.rand(1, 3, 4, 4))
    assert [a.shape[1] for a in maps] == [b.conv2.conv2d.out_channels for b in
                                          [*model.encoder[1:], *model.res_layers, *model.decoder]]


def test_sparnet_default_architecture_and_padding_rule():
    model = default("sparnet_x8")
    c = model.config
    assert (c.min_ch, c.max_ch, c.res_depth, c.bottleneck_size, c.min_feat_size, c.in_size) == (
        32, 128, 10, 4, 16, 128)
    assert len(model.encoder) == 1 + 3 and len(model.res_layers) == 10 and len(model.decoder) == 3
    chans = [b.conv2.conv2d.out_channels for b in [*model.encoder[1:], *model.decoder]]
    assert chans == [64, 128, 128, 128, 64, 32]
    assert isinstance(model.encoder[1].conv1.norm.norm, torch.nn.BatchNorm2d)
    assert model.encoder[1].conv1.relu.func.negative_slope == 0.2
    assert model.res_layers[0].att_func.depth == 2  # 16×16 body map -> 4×4 bottleneck
    assert model.total_stride == 32  # HR must divide by 32: LR by 4 at ×8, by 8 at ×4
    assert model.size_multiple == 4 and default("sparnet_x4").size_multiple == 8


@pytest.mark.parametrize("name,size", [("sparnet_x8", (27, 22)), ("sparnet_x4", (54, 44)),
                                       ("sparnet_x8", (1, 2))])
def test_sparnet_celeba_and_tiny_sizes(name, size):
    model = tiny(name).eval()
    with torch.no_grad():
        sr = model(torch.rand(1, 3, *size))
    assert sr.shape == (1, 3, size[0] * model.scale, size[1] * model.scale)
    assert torch.isfinite(sr).all()


# -- SISN: nearest + space-to-depth input, split attention --------------------------------------
@pytest.mark.parametrize("name", ["sisn_x4", "sisn_x8"])
def test_sisn_input_stage_repeats_each_lr_pixel_scale_squared_times(name):
    model = tiny(name)
    s = model.scale
    lr = torch.rand(2, 3, 5, 7)
    emb = model.embed(lr)  # nearest ×s then space-to-depth ×s (+ mean shift)
    assert emb.shape == (2, 3 * s * s, 5, 7)
    mean = 255 * torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    expected = (255 * lr - mean).repeat(1, s * s, 1, 1)  # nothing lost, nothing invented
    assert torch.allclose(emb, expected, atol=1e-4)
    assert model.head[1].in_channels == 3 * s * s


def test_sisn_space_to_depth_uses_cutblur_channel_order():
    from baselines.sisn import SpaceToDepth

    x = torch.randn(1, 3, 8, 12)
    y = SpaceToDepth(4)(x)
    for i in range(4):
        for j in range(4):
            assert torch.equal(y[:, (i * 4 + j) * 3:(i * 4 + j + 1) * 3], x[:, :, i::4, j::4])
    assert not torch.equal(y, F.pixel_unshuffle(x, 4))  # not PyTorch's order


def test_sisn_split_attention_weights_are_a_softmax_over_radix():
    model = perturb(tiny("sisn_x4")).eval()
    isa = model.body[0].body[0].conv2
    assert isa.radix == 4 and isa.conv.groups == 4
    x = torch.randn(3, model.config.num_channels, 6, 5)
    with torch.no_grad():
        out, w = isa(x, return_weights=True)
        assert torch.equal(out, isa(x))
    assert w.shape == (3, 4, model.config.num_channels)
    assert torch.allclose(w.sum(1), torch.ones(3, model.config.num_channels), atol=1e-6)
    assert (w > 0).all() and (w < 1).all()
    assert w.std(1).max() > 1e-4  # the splits are weighted differently


def test_sisn_default_structure():
    model = default("sisn_x4")
    c = model.config
    assert (c.num_groups, c.num_blocks, c.num_channels, c.radix) == (10, 10, 64, 4)
    esags = model.body[:-1]
    assert len(esags) == 10 and all(len(g.body) == 10 + 1 for g in esags)  # 10 ISABs + conv
    isa = esags[0].body[0].conv2
    assert isa.conv1x1_1.out_channels == max(64 * 4 // 4, 32)  # ISA reduction_factor 4
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in model.tail.modules()) == 2


# -- upstream checkpoints ------------------------------------------------------------------------
def _upstream_layout(name: str, sd: dict[str, torch.Tensor]) -> dict:
    """Invert each model's documented key mapping: our state_dict -> what upstream saves."""
    if name.startswith("srfbn"):  # SRSolver.save_checkpoint: {"state_dict": DataParallel sd, ...}
        return {"epoch": 7, "best_pred": 31.5, "best_epoch": 6,
                "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    if name.startswith("sparnet"):  # save_networks: net.module.state_dict(), no prefix; an old
        return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # torch
    if name.startswith("sisn"):  # Solver.save: DataParallel sd, plus the unused ISAB skip convs
        out = {f"module.{k}": v for k, v in sd.items()}
        for k, v in sd.items():
            if k.endswith(".conv3.weight"):  # one skip conv per ISAB, (C, C, 1, 1)
                prefix = k.removesuffix("conv3.weight")
                out[f"module.{prefix}skip.weight"] = torch.randn(v.shape[0], v.shape[0], 1, 1)
        return out
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["srfbn_x4", "srfbn_x8", "sparnet_x8", "sisn_x4", "sisn_x8"])
def test_loads_checkpoint_in_upstream_key_layout(name, tmp_path):
    model = perturb(tiny(name)).eval()
    path = tmp_path / "upstream.pth"
    torch.save(_upstream_layout(name, model.state_dict()), path)
    loaded = create_model(name, checkpoint=path, **MODELS.get(name).tiny).eval()
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(lr), model(lr))


def test_upstream_checkpoint_of_another_config_is_rejected(tmp_path):
    from fsr_bench.models.checkpoint import CheckpointError

    path = tmp_path / "upstream.pth"
    torch.save(_upstream_layout("srfbn_x4", tiny("srfbn_x4").state_dict()), path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        create_model("srfbn_x4", checkpoint=path, num_features=16, num_groups=2, num_steps=2)
