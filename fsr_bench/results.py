"""The results schema: what a run writes to ``OUT/results.json`` and what a report believes.

Written in one place (the runners build a :class:`RunResult` and call :func:`write_run`) and read in
one place (:func:`read_run`, used by :mod:`fsr_bench.reporting.load`). The CSV files beside it are
derived from the same objects with pandas, through the one column list per kind in :data:`COLUMNS`.

The schema is closed: every field a runner writes is declared here (``extra="forbid"``), rows are
typed by the run's kind (:class:`ReconstructionRow`, :class:`RecognitionRow`), and a recognition row's
operating points are a structured :class:`OperatingPoints`, read by field. Files carry
``schema_version``; :func:`migrate` brings an older file to the current version (one step per
version) before it is validated, so committed runs stay readable:

* version 1 (no ``schema_version``): rows without ``role`` are ``reference`` rows when
  ``conventions.references`` declares their label, else ``model`` rows; operating points were flat
  metric columns (``tar_cal_1e-3``, ``tpir20_fpir_0.1``, ``far_at_0.4_vs_Bicubic`` …), parsed here
  into :class:`OperatingPoints` (:meth:`OperatingPoints.from_columns`; :meth:`~OperatingPoints.columns`
  gives the same columns back, value for value).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Sequence

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "CalibratedPoint",
    "FaceRecord",
    "FootageLevel",
    "FootageResult",
    "FootageRow",
    "FpirPoint",
    "FrameRecord",
    "Kind",
    "OperatingPoint",
    "OperatingPoints",
    "RESULT_KINDS",
    "RecogniserScores",
    "RecognitionRow",
    "ReconstructionRow",
    "ResultRow",
    "ResultsError",
    "Role",
    "Roc",
    "RunResult",
    "Sample",
    "ThresholdPoint",
    "migrate",
    "op_column",
    "rate_tag",
    "read_footage",
    "read_run",
    "tar_at_far_key",
    "summary_frame",
    "frame",
    "write_csv",
    "write_run",
]

Kind = Literal["reconstruction", "recognition"]
#: model: a method under test; floor: a parameter-free interpolation (competes, but is a baseline);
#: reference: not a method (the HR upper bound, the raw LR input) — shown, never ranked for bold.
Role = Literal["model", "reference", "floor"]
def _a_number(value: Any) -> Any:
    """Numbers are numbers: ``true`` or ``"0.3"`` in a results file is an error, never read as 1.0 or 0.3
    (pydantic's lax mode would convert them; its strict mode would also refuse the lists of ci95)."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"must be a number, got {type(value).__name__} {value!r}")
    return value


Finite = Annotated[float, BeforeValidator(_a_number), Field(allow_inf_nan=False)]
# counts stay ints (n_probes: 8, not 8.0); scores are finite floats
Number = Annotated[int | Annotated[float, Field(allow_inf_nan=False)], BeforeValidator(_a_number)]

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


#: The version :func:`write_run` writes; :func:`migrate` reads every older one.
SCHEMA_VERSION: Literal[2] = 2


class _Strict(BaseModel):
    # closed: a field no runner declares is a typo or a file from another program, never a number
    # to believe (a newer schema says so through its schema_version instead)
    model_config = ConfigDict(extra="forbid")

    def __getitem__(self, key: str) -> Any:
        """``result["models"]``: read access by key, as for the plain dicts runners returned before."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


class Roc(_Strict):
    far: list[Finite] = Field(default_factory=list)
    tar: list[Finite] = Field(default_factory=list)

    @model_validator(mode="after")
    def _same_length(self) -> "Roc":
        if len(self.far) != len(self.tar):
            raise ValueError(f"roc.far and .tar have different lengths ({len(self.far)} vs {len(self.tar)})")
        return self


# -- operating points (computed by fsr_bench.metrics.operating_points) -------------------------------
def rate_tag(x: float) -> str:
    """Column-name spelling of a rate: ``1e-3`` → ``"1e-3"``, ``0.3`` → ``"0.3"`` (as ``tar_at_far_1e-3``)."""
    k = round(math.log10(x)) if x > 0 else 0
    if x > 0 and k <= -2 and math.isclose(x, 10.0 ** k, rel_tol=1e-9):
        return f"1e{k}"
    return f"{x:g}"


def tar_at_far_key(far: float) -> str:
    """The metric column of TAR at a target FAR on the row's own ROC (``tar_at_far_1e-3``)."""
    return f"tar_at_far_{rate_tag(far)}"


def op_column(field: str | None, where: Literal["cal", "at", "fpir"], x: float, *, rank: int | None = None,
              ref: str | None = None) -> str:
    """The flat column of one operating-point value: ``op_column("tar", "cal", 1e-3)`` → ``tar_cal_1e-3``;
    ``where``: at a calibrated FAR ``x``, at the fixed threshold ``x``, at the threshold giving FPIR ``x``."""
    tag = f"{x:g}" if where == "at" else rate_tag(x)
    name = f"{field}{rank or ''}_{where}_{tag}" if field else f"{where}_{tag}"
    return f"{name}_vs_{ref}" if ref else name


class ThresholdPoint(_Strict):
    """One threshold applied unchanged to a row's evaluation scores (accept ``score >= threshold``).

    ``far``: share of impostor comparisons accepted (system level: undetected faces stay in the
    denominator); ``wrong_id``: share of probes whose rank-1 subject is a wrong one at or above the
    threshold; ``*_vs``: reference label → this row's rate over the reference row's (``None`` where
    undefined; why in :attr:`OperatingPoints.unavailable`).
    """

    threshold: Finite
    far: Finite | None
    n_false_accepts: int
    wrong_id: Finite | None
    n_wrong_id: int
    far_vs: dict[str, Finite | None] = Field(default_factory=dict)
    wrong_id_vs: dict[str, Finite | None] = Field(default_factory=dict)


class CalibratedPoint(ThresholdPoint):
    """The threshold calibrated for ``target_far`` on disjoint HR-vs-HR scores, applied to this row;
    ``fpir``/``tpir`` (rank → rate): open-set search at that threshold, when some probes are unmated."""

    target_far: Finite
    tar: Finite | None
    fnmr: Finite | None
    fpir: Finite | None = None
    tpir: dict[int, Finite] = Field(default_factory=dict)


class FpirPoint(_Strict):
    """Open-set 1:N search at the threshold giving ``target_fpir`` on this row's unmated probes."""

    target_fpir: Finite
    threshold: Finite
    fpir: Finite
    tpir: dict[int, Finite]  # rank -> TPIR (DIR at rank 1)


class OperatingPoints(_Strict):
    """A recognition row's transferred operating points (fsr_bench.metrics.operating_points).

    ``unavailable``: column (:meth:`columns` spelling) → why it has no value (a FAR the calibration set
    cannot measure, an FPIR the unmated probes cannot, a ratio to a reference with no false match).
    """

    n_genuine: int
    n_impostor: int
    calibrated: list[CalibratedPoint] = Field(default_factory=list)
    fixed: ThresholdPoint  # the protocol's fixed threshold (the paper's 0.4)
    n_mated: int | None = None  # open set only
    n_unmated: int | None = None
    open_set: list[FpirPoint] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(default_factory=dict)

    def at_far(self, far: float) -> CalibratedPoint | None:
        """The point calibrated for target FAR ``far`` (None: not calibrated or not measurable)."""
        return next((p for p in self.calibrated if math.isclose(p.target_far, far, rel_tol=1e-9)), None)

    def at_fpir(self, fpir: float) -> FpirPoint | None:
        return next((p for p in self.open_set if math.isclose(p.target_fpir, fpir, rel_tol=1e-9)), None)

    @property
    def ranks(self) -> list[int]:
        return sorted({r for f in self.open_set for r in f.tpir} | {r for c in self.calibrated for r in c.tpir})

    # flat columns: the spelling of CSV/leaderboard headers and of schema version 1
    def columns(self) -> dict[str, Number | None]:
        """Every point as a flat column (``tar_cal_1e-3``, ``tpir20_fpir_0.1``, ``far_at_0.4_vs_Bicubic``)."""
        out: dict[str, Number | None] = {"n_genuine": self.n_genuine, "n_impostor": self.n_impostor}
        ratios: dict[str, Number | None] = {}

        def point(p: ThresholdPoint, where: Literal["cal", "at"], x: float) -> None:
            for field in ("far", "n_false_accepts", "wrong_id", "n_wrong_id"):
                out[op_column(field, where, x)] = getattr(p, field)
            for field, by_ref in (("far", p.far_vs), ("wrong_id", p.wrong_id_vs)):
                ratios.update({op_column(field, where, x, ref=ref): v for ref, v in by_ref.items()})

        for c in self.calibrated:
            out[op_column("threshold", "cal", c.target_far)] = c.threshold
            point(c, "cal", c.target_far)
            out[op_column("tar", "cal", c.target_far)] = c.tar
            out[op_column("fnmr", "cal", c.target_far)] = c.fnmr
        point(self.fixed, "at", self.fixed.threshold)
        if self.n_mated is not None:
            out["n_mated"], out["n_unmated"] = self.n_mated, self.n_unmated
        for r in self.ranks:
            for f in self.open_set:
                out[op_column("threshold", "fpir", f.target_fpir)] = f.threshold
                out[op_column(None, "fpir", f.target_fpir)] = f.fpir
                if r in f.tpir:
                    out[op_column("tpir", "fpir", f.target_fpir, rank=r)] = f.tpir[r]
            for c in self.calibrated:
                if c.fpir is not None:
                    out[op_column("fpir", "cal", c.target_far)] = c.fpir
                if r in c.tpir:
                    out[op_column("tpir", "cal", c.target_far, rank=r)] = c.tpir[r]
        return {**out, **dict(sorted(ratios.items()))}

    @classmethod
    def from_columns(cls, metrics: dict[str, Any], unavailable: dict[str, Any]
                     ) -> tuple["OperatingPoints | None", dict[str, Any], dict[str, Any]]:
        """Split flat columns (schema version 1) into operating points and the row's other metrics.

        Returns ``(points or None when the row has none, other metrics, other unavailable)``.
        """
        mine = {k: v for k, v in metrics.items() if _OP_COLUMN.fullmatch(k)}
        rest = {k: v for k, v in metrics.items() if k not in mine}
        why = {k: v for k, v in unavailable.items() if _OP_COLUMN.fullmatch(k)}
        rest_why = {k: v for k, v in unavailable.items() if k not in why}
        if not mine:
            return None, metrics, unavailable
        cal: dict[str, dict[str, Any]] = {}
        fixed: dict[str, Any] = {}
        fpir: dict[str, dict[str, Any]] = {}
        for key, value in mine.items():
            m = _OP_COLUMN.fullmatch(key)
            assert m is not None
            field, rank, where, tag, ref = m.group("field", "rank", "where", "tag", "ref")
            field = field or where  # fpir_<F>: the FPIR reached at <F>'s threshold
            if where is None:
                continue  # n_genuine, n_impostor, n_mated, n_unmated: read below
            if where == "fpir":
                block = fpir.setdefault(tag, {"target_fpir": float(tag), "tpir": {}})
            elif where == "cal":
                block = cal.setdefault(tag, {"target_far": float(tag), "tpir": {}, "far_vs": {}, "wrong_id_vs": {}})
            else:
                block = fixed.setdefault("point", {"threshold": float(tag), "far_vs": {}, "wrong_id_vs": {}})
            if ref is not None:
                block[f"{field}_vs"][ref] = value
            elif field == "tpir":
                block["tpir"][int(rank)] = value
            else:
                block[field] = value
        if "point" not in fixed:
            raise ValueError(f"operating-point columns {sorted(mine)} lack the fixed threshold's (far_at_<t> …)")
        points = cls.model_validate({
            "n_genuine": mine.get("n_genuine"), "n_impostor": mine.get("n_impostor"),
            "calibrated": list(cal.values()), "fixed": fixed["point"],
            "n_mated": mine.get("n_mated"), "n_unmated": mine.get("n_unmated"),
            "open_set": list(fpir.values()), "unavailable": {k: str(v) for k, v in why.items() if v is not None},
        })
        return points, rest, rest_why


# One pattern for every version-1 operating-point column: <field>[<rank>]_<cal|at|fpir>_<tag>[_vs_<ref>]
# (fpir_cal_<T> is the open-set FPIR at a calibrated threshold, tpir<r>_* the TPIR at rank r).
_OP_COLUMN = re.compile(
    r"(?:n_genuine|n_impostor|n_mated|n_unmated)"
    r"|(?:(?P<field>threshold|far|n_false_accepts|wrong_id|n_wrong_id|tar|fnmr|fpir|tpir)(?P<rank>\d+)?_)?"
    r"(?P<where>cal|at|fpir)_(?P<tag>[0-9.e+-]+?)(?:_vs_(?P<ref>.+))?"
)


# -- rows ------------------------------------------------------------------------------------------
class _Row(_Strict):
    """What every row has: a model, a floor or a reference, and its numbers."""

    label: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    role: Role = "model"
    scale: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    # what the weights cost (steps, epochs, train_minutes, device, precision, selected_step), from the
    # checkpoint or the shipped model's card; None for floors and weights nothing recorded. Also
    # `validation` (the split the weights were selected on: type, root_name, list_file, list_sha256) and
    # `selected_on_evaluated_data` (true: that split is the data this run scores; absent: unknown)
    training: dict[str, Any] | None = None
    metrics: dict[str, Number | None]
    unavailable: dict[str, str | None] = Field(default_factory=dict)
    variant: str | None = None  # the model's reading of its paper (TANet: "patch tokens, …"), from the model

    @property
    def selected_on_evaluated_data(self) -> bool:
        """The weights were selected on the very images this run scores (reports mark the row)."""
        return bool((self.training or {}).get("selected_on_evaluated_data"))


class ReconstructionRow(_Row):
    kind: Literal["reconstruction"] = "reconstruction"
    params: int | None = None
    gflops: Finite | None = None
    images_per_s: Finite | None = None
    n_images: int | None = None
    n_infinite_psnr: int | None = None  # images identical to HR, left out of the mean PSNR
    n_mod_cropped: int | None = None
    n_identity_undetected: int | None = None  # images without a face detected on HR: no identity value
    work_key: str | None = None


def _ordered(ci95: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    for key, (lo, hi) in ci95.items():
        if lo > hi:
            raise ValueError(f"ci95.{key} must be [lo, hi] with lo <= hi, got [{lo}, {hi}]")
    return ci95


class RecogniserScores(_Strict):
    """One recogniser's numbers for a row (``by_recogniser``): the row's main fields are the first's."""

    metrics: dict[str, Number | None]
    unavailable: dict[str, str | None] = Field(default_factory=dict)
    ci95: dict[str, tuple[Finite, Finite]] = Field(default_factory=dict)
    roc: Roc | None = None  # 1:1 verification rows keep each recogniser's ROC
    trained_with: bool = False  # the row's weights were trained with this recogniser's features
    operating_points: OperatingPoints | None = None

    def columns(self) -> dict[str, Number | None]:
        """Every number under its flat column name (metrics, then :meth:`OperatingPoints.columns`): for
        tables and CSV files driven by metric names."""
        return {**self.metrics, **(self.operating_points.columns() if self.operating_points else {})}

    def reason(self, key: str) -> str | None:
        """Why column ``key`` has no value, where the runner said."""
        why = self.unavailable.get(key)
        return why or (self.operating_points.unavailable.get(key) if self.operating_points else None)

    @model_validator(mode="after")
    def _ordered_ci(self) -> "RecogniserScores":
        _ordered(self.ci95)
        return self


class RecognitionRow(_Row):
    kind: Literal["recognition"] = "recognition"
    recogniser: str | None = None  # whose numbers metrics/operating_points are (the first recogniser)
    trained_with: list[str] = Field(default_factory=list)  # recognisers whose features trained the weights
    by_recogniser: dict[str, RecogniserScores] = Field(default_factory=dict)
    operating_points: OperatingPoints | None = None
    ci95: dict[str, tuple[Finite, Finite]] = Field(default_factory=dict)
    per_distance: dict[str, dict[str, Number | None]] = Field(default_factory=dict)
    per_camera: dict[str, dict[str, Number | None]] = Field(default_factory=dict)
    roc: Roc = Field(default_factory=Roc)
    cmc: list[Finite] = Field(default_factory=list)
    n_gallery: int | None = None
    n_impostor_pairs: int | None = None
    work: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered_ci(self) -> "RecognitionRow":
        _ordered(self.ci95)
        return self


#: A row of either kind; the run's ``kind`` decides which (every row of a run is of that kind).
ResultRow = Annotated[ReconstructionRow | RecognitionRow, Field(discriminator="kind")]


class Sample(_Strict):
    """One saved sample: ``samples/<folder>/`` holds the LR input, the reference and each row's output.

    ``image`` is the dataset's name of the image (or probe), as in per_image.csv / per_probe.csv;
    ``outputs`` maps row label -> file name inside the folder.
    """

    folder: str
    image: str
    lr: str | None = None
    reference: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


class RunResult(_Strict):
    schema_version: Literal[2] = SCHEMA_VERSION
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
    def _rows_of_the_run_kind(cls, data: Any) -> Any:
        """Rows take the run's kind (a runner need not repeat it per row; files carry it)."""
        if isinstance(data, dict) and isinstance(data.get("models"), list) and isinstance(data.get("kind"), str):
            data = {**data, "models": [{"kind": data["kind"], **m} if isinstance(m, dict) and "kind" not in m
                                       else m for m in data["models"]]}
        return data

    @model_validator(mode="after")
    def _required_metrics(self) -> "RunResult":
        labels = [m.label for m in self.models]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"duplicate model labels {duplicates}")
        for i, row in enumerate(self.models):
            if row.kind != self.kind:
                raise ValueError(f"models[{i}] ({row.label!r}) is a {row.kind} row in a {self.kind} run")
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

    def recognition_rows(self) -> list[RecognitionRow]:
        return [r for r in self.models if isinstance(r, RecognitionRow)]

    def reconstruction_rows(self) -> list[ReconstructionRow]:
        return [r for r in self.models if isinstance(r, ReconstructionRow)]


# -- migration -------------------------------------------------------------------------------------
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: roles from ``conventions.references``; flat operating-point columns -> structured."""
    refs = (data.get("conventions") or {}).get("references") if isinstance(data.get("conventions"), dict) else None
    declared = set(refs) if isinstance(refs, dict) else set()

    def structured(block: Any) -> Any:
        if not isinstance(block, dict) or not isinstance(block.get("metrics"), dict):
            return block
        points, metrics, unavailable = OperatingPoints.from_columns(block["metrics"],
                                                                     dict(block.get("unavailable") or {}))
        out = {**block, "metrics": metrics, "unavailable": unavailable}
        if points is not None:
            out["operating_points"] = points.model_dump(mode="json")
        return out

    rows = []
    for m in data.get("models") or []:
        if isinstance(m, dict):
            m = {**m, "role": m.get("role") or ("reference" if m.get("label") in declared else "model")}
            if data.get("kind") == "recognition":
                m = structured(m)
                if isinstance(m.get("by_recogniser"), dict):
                    m["by_recogniser"] = {k: structured(v) for k, v in m["by_recogniser"].items()}
        rows.append(m)
    return {**data, "schema_version": 2, "models": rows}


_MIGRATIONS = {1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older results file's content brought to :data:`SCHEMA_VERSION` (no-op for a current one)."""
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version} is newer than this fsr-bench reads ({SCHEMA_VERSION});"
                         " upgrade fsr-bench to read it")
    while version < SCHEMA_VERSION:
        data = _MIGRATIONS[version](data)
        version += 1
    return data


