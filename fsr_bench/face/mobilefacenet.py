"""MobileFaceNet (Chen, Liu, Gao, Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", CCBR 2018, arXiv:1804.07573) — the recogniser of the TANet paper's
SCface experiment.

The module is written so that its ``state_dict`` keys equal those of the public weights of
foamliu/MobileFaceNet (Apache-2.0; release v1.0, ``mobilefacenet.pt``; trained on refined MS1M)
exactly — no key mapping — and loads them strictly with ``weights_only=True`` (no pickled code runs).
Layout (``shared/weights/mobilefacenet/MODEL.md``; 999,936 parameters):

    conv1     3×3 conv 3→64, stride 2 → BN → ReLU6                         112 → 56
    dw_conv   depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU          56
    features  15 inverted-residual blocks (t, c, n, s) = (2,64,5,2) (4,128,1,2)
              (2,128,6,1) (4,128,1,2) (2,128,2,1)                          56 → 7
    conv2     1×1 conv 128→512 → BN → ReLU6                                  7
    gdconv    7×7 depthwise "global depthwise" conv, no padding → BN         7 → 1
    conv3     1×1 conv 512→128 (bias) → bn BN(128) → flatten                 128-d

Input convention of these weights: RGB [0, 1], ImageNet mean/std normalisation (applied inside
:class:`MobileFaceNetRecogniser`), 112×112 aligned to the ArcFace 5-point template.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterable, cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fsr_bench.face import register_recogniser
from fsr_bench.face.recogniser import Recogniser
from fsr_bench.weights import WeightSpec, resolve_weights, sha256_file

__all__ = ["MobileFaceNet", "MobileFaceNetRecogniser", "MOBILEFACENET_WEIGHTS", "mobilefacenet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Upstream release asset; the same file as ``shared/weights/mobilefacenet/mobilefacenet.pt``.
MOBILEFACENET_WEIGHTS = WeightSpec(
    name="MobileFaceNet (foamliu/MobileFaceNet v1.0, refined MS1M)",
    url="https://github.com/foamliu/MobileFaceNet/releases/download/v1.0/mobilefacenet.pt",
    sha256="90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4",
    filename="mobilefacenet.pt",
    licence="Apache-2.0",
    source="https://github.com/foamliu/MobileFaceNet",
)

# (expansion t, output channels c, repeats n, first stride s) — Chen et al. 2018, Table 1
_BLOCK_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


# -- blocks ------------------------------------------------------------------------------------
class ConvBNReLU6(nn.Sequential):
    """conv → BN → ReLU6; a Sequential so its keys are ``<name>.0`` (conv) and ``<name>.1`` (BN)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


def _fold(conv: nn.Module, bn: nn.Module) -> tuple[nn.Conv2d, nn.Identity]:
    """Fold an eval-mode BN into the conv before it (same outputs up to float rounding)."""
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
        raise TypeError(f"cannot fold {type(bn).__name__} into {type(conv).__name__}")
    return fuse_conv_bn_eval(conv, bn), nn.Identity()


class DepthwiseSeparable(nn.Module):
    """The ``dw_conv`` stage: depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn1: nn.Module = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2: nn.Module = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))

    def fold_bn(self) -> None:
        self.depthwise, self.bn1 = _fold(self.depthwise, self.bn1)
        self.pointwise, self.bn2 = _fold(self.pointwise, self.bn2)


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck (Sandler et al. 2018): expand 1×1 → depthwise 3×3 → linear project.

    Keys: ``conv.0`` expand (conv, BN), ``conv.1`` depthwise (conv, BN), ``conv.2`` project conv,
    ``conv.3`` BN. Identity shortcut only when the shape is unchanged.
    """

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        if expansion == 1:  # never used by MobileFaceNet; an expand layer would change the keys
            raise ValueError("expansion 1 is not supported by this key layout")
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            ConvBNReLU6(cin, hidden, 1),
            ConvBNReLU6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y

    def fold_bn(self) -> None:
        for pair in cast("tuple[ConvBNReLU6, ConvBNReLU6]", (self.conv[0], self.conv[1])):
            pair[0], pair[1] = _fold(pair[0], pair[1])
        self.conv[2], self.conv[3] = _fold(self.conv[2], self.conv[3])


class GlobalDepthwise(nn.Module):
    """7×7 depthwise conv without padding: a learned, position-aware global pooling (GDConv)."""

    def __init__(self, channels: int, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))

    def fold_bn(self) -> None:
        self.depthwise, self.bn = _fold(self.depthwise, self.bn)


