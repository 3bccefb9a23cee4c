"""Distinctive tests for the NLSN, IPT and DIDnet baselines (registry-wide contract tests live in
tests/test_models.py): LSH attention against a brute-force reference, IPT's position-encoding
resizing and ×8 tail, DIDnet's dual identity loss hook, upstream-layout checkpoints, and the
default-config parameter counts against the papers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import DIV2K_RGB_MEAN
from baselines.nlsn import NonLocalSparseAttention, sort_by_bucket
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import CheckpointError, save_checkpoint


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return create_model(name, **{**MODELS.get(name).tiny, **extra})


def perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def upstream_mean_shift(rgb_range: float) -> dict[str, torch.Tensor]:
    """What EDSR-style upstream checkpoints store for their frozen MeanShift convolutions."""
    mean = torch.tensor(DIV2K_RGB_MEAN)
    eye = torch.eye(3).view(3, 3, 1, 1)
    return {
        "sub_mean.weight": eye.clone(), "sub_mean.bias": -rgb_range * mean,
        "add_mean.weight": eye.clone(), "add_mean.bias": rgb_range * mean,
    }


def default_params(name: str) -> tuple[int, nn.Module]:
    with torch.device("meta"):  # architecture only: no memory, no init cost
        model = create_model(name)
    return model.num_parameters(), model


@pytest.mark.parametrize("name", ["nlsn_x8", "ipt_x8", "didnet_x8"])
@pytest.mark.parametrize("size", [(27, 22), (54, 44)])
def test_x8_and_celeba_sizes(name, size):
    model = tiny(name).eval()
    with torch.no_grad():
        sr = model(torch.rand(1, 3, *size))
    assert sr.shape == (1, 3, 8 * size[0], 8 * size[1]) and torch.isfinite(sr).all()


# ==============================================================================================
# NLSN
# ==============================================================================================
def reference_nlsa(x, y, codes, chunk):
    """Loop-by-loop NLSA (upstream semantics): sort by bucket (ties by position), pad with the last
    sorted elements, attend to own + cyclically adjacent chunks with normalised keys, drop padded
    queries, combine rounds by softmax of each query's logsumexp."""
    n_img, length, _ = x.shape
    rounds = codes.shape[1]
    out = torch.zeros(n_img, length, y.shape[-1], dtype=x.dtype)
    for b in range(n_img):
        outs, lses = [], []
        for r in range(rounds):
            order = sorted(range(length), key=lambda i: (int(codes[b, r, i]), i))
            pad = (-length) % chunk
            seq = order + order[length - pad:] if pad else order
            n_chunks = len(seq) // chunk
            chunks = [seq[k * chunk:(k + 1) * chunk] for k in range(n_chunks)]
            o = torch.zeros(length, y.shape[-1], dtype=x.dtype)
            s = torch.zeros(length, dtype=x.dtype)
            for k in range(n_chunks):
                keys = chunks[k] + chunks[(k - 1) % n_chunks] + chunks[(k + 1) % n_chunks]
                k_vec = F.normalize(x[b, keys], dim=-1, eps=5e-5)
                for j, qi in enumerate(chunks[k]):
                    if k * chunk + j >= length:
                        continue  # a padded copy: its output is dropped
                    score = k_vec @ x[b, qi]
                    o[qi] = torch.softmax(score, 0) @ y[b, keys]
                    s[qi] = torch.logsumexp(score, 0)
            outs.append(o)
            lses.append(s)
        w = torch.softmax(torch.stack(lses), dim=0).unsqueeze(-1)  # (R, L, 1)
        out[b] = (torch.stack(outs) * w).sum(0)
    return out