#: The one footnote of rows whose weights were selected on the data they are scored on.
SELECTION_NOTE = ("weights selected (best validation checkpoint) on the very split this table scores: optimistic by "
                  "that selection, not an independent measurement")


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
    # the fields the runner set, in its order, after the version that says how to read them
    doc = {"schema_version": SCHEMA_VERSION,
           **result.model_dump(mode="json", exclude_unset=True, exclude={"schema_version"})}
    RunResult.model_validate(doc)
    return atomic.write_text(out / "results.json", json.dumps(doc, indent=2, sort_keys=False) + "\n")


def summary_frame(result: RunResult):  # -> pandas.DataFrame
    """The summary table of a run: one line per row, the kind's summary columns."""
    cols = COLUMNS[result.kind]["summary"]
    lines = []
    for r in result.models:
        fields: dict[str, Any] = {"model": r.name, "scale": r.scale, "label": r.label, **r.metrics}
        if isinstance(r, ReconstructionRow):
            fields.update(n_images=r.n_images, params=r.params, gflops=r.gflops, images_per_s=r.images_per_s)
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
        data = migrate(data)
    except ValueError as exc:
        raise ResultsError(f"{file}: {exc}") from None
    try:
        return RunResult.model_validate(data)
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
class FaceRecord(_Strict):
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


