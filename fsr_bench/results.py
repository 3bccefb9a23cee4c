"""The results schema: what a run writes to ``OUT/results.json`` and what a report believes.

Written in one place (the runners build a :class:`RunResult` and call :func:`write_run`) and read in
one place (:func:`read_run`, used by :mod:`fsr_bench.reporting.load`). The CSV files beside it are
derived from the same objects with pandas, through the one column list per kind in :data:`COLUMNS`.

Compatibility: files written before rows carried a ``role`` read as before — a row is a
``reference`` when ``conventions.references`` declares its label, else a ``model``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError

__all__ = [
    "COLUMNS",
    "FaceRecord",
    "FootageLevel",
    "FootageResult",
    "FootageRow",
    "FrameRecord",
    "Kind",
    "OperatingPoint",
    "RESULT_KINDS",
    "ResultRow",
    "ResultsError",
    "Role",
    "Roc",
    "RunResult",
    "Sample",
    "read_footage",
    "read_run",
    "summary_frame",
    "frame",
    "write_csv",
    "write_run",
]

Kind = Literal["reconstruction", "recognition"]
#: model: a method under test; floor: a parameter-free interpolation (competes, but is a baseline);
#: reference: not a method (the HR upper bound, the raw LR input) — shown, never ranked for bold.
Role = Literal["model", "reference", "floor"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Number = int | Finite  # counts stay ints (n_probes: 8, not 8.0); scores are finite floats

#: The CSV columns of each kind, declared once (runners write them, the report checks them).
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "reconstruction": {
        "summary": ("model", "scale", "label", "psnr", "ssim", "lpips", "mps", "identity_cosine", "identity_angle",
                    "n_images", "params", "gflops", "images_per_s"),
        "per_image": ("model", "label", "image", "psnr", "ssim", "lpips", "identity_cosine", "identity_angle"),
    },
    "recognition": {
        "summary": ("model", "scale", "label", "matching_accuracy", "average_similarity", "detection_rate",
                    "rank1", "rank5", "rank20", "tar_at_far_1e-3", "eer", "n_probes"),
        "per_probe": ("label", "probe", "subject", "distance", "camera", "similarity", "detected", "matched",
                      "rank", "recogniser"),
    },
}
#: Metrics each row must carry as numbers (the rest may be null: unavailable, with a reason).
REQUIRED_METRICS: dict[str, tuple[str, ...]] = {
    "reconstruction": ("ssim",),
    "recognition": ("matching_accuracy", "detection_rate"),
}


class ResultsError(FsrBenchError, ValueError):
    """A results file that does not match the schema; the message names the file and field."""


class _Open(BaseModel):
    # extra keys are kept: a newer runner may add information an older reader need not understand
    model_config = ConfigDict(extra="allow")

    def __getitem__(self, key: str) -> Any:
        """``result["models"]``: read access by key, as for the plain dicts runners returned before."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


class Roc(_Open):
    far: list[Finite] = Field(default_factory=list)
    tar: list[Finite] = Field(default_factory=list)

    @model_validator(mode="after")
    def _same_length(self) -> "Roc":
        if len(self.far) != len(self.tar):
            raise ValueError(f"roc.far and .tar have different lengths ({len(self.far)} vs {len(self.tar)})")
        return self