# -- the network -------------------------------------------------------------------------------
class MobileFaceNet(nn.Module):
    """The bare network: normalised ``(N, 3, 112, 112)`` → ``(N, embedding_dim)`` (unnormalised)."""

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        self.conv1 = ConvBNReLU6(3, 64, 3, stride=2)  # (N, 64, 56, 56)
        self.dw_conv = DepthwiseSeparable(64)  # (N, 64, 56, 56)
        blocks: list[nn.Module] = []
        cin = 64
        for t, c, n, s in _BLOCK_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*blocks)  # (N, 128, 7, 7)
        self.conv2 = ConvBNReLU6(cin, 512, 1)  # (N, 512, 7, 7)
        self.gdconv = GlobalDepthwise(512, 7)  # (N, 512, 1, 1)
        self.conv3 = nn.Conv2d(512, embedding_dim, 1, bias=True)  # (N, D, 1, 1)
        self.bn: nn.Module = nn.BatchNorm2d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_conv(self.conv1(x))
        x = self.conv2(self.features(x))
        x = self.bn(self.conv3(self.gdconv(x)))
        return torch.flatten(x, 1)  # (N, D)

    def inference_copy(self) -> "MobileFaceNet":
        """An eval-mode copy with every BN folded into its conv and channels-last memory layout.

        About 2× faster on CPU (depthwise convolutions are memory-bound; oneDNN prefers NHWC) with
        outputs equal to ``self`` within ~1e-5. Its state_dict no longer matches the release, so
        keep the original for saving and provenance.
        """
        net = copy.deepcopy(self).eval()
        for seq in (net.conv1, net.conv2):
            seq[0], seq[1] = _fold(seq[0], seq[1])
        net.dw_conv.fold_bn()
        for block in cast("Iterable[InvertedResidual]", net.features):
            block.fold_bn()
        net.gdconv.fold_bn()
        net.conv3, net.bn = _fold(net.conv3, net.bn)
        return net.to(memory_format=torch.channels_last)


# -- the recogniser ----------------------------------------------------------------------------
class MobileFaceNetRecogniser(Recogniser):
    """:class:`MobileFaceNet` behind the :class:`Recogniser` contract (ImageNet normalisation)."""

    def __init__(
        self,
        weights_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        flip: bool = True,
        batch_size: int = 64,
    ):
        path = Path(weights_path)
        super().__init__(
            embedding_dim=128,
            normalization=f"x in [0,1] RGB; (x - {IMAGENET_MEAN}) / {IMAGENET_STD} (ImageNet)",
            weights_path=str(path),
            weights_sha256=sha256_file(path),
            flip=flip,
            batch_size=batch_size,
            device=device,
        )
        self.net = MobileFaceNet(embedding_dim=128)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise RuntimeError(
                f"{path} is not a bare PyTorch state_dict (got {type(state).__name__}); "
                "MobileFaceNet expects foamliu's mobilefacenet.pt, not the TorchScript "
                "mobilefacenet_scripted.pt"
            )
        self.net.load_state_dict(state, strict=True)  # any missing/unexpected key is an error
        self.net.eval().to(self.device)
        self._fast = self.net.inference_copy()  # what forward_raw runs
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        x = ((aligned - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self._fast(x)


def _developer_copies() -> list[Path]:
    """The read-only ``shared`` folder beside a developer checkout or in CI (never in a wheel)."""
    rel = Path("weights") / "mobilefacenet" / "mobilefacenet.pt"
    candidates = []
    if os.environ.get("FSR_BENCH_SHARED"):
        candidates.append(Path(os.environ["FSR_BENCH_SHARED"]) / rel)
    repo_root = Path(__file__).resolve().parents[2]
    candidates.append(repo_root.parent / "shared" / rel)
    return candidates


@register_recogniser(name="mobilefacenet")
def mobilefacenet(
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    flip: bool = True,
    batch_size: int = 64,
) -> MobileFaceNetRecogniser:
    """Pretrained MobileFaceNet (128-d). Weights: ``weights`` > ``$FSR_BENCH_HOME/weights`` >
    ``$FSR_BENCH_SHARED``/``../shared`` (developers, CI) > download of the upstream release."""
    path = resolve_weights(MOBILEFACENET_WEIGHTS, weights, extra_paths=_developer_copies())
    return MobileFaceNetRecogniser(path, device=device, flip=flip, batch_size=batch_size)
