"""What every protocol kind shares: the model and run blocks, the hash, the label check, errors.

A protocol kind is a pydantic model with a literal ``kind`` field, registered with
:func:`register_protocol`; :mod:`fsr_bench.protocol` validates a file against the union of the
registered kinds (discriminated on ``kind``). Unknown keys are errors that name their dotted
location (``models.1.chekpoint``), because a typo that silently falls back to a default changes a
benchmark number.
"""
from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fsr_bench.config_io import ConfigInputError
from fsr_bench.naming import safe_filename
from fsr_bench.provenance import stable_hash
from fsr_bench.registry import Registry

__all__ = ["PROTOCOL_KINDS", "BaseProtocol", "ModelSpec", "ProtocolError", "RunSpec", "register_protocol"]


#: A protocol ``name`` (the default output folder ``runs/<name>``).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: File names the sample folders use themselves (a label may not become one of them).
SAMPLE_FILES = ("hr", "lr", "gallery")


def _label_file_name(label: str) -> str:
    """The file name a label becomes (:func:`fsr_bench.naming.safe_filename`), checked to be usable."""
    file = safe_filename(label)
    if not re.search(r"[A-Za-z0-9]", label) or file.startswith(".") or file.lower() in SAMPLE_FILES:
        raise ValueError(f"label {label!r} becomes the file name {file!r}, which is empty, hidden, '..' or used by "
                         f"the sample folders ({', '.join(SAMPLE_FILES)}); choose a `label` with letters or digits")
    return file


class ProtocolError(ConfigInputError):
    """A protocol file or override that cannot be used; the message says where and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ModelSpec(_Strict):
    # registered model name (`fsr-bench list models`), or a pretrained id MODEL.TAG with pretrained: true;
    # "" = the one the checkpoint names (filled in before any row runs: fsr_bench.run.preflight)
    name: str = ""
    checkpoint: str | None = None  # weights; required for any model with learned parameters
    pretrained: bool = False  # instead of a checkpoint: the model's registered weights (shipped or downloaded)
    label: str | None = None  # display name in tables; defaults to the registered name
    overrides: dict[str, Any] = Field(default_factory=dict)  # config fields, e.g. {kernel: bilinear}

    @model_validator(mode="after")
    def _one_source_of_weights(self) -> "ModelSpec":
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("give either checkpoint or pretrained: true, not both")
        if not self.name and self.checkpoint is None:
            raise ValueError("give `name` (a registered model: `fsr-bench list models`) or a `checkpoint` written "
                             "by `fsr-bench train`, which names its model")
        return self

    @property
    def display(self) -> str:
        return self.label or self.name


class RunSpec(_Strict):
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    batch_size: int = Field(8, ge=1)
    num_samples: int = Field(4, ge=0)  # images whose LR/SR/HR are saved for the visual grid
    seed: int = 0  # seeds the degradation (noise, JPEG, blur draws)
    limit: int | None = Field(None, ge=1)  # score only the first N images (smoke runs)
    flops: bool = True  # count GFLOPs/image with torch's FlopCounterMode (reconstruction only)
    # inference numerics (fsr_bench.models.precision); fp32 by default so benchmark numbers never move
    # silently — bf16 is a stated choice (benchmarks/precision_faces.py measures what it changes)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    channels_last: bool = False
    report: bool = True  # write report.md + figures at the end of the run


class BaseProtocol(_Strict):
    """Fields and checks of every kind. ``reserved_labels``: row labels a kind uses itself.

    Each kind declares its own ``models: list[ModelSpec]`` and ``run: RunSpec`` fields, in the order
    its files list them (pydantic puts inherited fields first, which would reorder protocol.yaml).
    """

    reserved_labels: ClassVar[tuple[str, ...]] = ()
    requires_models: ClassVar[bool] = True

    kind: str
    name: str
    description: str = ""

    @field_validator("models", check_fields=False)
    @classmethod
    def _unique_labels(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        if cls.requires_models and not models:
            raise ValueError("list at least one model")
        seen: dict[str, str] = {}  # file name (case-folded: some file systems are) -> label
        for m in models:
            if not m.display:  # named by its checkpoint: checked again once the name is read from it
                continue
            if m.display in cls.reserved_labels:
                raise ValueError(f"label {m.display!r} is reserved for a reference row; choose another `label`")
            if m.display in seen.values():
                raise ValueError(f"two models are labelled {m.display!r}; give one a distinct `label`")
            file = _label_file_name(m.display)
            if file.lower() in seen:
                raise ValueError(f"labels {seen[file.lower()]!r} and {m.display!r} both become the file name "
                                 f"{file!r} (models/<label>/, samples/<image>/<label>.png); give one a distinct "
                                 "`label`")
            seen[file.lower()] = m.display
        return models

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not SAFE_NAME.fullmatch(name) or set(name) <= {"."}:
            raise ValueError(f"{name!r} is not a safe folder name (it names runs/<name>): use letters, digits "
                             "and . _ + - only, starting with a letter or digit (no '/', '..' or absolute path)")
        return name

    def hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))

    def sr_scale(self) -> int | None:
        """The SR factor every model row must have (checked before any row runs); None: not fixed."""
        return None


PROTOCOL_KINDS: Registry[type[BaseProtocol]] = Registry(
    "protocol kind", "fsr_bench.protocols",
    builtin_modules=("fsr_bench.protocol.reconstruction", "fsr_bench.protocol.recognition",
                     "fsr_bench.protocol.face_size_sweep", "fsr_bench.protocol.footage"),
)


def register_protocol(cls: type[BaseProtocol]) -> type[BaseProtocol]:
    """Class decorator: register a protocol kind under the literal default of its ``kind`` field."""
    kind = cls.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__}.kind needs a literal default, e.g. kind: Literal['x'] = 'x'")
    PROTOCOL_KINDS.register(kind)(cls)
    return cls
