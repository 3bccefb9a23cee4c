"""Read and validate finished run folders, and combine several of them into comparable groups.

Why validate here: a report is the place where a number is believed. A half-written or hand-edited
run folder must fail loudly, naming the file and the field, instead of rendering a plausible table
with a silently missing or wrong value ("raise rather than warn wherever a number could change").

What is required and what is optional in ``RUN/`` (the runner's format):

* ``results.json`` — required; the single source of every number in the report, read and
  validated by :func:`fsr_bench.results.read_run` (the schema the runners write with).
* ``summary.csv`` — optional; when present it must parse, have the runner's columns and list the
  same labels as ``results.json`` (a mismatch means the folder was modified or half-written).
* ``per_image.csv`` (reconstruction) / ``per_probe.csv`` (recognition) — optional; used only to
  annotate the visual grids. When present they must parse.
* ``samples/<stem>/lr.png``, ``hr.png`` or ``gallery.png``, ``<label>.png`` — optional; the grids.
  ``results.json["samples"]`` (the manifest) says which folder holds which image and row; folders
  written before the manifest existed are scanned.

Combining: runs are grouped by kind and by everything that makes numbers comparable (dataset and
scoring conventions, but not the scale), so an ×4 and an ×8 run of one protocol become one table
with both scales, as in the paper's Tables 2-3, while runs scored under different conventions are
never bolded against each other.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from fsr_bench import results
from fsr_bench.errors import FsrBenchError
from fsr_bench.naming import safe_filename

__all__ = [
    "RECOGNITION",
    "RECONSTRUCTION",
    "ImageScores",
    "ModelRow",
    "ProbeScore",
    "ReportInputError",
    "Run",
    "RunGroup",
    "Sample",
    "group_runs",
    "file_forms",
    "load_run",
    "load_runs",
]

RECONSTRUCTION = "reconstruction"
RECOGNITION = "recognition"
Kind = Literal["reconstruction", "recognition"]

# The columns the report requires, taken from the one declaration (fsr_bench.results.COLUMNS); of
# per_probe.csv the grids read only these (distance, camera, matched and rank are for other readers).
# The identity columns are optional: folders written before they existed have none.
_LATER_COLUMNS = ("identity_cosine", "identity_angle", "rank5", "rank20")
SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {k: tuple(c for c in v["summary"] if c not in _LATER_COLUMNS)
                                               for k, v in results.COLUMNS.items()}
PER_IMAGE_COLUMNS = tuple(c for c in results.COLUMNS[RECONSTRUCTION]["per_image"] if c not in _LATER_COLUMNS)
PER_PROBE_COLUMNS = tuple(c for c in results.COLUMNS[RECOGNITION]["per_probe"]
                          if c in {"label", "probe", "subject", "similarity", "detected"})

# Metrics a table may show; absent ones read as None (unavailable).
_OPTIONAL_METRICS: dict[str, tuple[str, ...]] = {
    RECONSTRUCTION: ("psnr", "lpips", "mps", "identity_cosine", "identity_angle"),  # psnr: null when all exact
    RECOGNITION: ("average_similarity", "rank1", "rank5", "rank20", "tar_at_far_1e-2", "tar_at_far_1e-3",
                  "eer", "n_probes", "n_matched"),
}
# Dataset keys that may differ between runs of the same test set (machine paths, counts).
_VOLATILE_DATASET_KEYS = frozenset({"root", "n_images", "skipped", "n_scored"})
# Metric-convention keys that say whether LPIPS ran and from which file its trunk came (the same
# ImageNet AlexNet either way), not how anything was scored.
_AVAILABILITY_KEYS = frozenset({"lpips", "lpips_unavailable", "lpips_trunk"})


class ReportInputError(FsrBenchError, ValueError):
    """A run folder (or one of its files) that cannot be reported on; the message names it."""


# -- data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    """One row of a run: a model (or reference such as "Bicubic" / "HR probes") and its numbers.

    ``metrics`` maps metric key -> value or None (unavailable); ``unavailable`` gives the reason
    per key when the runner recorded one. Recognition-only fields are empty for reconstruction.
    """

    label: str
    name: str
    scale: int | None
    metrics: Mapping[str, float | None]
    role: results.Role = "model"
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    params: int | None = None
    gflops: float | None = None
    images_per_s: float | None = None
    n_images: int | None = None
    n_infinite_psnr: int | None = None  # images identical to HR, left out of the mean PSNR
    n_identity_undetected: int | None = None  # images without a face on HR: no identity value
    unavailable: Mapping[str, str] = field(default_factory=dict)
    ci95: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    per_distance: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    roc_far: tuple[float, ...] = ()
    roc_tar: tuple[float, ...] = ()
    cmc: tuple[float, ...] = ()
    # recognition: each recogniser's numbers and operating points (the first one's are metrics above)
    by_recogniser: Mapping[str, results.RecogniserScores] = field(default_factory=dict)
    operating_points: results.OperatingPoints | None = None
    variant: str | None = None  # the model's reading of its paper (TANet: "patch tokens, ...")
    selected_on_evaluated_data: bool = False  # the weights were selected on this run's data (results.SELECTION_NOTE)

    @property
    def shown_label(self) -> str:
        return results.shown_label(self.label, self.variant)


@dataclass(frozen=True)
class ImageScores:
    """Per-image scores of one model (``per_image.csv``)."""

    psnr: float | None
    ssim: float | None
    lpips: float | None


@dataclass(frozen=True)
class ProbeScore:
    """One probe's result for one model (``per_probe.csv``)."""

    label: str
    probe: str
    subject: str
    similarity: float | None
    detected: bool