class FrameRecord(_Strict):
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
    options: dict[str, Any] = Field(default_factory=dict)  # the face options the SR faces were made with
    tracker: dict[str, Any] | None = None  # videos: the face tracker's settings
    video: dict[str, Any] | None = None  # videos: fps, size, codec of the input
    conventions: dict[str, Any]
    provenance: dict[str, Any]

    @model_validator(mode="after")
    def _count(self) -> "FrameRecord":
        if self.n_faces != len(self.faces):
            raise ValueError(f"n_faces is {self.n_faces} but {len(self.faces)} faces are listed")
        return self


# -- footage evaluation (kind: footage, fsr_bench.run.footage) -------------------------------------
class FootageLevel(_Strict):
    """One row's identification answers at one level: ``track`` (a track's mean embedding) or
    ``face`` (each face on its own). Operating points are keyed by their label (``0.4``, ``cal 1e-3``)."""

    n: int  # tracks (faces) found in the footage
    n_mated: int  # of them, in identity folders that are on the watchlist
    rank1: Finite | None  # mated units whose best watchlist identity is their own; null without one
    tar: dict[str, Finite | None]  # mated units answered with their own identity at a score >= the threshold
    wrong_id: dict[str, Finite | None]  # all units answered with a wrong identity at a score >= the threshold
    ci95: dict[str, list[Finite]] = Field(default_factory=dict)  # "rank1", "tar@<op>", "wrong_id@<op>": [lo, hi]


class FootageRow(_Strict):
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


class OperatingPoint(_Strict):
    label: str
    threshold: Finite
    source: dict[str, Any]  # stated, or the calibration run's FAR, hash and recogniser


class FootageResult(_Strict):
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
