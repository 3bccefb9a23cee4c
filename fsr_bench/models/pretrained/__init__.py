"""Pretrained weights for registered super-resolvers: shipped inside the package, or published elsewhere.

A :class:`Pretrained` entry ties a registered model name to one weights file (half-precision
safetensors, verified by SHA-256 before every load) and to the architecture config it needs::

    create_model("tanet_s_x4", pretrained=True)          # the weights shipped with fsr-bench
    create_model("srfbn_s_x8.compute20", pretrained=True) # one of several weights of a model: MODEL.TAG
    fsr-bench sr face.png                                 # the default: the best shipped model at x4

**Pretrained ids** follow timm: ``MODEL`` or ``MODEL.TAG`` (``.`` never occurs in a model name). A
bare model name resolves to its untagged weights, or to its only tagged ones; with several tags it
must be named in full (a protocol row never changes weights because another tag shipped).

**The default model** for a scale (:func:`default_pretrained`) is a rule over the registered
entries, never a hard-coded name: the one with the highest PSNR on ``faces256_val_x<scale>`` as
recorded in its manifest row (ties: the smaller id), among entries scored on that protocol.

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

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

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
    tag: str = ""  # "" or the TAG of the pretrained id MODEL.TAG (several weights of one model)

    @property
    def id(self) -> str:
        return f"{self.model}.{self.tag}" if self.tag else self.model


_REGISTRY: dict[str, Pretrained] = {}  # pretrained id -> entry
DEFAULT_PROTOCOL = "faces256_val_x{scale}"  # the split whose PSNR chooses `fsr-bench sr`'s default


def parse_id(pretrained_id: str) -> tuple[str, str]:
    """``"srfbn_s_x8.compute20"`` -> ``("srfbn_s_x8", "compute20")``; ``"tanet_s_x4"`` -> (…, "")."""
    model, _, tag = pretrained_id.partition(".")
    if not model or (_ and not tag) or "." in tag or not all(c.isalnum() or c in "_-" for c in model + tag):
        raise PretrainedError(f"{pretrained_id!r} is not a pretrained id: use MODEL or MODEL.TAG "
                              "(letters, digits, '_' and '-'; one '.' between model and tag)")
    return model, tag


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
    """Make ``create_model(entry.id, pretrained=True)`` load ``entry``'s weights."""
    parse_id(entry.id)
    if "." in entry.model:
        raise PretrainedError(f"Pretrained(model={entry.model!r}): give the tag as tag=, not inside the model name")
    if entry.id in _REGISTRY and not replace:
        raise PretrainedError(f"pretrained weights {entry.id!r} are already registered")
    if entry.weights.url.startswith(HF_PREFIX):
        entry = dataclasses.replace(entry, weights=dataclasses.replace(
            entry.weights, url=hf_url(entry.weights.url), source=entry.weights.source or entry.weights.url))
    if not entry.weights.sha256:
        raise PretrainedError(f"pretrained weights {entry.id!r} need a sha256 (none given)")
    _REGISTRY[entry.id] = entry
    return entry