@dataclass(frozen=True)
class Sample:
    """The saved images of one sample: LR input, reference (HR or gallery) and each model's output."""

    stem: str
    lr: Path | None
    reference: Path | None
    outputs: Mapping[str, Path]


@dataclass(frozen=True)
class Run:
    """A validated run folder. ``scale`` is the run's degradation scale (rows are grouped by it)."""

    path: Path
    kind: Kind
    protocol_name: str
    protocol_hash: str
    protocol: Mapping[str, Any]
    conventions: Mapping[str, Any]
    provenance: Mapping[str, Any]
    scale: int
    rows: tuple[ModelRow, ...]
    per_image: Mapping[tuple[str, str], ImageScores] = field(default_factory=dict)
    per_probe: tuple[ProbeScore, ...] = ()
    samples: tuple[Sample, ...] = ()
    absent: tuple[str, ...] = ()  # optional files this folder lacks, for the report's notes

    @property
    def dataset(self) -> Mapping[str, Any]:
        return self.conventions.get("dataset") or {}

    @property
    def dataset_name(self) -> str:
        """``name``, else the root folder's name (plus the list file's), else the dataset type."""
        ds = self.dataset
        if ds.get("name"):
            return str(ds["name"])
        if ds.get("root"):
            name = Path(str(ds["root"])).name
            return f"{name}/{Path(str(ds['list_file'])).stem}" if ds.get("list_file") else name
        return str(ds.get("type") or "unknown dataset")

    @property
    def references(self) -> Mapping[str, str]:
        """Rows that are references, not methods (``role: reference``, e.g. "HR probes": the upper
        bound; "LR image": no SR), and any label ``conventions.references`` declares. Label ->
        description (from ``conventions.references``)."""
        refs = self.conventions.get("references")
        refs = refs if isinstance(refs, Mapping) else {}
        labels = {r.label for r in self.rows}
        out = {str(k): str(v) for k, v in refs.items() if k in labels}
        out.update({r.label: "reference" for r in self.rows if r.role == "reference" and r.label not in out})
        return out

    def image_scores(self, label: str, stem: str) -> ImageScores | None:
        """Per-image scores of ``label`` on the sample folder ``stem`` (None if unknown/ambiguous)."""
        return self.per_image.get((label, stem))


@dataclass(frozen=True)
class RunGroup:
    """Runs whose numbers are comparable (same kind, dataset, conventions), sorted by scale."""

    kind: Kind
    title: str
    runs: tuple[Run, ...]

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(sorted({r.scale for r in self.runs}))

    def entries(self) -> list[tuple[int, ModelRow, Run]]:
        """(scale, row, run) for every row, ordered by scale then by the runner's row order."""
        return [(run.scale, row, run) for run in self.runs for row in run.rows]