class ResultRow(_Open):
    """One row of a run: a model, a floor or a reference, and its numbers."""

    label: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    role: Role = "model"
    scale: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    # what the weights cost (steps, epochs, train_minutes, device, precision, selected_step), from the
    # checkpoint or the shipped model's card; None for floors and weights nothing recorded
    training: dict[str, Any] | None = None
    metrics: dict[str, Number | None]
    unavailable: dict[str, str | None] = Field(default_factory=dict)
    # reconstruction
    params: int | None = None
    gflops: Finite | None = None
    images_per_s: Finite | None = None
    n_images: int | None = None
    n_infinite_psnr: int | None = None  # images identical to HR, left out of the mean PSNR
    n_mod_cropped: int | None = None
    n_identity_undetected: int | None = None  # images without a face detected on HR: no identity value
    work_key: str | None = None
    variant: str | None = None  # the model's reading of its paper (TANet: "patch tokens, …"), from the model
    # recognition
    ci95: dict[str, tuple[Finite, Finite]] = Field(default_factory=dict)
    per_distance: dict[str, dict[str, Number | None]] = Field(default_factory=dict)
    per_camera: dict[str, dict[str, Number | None]] = Field(default_factory=dict)
    roc: Roc = Field(default_factory=Roc)
    cmc: list[Finite] = Field(default_factory=list)
    n_gallery: int | None = None
    n_impostor_pairs: int | None = None
    work: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered_ci(self) -> "ResultRow":
        for key, (lo, hi) in self.ci95.items():
            if lo > hi:
                raise ValueError(f"ci95.{key} must be [lo, hi] with lo <= hi, got [{lo}, {hi}]")
        return self


class Sample(_Open):
    """One saved sample: ``samples/<folder>/`` holds the LR input, the reference and each row's output.

    ``image`` is the dataset's name of the image (or probe), as in per_image.csv / per_probe.csv;
    ``outputs`` maps row label -> file name inside the folder.
    """

    folder: str
    image: str
    lr: str | None = None
    reference: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


class RunResult(_Open):
    kind: Kind
    protocol_name: str = ""
    protocol_hash: str = ""
    protocol: dict[str, Any] = Field(default_factory=dict)
    conventions: dict[str, Any]
    provenance: dict[str, Any] = Field(default_factory=dict)
    gallery: dict[str, Any] | None = None
    models: Annotated[list[ResultRow], Field(min_length=1)]
    samples: list[Sample] | None = None  # None: written before the manifest existed (scan the folder)

    @model_validator(mode="before")
    @classmethod
    def _legacy_roles(cls, data: Any) -> Any:
        """Files without ``role``: the labels ``conventions.references`` declares are references."""
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            refs = (data.get("conventions") or {}).get("references") if isinstance(data.get("conventions"), dict) \
                else None
            declared = set(refs) if isinstance(refs, dict) else set()
            data = {**data, "models": [
                {**m, "role": "reference" if m.get("label") in declared else "model"}
                if isinstance(m, dict) and "role" not in m else m for m in data["models"]]}
        return data

    @model_validator(mode="after")
    def _required_metrics(self) -> "RunResult":
        labels = [m.label for m in self.models]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"duplicate model labels {duplicates}")
        for i, row in enumerate(self.models):
            for key in REQUIRED_METRICS[self.kind]:
                if key not in row.metrics:
                    raise _Missing(f"models[{i}] ({row.label!r}).metrics.{key}")
                if row.metrics[key] is None:
                    raise ValueError(f"models[{i}] ({row.label!r}).metrics.{key} is null but a number is required")
        return self

    @property
    def references(self) -> dict[str, str]:
        """Label -> description of the rows that are references, not methods."""
        described = self.conventions.get("references") or {}
        return {r.label: str(described.get(r.label, "reference")) for r in self.models if r.role == "reference"}


def shown_label(label: str, variant: str | None) -> str:
    """The label tables print: a row of a model with several readings (TANet's tokenisation) says which."""
    if variant and "token" in variant and "token" not in label.lower():
        return f"{label} ({variant.split(',')[0]})"
    return label


class _Missing(ValueError):
    """A required field is absent (reported as "missing field", as for any other field)."""


# -- writing ---------------------------------------------------------------------------------------
def write_run(out: Path, result: RunResult) -> Path:
    """``OUT/results.json`` from the schema (validated on the way out, as it is on the way in)."""
    doc = result.model_dump(mode="json", exclude_unset=True)  # the fields the runner set, in its order
    RunResult.model_validate(doc)
    return atomic.write_text(out / "results.json", json.dumps(doc, indent=2, sort_keys=False) + "\n")


