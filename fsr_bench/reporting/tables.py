"""Markdown tables in the paper's layouts, from loaded runs (:func:`tables_for_terminal` also accepts
run folders and loads them; every other function is pure).

Metric semantics (direction, decimals, aggregation) come from :mod:`fsr_bench.metrics.specs`.

Why these choices:

* Layout and number formats follow the TANet paper (Tables 2-4) so a reader can compare a row with
  the paper at a glance: PSNR ``.2f``, SSIM/LPIPS/MPS ``.4f``, matching accuracy ``16.9231%``,
  average similarity ``.6f``; "-" where no probe face was detected, as in Table 4.
* "Best" is decided on the *displayed* value, so two rows that print the same number are both bold
  and a reader never sees a bold 32.61 next to a plain 32.61.
* A number without its conventions is not comparable (Y vs RGB, border crop, bicubic kernel and
  LPIPS version each move results by more than the gaps papers report), so every table carries a
  conventions and provenance note, and every "n/a" carries the runner's reason.
* Columns are padded so the same text reads well in a terminal and renders on GitHub.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fsr_bench.metrics.specs import Metric, metric
from fsr_bench.reporting.load import RECONSTRUCTION, ModelRow, Run, RunGroup, group_runs, load_run
from fsr_bench.reporting.paper import nearest_paper_line, paper_note, paper_rows
from fsr_bench.results import SELECTION_NOTE, OperatingPoints, rate_tag

__all__ = [
    "DISTANCE_METRICS",
    "Metric",
    "RECOGNITION_METRICS",
    "RECONSTRUCTION_METRICS",
    "best_flags",
    "dataset_size",
    "distances_of",
    "efficiency_table",
    "markdown_table",
    "natural_key",
    "no_face",
    "per_distance_table",
    "open_set_table",
    "operating_points_csv",
    "operating_points_table",
    "main_recogniser",
    "recognition_table",
    "reconstruction_table",
    "report_tables",
    "scale_label",
    "tables_for_terminal",
    "version_of",
]

_SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"
NA = "n/a"
UNDETECTED = "-"


# Semantics (direction, precision, aggregation) come from the metric registry; the tables choose
# which metrics to show, in which order, and the short names of the compact per-distance table.
RECONSTRUCTION_METRICS: tuple[Metric, ...] = tuple(metric(k) for k in ("psnr", "ssim", "lpips", "mps"))
IDENTITY_METRICS: tuple[Metric, ...] = tuple(metric(k) for k in ("identity_cosine", "identity_angle"))
MATCHING_ACCURACY = metric("matching_accuracy")
AVERAGE_SIMILARITY = metric("average_similarity")
RECOGNITION_METRICS: tuple[Metric, ...] = (
    MATCHING_ACCURACY,
    AVERAGE_SIMILARITY,
    *(metric(k) for k in ("detection_rate", "rank1", "tar_at_far_1e-3", "tar_cal_1e-3", "eer")),
)
DISTANCE_METRICS: tuple[Metric, ...] = (
    dataclasses.replace(MATCHING_ACCURACY, name="MA"),
    dataclasses.replace(AVERAGE_SIMILARITY, name="Sim", decimals=4),
    dataclasses.replace(metric("detection_rate"), name="Det"),
)


# -- generic helpers -------------------------------------------------------------------------------
def best_flags(values: Sequence[float | None], metric: Metric) -> list[bool]:
    """Which entries are best (ties at display precision all count); none if < 2 values exist."""
    shown = [None if v is None else metric.display(v) for v in values]
    present = [v for v in shown if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    best = max(present) if metric.higher_is_better else min(present)
    return [v is not None and v == best for v in shown]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A padded GitHub-flavoured markdown table; ``align`` has one 'l' or 'r' per column."""
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError("markdown_table: header, align and every row need the same length")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    widths = [max(w, 3) for w in widths]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _bold(text: str, flag: bool) -> str:
    return f"**{text}**" if flag else text


def scale_label(scale: int) -> str:
    return f"×{scale}"