# -- results.json ----------------------------------------------------------------------------------
def _row(entry: results.ReconstructionRow | results.RecognitionRow) -> ModelRow:
    kind = entry.kind
    metrics = {k: entry.metrics.get(k) for k in (*results.REQUIRED_METRICS[kind], *_OPTIONAL_METRICS[kind])}
    common: dict[str, Any] = dict(
        label=entry.label, name=entry.name, role=entry.role, scale=entry.scale, metrics=metrics,
        checkpoint=entry.checkpoint, checkpoint_sha256=entry.checkpoint_sha256, variant=entry.variant,
        selected_on_evaluated_data=entry.selected_on_evaluated_data,
        unavailable={str(k): str(v) for k, v in entry.unavailable.items() if v is not None},
    )
    if isinstance(entry, results.ReconstructionRow):
        return ModelRow(**common, params=entry.params, gflops=entry.gflops, images_per_s=entry.images_per_s,
                        n_images=entry.n_images, n_infinite_psnr=entry.n_infinite_psnr,
                        n_identity_undetected=entry.n_identity_undetected)
    return ModelRow(**common, ci95={k: (lo, hi) for k, (lo, hi) in entry.ci95.items()},
                    per_distance=entry.per_distance, roc_far=tuple(entry.roc.far), roc_tar=tuple(entry.roc.tar),
                    cmc=tuple(entry.cmc), by_recogniser=dict(entry.by_recogniser),
                    operating_points=entry.operating_points)


def _run_scale(conventions: Mapping[str, Any], rows: Sequence[ModelRow], file: Path) -> int:
    """The run's scale: the degradation's, else the dataset's, else the one SR scale of the rows
    (reference rows such as "HR probes" may carry scale 1 or none)."""
    for section in ("degradation", "dataset"):
        block = conventions.get(section)
        if isinstance(block, Mapping) and block.get("scale") is not None:
            scale = block["scale"]
            if isinstance(scale, bool) or not isinstance(scale, int):
                raise ReportInputError(f"{file}: conventions.{section}.scale must be an integer, got {scale!r}")
            return scale
    scales = {r.scale for r in rows if r.scale not in (None, 1)}
    if len(scales) != 1:
        raise ReportInputError(
            f"{file}: conventions.degradation.scale is missing and the models' scales"
            f" {sorted(scales)} do not name one scale for the run"
        )
    return scales.pop()


