"""Pretrained weights for registered super-resolvers: shipped inside the package, or published elsewhere.

A :class:`Pretrained` entry ties a registered model name to one weights file (half-precision
safetensors, verified by SHA-256 before every load) and to the architecture config it needs::

    create_model("tanet_s_x4", pretrained=True)          # the weights shipped with fsr-bench
    fsr-bench sr face.png                                 # the same, as the CLI's default model

Two sources, one resolver (:func:`fsr_bench.weights.resolve_weights`):

* **package data** — the files in this folder, listed in ``manifest.json`` (written by
  ``benchmarks/package_pretrained.py``, never by hand), each with a model card (``<name>.md``);
* **published elsewhere** — a plug-in registers ``Pretrained(model=..., weights=WeightSpec(url=...,
  sha256=...))`` with :func:`register_pretrained`; ``url`` may be ``https://…`` or a Hugging Face Hub
  reference ``hf://owner/repo/path/file.safetensors[@revision]``. The file is downloaded once into
  ``$FSR_BENCH_HOME/weights`` (checked, then renamed atomically); ``FSR_BENCH_OFFLINE=1`` forbids the
  download and the error says which file to put where.

Random weights are never substituted: a missing or mismatching file is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsr_bench.weights import WeightsError, WeightSpec, resolve_weights

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
HF_PREFIX = "hf://"


class PretrainedError(WeightsError):
    """No pretrained weights for a model, or they do not fit it."""


@dataclass(frozen=True)
class Pretrained:
    model: str  # registered model name the weights are for
    weights: WeightSpec  # file name, sha256, url ("" for package data), licence, source
    config: dict[str, Any] = field(default_factory=dict)  # architecture overrides the weights need
    card: str = ""  # model card: a package file name, or a URL
    packaged: bool = False  # True: the file lives in this folder (no download)
    summary: dict[str, Any] = field(default_factory=dict)  # what the card measured (for `list`)


_REGISTRY: dict[str, Pretrained] = {}


def hf_url(reference: str) -> str:
    """``hf://owner/repo/path/file[@rev]`` -> the Hub's direct download URL."""
    body = reference[len(HF_PREFIX):]
    body, _, revision = body.partition("@")
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise PretrainedError(
            f"{reference!r}: a Hugging Face reference is hf://OWNER/REPO/PATH/TO/FILE[@REVISION]")
    owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
    return f"https://huggingface.co/{owner}/{repo}/resolve/{revision or 'main'}/{path}"


def register_pretrained(entry: Pretrained, replace: bool = False) -> Pretrained:
    """Make ``create_model(entry.model, pretrained=True)`` load ``entry``'s weights."""
    if entry.model in _REGISTRY and not replace:
        raise PretrainedError(f"pretrained weights for {entry.model!r} are already registered")
    if entry.weights.url.startswith(HF_PREFIX):
        entry = Pretrained(entry.model, WeightSpec(
            name=entry.weights.name, url=hf_url(entry.weights.url), sha256=entry.weights.sha256,
            filename=entry.weights.filename, licence=entry.weights.licence,
            source=entry.weights.source or entry.weights.url), entry.config, entry.card,
            entry.packaged, entry.summary)
    if not entry.weights.sha256:
        raise PretrainedError(f"pretrained weights for {entry.model!r} need a sha256 (none given)")
    _REGISTRY[entry.model] = entry
    return entry


def _load_manifest() -> None:
    if not MANIFEST.is_file():
        return
    for row in json.loads(MANIFEST.read_text())["weights"]:
        spec = WeightSpec(name=f"fsr-bench {row['model']} ({row['file']})", url="", sha256=row["sha256"],
                          filename=row["file"], licence=row.get("licence", ""), source="fsr-bench package data")
        register_pretrained(Pretrained(row["model"], spec, row.get("config", {}), row.get("card", ""),
                                       packaged=True, summary=row.get("summary", {})), replace=True)


_load_manifest()


def list_pretrained() -> dict[str, Pretrained]:
    return dict(sorted(_REGISTRY.items()))


def get_pretrained(model: str) -> Pretrained:
    if model not in _REGISTRY:
        have = ", ".join(_REGISTRY) or "none"
        raise PretrainedError(
            f"no pretrained weights are registered for {model!r} (available: {have}). Pass a checkpoint "
            "instead (--checkpoint / models.N.checkpoint), or train one with `fsr-bench train`.")
    return _REGISTRY[model]


def weights_path(entry: Pretrained) -> Path:
    """Local, SHA-256-verified path of ``entry``'s file (package folder, cache, or a download)."""
    if entry.packaged:
        return resolve_weights(entry.weights, explicit_path=HERE / entry.weights.filename)
    return resolve_weights(entry.weights)


def load_state_dict(entry: Pretrained) -> dict[str, Any]:
    """The weights as float32 tensors (shipped in float16 to stay small)."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(weights_path(entry)))
    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}


def card_text(entry: Pretrained) -> str:
    path = HERE / entry.card if entry.packaged and entry.card else None
    return path.read_text() if path and path.is_file() else entry.card