class _Notes:
    """Numbered notes (¹ ² ³ …) for cells, one number per distinct text, in first-use order."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._who: dict[str, list[str]] = {}

    def mark(self, text: str, who: str) -> str:
        if text not in self._texts:
            self._texts.append(text)
            self._who[text] = []
        if who not in self._who[text]:
            self._who[text].append(who)
        i = self._texts.index(text)
        return _SUPERSCRIPTS[i] if i < len(_SUPERSCRIPTS) else f"[{i + 1}]"

    def lines(self) -> list[str]:
        out = []
        for i, text in enumerate(self._texts):
            sym = _SUPERSCRIPTS[i] if i < len(_SUPERSCRIPTS) else f"[{i + 1}]"
            out.append(f"{sym} {text} ({', '.join(self._who[text])}).")
        return out


def _short(value: Any, n: int = 12) -> str:
    text = str(value or "")
    return text[:n] if text else "unknown"


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_NOTE_MAX = 40  # longer values (formulas, templates, paths) stay in the full provenance section


def describe(mapping: Mapping[str, Any], skip: Iterable[str] = (), title: str = "name") -> str:
    """``<title value> (k: v, …)`` for a conventions dict, kept to what fits a table note.

    sha256 values are shortened to 12 hex digits; paths, nested objects and long texts are left
    out (the report's "Conventions & provenance" section lists them in full).
    """
    skip = set(skip) | {title}
    parts = []
    for key, value in mapping.items():
        if key in skip or value is None or key.endswith(("_path", "root")):
            continue
        if "sha256" in key and isinstance(value, str):
            parts.append(f"{key}: {_short(value)}")
            continue
        text = _plain(value)
        if isinstance(value, Mapping) or len(text) > _NOTE_MAX:
            continue
        parts.append(f"{key}: {text}")
    name = str(mapping.get(title) or "")
    if name and parts:
        return f"{name} ({', '.join(parts)})"
    return name or ", ".join(parts) or "not recorded"


def _by_scale(runs: Sequence[Run]) -> list[tuple[int, list[tuple[ModelRow, Run]]]]:
    scales = sorted({r.scale for r in runs})
    return [(s, [(row, run) for run in runs if run.scale == s for row in run.rows]) for s in scales]


def _who(row: ModelRow, scale: int, several_scales: bool) -> str:
    return f"{row.shown_label} {scale_label(scale)}" if several_scales else row.shown_label


def _per_run(runs: Sequence[Run], text_of) -> str:
    """One text when all runs agree, else "×4: …; ×8: …"."""
    texts = [(run.scale, text_of(run)) for run in runs]
    if len({t for _, t in texts}) == 1:
        return texts[0][1]
    return "; ".join(f"{scale_label(s)}: {t}" for s, t in texts)


# -- conventions & provenance notes ----------------------------------------------------------------
def _method(row: ModelRow, notes: _Notes, who: str) -> str:
    """The row's label, with the footnote of weights selected on the data this table scores."""
    return row.shown_label + (notes.mark(SELECTION_NOTE, who) if row.selected_on_evaluated_data else "")


def _crop_text(runs: Sequence[Run]) -> str:
    """Border crop; null (or a crop equal to the scale) is the "crop = scale" rule."""
    crops = [(run.scale, (run.conventions.get("metrics") or {}).get("crop_border")) for run in runs]
    if all(c is None or c == s for s, c in crops):
        return "border crop = scale (" + ", ".join(f"{s} px at ×{s}" for s, _ in crops) + ")"
    return "; ".join(f"border crop {s if c is None else c} px at ×{s}" for s, c in crops)


def _reconstruction_conventions(runs: Sequence[Run]) -> str:
    """The choices that move PSNR/SSIM/LPIPS (field notes: Y vs RGB, crop, quantisation, SSIM
    window, LPIPS net and version); the rest of ``conventions.metrics`` is in the full section."""
    m = dict(runs[0].conventions.get("metrics") or {})
    parts = []
    if "y_channel" in m:
        parts.append("PSNR/SSIM on the Y channel (BT.601 luma)" if m["y_channel"] else "PSNR/SSIM on RGB")
    parts.append(_crop_text(runs))
    if "quantize" in m:
        parts.append("outputs quantised to 8 bits before scoring" if m["quantize"]
                     else "scored in float, no 8-bit quantisation")
    if m.get("ssim"):
        parts.append(f"SSIM window: {m['ssim']}")
    elif "ssim_window" in m:
        sigma = f", σ = {m['ssim_sigma']}" if "ssim_sigma" in m else ""
        parts.append(f"SSIM: gaussian {m['ssim_window']}×{m['ssim_window']}{sigma}")
    if "lpips_net" in m or "lpips_version" in m:
        # the trunk file is provenance, not a convention (runs group across it), so name every one
        trunks = sorted({f"{t.get('trunk')} #{str(t.get('trunk_sha256'))[:12]}" for r in runs
                         if isinstance(t := (r.conventions.get("metrics") or {}).get("lpips_trunk"), dict)})
        trunk = f" (AlexNet trunk {', '.join(trunks)})" if trunks else ""
        parts.append(f"LPIPS {m.get('lpips_net', '?')} v{m.get('lpips_version', '?')}{trunk}")
    return "; ".join(parts)


def _degradation_text(runs: Sequence[Run]) -> str:
    d = dict(runs[0].conventions.get("degradation") or {})
    scales = "/".join(scale_label(s) for s in sorted({r.scale for r in runs}))
    head = f"{d.get('type', 'unknown')} {scales}"
    if d.get("kernel"):
        head += f", kernel {d['kernel']}"
    rest = describe(d, skip={"type", "scale", "kernel", "name"})
    return head if rest == "not recorded" else f"{head}, {rest}"


_COUNTS = (("n_subjects", "subjects"), ("n_probes", "probes"), ("n_images", "images"),
           ("n_scored", "scored"), ("skipped", "skipped"))


def dataset_size(run: Run) -> str:
    """"20 subjects, 36 probes" / "219 images, 3 skipped" from whatever counts the run recorded."""
    ds = run.dataset
    parts = [f"{ds[k]} {word}" for k, word in _COUNTS if ds.get(k) is not None
             and not (k == "skipped" and not ds[k])
             and not (k == "n_scored" and ds[k] in (ds.get("n_images"), ds.get("n_probes")))]
    return ", ".join(parts) or "size not recorded"


def _dataset_text(runs: Sequence[Run]) -> str:
    return f"{runs[0].dataset_name} ({_per_run(runs, dataset_size)})"


def _git_text(git: Any) -> str:
    """The runner records ``{"commit", "dirty"}``; a plain hash string is accepted too."""
    if isinstance(git, Mapping):
        dirty = " + uncommitted changes" if git.get("dirty") else ""
        return f"{_short(git.get('commit'), 10)}{dirty}"
    return _short(git, 10)


def _provenance_text(runs: Sequence[Run]) -> str:
    def one(run: Run) -> str:
        return (f"git {_git_text(run.provenance.get('git'))}, protocol {run.protocol_name}"
                f" #{_short(run.protocol_hash)}")

    return _per_run(runs, one)


def version_of(provenance: Mapping[str, Any], package: str) -> str | None:
    """A package version from provenance: ``versions[package]`` or a top-level key."""
    versions = provenance.get("versions")
    if isinstance(versions, Mapping) and versions.get(package):
        return str(versions[package])
    value = provenance.get(package) or provenance.get(package.replace("-", "_"))
    return str(value) if value else None


def _checkpoints_text(runs: Sequence[Run]) -> str:
    several = len({r.scale for r in runs}) > 1
    parts = []
    for scale, pairs in _by_scale(runs):
        for row, _ in pairs:
            if row.checkpoint_sha256:
                parts.append(f"{_who(row, scale, several)} {_short(row.checkpoint_sha256)}")
            elif row.checkpoint:
                parts.append(f"{_who(row, scale, several)} (checkpoint without sha256)")
    return ", ".join(parts) if parts else "none (no model loaded weights)"


def _ranked(row: ModelRow, run: Run) -> bool:
    """Whether a row competes for bold: methods do; declared references (the HR upper bound, the
    raw LR input) are shown but not ranked, as the paper bolds the best *method*."""
    return row.label not in run.references


def _reference_notes(runs: Sequence[Run]) -> list[str]:
    refs: dict[str, str] = {}
    for run in runs:
        refs.update(run.references)
    if not refs:
        return []
    described = "; ".join(f"{label}: {text}" for label, text in refs.items())
    return [f"References, shown but not ranked for bold — {described}."]


def _paper_cells(runs: Sequence[Run], scale: int, shown: Sequence[Metric], *, several: bool,
                 undetected_keep: Sequence[str], plain: bool = False) -> list[list[str]]:
    """The paper's published rows for the runs of ``scale`` that follow its protocol: italic labels,
    never bold, blank where the paper reports no figure (:mod:`fsr_bench.reporting.paper`)."""
    rows = list({r.label: r for run in runs if run.scale == scale for r in paper_rows(run)}.values())
    out = []
    for r in rows:
        cells = []
        for m in shown:
            value = r.metrics.get(m.key)
            if r.undetected and m.key in r.metrics and m.key not in undetected_keep:
                cells.append(UNDETECTED)
            else:
                cells.append("" if value is None else (m.number(value) if plain else m.format(value)))
        out.append([f"*{r.label}*", *([""] if several else []), *cells])
    return out


def _paper_notes(runs: Sequence[Run]) -> list[str]:
    return [x for x in (paper_note(runs), nearest_paper_line(runs)) if x]


def _footer(notes: _Notes, extra: Sequence[str], conventions: Sequence[str]) -> str:
    lines = [f"- {line}" for line in [*notes.lines(), *extra, *conventions]]
    return "\n".join(lines)


# -- reconstruction --------------------------------------------------------------------------------
def _unavailable_reason(row: ModelRow, key: str) -> str:
    if key in row.unavailable:
        return row.unavailable[key]
    if key == "psnr" and row.n_infinite_psnr:
        return "every output was identical to its HR image (infinite PSNR)"
    if key == "mps" and row.metrics.get("lpips") is None:
        return "MPS = 0.5·(SSIM + 1 − LPIPS) needs LPIPS"
    return "not reported by the runner"


def _identity_recognisers(runs: Sequence[Run]) -> list[str]:
    """The recognisers of the runs' identity columns (``conventions.metrics.identity``), in order."""
    names: list[str] = []
    for run in runs:
        ident = (run.conventions.get("metrics") or {}).get("identity")
        if isinstance(ident, Mapping):
            name = str((ident.get("recogniser") or {}).get("name") or "?")
            if name not in names:
                names.append(name)
    return names


def _identity_text(runs: Sequence[Run], names: list[str]) -> str:
    blocks = [(r.conventions.get("metrics") or {}).get("identity") for r in runs]
    ident: Mapping[str, Any] = next((b for b in blocks if isinstance(b, Mapping)), {})
    rec = ident.get("recogniser") or {}
    det = ident.get("detector") or {}
    flip = "flip-summed" if rec.get("flip_augmentation") else "single-view"
    return (f"ID cos / ID angle: per-image SR↔HR identity with {' / '.join(names)} ({flip} embeddings, "
            f"{rec.get('alignment', 'its own alignment')}); face detected by {det.get('detector', 'the detector')} "
            "on the HR image only and its alignment applied unchanged to SR and HR, so SR cannot move the crop; "
            "cosine of L2-normalised embeddings, angle = arccos in degrees (mean of per-image angles); images "
            "without a face on HR are left out (counted per row)")


def reconstruction_table(runs: Sequence[Run]) -> str:
    """Paper Table 2/3 layout: Methods | Scale | PSNR↑ SSIM↑ LPIPS↓ MPS↑, best per scale in bold;
    runs with ``metrics.identity`` add ID cos↑ / ID angle↓ (SR↔HR identity, the recogniser named).

    ``runs`` should be one comparable group (see :func:`fsr_bench.reporting.load.group_runs`).
    """
    _require(runs, RECONSTRUCTION)
    several = len({r.scale for r in runs}) > 1
    notes = _Notes()
    id_names = _identity_recognisers(runs)
    shown = (*RECONSTRUCTION_METRICS, *(IDENTITY_METRICS if id_names else ()))
    body: list[list[str]] = []
    for scale, pairs in _by_scale(runs):
        flags = {m.key: best_flags([row.metrics.get(m.key) if _ranked(row, run) else None
                                    for row, run in pairs], m) for m in shown}
        for i, (row, _) in enumerate(pairs):
            cells = [_method(row, notes, _who(row, scale, several)), scale_label(scale) if i == 0 else ""]
            for m in shown:
                value = row.metrics.get(m.key)
                if value is None:
                    reason = f"{m.name} unavailable: {_unavailable_reason(row, m.key)}"
                    cells.append(NA + notes.mark(reason, _who(row, scale, several)))
                else:
                    mark = ""
                    if m.key == "psnr" and row.n_infinite_psnr:
                        mark = notes.mark(
                            "PSNR is the mean over finite values; outputs identical to HR (infinite"
                            f" PSNR) left out: {row.n_infinite_psnr} of {row.n_images or '?'} images",
                            _who(row, scale, several))
                    if m.key == "identity_cosine" and row.n_identity_undetected:
                        mark = notes.mark(
                            f"no face detected on HR in {row.n_identity_undetected} of {row.n_images or '?'} "
                            "images; ID cos/angle are over the rest", _who(row, scale, several))
                    cells.append(_bold(m.format(value), flags[m.key][i]) + mark)
            body.append(cells)
        body += _paper_cells(runs, scale, shown, several=True, undetected_keep=())
    rec_name = "/".join(id_names)
    header = ["Methods", "Scale", *(f"{m.name} ({rec_name}) {m.arrow}" if m in IDENTITY_METRICS else m.heading
                                    for m in shown)]
    table = markdown_table(header, body, "ll" + "r" * len(shown))
    conventions = [
        "**Bold**: best per scale (↑ higher is better, ↓ lower is better).",
        *_reference_notes(runs),
        *_paper_notes(runs),
        f"Conventions: {_reconstruction_conventions(runs)}; degradation: {_degradation_text(runs)};"
        f" dataset: {_dataset_text(runs)}.",
        *([_identity_text(runs, id_names) + "."] if id_names else []),
        f"Provenance: {_provenance_text(runs)}; checkpoints (sha256): {_checkpoints_text(runs)}.",
    ]
    return f"{table}\n\n{_footer(notes, [], conventions)}\n"


def _format_params(params: int | None) -> str:
    if params is None:
        return NA
    if params >= 1_000_000:
        return f"{params / 1e6:.2f} M"
    if params >= 1_000:
        return f"{params / 1e3:.1f} K"
    return str(params)


def _format_rate(rate: float | None) -> str:
    if rate is None:
        return NA
    return f"{rate:.1f}" if rate >= 10 else f"{rate:.2f}"


def efficiency_table(runs: Sequence[Run]) -> str:
    """Methods | Scale | Params | GFLOPs | Images/s, with the device the speed was measured on.

    Not bolded: the fastest/smallest entry is usually bicubic, which says nothing about quality.
    """
    _require(runs, RECONSTRUCTION)
    body = []
    for scale, pairs in _by_scale(runs):
        for i, (row, _) in enumerate(pairs):
            body.append([
                row.shown_label, scale_label(scale) if i == 0 else "", _format_params(row.params),
                NA if row.gflops is None else f"{row.gflops:.2f}", _format_rate(row.images_per_s),
            ])
    table = markdown_table(["Methods", "Scale", "Params ↓", "GFLOPs ↓", "Images/s ↑"], body, "llrrr")

    def device(run: Run) -> str:
        torch_version = version_of(run.provenance, "torch")
        torch_text = f", torch {torch_version}" if torch_version else ""
        return f"{run.provenance.get('device', 'unknown device')}{torch_text}"

    return (f"{table}\n\n- Throughput measured on: {_per_run(runs, device)}. Parameters, GFLOPs and"
            " images/s as recorded by the runner.\n")


# -- recognition -----------------------------------------------------------------------------------
def no_face(metrics: Mapping[str, float | None]) -> bool:
    """Paper Table 4's "-": no probe face reached the recogniser, so nothing could be matched.

    That is a detection rate of 0, or a null average similarity (the runner's mark for "no probe
    and gallery face pair was detected"). Rank-1, TAR and EER are then meaningless too.
    """
    return (metrics.get("detection_rate") or 0.0) == 0.0 or (
        "average_similarity" in metrics and metrics["average_similarity"] is None)


def main_recogniser(run: Run) -> str | None:
    """The recogniser of a run's headline columns (``conventions.recogniser``), else its first."""
    rec = run.conventions.get("recogniser")
    if isinstance(rec, Mapping) and rec.get("name"):
        return str(rec["name"])
    return next((n for row in run.rows for n in row.by_recogniser), None)


def _value(row: ModelRow, run: Run, key: str) -> float | None:
    """A headline number: the row's own, else the main recogniser's operating-point block."""
    if key in row.metrics:
        return row.metrics[key]
    block = row.by_recogniser.get(main_recogniser(run) or "")
    value = block.columns().get(key) if block is not None else None
    return None if value is None else float(value)


def _missing_reason(row: ModelRow, run: Run, key: str) -> str:
    if key in row.unavailable:
        return row.unavailable[key]
    block = row.by_recogniser.get(main_recogniser(run) or "")
    why = block.reason(key) if block is not None else None
    if why:
        return str(why)
    if key.startswith("tar_cal_") and not row.by_recogniser:
        return "the protocol has no calibration set (no calibrated threshold)"
    return "not reported by the runner"


TAR_NOTE = ("TAR@FAR=1e-3: each row's own threshold, set on its evaluation impostor scores so that FAR ≤ 1e-3."
            " TAR@cal 1e-3: one threshold per recogniser, calibrated to FAR 1e-3 on HR-vs-HR comparisons of"
            " subjects disjoint from the evaluation subjects and applied unchanged to every row (a deployed"
            " system's operating point; the FAR it reaches on the evaluation impostors is in the appendix).")


def _recognition_shown(runs: Sequence[Run], several: bool) -> tuple[Metric, ...]:
    """The lead table's metrics: ≤ 8 columns with the label (and the scale when there are several)."""
    shown = [m for m in RECOGNITION_METRICS if m.key != "tar_cal_1e-3"
             or any(_value(row, run, m.key) is not None for run in runs for row in run.rows)]
    while len(shown) + 1 + several > 8:
        shown.pop()  # EER first: the appendix and the curves keep it
    return tuple(shown)


def recognition_table(runs: Sequence[Run]) -> str:
    """The section's lead table, paper Table 4 first: Matching Accuracy and Average Similarity, then
    detection rate, Rank-1, TAR@FAR=1e-3 (per row), TAR@cal 1e-3 (calibrated on disjoint subjects)
    and EER; percentages with one decimal, a 95% CI as ``[lo, hi]`` where the runner gave one; at most
    eight columns (the full operating-point grid is :func:`operating_points_table`, the appendix)."""
    _require(runs, "recognition")
    several = len({r.scale for r in runs}) > 1
    shown = _recognition_shown(runs, several)
    notes = _Notes()
    body: list[list[str]] = []
    any_undetected = False
    for scale, pairs in _by_scale(runs):
        masked = [(row, run, no_face(row.metrics)) for row, run in pairs]
        flags = {m.key: best_flags([_value(row, run, m.key) if _ranked(row, run)
                                    and not (dead and m.key != "detection_rate") else None
                                    for row, run, dead in masked], m) for m in shown}
        for i, (row, run, dead) in enumerate(masked):
            any_undetected |= dead
            cells = [_method(row, notes, _who(row, scale, several)),
                     *([scale_label(scale) if i == 0 else ""] if several else [])]
            for m in shown:
                value = _value(row, run, m.key)
                if dead and m.key != "detection_rate":
                    cells.append(UNDETECTED)
                elif value is None:
                    cells.append(NA + notes.mark(f"{m.name} unavailable: {_missing_reason(row, run, m.key)}",
                                                 _who(row, scale, several)))
                else:
                    text = _bold(m.number(value), flags[m.key][i])
                    if m.key in row.ci95:
                        text += " " + m.format_ci(row.ci95[m.key])
                    cells.append(text)
            body.append(cells)
        body += _paper_cells(runs, scale, shown, several=several, undetected_keep=("detection_rate",), plain=True)
    header = ["Methods", *(["Scale"] if several else []), *(m.column for m in shown)]
    table = markdown_table(header, body, "l" + ("l" if several else "") + "r" * len(shown))
    best = "best per scale" if several else "best of each column"
    extra = [f"**Bold**: {best} among the methods. [lo, hi]: 95% confidence interval from the runner.",
             *([TAR_NOTE] if any(m.key.startswith("tar_") for m in shown) else []),
             *_reference_notes(runs), *_paper_notes(runs)]
    if any_undetected:
        extra.append(f"“{UNDETECTED}”: no probe face reached the recogniser (none detected), so"
                     " nothing could be matched (as in the paper's Table 4).")
    return f"{table}\n\n{_footer(notes, extra, _recognition_conventions(runs))}\n"


def _recognition_conventions(runs: Sequence[Run]) -> list[str]:
    """Threshold, recogniser, detector, bootstrap: what moves Table 4's numbers. The runner's
    longer definitions (similarity, rank, ROC pairs, …) are in the full provenance section."""
    c = runs[0].conventions
    parts = []
    if c.get("threshold") is not None:
        parts.append(f"a probe matches when the cosine similarity to its own gallery face is"
                     f" ≥ {c['threshold']}")
    for key in ("recogniser", "detector"):
        if isinstance(c.get(key), Mapping):  # the face runner names its detector under "detector"
            title = "name" if c[key].get("name") else key
            parts.append(f"{key}: {describe(c[key], title=title)}")
    bootstrap = c.get("bootstrap")
    if isinstance(bootstrap, Mapping):
        how = " ".join(str(bootstrap[k]) for k in ("method",) if bootstrap.get(k))
        unit = f" over {bootstrap['unit']}s" if bootstrap.get("unit") else ""
        n = f", {bootstrap['n']} resamples" if bootstrap.get("n") else ""
        parts.append(f"CIs: bootstrap{unit} ({how}{n})" if how else f"CIs: bootstrap{unit}{n}")
    return [
        f"Conventions: {'; '.join(parts)}; degradation: {_degradation_text(runs)};"
        f" dataset: {_dataset_text(runs)}.",
        f"Provenance: {_provenance_text(runs)}; checkpoints (sha256): {_checkpoints_text(runs)}.",
    ]


def _matched(metrics: Mapping[str, Any]) -> str:
    n_matched, n_probes = metrics.get("n_matched"), metrics.get("n_probes")
    return f"{int(n_matched)}/{int(n_probes)}" if n_matched is not None and n_probes else NA


def distances_of(runs: Sequence[Run]) -> list[str]:
    """Camera distances present (naturally sorted); empty when there are fewer than two, because
    a single group (the runner's "all" for probe sets without distances) repeats the main table."""
    found = sorted({d for run in runs for row in run.rows for d in row.per_distance}, key=natural_key)
    return found if len(found) > 1 else []


def natural_key(text: str) -> tuple:
    """Sort key that puts "d2" before "d10"."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def per_distance_table(runs: Sequence[Run]) -> str | None:
    """Matching accuracy, average similarity and detection rate per camera distance (d1 = far).

    Returns None without per-distance results (or with a single group, see :func:`distances_of`).
    """
    _require(runs, "recognition")
    distances = distances_of(runs)
    if not distances:
        return None
    several = len({r.scale for r in runs}) > 1
    body: list[list[str]] = []
    counts: dict[str, set[int]] = {d: set() for d in distances}
    for scale, pairs in _by_scale(runs):
        columns: dict[tuple[str, str], list[bool]] = {}
        for d in distances:
            for m in DISTANCE_METRICS:
                values = []
                for row, run in pairs:
                    dist = row.per_distance.get(d, {})
                    dead = no_face(dist) and m.key != "detection_rate"
                    values.append(None if dead or not _ranked(row, run) else dist.get(m.key))
                columns[(d, m.key)] = best_flags(values, m)
        for i, (row, _) in enumerate(pairs):
            cells = [row.shown_label] + ([scale_label(scale) if i == 0 else ""] if several else [])
            for d in distances:
                entry = row.per_distance.get(d)
                if entry is not None and entry.get("n_probes") is not None:
                    counts[d].add(int(entry["n_probes"]))  # type: ignore[arg-type]
                for m in DISTANCE_METRICS:
                    if entry is None:
                        cells.append(NA)
                    elif no_face(entry) and m.key != "detection_rate":
                        cells.append(UNDETECTED)
                    else:
                        cells.append(_bold(m.format(entry.get(m.key)), columns[(d, m.key)][i]))
            body.append(cells)
    header = (["Methods"] + (["Scale"] if several else [])
              + [f"{d} {m.heading}" for d in distances for m in DISTANCE_METRICS])
    align = "l" + ("l" if several else "") + "r" * (len(distances) * len(DISTANCE_METRICS))
    table = markdown_table(header, body, align)
    n_text = ", ".join(f"{d}: {'/'.join(str(n) for n in sorted(counts[d])) or '?'}" for d in distances)
    refs = "".join(f"\n- {line}" for line in _reference_notes(runs))
    return (f"{table}\n\n- MA: matching accuracy; Sim: average similarity; Det: detection rate."
            f" **Bold**: best per distance. Probes per distance: {n_text}.{refs}\n")


def _pct(value: Any, digits: int = 1) -> str:
    return NA if value is None else f"{100 * float(value):.{digits}f}%"


def _ratio(value: Any) -> str:
    return NA if value is None else f"{float(value):.2f}×"


def _recognisers_of(runs: Sequence[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        for row in run.rows:
            names += [n for n in row.by_recogniser if n not in names]
    return names


def _cal_fars(runs: Sequence[Run], name: str) -> list[float]:
    """The calibrated target FARs of recogniser ``name`` across the runs, first-seen order."""
    fars: list[float] = []
    for run in runs:
        for row in run.rows:
            block = row.by_recogniser.get(name)
            ops = block.operating_points if block is not None else None
            fars += [c.target_far for c in (ops.calibrated if ops else ()) if c.target_far not in fars]
    return fars


def operating_points_table(runs: Sequence[Run]) -> str | None:
    """Fixed 0.4 and calibrated-FAR operating points side by side, per recogniser: TAR, the FAR
    reached on the evaluation impostors, wrong-identity rate, false-match ratios vs Bicubic and HR.

    † marks a row trained with that recogniser's features. None when no row has per-recogniser results.
    """
    _require(runs, "recognition")
    names = _recognisers_of(runs)
    if not names:
        return None
    fixed = runs[0].conventions.get("threshold", 0.4)
    parts = []
    for name in names:
        fars = _cal_fars(runs, name)
        header = ["Methods", "Det", f"MA@{fixed:g}", "Matched", f"FAR@{fixed:g}", f"WrongID@{fixed:g}"]
        for t in map(rate_tag, fars):
            header += [f"thr@FAR {t}", f"TAR@cal {t}", f"FAR reached ({t})", f"WrongID@cal {t}",
                       f"FAR×Bicubic ({t})", f"FAR×HR ({t})"]
        body = []
        for run in runs:
            refs = [r.label for r in run.rows if r.role == "reference" and r.label != "LR image"]
            bic = next((r.label for r in run.rows if r.name.startswith("bicubic_x")), None)
            for row in run.rows:
                block = row.by_recogniser.get(name)
                if block is None:
                    continue
                m, ops = block.metrics, block.operating_points
                mark = " †" if block.trained_with else ""
                at = ops.fixed if ops is not None else None
                cells = [row.label + mark, _pct(m.get("detection_rate")), _pct(m.get("matching_accuracy")),
                         _matched({**row.metrics, **m}), _pct(at.far if at else None, 3), _pct(at.wrong_id if at else None)]
                for far in fars:
                    c = ops.at_far(far) if ops is not None else None
                    if c is None:
                        cells += [NA] * 6
                        continue
                    cells += [f"{float(c.threshold):.4f}", _pct(c.tar), _pct(c.far, 3), _pct(c.wrong_id),
                              _ratio(c.far_vs.get(bic)) if bic else NA,
                              _ratio(c.far_vs.get(refs[-1])) if refs else NA]
                body.append(cells)
        parts.append(f"**{name}**\n\n" + markdown_table(header, body, "l" + "r" * (len(header) - 1)))
    notes = (f"- Fixed: the paper's threshold {fixed:g}; Matched: probes whose similarity to their own gallery face"
             " reached it. Calibrated (TAR@cal, the lead table's TAR@cal 1e-3): one threshold per recogniser and target FAR,"
             " set on HR-vs-HR scores of calibration subjects disjoint from the evaluation subjects and applied"
             " unchanged to every row; FAR reached = share of evaluation impostor comparisons at or above it."
             " WrongID: probes whose rank-1 is a wrong subject at or above the threshold (all probes)."
             " FAR×: ratio to that row's FAR (\"-\": both 0, or the reference 0). †: trained with this"
             " recogniser's features. The fixed threshold is the paper's, set for MobileFaceNet; another"
             " recogniser's cosine scale differs (dlib's embeddings are built for Euclidean distance and score"
             " different people far above 0.4), so compare it on the calibrated columns only.")
    return "\n\n".join(parts) + f"\n\n{notes}\n"


def operating_points_csv(runs: Sequence[Run]) -> str | None:
    """The full operating-point grid as CSV, raw values (fractions, thresholds, counts): one line per
    run, recogniser and row, every number of the row's per-recogniser block. None without one."""
    import csv
    import io

    lines = [(run, name, row, block) for run in runs for row in run.rows
             for name, block in row.by_recogniser.items()]
    if not lines:
        return None
    keys = list(dict.fromkeys(k for *_, block in lines for k in block.columns()))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["protocol", "scale", "recogniser", "label", "name", "role", "trained_with", *keys])
    for run, name, row, block in lines:
        values = block.columns()
        writer.writerow([run.protocol_name, run.scale, name, row.label, row.name, row.role,
                         block.trained_with, *("" if values.get(k) is None else values[k] for k in keys)])
    return buffer.getvalue()


