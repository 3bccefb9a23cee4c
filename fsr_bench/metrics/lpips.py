"""LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package — or a clear refusal.

Why a wrapper: the ``lpips`` package ships only its small linear layers
(``lpips/weights/v0.1/alex.pth``); the AlexNet/VGG/SqueezeNet trunk is torchvision's ImageNet
model, downloaded on first use into ``$TORCH_HOME/hub/checkpoints/`` (default
``~/.cache/torch``). Offline, that download fails — and ``lpips.LPIPS(pnet_rand=True)`` or
``pretrained=False`` would "work" with random weights and give meaningless numbers. So:

* the trunk file is located (name and URL taken from torchvision's own weight enum, so they always
  agree with what torchvision will load) and, if absent, downloaded once when allowed;
* if it still is not there, :class:`MetricUnavailable` says which file, from which URL, into
  which folder;
* ``lpips.LPIPS`` is always built with ``pretrained=True, pnet_rand=False``, and afterwards every
  linear-layer tensor is compared with the shipped file (``lpips`` loads it with
  ``strict=False``, which would silently skip mismatched keys).

Inputs follow the LPIPS convention the field uses (field notes): net ``alex``, version 0.1, images
scaled to [-1, 1] — after the same 8-bit quantisation as PSNR/SSIM when ``quantize=True``.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import torch

from fsr_bench.data.io import to_uint8
from fsr_bench.errors import FsrBenchError

__all__ = [
    "LPIPSMetric",
    "MetricUnavailable",
    "backbone_path",
    "backbone_url",
    "lpips_available",
]

# LPIPS trunk name -> torchvision weight enum (whose IMAGENET1K_V1.url lpips ends up loading)
_TRUNK_WEIGHTS = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}
_VERSIONS = ("0.0", "0.1")
_DOWNLOAD_TIMEOUT_S = 60


class MetricUnavailable(FsrBenchError, RuntimeError):
    """A metric that cannot be computed correctly here (e.g. missing pretrained weights)."""


def _check_net(net: str, version: str) -> None:
    if net not in _TRUNK_WEIGHTS:
        raise ValueError(f"unknown LPIPS net {net!r}; valid: {', '.join(_TRUNK_WEIGHTS)}")
    if version not in _VERSIONS:
        raise ValueError(f"unknown LPIPS version {version!r}; valid: {', '.join(_VERSIONS)}")


def backbone_url(net: str = "alex") -> str:
    """URL of the torchvision ImageNet weights that ``lpips`` uses as its trunk."""
    _check_net(net, "0.1")
    import torchvision.models as tvm

    return getattr(tvm, _TRUNK_WEIGHTS[net]).IMAGENET1K_V1.url


def backbone_path(net: str = "alex") -> Path:
    """Where torch.hub caches the trunk: ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``.

    Resolved at call time via ``torch.hub.get_dir()``, so ``TORCH_HOME`` set later still counts.
    """
    filename = os.path.basename(urllib.parse.urlparse(backbone_url(net)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _linear_weights_path(net: str, version: str) -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"


def _missing_backbone_message(net: str, download_error: str | None) -> str:
    path, url = backbone_path(net), backbone_url(net)
    tried = f" Downloading it failed ({download_error})." if download_error else ""
    return (
        f"LPIPS ({net}) needs the torchvision ImageNet trunk weights file '{path.name}', which is"
        f" not in the torch hub cache {path.parent}.{tried} Download {url} on a machine with"
        f" internet access and put it in $TORCH_HOME/hub/checkpoints/ (here: {path.parent};"
        " TORCH_HOME defaults to ~/.cache/torch). LPIPS is never computed with random weights."
    )


def _package_problem(net: str, version: str) -> str | None:
    """Why the ``lpips`` package itself cannot serve ``net``/``version``, or None."""
    try:
        import lpips  # noqa: F401
    except ImportError as exc:
        return f"the 'lpips' package is not installed ({exc}); pip install lpips"
    linear = _linear_weights_path(net, version)
    if not linear.is_file():
        return f"the lpips package lacks its linear weights {linear}; reinstall lpips"
    return None


def lpips_available(net: str = "alex", version: str = "0.1") -> tuple[bool, str]:
    """Whether :class:`LPIPSMetric` can be built offline, and if not, why (no download tried)."""
    _check_net(net, version)
    problem = _package_problem(net, version)
    if problem:
        return False, problem
    if not backbone_path(net).is_file():
        return False, _missing_backbone_message(net, None)
    return True, f"LPIPS {net} v{version}: trunk {backbone_path(net)}"


def _hash_prefix(filename: str) -> str | None:
    """torch.hub's convention: ``name-<sha256 prefix>.pth``."""
    match = re.search(r"-([a-f0-9]{6,})\.", filename)
    return match.group(1) if match else None