def test_nlsa_sort_and_unsort_round_trip():
    torch.manual_seed(0)
    codes = torch.randint(0, 4, (2, 3, 50))  # many ties
    order, undo = sort_by_bucket(codes)
    s = codes.gather(-1, order)
    assert (s[..., 1:] >= s[..., :-1]).all()
    ties = s[..., 1:] == s[..., :-1]
    assert (order[..., 1:] > order[..., :-1])[ties].all(), "ties must keep position order (stable)"
    pos = torch.arange(50).expand(2, 3, 50)
    assert torch.equal(pos.gather(-1, order).gather(-1, undo), pos)


def test_nlsa_hash_codes_in_range_and_deterministic_in_eval():
    attn = NonLocalSparseAttention(16, chunk_size=10, n_hashes=4, reduction=4, eval_seed=3).eval()
    x = torch.randn(2, 95, 4)
    nb = attn.n_buckets(95)
    assert nb == 10  # 95 // 10 = 9 → rounded up to even
    codes = attn.hash(x, nb)
    assert codes.shape == (2, 4, 95) and codes.min() >= 0 and codes.max() < nb
    assert torch.equal(codes, attn.hash(x, nb))  # same input, same buckets (fixed rotation)
    # bucket counts follow upstream: min(L//chunk + parity, 128), never 0 for tiny inputs
    big = NonLocalSparseAttention(16, chunk_size=144)
    assert [big.n_buckets(n) for n in (120, 27 * 22, 32 * 32, 64 * 64, 10**6)] == [2, 4, 8, 28, 128]
    # train mode draws fresh rotations (upstream); eval rotations differ between modules' seeds
    attn.train()
    rot = lambda m: m.rotations(4, nb, "cpu", torch.float32)  # noqa: E731
    assert not torch.equal(rot(attn), rot(attn))
    other = NonLocalSparseAttention(16, chunk_size=10, eval_seed=4).eval()
    assert torch.equal(rot(attn.eval()), rot(attn)) and not torch.equal(rot(attn), rot(other))


def test_nlsa_single_chunk_equals_dense_attention():
    torch.manual_seed(0)
    attn = NonLocalSparseAttention(8, chunk_size=144, n_hashes=3, reduction=2)
    x, y = torch.randn(2, 30, 4, dtype=torch.float64), torch.randn(2, 30, 8, dtype=torch.float64)
    codes = torch.randint(0, 2, (2, 3, 30))
    dense = torch.softmax(x @ F.normalize(x, dim=-1, eps=5e-5).transpose(1, 2), dim=-1) @ y
    assert torch.allclose(attn.attend(x, y, codes), dense, atol=1e-10)


@pytest.mark.parametrize("length,chunk", [(63, 10), (40, 10), (25, 12)])
def test_nlsa_matches_brute_force(length, chunk):
    torch.manual_seed(length)
    attn = NonLocalSparseAttention(8, chunk_size=chunk, n_hashes=3, reduction=2)
    x, y = torch.randn(2, length, 4, dtype=torch.float64), torch.randn(2, length, 8, dtype=torch.float64)
    codes = torch.randint(0, 6, (2, 3, length))
    assert torch.allclose(attn.attend(x, y, codes), reference_nlsa(x, y, codes, chunk), atol=1e-10)


def test_nlsn_eval_is_reproducible_and_batch_independent():
    model = tiny("nlsn_x4").eval()
    lr = torch.rand(3, 3, 9, 11)  # L = 99 > chunk 16: several chunks, real hashing
    with torch.no_grad():
        a, b, single = model(lr), model(lr), model(lr[1:2])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], single, atol=1e-5)


def test_nlsn_default_chunk_on_small_and_celeba_inputs():
    model = tiny("nlsn_x8", chunk_size=144, n_hashes=4, n_feats=16).eval()
    with torch.no_grad():
        for size in [(12, 10), (27, 22)]:  # L = 120 < 144 (upstream crashes) and 594 (4 buckets)
            sr = model(torch.rand(1, 3, *size))
            assert sr.shape == (1, 3, 8 * size[0], 8 * size[1]) and torch.isfinite(sr).all()


