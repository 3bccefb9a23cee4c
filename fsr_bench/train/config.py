"""The typed training config: YAML file + ``--set a.b=c`` overrides, validated by pydantic.

Precedence: ``--set`` (and ``--out``/``--device``) > YAML > the defaults below, which are the
TANet paper's recipe (L1; Adam lr 2e-4, β = (0.9, 0.999), ε = 1e-8; lr × 0.5 every 60 epochs;
random 90/180/270° rotations and horizontal flips). Every section forbids unknown keys, and an
error names the dotted location (``data.bach_size``) and whether it came from ``--set``.

The paper leaves batch size, epochs and patch size open; our choices (stated in the protocol
files) are whole faces (``patch_size: null``), a global batch of 16 and 300 epochs.

``data.batch_size`` is the **global** batch (over all GPUs/processes): it is divided across the
``torchrun`` processes, so the recipe does not change with the number of GPUs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fsr_bench.config_io import (
    ConfigInputError,
    apply_sets,
    expand_env,
    format_validation_error,
    parse_set,
    read_yaml_mapping,
)

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "load_config", "parse_override"]


class ConfigError(ConfigInputError):
    """A training config that cannot be used; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    name: str  # a registered model (`fsr-bench list models`)
    checkpoint: Optional[str] = None  # initial weights (fine-tuning); --resume uses OUT/last.pt instead
    pretrained: bool = False  # initial weights: the registered pretrained ones (fine-tuning a shipped model)
    overrides: dict[str, Any] = Field(default_factory=dict)  # architecture config fields


class AugmentSection(_Section):
    hflip: bool = True  # paper: "flipped horizontally"
    rot90: bool = True  # paper: "randomly rotated by 90°, 180°, 270°"


class DataSection(_Section):
    data_root: Optional[str] = None  # value of ${FSR_BENCH_DATA} in paths; default: the env variable
    train: dict[str, Any]  # dataset block: {type: ffhq|celeba|faces256|folder, root, list_file, ...}
    val: Optional[dict[str, Any]] = None  # same form; validation PSNR/SSIM on it
    degradation: dict[str, Any] = Field(default_factory=lambda: {"type": "bicubic"})  # scale: model's
    lr_folder: Optional[str] = None  # pre-generated train LR: <lr_folder>/<hr relative name>.<png|...>
    val_lr_folder: Optional[str] = None  # pre-generated val LR, same layout
    patch_size: Optional[Union[int, tuple[int, int]]] = None  # HR pixels; null = whole images
    batch_size: int = Field(16, ge=1)  # global batch over all processes
    val_batch_size: int = Field(8, ge=1)  # per process
    workers: int = Field(4, ge=0)  # DataLoader worker processes per training process
    pin_memory: bool = True  # only used on CUDA
    augment: AugmentSection = Field(default_factory=AugmentSection)

    @field_validator("train", "val")
    @classmethod
    def _dataset_block(cls, v, info):
        if v is not None:
            from fsr_bench.data.folders import DatasetConfigError, check_dataset_spec

            try:
                check_dataset_spec(v, f"data.{info.field_name}")
            except DatasetConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("degradation")
    @classmethod
    def _degradation_block(cls, v):
        if "type" not in v:
            raise ValueError("needs a 'type' (e.g. {type: bicubic})")
        return v

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v):
        sizes = (v, v) if isinstance(v, int) else v
        if sizes is not None and min(sizes) < 1:
            raise ValueError(f"patch_size must be positive, got {v}")
        return v


class IdentitySection(_Section):
    weight: float = Field(0.1, gt=0)  # L = pixel + weight * (1 - cos(phi(SR), phi(HR)))
    # + infonce_weight * batch InfoNCE over SR-vs-HR embeddings (DIDnet's discrimination term); 0 = off
    infonce_weight: float = Field(0.0, ge=0)
    temperature: float = Field(0.1, gt=0)  # InfoNCE temperature tau
    recogniser: str = "mobilefacenet"  # frozen recogniser phi (fsr_bench.face registry; needs a PyTorch net)
    weights: Optional[str] = None  # its weights file (default: the recogniser's own resolution)
    landmarks_cache: Optional[str] = None  # folder for the HR landmark cache (default: $FSR_BENCH_HOME/landmarks)


class LossSection(_Section):
    pixel: Literal["l1", "mse", "charbonnier"] = "l1"  # paper: L1
    # identity-preserving term for any model, aligned by the HR face's landmarks (train/identity.py)
    identity: Optional[IdentitySection] = None
    weights: dict[str, float] = Field(default_factory=dict)  # term -> weight (pixel, identity*, a model's own)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, v):
        # DIDnet's private recogniser hook became loss.identity; resolved configs written before
        # (OUT/config.yaml) carry the keys as null, which still reads
        if isinstance(v, dict) and any(k in v for k in ("identity_net", "identity_weights")):
            v = dict(v)
            net, weights = v.pop("identity_net", None), v.pop("identity_weights", None)
            if net is not None or weights is not None:
                raise ValueError(
                    "identity_net / identity_weights were replaced by the identity loss every model uses:"
                    f" loss.identity: {{recogniser: {net or 'mobilefacenet'}, weights: {weights or '...'}, weight: 0.1,"
                    " infonce_weight: 0.1, temperature: 0.1}} (DIDnet's two terms: 1 - cos and batch InfoNCE)")
        return v