def read_manifest(path: Path = MANIFEST) -> list[Pretrained]:
    """The entries of a package manifest (``benchmarks/package_pretrained.py`` writes it)."""
    try:
        rows = json.loads(path.read_text())["weights"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PretrainedError(f"{path}: not a pretrained-weights manifest ({type(exc).__name__}: {exc}); "
                              "rewrite it with benchmarks/package_pretrained.py") from None
    entries = []
    for i, row in enumerate(rows):
        try:  # a malformed row (a bad sha256, a missing key) is named, never a traceback at import
            model, tag = parse_id(row.get("id") or row["model"])  # rows from before pretrained ids: id = model
            spec = WeightSpec(name=f"fsr-bench {row.get('id') or model} ({row['file']})", url="",
                              sha256=row["sha256"], filename=row["file"], licence=row.get("licence", ""),
                              source="fsr-bench package data")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PretrainedError(f"{path}: weights[{i}] is malformed ({type(exc).__name__}: {exc}); reinstall "
                                  "fsr-bench (or rewrite the manifest with benchmarks/package_pretrained.py)") from None
        entries.append(Pretrained(model, spec, row.get("config", {}), row.get("card", ""), packaged=True,
                                  summary=row.get("summary", {}), tag=tag))
    return entries


for _entry in read_manifest() if MANIFEST.is_file() else ():
    register_pretrained(_entry, replace=True)


def list_pretrained() -> dict[str, Pretrained]:
    """Pretrained id -> entry, sorted by id."""
    return dict(sorted(_REGISTRY.items()))


def get_pretrained(name: str) -> Pretrained:
    """The entry of a pretrained id; a bare model name: its untagged weights, or its only tagged ones."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    model, tag = parse_id(name)
    tagged = sorted(i for i, e in _REGISTRY.items() if e.model == model)
    if not tag and len(tagged) == 1:
        return _REGISTRY[tagged[0]]
    if not tag and tagged:
        raise PretrainedError(f"{model!r} has several pretrained weights ({', '.join(tagged)}): name one "
                              "(`fsr-bench list models --pretrained` shows them)")
    have = ", ".join(_REGISTRY) or "none"
    raise PretrainedError(
        f"no pretrained weights are registered for {name!r} (available: {have}). Pass a checkpoint "
        "instead (--checkpoint / models.N.checkpoint), or train one with `fsr-bench train`.")


def val_psnr(entry: Pretrained, scale: int) -> float | None:
    """The entry's recorded PSNR on ``faces256_val_x<scale>`` (None when it was scored on anything else)."""
    summary = entry.summary or {}
    protocol = Path(str(summary.get("eval_protocol") or "")).stem
    if protocol != DEFAULT_PROTOCOL.format(scale=scale) or not isinstance(summary.get("psnr"), (int, float)):
        return None
    return float(summary["psnr"])


def entry_scale(entry: Pretrained) -> int | None:
    scale = (entry.config or {}).get("scale")
    return int(scale) if isinstance(scale, (int, float)) else None


def default_pretrained(scale: int, entries: Iterable[Pretrained] | None = None) -> Pretrained:
    """``fsr-bench sr``'s model at ``scale``: the highest recorded faces256 val PSNR (ties: smaller id)."""
    pool = list(_REGISTRY.values()) if entries is None else list(entries)
    scored = [(val_psnr(e, scale), e) for e in pool if entry_scale(e) == scale]
    ranked = sorted(((p, e) for p, e in scored if p is not None), key=lambda pe: (-pe[0], pe[1].id))
    if not ranked:
        have = ", ".join(e.id for e in pool) or "none"
        raise PretrainedError(
            f"no pretrained x{scale} weights with a recorded {DEFAULT_PROTOCOL.format(scale=scale)} PSNR "
            f"(registered: {have}); name a model with -m, or give a checkpoint with -c")
    return ranked[0][1]


def default_reason(entry: Pretrained, scale: int, entries: Iterable[Pretrained] | None = None) -> str:
    """One line saying why ``entry`` is the default at ``scale`` (model card, `list models`)."""
    pool = list(_REGISTRY.values()) if entries is None else list(entries)
    others = [(val_psnr(e, scale), e.id) for e in pool if entry_scale(e) == scale and e.id != entry.id]
    beaten = ", ".join(f"{i} {p:.2f}" for p, i in sorted(others, key=lambda x: -(x[0] or -1e9)) if p is not None)
    return (f"default for `fsr-bench sr --scale {scale}`: highest {DEFAULT_PROTOCOL.format(scale=scale)} PSNR "
            f"among the shipped x{scale} weights ({val_psnr(entry, scale):.2f} dB"
            + (f"; {beaten}" if beaten else "") + ")")


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