def test_nlsn_default_config_matches_paper():
    n, model = default_params("nlsn_x4")
    cfg = model.config
    assert (cfg.n_resblocks, cfg.n_feats, cfg.res_scale, cfg.chunk_size, cfg.n_hashes, cfg.reduction) == (
        32, 256, 0.1, 144, 4, 4)
    c = 256
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    edsr = conv(3, c, 3) + 32 * 2 * conv(c, c, 3) + conv(c, c, 3) + 2 * conv(c, 4 * c, 3) + conv(c, 3, 3)
    nlsa = conv(c, c // 4, 3) + conv(c, c, 1)
    assert n == edsr + 5 * nlsa == 44_156_483  # EDSR (43.1 M) + 5 NLSA modules ≈ 44 M
    keys = model.state_dict().keys()
    for k in ["head.0.weight", "body.0.conv_match.0.weight", "body.0.conv_assembly.0.weight",
              "body.1.body.2.weight", "body.9.conv_match.0.weight", "body.36.conv_match.0.weight",
              "body.37.weight", "tail.0.0.weight", "tail.0.2.weight", "tail.1.weight"]:
        assert k in keys, k  # upstream's key layout (NLSA at 0, 9, 18, 27, 36; final conv at 37)
    assert sum(isinstance(m, NonLocalSparseAttention) for m in model.modules()) == 5


def test_nlsn_loads_upstream_layout_checkpoint(tmp_path):
    model = perturbed(tiny("nlsn_x4")).eval()
    upstream = {"module." + k: v for k, v in model.state_dict().items()}  # nn.DataParallel save
    upstream.update({"module." + k: v for k, v in upstream_mean_shift(1).items()})  # rgb_range 1
    torch.save(upstream, tmp_path / "model_x4.pt")
    loaded = create_model("nlsn_x4", checkpoint=tmp_path / "model_x4.pt", **MODELS.get("nlsn_x4").tiny).eval()
    lr = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))
    # a checkpoint trained with rgb_range 255 is refused with the fix in the message
    upstream.update({"module." + k: v for k, v in upstream_mean_shift(255).items()})
    torch.save(upstream, tmp_path / "model_255.pt")
    with pytest.raises(CheckpointError, match="rgb_range"):
        create_model("nlsn_x4", checkpoint=tmp_path / "model_255.pt", **MODELS.get("nlsn_x4").tiny)


# ==============================================================================================
# IPT
# ==============================================================================================
def test_ipt_position_encoding_native_and_resized(monkeypatch):
    model = tiny("ipt_x4").eval()  # tiny: patch_size 12 → a 4x4 native token grid
    body = model.body
    pos, query = body.grid_embeddings(4, 4)
    assert pos is body.position_encoding.pe.weight  # native grid: the learned table itself
    assert torch.equal(query, body.query_embed.weight[0].view(16, -1))
    pos, query = body.grid_embeddings(9, 8)  # CelebA x8: 27x22 → 27x24 → 9x8 tokens
    assert pos.shape == query.shape == (72, body.dim) and torch.isfinite(pos).all()

    calls = []
    real = F.interpolate
    spy = lambda *a, **k: calls.append(a[0].shape) or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(torch.nn.functional, "interpolate", spy)
    with torch.no_grad():
        model(torch.rand(1, 3, 12, 12))  # native 12x12 LR: nothing is resized
        assert not calls
        sr = model(torch.rand(1, 3, 27, 22))  # padded to 27x24, tables resized
    assert calls and sr.shape == (1, 3, 108, 88) and torch.isfinite(sr).all()


