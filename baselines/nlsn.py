"""NLSN: Non-Local Sparse Network (EDSR backbone + Non-Local Sparse Attention).

Mei, Fan, Zhou, "Image Super-Resolution with Non-Local Sparse Attention", CVPR 2021.
Upstream: github.com/HarukiYqM/Non-Local-Sparse-Attention (``src/model/attention.py``,
``final_run/model/nlsn.py``, ``src/model/common.py``, ``src/demo.sh``). Rewritten here; facts taken
from those files:

* EDSR body: ``n_resblocks = 32``, ``n_feats = 256``, ``res_scale = 0.1``, 3x3 convs, ReLU, no BN;
  ``head`` = conv3x3(3→C); ``body`` = [NLSA, (ResBlock ×8, NLSA) ×4, conv3x3]; global residual
  ``body(x) + x``; ``tail`` = EDSR upsampler (PixelShuffle ×2 stages) + conv3x3(C→3).
* NLSA (``NonLocalSparseAttention``): ``conv_match`` = conv3x3(C→C/reduction), ``conv_assembly`` =
  conv1x1(C→C), ``reduction = 4``, ``chunk_size = 144``, ``n_hashes = 4``; spherical LSH by a
  random rotation ``R ∈ R^{C/r × hashes × b/2}``: code = argmax([xR, −xR]); buckets
  ``b = min(L//chunk + (L//chunk) % 2, 128)``; sort by code, cut into chunks of ``chunk_size``
  (padding the last with copies of the last elements), each query attends to keys of its own
  chunk and the two adjacent chunks (cyclic), score = ⟨q, k/‖k‖⟩ (eps 5e-5), softmax; the
  ``n_hashes`` rounds are combined with weights softmax(logsumexp of each round's scores);
  output ``ret * res_scale + input`` (``res_scale = 0.1`` as the blocks).
* Mean shift with the DIV2K mean and ``rgb_range = 1`` (``demo.sh`` trains/tests with
  ``--rgb_range 1``), so the network sees [0, 1] — our input convention needs no rescaling.
* Pretrained DIV2K models on Google Drive (README), for the paper's ×2/×3/×4; none for ×8.
  Training (``demo.sh``, ``option.py``): L1, Adam, lr 1e-4 halved at 200/400/600/800 epochs,
  batch 16, HR patch 96.

Deviations (documented, each a no-op where upstream works):

* **Deterministic hashing in eval.** Upstream draws fresh ``torch.randn`` rotations on every
  forward, also at test time, so the same image gives slightly different SR outputs run to run.
  A benchmark must reproduce, so in ``eval()`` each attention module draws its rotation from its
  own generator seeded with ``hash_seed + module index`` (on CPU, so CPU and GPU agree). In
  ``train()`` rotations are random as upstream. ``hash_seed=None`` restores upstream's random
  rotations in eval too.
* **Small inputs.** For ``L = h·w < chunk_size`` upstream computes 0 buckets and crashes (e.g. a
  12×10 LR). We use ``chunk = min(chunk_size, L)``: one chunk, i.e. exact dense non-local
  attention. For ``L ≥ chunk_size`` this is upstream's arithmetic unchanged.
* **Stable sort** inside buckets (upstream's ``sort`` is unstable on ties, so chunk borders could
  differ between runs/devices); ties are broken by position.
* MeanShift buffers are not saved (see ``baselines/common.py``); the key layout is otherwise
  upstream's, so :meth:`NLSN.convert_state_dict` only strips ``module.`` / ``model.`` prefixes and
  checks/drops the saved mean shift.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import MeanShift, ResBlock, Upsampler, default_conv, pop_mean_shift, strip_prefixes
from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class NLSNConfig:
    scale: int = 4
    n_resblocks: int = 32  # EDSR residual blocks (paper/demo.sh: 32)
    n_feats: int = 256  # channels (paper/demo.sh: 256)
    res_scale: float = 0.1  # residual scaling of blocks and attention (demo.sh: 0.1)
    attention_every: int = 8  # an NLSA module at the start and after every 8 blocks (nlsn.py)
    chunk_size: int = 144  # attention chunk (demo.sh: 144)
    n_hashes: int = 4  # hash rounds (demo.sh: 4)
    reduction: int = 4  # channel reduction of the matching embedding (nlsn.py: 4)
    rgb_range: float = 1.0  # upstream trains with --rgb_range 1
    hash_seed: int | None = 0  # eval-mode rotation seed (None: random every forward, as upstream)


# ----------------------------------------------------------------------------------------------
# Non-Local Sparse Attention
# ----------------------------------------------------------------------------------------------
def sort_by_bucket(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable sort of each hash round by bucket code.

    codes (N, R, L) → ``order`` (N, R, L) with ``codes.gather(-1, order)`` non-decreasing, and
    ``undo`` with ``sorted.gather(-1, undo)`` giving back the original order.
    """
    order = torch.sort(codes, dim=-1, stable=True).indices  # (N, R, L)
    undo = torch.argsort(order, dim=-1)  # inverse permutation, (N, R, L)
    return order, undo


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (N, R, L, C) or (N, L, C) indexed along L by index (N, R, L') → (N, R, L', C)."""
    if x.ndim == 3:
        x = x.unsqueeze(1).expand(-1, index.shape[1], -1, -1)
    return x.gather(2, index.unsqueeze(-1).expand(-1, -1, -1, x.shape[-1]))


def _with_adjacent_chunks(x: torch.Tensor) -> torch.Tensor:
    """(N, R, K, c, C) → (N, R, K, 3c, C): chunk k, then chunk k-1, then chunk k+1 (cyclic)."""
    return torch.cat([x, x.roll(1, dims=2), x.roll(-1, dims=2)], dim=3)


class NonLocalSparseAttention(nn.Module):
    """Non-Local Sparse Attention (NLSA) with spherical LSH; upstream ``attention.py`` semantics."""

    def __init__(
        self,
        channels: int,
        chunk_size: int = 144,
        n_hashes: int = 4,
        reduction: int = 4,
        res_scale: float = 1.0,
        k_size: int = 3,
        eval_seed: int | None = 0,
    ):
        super().__init__()
        self.chunk_size, self.n_hashes, self.reduction = chunk_size, n_hashes, reduction
        self.res_scale, self.eval_seed = res_scale, eval_seed
        # Sequential wrappers keep upstream's BasicBlock key layout: conv_match.0.weight
        self.conv_match = nn.Sequential(default_conv(channels, channels // reduction, k_size))
        self.conv_assembly = nn.Sequential(default_conv(channels, channels, 1))

    # -- hashing ------------------------------------------------------------------------------
    def effective_chunk(self, length: int) -> int:
        return min(self.chunk_size, length)

    def n_buckets(self, length: int) -> int:
        """Upstream's bucket count, with the chunk capped at ``length`` (always even, ≥ 2)."""
        k = length // self.effective_chunk(length)
        return min(k + k % 2, 128)

    def rotations(self, dim: int, n_buckets: int, device, dtype) -> torch.Tensor:
        """Random rotation (dim, n_hashes, n_buckets/2): fixed per module in eval, fresh in train."""
        shape = (dim, self.n_hashes, n_buckets // 2)
        if self.training or self.eval_seed is None:
            return torch.randn(shape, device=device, dtype=dtype)
        gen = torch.Generator(device="cpu").manual_seed(int(self.eval_seed))
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    def hash(self, x: torch.Tensor, n_buckets: int, rotations: torch.Tensor | None = None) -> torch.Tensor:
        """Bucket codes in [0, n_buckets) per round: x (N, L, c) → (N, n_hashes, L)."""
        if rotations is None:
            rotations = self.rotations(x.shape[-1], n_buckets, x.device, x.dtype)
        rotated = torch.einsum("nlc,crb->nrlb", x, rotations)  # (N, R, L, b/2), one R for the batch
        rotated = torch.cat([rotated, -rotated], dim=-1)  # (N, R, L, b)
        return rotated.argmax(dim=-1)  # (N, R, L)

    # -- attention ----------------------------------------------------------------------------
    def attend(self, x_embed: torch.Tensor, y_embed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Chunked attention given bucket codes.

        x_embed (N, L, c) matching features, y_embed (N, L, C) assembly features, codes (N, R, L)
        → (N, L, C): per round, queries attend to their own + adjacent chunks of the
        bucket-sorted sequence; rounds combined by softmax over each query's logsumexp score.
        """
        n, length, c = x_embed.shape
        rounds, cy = codes.shape[1], y_embed.shape[-1]
        chunk = self.effective_chunk(length)

        order, undo = sort_by_bucket(codes)  # (N, R, L) each
        xs = _gather_rows(x_embed, order)  # (N, R, L, c)
        ys = _gather_rows(y_embed, order)  # (N, R, L, C)
        pad = (-length) % chunk  # < chunk <= L: upstream repeats the last `pad` sorted elements
        if pad:
            xs = torch.cat([xs, xs[:, :, -pad:]], dim=2)  # (N, R, L+pad, c)
            ys = torch.cat([ys, ys[:, :, -pad:]], dim=2)  # (N, R, L+pad, C)
        n_chunks = (length + pad) // chunk
        queries = xs.view(n, rounds, n_chunks, chunk, c)  # (N, R, K, chunk, c)
        values = ys.view(n, rounds, n_chunks, chunk, cy)  # (N, R, K, chunk, C)
        keys = F.normalize(queries, p=2, dim=-1, eps=5e-5)  # (N, R, K, chunk, c)
        keys = _with_adjacent_chunks(keys)  # (N, R, K, 3*chunk, c)
        values = _with_adjacent_chunks(values)  # (N, R, K, 3*chunk, C)

        score = torch.einsum("nrkic,nrkjc->nrkij", queries, keys)  # (N, R, K, chunk, 3*chunk)
        lse = torch.logsumexp(score, dim=-1, keepdim=True)  # (N, R, K, chunk, 1)
        out = torch.einsum("nrkij,nrkjc->nrkic", torch.exp(score - lse), values)  # (N, R, K, chunk, C)

        out = out.reshape(n, rounds, -1, cy)[:, :, :length]  # (N, R, L, C), sorted order
        lse = lse.reshape(n, rounds, -1)[:, :, :length]  # (N, R, L)
        out = out.gather(2, undo.unsqueeze(-1).expand(-1, -1, -1, cy))  # (N, R, L, C), original order
        lse = lse.gather(2, undo)  # (N, R, L)
        weights = torch.softmax(lse, dim=1).unsqueeze(-1)  # (N, R, L, 1): combine hash rounds
        return (out * weights).sum(dim=1)  # (N, L, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x_embed = self.conv_match(x).flatten(2).transpose(1, 2)  # (N, L, C/r)
        y_embed = self.conv_assembly(x).flatten(2).transpose(1, 2)  # (N, L, C)
        codes = self.hash(x_embed.detach(), self.n_buckets(h * w))  # (N, R, L)
        out = self.attend(x_embed, y_embed, codes)  # (N, L, C)
        return out.transpose(1, 2).reshape(n, -1, h, w) * self.res_scale + x  # (N, C, H, W)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
class NLSN(SuperResolver):
    info = ModelInfo(
        paper="Mei, Fan, Zhou, Image Super-Resolution with Non-Local Sparse Attention, CVPR 2021",
        input_convention="native LR, RGB [0,1] (rgb_range 1), DIV2K mean shift inside",
        repo="https://github.com/HarukiYqM/Non-Local-Sparse-Attention",
        notes="eval hashing uses a fixed per-module rotation (hash_seed) so results reproduce; "
        "inputs with h*w < chunk_size use one chunk (upstream crashes); stable bucket sort",
    )

    def __init__(self, cfg: NLSNConfig):
        super().__init__(cfg.scale, cfg)
        c = cfg.n_feats
        self.sub_mean = MeanShift(cfg.rgb_range, sign=-1)
        self.add_mean = MeanShift(cfg.rgb_range, sign=+1)
        self.head = nn.Sequential(default_conv(3, c, 3))

        def nlsa(index: int) -> NonLocalSparseAttention:
            seed = None if cfg.hash_seed is None else cfg.hash_seed + index
            return NonLocalSparseAttention(
                c, cfg.chunk_size, cfg.n_hashes, cfg.reduction, cfg.res_scale, eval_seed=seed
            )

        body: list[nn.Module] = [nlsa(0)]
        for i in range(cfg.n_resblocks):
            body.append(ResBlock(c, 3, cfg.res_scale))
            if (i + 1) % cfg.attention_every == 0:
                body.append(nlsa(len(body)))
        body.append(default_conv(c, c, 3))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsampler(cfg.scale, c), default_conv(c, 3, 3))

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        r = self.config.rgb_range
        x = self.head(self.sub_mean(lr * r))  # (N, C, h, w)
        x = self.body(x) + x  # (N, C, h, w)
        return self.add_mean(self.tail(x)) / r  # (N, 3, s*h, s*w) in [0, 1]

    def convert_state_dict(self, state_dict):
        """Upstream ``model_x4.pt`` → ours: strip ``module.``/``model.``; check & drop mean shift.

        Every other key is identical (``head.0.*``, ``body.{i}.conv_match.0.*``,
        ``body.{i}.conv_assembly.0.*``, ``body.{i}.body.{0,2}.*``, ``tail.0.{0,2,4}.*``, ``tail.1.*``).
        """
        return pop_mean_shift(strip_prefixes(state_dict), self)


# ----------------------------------------------------------------------------------------------
# Registered variants
# ----------------------------------------------------------------------------------------------
_TINY = dict(n_resblocks=2, n_feats=8, attention_every=1, chunk_size=16, n_hashes=2)


def _nlsn(registered: int, **overrides) -> NLSN:
    overrides["scale"] = check_scale(overrides.get("scale", registered), registered)
    return NLSN(NLSNConfig(**overrides))


@register_model(tiny=_TINY)
def nlsn_x4(**overrides) -> NLSN:
    return _nlsn(4, **overrides)


@register_model(tiny=_TINY)
def nlsn_x8(**overrides) -> NLSN:
    """×8: three PixelShuffle stages; no upstream ×8 weights exist (train from scratch)."""
    return _nlsn(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# 8 blocks (upstream 32) of 48 channels (256), an attention module every 4 blocks (8).
_S = dict(n_resblocks=8, n_feats=48, attention_every=4)


@register_model(tiny=_TINY)
def nlsn_s_x4(**overrides) -> NLSN:
    """NLSN-S ×4 (reduced; see _S)."""
    return _nlsn(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def nlsn_s_x8(**overrides) -> NLSN:
    """NLSN-S ×8 (reduced; see _S)."""
    return _nlsn(8, **{**_S, **overrides})
