"""Typed protocol files: what ``fsr-bench run PROTOCOL.yaml`` reads.

One precedence everywhere: ``--set key=value`` on the command line > the YAML file > the defaults of
each kind (:mod:`~fsr_bench.protocol.reconstruction`, :mod:`~fsr_bench.protocol.recognition`, or a
plug-in registered with :func:`register_protocol`). The file's ``kind`` picks the schema (a pydantic
discriminated union; ``reconstruction`` when absent). Training configs declare ``kind: train`` and
are refused here with the command that runs them.

A protocol is named by a YAML path or, for the protocols that ship inside the package
(``fsr_bench/protocols/*.yaml``, one copy in git: the checkout's ``protocols/`` folder, which the
package links to and the wheel carries), by its bare name: ``fsr-bench run quickstart``. An existing
file wins over a bundled name.

Relative paths *inside* a protocol resolve against the current working directory, wherever the
YAML lives, bundled or not (never against the YAML's folder): ``fsr-bench run faces256_val_x4`` and
``fsr-bench run protocols/faces256_val_x4.yaml`` read the same ``../shared/...`` from a checkout's
root. From elsewhere, point a bundled protocol at the data with ``--set data.dataset.root=...`` or
its ``${VAR}`` (``${FSR_BENCH_DATA}/ffhq``; :mod:`fsr_bench.config_io`, shared with training); the
quickstart reads no files.
"""
from __future__ import annotations

import copy
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Sequence, Union

from pydantic import Field, TypeAdapter, ValidationError

from fsr_bench.config_io import apply_sets, expand_env, format_validation_error, read_yaml_mapping
from fsr_bench.protocol.base import PROTOCOL_KINDS, BaseProtocol, ModelSpec, ProtocolError, RunSpec, register_protocol
from fsr_bench.protocol.face_size_sweep import FaceSizeSweepProtocol
from fsr_bench.protocol.footage import FootageProtocol
from fsr_bench.protocol.recognition import RecognitionProtocol
from fsr_bench.protocol.reconstruction import ReconstructionProtocol

__all__ = [
    "PROTOCOL_KINDS",
    "BaseProtocol",
    "FaceSizeSweepProtocol",
    "FootageProtocol",
    "ModelSpec",
    "ProtocolError",
    "RecognitionProtocol",
    "ReconstructionProtocol",
    "RunSpec",
    "bundled_protocols",
    "find_protocol",
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


def bundled_protocols() -> dict[str, Path]:
    """The protocol (and training-config) files shipped inside the package, by name (file stem)."""
    folder = resources.files("fsr_bench") / "protocols"
    if not folder.is_dir():
        return {}
    return {f.name[: -len(".yaml")]: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def find_protocol(name: str | os.PathLike[str]) -> Path:
    """A protocol file: ``name`` itself when it is a file, else the bundled protocol of that name."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = bundled_protocols()
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if len(path.parts) == 1 and stem in bundled:
        return bundled[stem]
    near = difflib.get_close_matches(stem, sorted(bundled), n=5, cutoff=0.5)  # as the registries suggest
    raise ProtocolError(
        f"protocol file not found: {path}"
        + (f"; did you mean {', '.join(near)}?" if near else "")
        + f" Give a YAML path or a bundled name: {', '.join(n for n in sorted(bundled) if not n.startswith('train_'))}"
        " (`fsr-bench list protocols` lists them all, training configs included)"
    )


def load_protocol(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Any:
    """Read, override (``--set``) and validate a protocol named by path or bundled name."""
    path = find_protocol(path)
    return load_protocol_dict(read_yaml_mapping(path, ProtocolError, "protocol"), overrides, source=str(path))