def _download(url: str, dest: Path, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Atomic download with a timeout (torch.hub has none) and torch.hub's hash-prefix check."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        prefix = _hash_prefix(dest.name)
        if prefix and not digest.hexdigest().startswith(prefix):
            raise OSError(f"sha256 of the download does not start with {prefix}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


class LPIPSMetric:
    """Per-image LPIPS distance (lower = more similar) with guaranteed pretrained weights.

    ``allow_download``: fetch the trunk into the torch hub cache when it is missing (one try,
    60 s timeout). Raises :class:`MetricUnavailable` when the weights cannot be had.
    """

    def __init__(
        self,
        net: str = "alex",
        version: str = "0.1",
        device: str | torch.device = "cpu",
        allow_download: bool = True,
    ):
        _check_net(net, version)
        self.net, self.version, self.device = net, version, torch.device(device)
        problem = _package_problem(net, version)
        if problem:
            raise MetricUnavailable(problem)
        if not backbone_path(net).is_file():
            if not allow_download:
                raise MetricUnavailable(_missing_backbone_message(net, None))
            try:
                _download(backbone_url(net), backbone_path(net))
            except Exception as exc:  # URLError, timeout, hash mismatch, disk full ...
                raise MetricUnavailable(
                    _missing_backbone_message(net, f"{type(exc).__name__}: {exc}")
                ) from exc
        self.model = self._build()

    def _build(self) -> torch.nn.Module:
        import lpips

        try:
            with warnings.catch_warnings():  # lpips 0.1.4 calls torchvision's deprecated API
                warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*")
                model = lpips.LPIPS(
                    pretrained=True,
                    net=self.net,
                    version=self.version,
                    lpips=True,
                    pnet_rand=False,
                    pnet_tune=False,
                    verbose=False,
                )
        except Exception as exc:  # e.g. a truncated trunk file
            raise MetricUnavailable(
                f"building LPIPS ({self.net}) failed: {type(exc).__name__}: {exc}. If"
                f" {backbone_path(self.net)} is a partial download, delete it and fetch"
                f" {backbone_url(self.net)} again."
            ) from exc
        self._check_linear_weights(model)
        return model.to(self.device).eval()

    def _check_linear_weights(self, model: torch.nn.Module) -> None:
        """Fail unless every shipped linear-layer tensor was loaded (lpips uses strict=False)."""
        path = _linear_weights_path(self.net, self.version)
        expected = torch.load(path, map_location="cpu", weights_only=True)
        actual = model.state_dict()
        bad = [k for k, v in expected.items() if k not in actual or not torch.equal(actual[k], v)]
        if bad or not expected:
            raise MetricUnavailable(
                f"LPIPS linear weights from {path} did not load into the model (keys: {bad[:5]});"
                " the installed lpips package looks inconsistent — reinstall lpips"
            )

    def describe(self) -> dict[str, str]:
        return {"net": self.net, "version": self.version, "trunk": backbone_path(self.net).name}

    @torch.no_grad()
    def __call__(self, sr: torch.Tensor, hr: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """LPIPS of RGB images in [0, 1]: ``(3, H, W)`` → 0-d, ``(N, 3, H, W)`` → ``(N,)``."""
        if sr.shape != hr.shape or sr.ndim not in (3, 4) or sr.shape[-3] != 3:
            raise ValueError(
                f"LPIPS expects two RGB tensors of equal shape (3, H, W) or (N, 3, H, W); got"
                f" {tuple(sr.shape)} and {tuple(hr.shape)}"
            )
        single = sr.ndim == 3

        def to_model(x: torch.Tensor) -> torch.Tensor:
            x = x.unsqueeze(0) if single else x
            x = to_uint8(x).to(torch.float32) / 255.0 if quantize else x.to(torch.float32)
            return (x * 2.0 - 1.0).to(self.device)  # LPIPS input range [-1, 1]

        dist = self.model(to_model(sr), to_model(hr)).reshape(-1).to(torch.float64)  # (N,)
        return dist[0] if single else dist