def open_set_table(runs: Sequence[Run]) -> str | None:
    """DIR (TPIR at rank 1) and TPIR20 at each FPIR, per recogniser, with the unmated-probe count;
    None for closed-set runs."""
    _require(runs, "recognition")
    parts = []
    for name in _recognisers_of(runs):
        lines = []
        for run in runs:
            for row in run.rows:
                block = row.by_recogniser.get(name)
                ops = block.operating_points if block is not None else None
                if block is not None and ops is not None and ops.n_unmated:
                    lines.append((row, block, ops))
        if not lines:
            continue
        fpirs = sorted({f.target_fpir for _, _, ops in lines for f in ops.open_set})
        ranks = sorted({r for _, _, ops in lines for f in ops.open_set for r in f.tpir})

        def tpir(ops: OperatingPoints, f: float, r: int) -> float | None:
            point = ops.at_fpir(f)
            return point.tpir.get(r) if point is not None else None

        header = ["Methods", "n_unmated"] + [f"TPIR{r}@FPIR {rate_tag(f)}" for f in fpirs for r in ranks]
        body = [[row.label + (" †" if block.trained_with else ""), str(ops.n_unmated)]
                + [_pct(tpir(ops, f, r)) for f in fpirs for r in ranks] for row, block, ops in lines]
        parts.append(f"**{name}**\n\n" + markdown_table(header, body, "l" + "r" * (len(header) - 1)))
    if not parts:
        return None
    return ("\n\n".join(parts) + "\n\n- Open set: probes of non-enrolled subjects (unmated) set the threshold"
            " for each FPIR; TPIR1 = DIR, TPIR20 = QMUL-SurvFace's rank-20 convention.\n")