# -- CSV files -------------------------------------------------------------------------------------
def _read_csv(file: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise ReportInputError(
                    f"{file}: missing column(s) {', '.join(missing)} (header: {','.join(header) or 'empty'});"
                    " the file is corrupt or from an incompatible version"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportInputError(f"cannot read {file}: {exc}") from exc
    for i, row in enumerate(rows, start=2):
        if None in row or any(row.get(c) is None for c in columns):
            raise ReportInputError(f"{file}: line {i} has the wrong number of fields")
    return rows


def _csv_float(text: str, file: Path, line: int, column: str, allow_inf: bool = False) -> float | None:
    """A number, or None for an empty cell. ``allow_inf``: per-image PSNR is +inf for an output
    identical to its HR image (the runner keeps it per image and leaves it out of the mean)."""
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReportInputError(f"{file}: line {line}, column {column!r}: {text!r} is not a number") from None
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        raise ReportInputError(f"{file}: line {line}, column {column!r} is {text}")
    return value


def _image_keys(image: str) -> set[str]:
    """The names a sample folder may carry for an image: as written, its stem, its flattened
    relative path (with and without suffix), and their file-name-safe forms (:func:`file_forms`)."""
    posix = image.replace("\\", "/")
    stem = Path(posix).stem
    flat = posix.replace("/", "_")
    flat_stem = str(Path(posix).with_suffix("")).replace("/", "_") if Path(posix).suffix else flat
    return set().union(*(file_forms(f) for f in (image, stem, flat, flat_stem)))


def _read_per_image(file: Path) -> dict[tuple[str, str], ImageScores]:
    """Scores keyed by (label, every name a sample folder may use for the image).

    A short key shared by two different images (``a/001.jpg`` and ``b/001.jpg`` both have stem
    ``001``) is dropped rather than resolved: a grid must never show another image's score.
    """
    scores: dict[tuple[str, str], ImageScores] = {}
    source: dict[tuple[str, str], str] = {}
    ambiguous: set[tuple[str, str]] = set()
    for line, row in enumerate(_read_csv(file, PER_IMAGE_COLUMNS), start=2):
        entry = ImageScores(
            psnr=_csv_float(row["psnr"], file, line, "psnr", allow_inf=True),
            ssim=_csv_float(row["ssim"], file, line, "ssim"),
            lpips=_csv_float(row["lpips"], file, line, "lpips"),
        )
        for key in _image_keys(row["image"]):
            k = (row["label"], key)
            if k in source and source[k] != row["image"]:
                ambiguous.add(k)
            source.setdefault(k, row["image"])
            scores.setdefault(k, entry)
    for k in ambiguous:
        del scores[k]
    return scores


def _read_per_probe(file: Path) -> tuple[ProbeScore, ...]:
    out = []
    rows = _read_csv(file, PER_PROBE_COLUMNS)
    main = rows[0].get("recogniser") if rows else None  # several recognisers: the first one's rows
    for line, row in enumerate(rows, start=2):
        if row.get("recogniser") != main:
            continue
        detected = row["detected"].strip().lower()
        if detected not in {"true", "false", "1", "0", "yes", "no"}:
            raise ReportInputError(f"{file}: line {line}, column 'detected': {row['detected']!r} is not a boolean")
        out.append(ProbeScore(
            label=row["label"], probe=row["probe"], subject=row["subject"],
            similarity=_csv_float(row["similarity"], file, line, "similarity"),
            detected=detected in {"true", "1", "yes"},
        ))
    return tuple(out)


def _check_summary(file: Path, kind: Kind, rows: Sequence[ModelRow]) -> None:
    """summary.csv is derived from results.json; labels that disagree mean a modified folder."""
    summary = _read_csv(file, SUMMARY_COLUMNS[kind])
    in_csv = sorted(r["label"] for r in summary)
    in_json = sorted(r.label for r in rows)
    if in_csv != in_json:
        raise ReportInputError(
            f"{file} lists labels {in_csv} but results.json lists {in_json}; the run folder was"
            " modified or half-written — re-run the protocol"
        )


# -- samples ---------------------------------------------------------------------------------------
def file_forms(name: str) -> set[str]:
    """File names a runner may have made of ``name``: as is, or through :func:`safe_filename`."""
    return {name, safe_filename(name)}


def _read_samples(folder: Path, kind: Kind, labels: Sequence[str],
                  manifest: Sequence[results.Sample] | None) -> tuple[Sample, ...]:
    """The saved samples: from the manifest when the run wrote one, else by scanning the folder."""
    if not folder.is_dir():
        return ()
    if manifest is not None:
        def existing(sub: Path, name: str | None) -> Path | None:
            return sub / name if name is not None and (sub / name).is_file() else None

        return tuple(Sample(
            stem=entry.folder,
            lr=existing(folder / entry.folder, entry.lr),
            reference=existing(folder / entry.folder, entry.reference),
            outputs={label: folder / entry.folder / name for label, name in entry.outputs.items()
                     if label in labels and (folder / entry.folder / name).is_file()},
        ) for entry in manifest if (folder / entry.folder).is_dir())
    reference_name = "hr.png" if kind == RECONSTRUCTION else "gallery.png"
    samples = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        outputs: dict[str, Path] = {}
        for label in labels:
            for candidate in sorted(file_forms(label)):
                if (sub / f"{candidate}.png").is_file():
                    outputs[label] = sub / f"{candidate}.png"
                    break
        lr, ref = sub / "lr.png", sub / reference_name
        samples.append(Sample(
            stem=sub.name,
            lr=lr if lr.is_file() else None,
            reference=ref if ref.is_file() else None,
            outputs=outputs,
        ))
    return tuple(samples)


# -- public ----------------------------------------------------------------------------------------
def load_run(run_dir: str | Path, result: results.RunResult | None = None) -> Run:
    """Read and validate one run folder; raises :class:`ReportInputError` naming the bad file/field.

    ``result``: the run's :class:`~fsr_bench.results.RunResult` when the caller already holds it
    (``fsr-bench run`` hands over what it just wrote), so results.json is not read back.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportInputError(f"run folder {path} does not exist or is not a folder")
    file = path / "results.json"
    if result is None:
        try:
            result = results.read_run(file)
        except results.ResultsError as exc:
            raise ReportInputError(str(exc)) from None
    kind = result.kind
    rows = tuple(_row(m) for m in result.models)
    labels = [r.label for r in rows]
    conventions = result.conventions
    absent = []
    summary = path / "summary.csv"
    if summary.is_file():
        _check_summary(summary, kind, rows)
    else:
        absent.append("summary.csv")
    per_image: dict[tuple[str, str], ImageScores] = {}
    per_probe: tuple[ProbeScore, ...] = ()
    detail = path / ("per_image.csv" if kind == RECONSTRUCTION else "per_probe.csv")
    if detail.is_file():
        if kind == RECONSTRUCTION:
            per_image = _read_per_image(detail)
        else:
            per_probe = _read_per_probe(detail)
    else:
        absent.append(detail.name)
    samples = _read_samples(path / "samples", kind, labels, result.samples)
    if not samples:
        absent.append("samples/")
    return Run(
        path=path,
        kind=kind,
        protocol_name=result.protocol_name or path.name,
        protocol_hash=result.protocol_hash,
        protocol=result.protocol,
        conventions=conventions,
        provenance=result.provenance,
        scale=_run_scale(conventions, rows, file),
        rows=rows,
        per_image=per_image,
        per_probe=per_probe,
        samples=samples,
        absent=tuple(absent),
    )


def load_runs(run_dirs: Iterable[str | Path]) -> list[Run]:
    """Load several run folders (order kept); the same folder given twice is an error."""
    runs: list[Run] = []
    seen: dict[Path, str] = {}
    for d in run_dirs:
        real = Path(d).resolve()
        if real in seen:
            raise ReportInputError(f"run folder {d} was given twice (also as {seen[real]})")
        seen[real] = str(d)
        runs.append(load_run(d))
    if not runs:
        raise ReportInputError("no run folders given")
    return runs


def _comparability_key(run: Run) -> str:
    """Everything that must agree for two runs' numbers to share a table, except the scale."""
    conv = dict(run.conventions)
    if run.kind == RECONSTRUCTION:
        metrics = dict(conv.get("metrics") or {})
        if metrics.get("crop_border") == run.scale:
            metrics["crop_border"] = None  # "crop = scale" written out explicitly is the same rule
        conv["metrics"] = {k: v for k, v in metrics.items() if k not in _AVAILABILITY_KEYS}
    conv["degradation"] = {k: v for k, v in dict(conv.get("degradation") or {}).items() if k != "scale"}
    dataset = {k: v for k, v in dict(conv.get("dataset") or {}).items() if k not in _VOLATILE_DATASET_KEYS}
    if dataset.get("list_file"):  # an absolute path differs between machines; the file name does not
        dataset["list_file"] = Path(str(dataset["list_file"])).name
    conv["dataset"] = {**dataset, "name": run.dataset_name}
    return json.dumps([run.kind, conv], sort_keys=True, default=str)


def group_runs(runs: Sequence[Run]) -> list[RunGroup]:
    """Combine comparable runs (e.g. ×4 and ×8 of one protocol) into groups, first-seen order.

    Two runs of one group with the same scale and a common label are an error: the table could not
    say which of the two numbers is meant.
    """
    buckets: dict[str, list[Run]] = {}
    for run in runs:
        buckets.setdefault(_comparability_key(run), []).append(run)
    groups: list[RunGroup] = []
    name_count: dict[tuple[str, str], int] = {}
    for members in buckets.values():
        members = sorted(members, key=lambda r: r.scale)  # stable: runner order within a scale
        seen: dict[tuple[int, str], Path] = {}
        for run in members:
            for row in run.rows:
                key = (run.scale, row.label)
                if key in seen:
                    raise ReportInputError(
                        f"label {row.label!r} at ×{run.scale} appears in both {seen[key]} and"
                        f" {run.path}; give the models distinct labels or report the runs separately"
                    )
                seen[key] = run.path
        first = members[0]
        noun = "Reconstruction" if first.kind == RECONSTRUCTION else "Recognition"
        base = f"{noun} — {first.dataset_name}"
        n = name_count[(first.kind, base)] = name_count.get((first.kind, base), 0) + 1
        title = base if n == 1 else f"{base} (conventions set {n})"
        groups.append(RunGroup(kind=first.kind, title=title, runs=tuple(members)))
    return groups
