"""Typed protocol files: what ``fsr-bench run PROTOCOL.yaml`` reads.

One precedence everywhere: ``--set key=value`` on the command line > the YAML file > the defaults of
each kind (:mod:`~fsr_bench.protocol.reconstruction`, :mod:`~fsr_bench.protocol.recognition`, or a
plug-in registered with :func:`register_protocol`). The file's ``kind`` picks the schema (a pydantic
discriminated union; ``reconstruction`` when absent). Training configs declare ``kind: train`` and
are refused here with the command that runs them.

Paths in a protocol are relative to the current working directory; ``${VAR}`` expands environment
variables, e.g. ``${FSR_BENCH_DATA}/ffhq`` (see :mod:`fsr_bench.config_io`, shared with training).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Sequence, Union

from pydantic import Field, TypeAdapter, ValidationError

from fsr_bench.config_io import apply_sets, expand_env, format_validation_error, read_yaml_mapping
from fsr_bench.protocol.base import PROTOCOL_KINDS, BaseProtocol, ModelSpec, ProtocolError, RunSpec, register_protocol
from fsr_bench.protocol.face_size_sweep import FaceSizeSweepProtocol
from fsr_bench.protocol.recognition import RecognitionProtocol
from fsr_bench.protocol.reconstruction import ReconstructionProtocol

__all__ = [
    "PROTOCOL_KINDS",
    "BaseProtocol",
    "FaceSizeSweepProtocol",
    "ModelSpec",
    "ProtocolError",
    "RecognitionProtocol",
    "ReconstructionProtocol",
    "RunSpec",
    "load_protocol",
    "load_protocol_dict",
    "register_protocol",
]

TRAIN_KIND = "train"  # training configs (fsr_bench.train.config) share the files' folder and reader


def _adapter() -> tuple[TypeAdapter[Any], list[type[BaseProtocol]]]:
    kinds = [PROTOCOL_KINDS.get(k).builder for k in PROTOCOL_KINDS.names()]
    union = Annotated[Union[tuple(kinds)], Field(discriminator="kind")]  # type: ignore[valid-type]
    return TypeAdapter(union), kinds  # type: ignore[arg-type]  # a union built at run time


def load_protocol_dict(doc: dict[str, Any], overrides: Sequence[str] = (), source: str = "<dict>") -> Any:
    """Validate a protocol mapping after applying ``--set`` overrides (CLI > YAML > defaults)."""
    doc = copy.deepcopy(doc)
    if doc.get("kind") == TRAIN_KIND:
        raise ProtocolError(f"{source} is a training config (kind: train); run it with `fsr-bench train {source}`")
    overridden = apply_sets(doc, overrides, ProtocolError)
    doc = expand_env(doc, error=ProtocolError)
    doc.setdefault("kind", "reconstruction")
    kind = doc["kind"]
    if kind not in PROTOCOL_KINDS:
        raise ProtocolError(f"{source}: kind: {kind!r} is not one of {PROTOCOL_KINDS.names() + [TRAIN_KIND]}")
    adapter, _ = _adapter()
    try:
        return adapter.validate_python(doc)
    except ValidationError as exc:  # locations start with the kind tag; the user's keys do not
        schema = PROTOCOL_KINDS.get(kind).builder
        raise ProtocolError(format_validation_error(exc, schema, f"{source}: invalid protocol", overridden,
                                                    drop_loc_prefix=1)) from None


def load_protocol(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Any:
    path = Path(path)
    if not path.is_file():
        hint = ""
        if Path("protocols").is_dir():
            hint = f"; available: {', '.join(sorted(p.name for p in Path('protocols').glob('*.yaml')))}"
        raise ProtocolError(f"protocol file not found: {path}{hint}")
    return load_protocol_dict(read_yaml_mapping(path, ProtocolError, "protocol"), overrides, source=str(path))