def summary_frame(result: RunResult):  # -> pandas.DataFrame
    """The summary table of a run: one line per row, the kind's summary columns."""
    cols = COLUMNS[result.kind]["summary"]
    lines = []
    for r in result.models:
        fields = {"model": r.name, "scale": r.scale, "label": r.label, **r.metrics,
                  **{k: getattr(r, k) for k in ("n_images", "params", "gflops", "images_per_s")}}
        lines.append([fields.get(c) for c in cols])
    return frame(lines, cols)


def frame(lines: Iterable[Sequence[Any]], columns: Sequence[str]):  # -> pandas.DataFrame
    """A table of Python values kept as they are (object dtype: an int column with a missing value
    stays ints and None, never becomes floats and NaN)."""
    import pandas as pd

    return pd.DataFrame(list(lines), columns=list(columns), dtype=object)


#: The project's one CSV dialect (``DataFrame.to_csv`` arguments): results tables and training logs.
CSV_DIALECT: dict[str, Any] = {"index": False, "lineterminator": "\n", "na_rep": ""}


def write_csv(path: Path, table) -> Path:
    """A DataFrame as CSV, atomically; None cells are empty, values as ``str()`` writes them."""
    return atomic.write_text(path, table.to_csv(**CSV_DIALECT))


# -- reading ---------------------------------------------------------------------------------------
def _location(loc: Sequence[Any], data: Any) -> str:
    """``("models", 1, "metrics", "ssim")`` -> ``models[1] ('SPARNet').metrics.ssim``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
            if isinstance(node, dict) and isinstance(node.get("label"), str):
                out += f" ({node['label']!r})"
            continue
        if part in ("function-after", "function-before") or str(part).startswith("tuple["):
            continue
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out


def read_run(file: Path) -> RunResult:
    """Read and validate ``results.json``; every problem is a :class:`ResultsError` naming the field."""
    if not file.is_file():
        raise ResultsError(
            f"{file} not found: {file.parent} is not a finished fsr-bench run folder (expected"
            " results.json written by `fsr-bench run`; is the run still going, or is this the"
            " wrong folder?)"
        )
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); the file"
            " is corrupt or was cut off — re-run the protocol"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{file} must hold a JSON object, got {type(data).__name__}")
    try:
        return RunResult.model_validate_json(text)
    except ValidationError as exc:
        raise ResultsError(_explain(exc, data, file)) from None


def _explain(exc: ValidationError, data: Any, file: Path) -> str:
    err = exc.errors()[0]
    where = _location(err["loc"], data)
    msg = err["msg"].removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    if err["type"] == "missing" or isinstance(ctx.get("error"), _Missing):
        path = msg if isinstance(ctx.get("error"), _Missing) else where
        return (f"{file}: missing field {path!r}; the run folder is incomplete or from an incompatible"
                " fsr-bench version — re-run the protocol")
    if err["type"] == "finite_number" or (isinstance(err.get("input"), float) and not math.isfinite(err["input"])):
        return (f"{file}: {where} is {err.get('input')!r}; a non-finite score means the run is broken"
                " (refusing to report it as a number)")
    if err["type"] == "literal_error" and where == "kind":
        return f"{file}: kind must be 'reconstruction' or 'recognition', got {err.get('input')!r}"
    if where == "models" and err["type"] == "too_short":
        return f"{file}: 'models' must be a non-empty list"
    return f"{file}: {where + ': ' if where else ''}{msg} (got {err.get('input')!r})" if where else f"{file}: {msg}"


# -- frames: `fsr-bench sr --faces` ----------------------------------------------------------------
class FaceRecord(_Open):
    """One detected face of a frame (units and conventions: ``FrameRecord.conventions``)."""

    box_xyxy: Annotated[list[Finite], Field(min_length=4, max_length=4)]
    score: Finite
    landmarks_xy: Annotated[list[Annotated[list[Finite], Field(min_length=2, max_length=2)]],
                            Field(min_length=5, max_length=5)]
    inter_eye_px: Finite
    face_px: Finite
    track_id: int | None = None
    crop_xywh: Annotated[list[int], Field(min_length=4, max_length=4)]
    sr_file: str
    sr_size_wh: Annotated[list[int], Field(min_length=2, max_length=2)]
    paste_xywh: list[int] | None = None


class FrameRecord(_Open):
    """``OUT/<input>/frames/<index>.json``: every face of one frame, with the model (name, checkpoint
    sha256), precision, detector settings and provenance that produced its SR faces."""

    source: str
    frame_index: int
    time_s: Finite | None = None
    frame_size_wh: Annotated[list[int], Field(min_length=2, max_length=2)]
    n_faces: int
    faces: list[FaceRecord]
    model: dict[str, Any]
    precision: str
    detector: dict[str, Any]
    conventions: dict[str, Any]
    provenance: dict[str, Any]

    @model_validator(mode="after")
    def _count(self) -> "FrameRecord":
        if self.n_faces != len(self.faces):
            raise ValueError(f"n_faces is {self.n_faces} but {len(self.faces)} faces are listed")
        return self


# -- footage evaluation (kind: footage, fsr_bench.run.footage) -------------------------------------
class FootageLevel(_Open):
    """One row's identification answers at one level: ``track`` (a track's mean embedding) or
    ``face`` (each face on its own). Operating points are keyed by their label (``0.4``, ``cal 1e-3``)."""

    n: int  # tracks (faces) found in the footage
    n_mated: int  # of them, in identity folders that are on the watchlist
    rank1: Finite | None  # mated units whose best watchlist identity is their own; null without one
    tar: dict[str, Finite | None]  # mated units answered with their own identity at a score >= the threshold
    wrong_id: dict[str, Finite | None]  # all units answered with a wrong identity at a score >= the threshold
    ci95: dict[str, list[Finite]] = Field(default_factory=dict)  # "rank1", "tar@<op>", "wrong_id@<op>": [lo, hi]


class FootageRow(_Open):
    label: str
    name: str
    role: Literal["model", "reference"] = "model"
    scale: int
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    n_inputs: int  # clips and frames
    n_inputs_without_faces: int
    track: FootageLevel
    face: FootageLevel
    seconds: Finite


class OperatingPoint(_Open):
    label: str
    threshold: Finite
    source: dict[str, Any]  # stated, or the calibration run's FAR, hash and recogniser


class FootageResult(_Open):
    """``OUT/footage.json``: one identification table over labelled footage, every row through the
    same ``sr --faces`` pipeline and watchlist."""

    kind: Literal["footage"] = "footage"
    protocol_name: str
    protocol_hash: str
    protocol: dict[str, Any]
    conventions: dict[str, Any]
    provenance: dict[str, Any]
    watchlist: dict[str, Any]
    operating_points: Annotated[list[OperatingPoint], Field(min_length=1)]
    rows: Annotated[list[FootageRow], Field(min_length=1)]


#: every kind of result a runner writes: results.json's kinds (REQUIRED_METRICS) and footage.json's
RESULT_KINDS: tuple[str, ...] = (*REQUIRED_METRICS, "footage")


def read_footage(file: Path) -> FootageResult:
    """``footage.json`` back, or a :class:`ResultsError` naming the file and what is wrong."""
    try:
        return FootageResult.model_validate_json(Path(file).read_bytes())
    except OSError as exc:
        raise ResultsError(f"{file}: cannot be read ({exc.strerror or exc}); run the footage protocol first") from None
    except ValidationError as exc:
        raise ResultsError(f"{file}: not a footage result ({exc.errors()[0]['msg']} at "
                           f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}); rerun the protocol") from None
