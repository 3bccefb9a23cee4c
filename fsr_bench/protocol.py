"""Typed protocol files: what ``fsr-bench run PROTOCOL.yaml`` reads.

One precedence everywhere: ``--set key=value`` on the command line > the YAML file > the defaults
below. Unknown keys are errors that name their dotted location (``models.1.chekpoint``), because a
typo that silently falls back to a default changes a benchmark number.

Paths in a protocol are relative to the current working directory (run from the repository root,
as the README does); ``${VAR}`` expands environment variables, e.g. ``${FSR_BENCH_DATA}/ffhq``.
"""
from __future__ import annotations

from fsr_bench.errors import FsrBenchError

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fsr_bench.provenance import stable_hash


class ProtocolError(FsrBenchError, ValueError):
    """A protocol file or override that cannot be used; the message says where and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ModelSpec(_Strict):
    name: str  # registered model name (`fsr-bench list models`)
    checkpoint: str | None = None  # weights; required for any model with learned parameters
    label: str | None = None  # display name in tables; defaults to the registered name
    overrides: dict[str, Any] = Field(default_factory=dict)  # config fields, e.g. {kernel: bilinear}

    @property
    def display(self) -> str:
        return self.label or self.name


class MetricsSpec(_Strict):
    y_channel: bool = True  # PSNR/SSIM on Y of ITU-R BT.601 (MATLAB rgb2ycbcr), else on RGB
    crop_border: int | None = None  # pixels cut from each border before scoring; None = the scale
    quantize: bool = True  # round SR to 8 bits before scoring, as if saved to PNG
    lpips: bool = True  # LPIPS (alex, v0.1) and MPS; unavailable offline -> marked, never invented
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    lpips_version: Literal["0.1"] = "0.1"


class RunSpec(_Strict):
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    batch_size: int = Field(8, ge=1)
    num_samples: int = Field(4, ge=0)  # images whose LR/SR/HR are saved for the visual grid
    seed: int = 0  # seeds the degradation (noise, JPEG, blur draws)
    limit: int | None = Field(None, ge=1)  # score only the first N images (smoke runs)
    flops: bool = True  # count GFLOPs/image with torch's FlopCounterMode
    report: bool = True  # write report.md + figures at the end of the run


class DataSpec(_Strict):
    dataset: dict[str, Any]  # "type + kwargs" block, see fsr_bench.data.datasets
    degradation: dict[str, Any]  # "type + kwargs" block, see fsr_bench.data.degradations


class ReconstructionProtocol(_Strict):
    kind: Literal["reconstruction"] = "reconstruction"
    name: str
    description: str = ""
    data: DataSpec
    models: list[ModelSpec]
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    @field_validator("models")
    @classmethod
    def _unique_labels(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        if not models:
            raise ValueError("list at least one model")
        seen: set[str] = set()
        for m in models:
            if m.display in seen:
                raise ValueError(f"two models are labelled {m.display!r}; give one a distinct `label`")
            seen.add(m.display)
        return models

    def hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


def _recognition_protocol():  # late import keeps the face stack out of reconstruction runs
    from fsr_bench.recognition_protocol import RecognitionProtocol

    return RecognitionProtocol


KINDS = {"reconstruction": lambda: ReconstructionProtocol, "recognition": _recognition_protocol}
Protocol = Union[ReconstructionProtocol, Any]


# ----------------------------------------------------------------------------------------------
# Loading: YAML -> env expansion -> --set overrides -> validation
# ----------------------------------------------------------------------------------------------
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, where: str = "") -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string; an unset VAR is a clear error."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ProtocolError(
                f"{where}: environment variable {var} is not set; export {var}=/path/to/data "
                f"(or override the key with --set {where}=...)"
            )

        return _ENV.sub(sub, value)
    return value


def parse_set(item: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a","b","0","c"], yaml-typed value)."""
    if "=" not in item:
        raise ProtocolError(f"--set {item!r}: expected key=value, e.g. --set run.batch_size=4")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ProtocolError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ProtocolError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
    return key.strip().split("."), value


def apply_set(doc: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = doc
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if part.isdigit() and int(part) == len(node):  # models.N.name=… appends a new item
                node.append([] if nxt.isdigit() else {})
            try:
                node = node[int(part)]
            except (ValueError, IndexError) as exc:
                raise ProtocolError(f"--set {'.'.join(path)}: no list item {part!r}") from exc
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        idx = int(last)
        if idx == len(node):
            node.append(value)
        elif 0 <= idx < len(node):
            node[idx] = value
        else:
            raise ProtocolError(f"--set {'.'.join(path)}: list index {idx} out of range")
    else:
        node[last] = value


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid protocol"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key (check the spelling; see the protocol schema in fsr_bench/protocol.py)" \
            if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_protocol_dict(doc: dict[str, Any], overrides: list[str] = (), source: str = "<dict>"):
    """Validate a protocol mapping after applying ``--set`` overrides (CLI > YAML > defaults)."""
    doc = copy.deepcopy(doc)
    for item in overrides:
        path, value = parse_set(item)
        apply_set(doc, path, value)
    doc = expand_env(doc)
    kind = doc.get("kind", "reconstruction")
    if kind not in KINDS:
        raise ProtocolError(f"{source}: kind: {kind!r} is not one of {sorted(KINDS)}")
    cls = KINDS[kind]()
    try:
        return cls.model_validate(doc)
    except ValidationError as exc:
        raise ProtocolError(format_validation_error(exc, source)) from None


def load_protocol(path: str | os.PathLike, overrides: list[str] = ()):
    path = Path(path)
    if not path.is_file():
        hint = ""
        if Path("protocols").is_dir():
            hint = f"; available: {', '.join(sorted(p.name for p in Path('protocols').glob('*.yaml')))}"
        raise ProtocolError(f"protocol file not found: {path}{hint}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProtocolError(f"{path}: a protocol is a mapping of keys, got {type(doc).__name__}")
    return load_protocol_dict(doc, overrides, source=str(path))
