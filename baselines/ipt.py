"""IPT: Image Processing Transformer (one super-resolution head/tail).

Chen, Wang, Guo, Xu, Deng, Liu, Ma, Xu, Xu, Gao, "Pre-Trained Image Processing Transformer",
CVPR 2021 (arXiv:2012.00364). Upstream: github.com/huawei-noah/Pretrained-IPT (``model/ipt.py``,
``model/common.py``, ``option.py``, ``model/__init__.py``). Rewritten here; facts from those files:

* ``n_feats = 64``, ``patch_dim = 3`` → token = one 3×3 patch of the 64-channel feature map,
  flattened: embedding 64·3·3 = 576; ``num_heads = 12``; ``num_layers = 12`` encoder **and** 12
  decoder layers; MLP hidden 4·576 = 2304; ReLU; pre-norm LayerNorm; attention without bias
  (``nn.MultiheadAttention(bias=False)``); dropout 0; ``patch_size = 48`` (LR training crop, so
  the learned position encoding covers a 16×16 token grid); ``rgb_range = 255``; DIV2K mean shift.
* Head (per task): conv3x3(3→64) + 2 ResBlocks with **5×5** kernels. Tail (per task): EDSR
  upsampler + conv3x3(64→3). Body: ``linear_encoding`` (+ residual), learned position encoding
  added once at the encoder input, decoder self- and cross-attention with the task's **query
  embedding** (a learned per-position table, ``num_queries × (tokens·576)``) added to queries/keys
  (the memory keys carry no position), ``mlp_head`` (+ residual), fold back; ``body(x) + x``.
* Released weights (README, Google Drive): SR ×2/×3/×4 (one head/tail each, loaded with the
  default ``num_queries = 1``), denoising, deraining, and the multi-task ``IPT_pretrain.pt``
  whose ``body.query_embed.weight`` is (6, 147456) (issue huawei-noah/Pretrained-IPT#23).
  **There is no ×8 weight**: ``ipt_x8`` has a three-stage tail; a ×4 checkpoint fills everything
  but its third upsampling conv (``tail.0.0.4``), see :meth:`IPT.load_pretrained_partial`.

How we handle other LR sizes (the benchmark's 64×64, 32×32, 54×44, 27×22 …) — a deviation:

* Upstream only ever runs 48×48 LR crops: at test time ``forward_chop`` tiles the image into
  overlapping 48×48 crops. We instead run the whole (padded) LR image in one pass: LR is padded
  to a multiple of ``patch_dim`` (``size_multiple = 3``, done by the base class; 27×22 → 27×24,
  54×44 → 54×45) and the learned position encoding **and** the query embedding (both 16×16 token
  grids) are resized bicubically to the actual token grid (``pos_interpolation``). At the native
  48×48 input both are used unchanged (bit-exact upstream arithmetic).
* MeanShift buffers are not saved; ``body.position_encoding.position_ids`` (an ``arange`` buffer)
  is not stored either. :meth:`IPT.convert_state_dict` drops/validates both and strips prefixes.
* Upstream ablation flags (``--no_norm``, ``--no_mlp``, ``--pos_every``, ``--no_pos``) are not
  ported: the released SR models use none of them.

Parameters (one ×4 head/tail, 1 query): 115.6 M (IPT is usually quoted at ≈115 M); ×8: 115.8 M.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import MeanShift, ResBlock, Upsampler, default_conv, pop_mean_shift, strip_prefixes
from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale
from fsr_bench.models.checkpoint import CheckpointError


@dataclass
class IPTConfig:
    scale: int = 4
    n_feats: int = 64  # feature channels (option.py: 64)
    patch_dim: int = 3  # token = patch_dim x patch_dim patch; embedding = n_feats * patch_dim^2 (576)
    num_heads: int = 12  # (option.py: 12)
    num_layers: int = 12  # encoder layers = decoder layers (option.py: 12)
    mlp_ratio: int = 4  # transformer MLP hidden = 4 * embedding (ipt.py)
    patch_size: int = 48  # LR crop the position/query tables were learned for (option.py: 48)
    num_queries: int = 1  # task query embeddings (1 in the released SR weights)
    dropout_rate: float = 0.0  # (option.py: 0)
    rgb_range: float = 255.0  # (option.py: 255)
    pos_interpolation: str = "bicubic"  # how the 16x16 tables are resized to other token grids


# ----------------------------------------------------------------------------------------------
# Transformer (DETR-style, pre-norm, sequence-first (L, N, E) as upstream)
# ----------------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, bias=False)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1, self.dropout2 = (nn.Dropout(dropout) for _ in range(3))
        nn.init.kaiming_uniform_(self.self_attn.in_proj_weight, a=math.sqrt(5))  # as upstream

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        x = self.norm1(src)  # (L, N, E)
        src = src + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0])
        x = self.linear2(self.dropout(F.relu(self.linear1(self.norm2(src)))))
        return src + self.dropout2(x)  # (L, N, E)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, bias=False)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, bias=False)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(4))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(tgt)  # (L, N, E)
        q = x + query_pos
        tgt = tgt + self.dropout1(self.self_attn(q, q, x, need_weights=False)[0])
        x = self.norm2(tgt)
        x = self.multihead_attn(x + query_pos, memory, memory, need_weights=False)[0]
        tgt = tgt + self.dropout2(x)
        x = self.linear2(self.dropout(F.relu(self.linear1(self.norm3(tgt)))))
        return tgt + self.dropout3(x)  # (L, N, E)


class TransformerEncoder(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerDecoder(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory, query_pos)
        return x


class LearnedPositionalEncoding(nn.Module):
    """Upstream's ``pe`` table (one row per token of the native grid)."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.pe = nn.Embedding(num_positions, dim)