def _require(runs: Sequence[Run], kind: str) -> None:
    if not runs:
        raise ValueError("no runs to tabulate")
    wrong = [str(r.path) for r in runs if r.kind != kind]
    if wrong:
        raise ValueError(f"expected {kind} runs only; got other kinds from {', '.join(wrong)}")


# -- all tables at once ----------------------------------------------------------------------------
def report_tables(groups: Sequence[RunGroup]) -> str:
    """Every table of every group with its notes: what ``fsr-bench report``/``run`` print."""
    parts = []
    for group in groups:
        if group.kind == RECONSTRUCTION:
            parts.append(f"## {group.title}\n\n{reconstruction_table(group.runs)}")
            parts.append(f"### Efficiency\n\n{efficiency_table(group.runs)}")
        else:
            parts.append(f"## {group.title}\n\n{recognition_table(group.runs)}")
            distances = per_distance_table(group.runs)
            if distances:
                parts.append(f"### Per distance\n\n{distances}")
            ops = operating_points_table(group.runs)
            if ops:
                parts.append(f"### Operating points (fixed and calibrated thresholds)\n\n{ops}")
            open_set = open_set_table(group.runs)
            if open_set:
                parts.append(f"### Open-set identification\n\n{open_set}")
    return "\n".join(parts)


def tables_for_terminal(runs: Sequence[Run | str | Path]) -> str:
    """:func:`report_tables` for loaded runs or run folders (loaded and validated here)."""
    return report_tables(group_runs([r if isinstance(r, Run) else load_run(r) for r in runs]))