def test_ipt_default_config_and_native_grid():
    n, model = default_params("ipt_x4")
    cfg, body = model.config, model.body
    assert (cfg.n_feats, cfg.patch_dim, cfg.num_heads, cfg.num_layers, cfg.patch_size) == (64, 3, 12, 12, 48)
    assert body.dim == 576 and body.grid == 16 and model.size_multiple == 3
    assert len(body.encoder.layers) == len(body.decoder.layers) == 12
    assert body.position_encoding.pe.weight.shape == (256, 576)
    assert body.query_embed.weight.shape == (1, 256 * 576)
    assert 115.0e6 < n < 116.0e6  # one SR head/tail: 115.6 M (IPT is usually quoted at ~115.5 M)
    n8, model8 = default_params("ipt_x8")
    assert n8 - n == 64 * 256 * 9 + 256  # ×8 adds exactly one upsampling conv to the tail


def test_ipt_x8_tail_and_partial_load_from_x4(tmp_path):
    x8 = tiny("ipt_x8")
    shuffles = [m for m in x8.tail[0][0] if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == 3 and "tail.0.0.4.weight" in x8.state_dict()
    x4 = perturbed(tiny("ipt_x4"))
    missing = x8.load_pretrained_partial(x4.state_dict())
    assert missing == ["tail.0.0.4.bias", "tail.0.0.4.weight"]
    assert torch.equal(x8.body.position_encoding.pe.weight, x4.body.position_encoding.pe.weight)


def test_ipt_loads_upstream_layout_checkpoint(tmp_path):
    model = perturbed(tiny("ipt_x4")).eval()
    upstream = dict(model.state_dict())
    upstream["body.position_encoding.position_ids"] = torch.arange(16).expand(1, -1)
    upstream.update(upstream_mean_shift(255))  # IPT uses rgb_range 255
    torch.save(upstream, tmp_path / "IPT_sr4.pt")
    loaded = create_model("ipt_x4", checkpoint=tmp_path / "IPT_sr4.pt", **MODELS.get("ipt_x4").tiny).eval()
    lr = torch.rand(1, 3, 12, 9)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))
    # the multi-task pre-trained checkpoint (several heads) is refused with instructions
    heads = {k: v for k, v in model.state_dict().items() if k.startswith("head.0.")}
    upstream.update({k.replace("head.0.", "head.1."): v for k, v in heads.items()})
    torch.save(upstream, tmp_path / "IPT_pretrain.pt")
    with pytest.raises(CheckpointError, match="several task heads"):
        create_model("ipt_x4", checkpoint=tmp_path / "IPT_pretrain.pt", **MODELS.get("ipt_x4").tiny)


# ==============================================================================================
# DIDnet
# ==============================================================================================
def test_didnet_is_a_plain_generator_and_loads_checkpoints_from_before_loss_identity(tmp_path):
    """Its identity terms are the shared loss.identity (tests/test_identity_loss.py); checkpoints saved
    while DIDnet had its own hook carry five training-only config fields, which must still load."""
    model = perturbed(tiny("didnet_x4")).eval()
    assert not hasattr(model, "training_loss") and not hasattr(model, "identity_net")
    path = save_checkpoint(model, tmp_path / "old.pt")
    ck = torch.load(path, weights_only=True)
    ck["config"].update(use_identity_loss=True, identity_weight=0.1, discrimination_weight=0.1, temperature=0.1,
                        identity_size=112)
    torch.save(ck, path)
    loaded = create_model(checkpoint=path).eval()
    lr = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))


def test_didnet_default_size_and_prefixed_checkpoint(tmp_path):
    n, model = default_params("didnet_x4")
    assert 1.0e6 < n < 2.0e6  # assumed 64-ch, 16-block residual channel-attention generator: 1.53 M
    model = perturbed(tiny("didnet_x8")).eval()
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "g.pth")
    loaded = create_model("didnet_x8", checkpoint=tmp_path / "g.pth", **MODELS.get("didnet_x8").tiny).eval()
    lr = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))


def test_reported_sizes_are_sane():
    """The parameter counts quoted in the module docstrings."""
    assert math.isclose(default_params("ipt_x4")[0] / 1e6, 115.6, abs_tol=0.05)
    assert math.isclose(default_params("ipt_x8")[0] / 1e6, 115.8, abs_tol=0.05)