def resize_grid_table(table: torch.Tensor, grid: int, size: tuple[int, int], mode: str) -> torch.Tensor:
    """A (grid*grid, E) per-token table (row-major grid) → (gh*gw, E) for another token grid.

    Unchanged (the very same tensor) when the size is the native grid.
    """
    gh, gw = size
    if (gh, gw) == (grid, grid):
        return table
    dim = table.shape[-1]
    t = table.reshape(grid, grid, dim).permute(2, 0, 1).unsqueeze(0)  # (1, E, grid, grid)
    kw = {} if mode in ("nearest", "area") else {"align_corners": False}
    t = F.interpolate(t, size=(gh, gw), mode=mode, **kw)  # (1, E, gh, gw)
    return t.squeeze(0).permute(1, 2, 0).reshape(gh * gw, dim)  # (gh*gw, E)


class VisionTransformer(nn.Module):
    """IPT body: tokens = 3x3 patches of the feature map; encoder + task-query decoder; fold back."""

    def __init__(self, cfg: IPTConfig):
        super().__init__()
        if cfg.patch_size % cfg.patch_dim:
            raise ValueError(
                f"patch_size ({cfg.patch_size}) must be a multiple of patch_dim ({cfg.patch_dim})"
            )
        dim = cfg.n_feats * cfg.patch_dim**2  # flattened patch = embedding (576)
        if dim % cfg.num_heads:
            raise ValueError(f"embedding {dim} must be divisible by num_heads ({cfg.num_heads})")
        hidden = dim * cfg.mlp_ratio
        self.patch_dim, self.dim = cfg.patch_dim, dim
        self.grid = cfg.patch_size // cfg.patch_dim  # 16 tokens per side at 48x48
        self.pos_interpolation = cfg.pos_interpolation
        num_tokens = self.grid**2

        self.linear_encoding = nn.Linear(dim, dim)
        self.mlp_head = nn.Sequential(
            nn.Linear(dim, hidden), nn.Dropout(cfg.dropout_rate), nn.ReLU(),
            nn.Linear(hidden, dim), nn.Dropout(cfg.dropout_rate),
        )
        self.query_embed = nn.Embedding(cfg.num_queries, dim * num_tokens)  # one table per task
        self.encoder = TransformerEncoder(
            [EncoderLayer(dim, cfg.num_heads, hidden, cfg.dropout_rate) for _ in range(cfg.num_layers)]
        )
        self.decoder = TransformerDecoder(
            [DecoderLayer(dim, cfg.num_heads, hidden, cfg.dropout_rate) for _ in range(cfg.num_layers)]
        )
        self.position_encoding = LearnedPositionalEncoding(num_tokens, dim)
        self.dropout_layer1 = nn.Dropout(cfg.dropout_rate)

    def grid_embeddings(self, gh: int, gw: int, query_idx: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Position encoding and task query embedding for a gh x gw token grid: (L, E) each."""
        pos = self.position_encoding.pe.weight  # (grid^2, E)
        query = self.query_embed.weight[query_idx].view(-1, self.dim)  # (grid^2, E)
        resize = lambda t: resize_grid_table(t, self.grid, (gh, gw), self.pos_interpolation)  # noqa: E731
        return resize(pos), resize(query)

    def forward(self, x: torch.Tensor, query_idx: int = 0) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.patch_dim
        tokens = F.unfold(x, p, stride=p).permute(2, 0, 1)  # (L, N, E): row-major 3x3 patches
        tokens = self.dropout_layer1(self.linear_encoding(tokens)) + tokens  # (L, N, E)
        pos, query = self.grid_embeddings(h // p, w // p, query_idx)  # (L, E) each
        memory = self.encoder(tokens + pos.unsqueeze(1))  # (L, N, E)
        query_pos = query.unsqueeze(1).expand(-1, n, -1)  # (L, N, E)
        out = self.decoder(memory, memory, query_pos)  # (L, N, E)
        out = self.mlp_head(out) + out  # (L, N, E)
        return F.fold(out.permute(1, 2, 0), (h, w), p, stride=p)  # (N, C, H, W)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
class IPT(SuperResolver):
    info = ModelInfo(
        paper="Chen et al., Pre-Trained Image Processing Transformer, CVPR 2021",
        input_convention="native LR, RGB [0,255] (rgb_range 255) with DIV2K mean shift inside; "
        "LR padded to a multiple of 3",
        repo="https://github.com/huawei-noah/Pretrained-IPT",
        notes="one SR head/tail/query; whole-image inference with bicubically resized position and "
        "query tables instead of upstream's 48x48 tiling; x8 tail has no released weights",
    )

    def __init__(self, cfg: IPTConfig):
        super().__init__(cfg.scale, cfg)
        c = cfg.n_feats
        self.size_multiple = cfg.patch_dim
        self.sub_mean = MeanShift(cfg.rgb_range, sign=-1)
        self.add_mean = MeanShift(cfg.rgb_range, sign=+1)
        # ModuleLists of one task keep upstream's keys: head.0.*, tail.0.*
        self.head = nn.ModuleList(
            [nn.Sequential(default_conv(3, c, 3), ResBlock(c, 5), ResBlock(c, 5))]
        )
        self.body = VisionTransformer(cfg)
        self.tail = nn.ModuleList([nn.Sequential(Upsampler(cfg.scale, c), default_conv(c, 3, 3))])

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        r = self.config.rgb_range
        x = self.head[0](self.sub_mean(lr * r))  # (N, 64, h, w), h, w multiples of 3
        x = self.body(x, query_idx=0) + x  # (N, 64, h, w)
        return self.add_mean(self.tail[0](x)) / r  # (N, 3, s*h, s*w) in [0, 1]

    def convert_state_dict(self, state_dict):
        """Upstream ``IPT_sr4.pt`` → ours.

        Strips ``module.``/``model.``; drops ``body.position_encoding.position_ids`` (an arange);
        checks and drops ``sub_mean``/``add_mean``. All other keys are upstream's. A multi-task
        checkpoint (``IPT_pretrain.pt``: several heads/tails, ``num_queries = 6``) is refused with
        a clear message: extract one task's ``head.k``/``tail.k``/query row first.
        """
        sd = strip_prefixes(state_dict)
        sd.pop("body.position_encoding.position_ids", None)
        extra_heads = sorted({k.split(".")[1] for k in sd if k.startswith(("head.", "tail."))} - {"0"})
        if extra_heads:
            raise CheckpointError(
                f"this IPT checkpoint holds several task heads/tails (indices 0, {', '.join(extra_heads)}):"
                " it is the multi-task pre-trained model. fsr-bench's IPT has one SR head/tail; copy the"
                " wanted task's head.k.* / tail.k.* to index 0 and body.query_embed.weight[k] to a 1-row"
                " table, then load that."
            )
        return pop_mean_shift(sd, self)

    def load_pretrained_partial(self, state_dict) -> list[str]:
        """Load an upstream checkpoint whose tail may be shorter (×4 weights into ``ipt_x8``).

        Returns the keys left at their initialisation (e.g. ``tail.0.0.4.weight``); every key that
        is loaded must match in shape. Use this to fine-tune ×8 from ``IPT_sr4.pt``.
        """
        sd = self.convert_state_dict(dict(state_dict))
        own = self.state_dict()
        bad = [k for k in sd if k not in own or own[k].shape != sd[k].shape]
        if bad:
            raise CheckpointError(f"keys that do not fit this IPT: {bad[:5]}")
        missing = sorted(set(own) - set(sd))
        if any(not k.startswith("tail.") for k in missing):
            raise CheckpointError(f"only tail keys may be missing; missing: {missing[:5]}")
        self.load_state_dict(sd, strict=False)
        return missing


# ----------------------------------------------------------------------------------------------
# Registered variants
# ----------------------------------------------------------------------------------------------
_TINY = dict(n_feats=4, num_heads=2, num_layers=1, mlp_ratio=2, patch_size=12)


def _ipt(registered: int, **overrides) -> IPT:
    overrides["scale"] = check_scale(overrides.get("scale", registered), registered)
    return IPT(IPTConfig(**overrides))


@register_model(tiny=_TINY)
def ipt_x4(**overrides) -> IPT:
    return _ipt(4, **overrides)


@register_model(tiny=_TINY)
def ipt_x8(**overrides) -> IPT:
    """×8: a new three-stage tail (upstream released ×2/×3/×4 only)."""
    return _ipt(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# 16 features (upstream 64; token embedding 144 vs 576), 1 encoder + 1 decoder layer (12 + 12), 4 heads (12), MLP 2x (4x); no ImageNet pre-training.
_S = dict(n_feats=16, num_heads=4, num_layers=1, mlp_ratio=2)


@register_model(tiny=_TINY)
def ipt_s_x4(**overrides) -> IPT:
    """IPT-S ×4 (reduced; see _S)."""
    return _ipt(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def ipt_s_x8(**overrides) -> IPT:
    """IPT-S ×8 (reduced; see _S)."""
    return _ipt(8, **{**_S, **overrides})