class OptimSection(_Section):
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    step_epochs: int = Field(60, ge=1)  # lr *= gamma every step_epochs epochs
    gamma: float = Field(0.5, gt=0)
    grad_clip: Optional[float] = Field(None, gt=0)  # max grad norm; null = off (paper: none)


class ScheduleSection(_Section):
    epochs: int = Field(300, ge=1)
    max_steps: Optional[int] = Field(None, ge=1)  # stop after this many optimizer steps in total
    max_minutes: Optional[float] = Field(None, gt=0)  # training-time budget, summed over resumes
    log_every: int = Field(50, ge=1)  # steps between loss/img-s syncs (no per-step host syncs)
    ckpt_every_minutes: Optional[float] = Field(15.0, gt=0)  # also write last.pt mid-epoch this often


class LogSection(_Section):
    csv: bool = True  # OUT/train_log.csv and OUT/val_log.csv
    tensorboard: bool = False  # OUT/tb (needs `pip install tensorboard`)
    progress: bool = True  # tqdm bar on rank 0


class TrainConfig(_Section):
    kind: Literal["train"] = "train"  # what `fsr-bench run` reads to point at `fsr-bench train`
    model: ModelSection
    data: DataSection
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype (fp16 adds a GradScaler)
    channels_last: bool = False  # NHWC memory format for model and inputs
    compile: bool = False  # torch.compile the training step
    deterministic: bool = False  # torch.use_deterministic_algorithms, cudnn.benchmark off
    seed: int = 0
    val_every: int = Field(1, ge=0)  # epochs between validations (0 = only at the end)
    val_every_steps: Optional[int] = Field(None, ge=1)  # additionally every N steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    cpu_threads: Optional[int] = Field(None, ge=1)  # torch intra-op threads per process; null = torch default
    out_dir: Optional[str] = None  # default: runs/<config file stem>
    log: LogSection = Field(default_factory=LogSection)

    @model_validator(mode="after")
    def _check(self):
        if self.data.val is None and (self.data.val_lr_folder is not None):
            raise ValueError("data.val_lr_folder is set but data.val is not")
        return self

    # -- convenience --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types (what checkpoints and OUT/config.yaml store)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# -- loading (fsr_bench.config_io: the reader protocols use too) ------------------------------------
def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (["a", "b"], yaml.safe_load("c")); an empty value is ``None``."""
    return parse_set(item, ConfigError)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` items to a nested dict (in place; returns it). Later items win."""
    apply_sets(raw, overrides, ConfigError)
    return raw


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read a YAML training config (or start from ``base``), apply ``--set`` items, validate.

    ``out_dir`` defaults to ``runs/<config stem>`` when the file does not set it.
    """
    raw: dict[str, Any] = dict(base or {})
    source = "(from --set)"
    if path is not None:
        p = Path(path)
        if not p.is_file() and len(p.parts) == 1:  # a bundled name: `fsr-bench train train_tanet_s_faces256_x4`
            from fsr_bench.protocol import bundled_protocols

            p = bundled_protocols().get(p.name.removesuffix(".yaml"), p)
        raw.update(read_yaml_mapping(p, ConfigError, "training config"))
        source = str(p)
        from fsr_bench.protocol import PROTOCOL_KINDS  # every registered kind, plug-ins included

        if isinstance(raw.get("kind"), str) and raw["kind"] in PROTOCOL_KINDS:
            raise ConfigError(f"{p} is a {raw['kind']} protocol, not a training config; run it with "
                              f"`fsr-bench run {p}`")
        if raw.get("out_dir") is None:
            raw["out_dir"] = str(Path("runs") / p.stem)
    overridden = apply_sets(raw, overrides, ConfigError)
    # ${VAR} in path keys (out_dir, checkpoints, weights); the data block's paths expand when the
    # datasets are built, where data.data_root stands in for ${FSR_BENCH_DATA}
    raw = {k: v if k == "data" else expand_env({k: v}, error=ConfigError)[k] for k, v in raw.items()}
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, TrainConfig, f"invalid training config {source}:",
                                                  overridden)) from None


#: Config paths that may differ between a run and its ``--resume`` (they do not change the maths).
RESUMABLE_CHANGES = (
    "kind",  # configs written before training files declared `kind: train`
    "schedule.",
    "log.",
    "out_dir",
    "device",
    "data.workers",
    "data.pin_memory",
    "data.val_batch_size",
    "data.data_root",
    "val_every",
    "compile",
    "cpu_threads",
)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def recipe_differences(run: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ and that a resume may not change (``key: run -> now``)."""
    a, b = _flatten(run), _flatten(now)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or key.startswith(p) for p in RESUMABLE_CHANGES):
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)):
            va, vb = list(va), list(vb)
        if va != vb:
            diffs.append(f"{key}: {va!r} -> {vb!r}")
    return diffs
