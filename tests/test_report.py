"""``fsr-bench report``: loading/validation, paper-layout tables, figures, grids and the CLI.

Run folders are synthesised here in the runner's format with made-up numbers (the rendering is
under test, not the numbers) and small generated face-like images, so no data folder is needed.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image

from fsr_bench.reporting.load import ReportInputError, group_runs, load_run, load_runs
from fsr_bench.reporting.tables import (
    efficiency_table,
    per_distance_table,
    recognition_table,
    reconstruction_table,
)

# label -> (psnr, ssim, lpips, mps) per scale; TANet best except SSIM at x8 (SPARNet) for variety.
RECON = {
    4: {"Bicubic": (29.60, 0.8340, 0.3138, 0.7601), "SPARNet": (32.39, 0.8887, 0.1628, 0.8630),
        "TANet": (32.61, 0.8910, 0.1590, 0.8660)},
    8: {"Bicubic": (25.88, 0.7197, 0.5102, 0.6048), "SPARNet": (28.40, 0.7990, 0.2911, 0.7513),
        "TANet": (28.62, 0.7972, 0.2844, 0.7564)},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- synthetic run folders -------------------------------------------------------------------------
def _face(size: int, seed: int) -> np.ndarray:
    """A face-like test card: skin ellipse, two eyes, a mouth, on a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.3 + 0.4 * xx, 0.35 + 0.2 * yy, 0.6 - 0.3 * xx], axis=-1)
    face = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.52) / 0.42) ** 2 < 1
    img[face] = (0.86, 0.67, 0.55)
    for cx in (0.38, 0.62):
        img[((xx - cx) / 0.06) ** 2 + ((yy - 0.46) / 0.03) ** 2 < 1] = (0.15, 0.1, 0.1)
    img[(np.abs(xx - 0.5) < 0.1) & (np.abs(yy - 0.72) < 0.015)] = (0.6, 0.2, 0.2)
    img += rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in r] for r in rows)


def _conventions_recon(scale: int) -> dict:
    return {
        "metrics": {"y_channel": True, "crop_border": None, "quantize": True,
                    "ssim": "gaussian 11x11 sigma=1.5", "lpips_net": "alex", "lpips_version": "0.1"},
        "degradation": {"type": "bicubic", "scale": scale, "kernel": "matlab_bicubic"},
        "dataset": {"name": "faces256-val", "root": "/data/faces256", "n_images": 219, "skipped": 0},
    }


def _provenance() -> dict:
    return {"fsr_bench": "0.1.0", "git": "0123456789abcdef", "python": "3.11", "torch": "2.4",
            "device": "cpu (test)", "timestamp": "2025-01-01T00:00:00Z"}


def make_recon_run(root: Path, scale: int, *, lpips_missing: Sequence[str] = (), hr: int = 64,
                   n_samples: int = 2, faces: Sequence[np.ndarray] | None = None) -> Path:
    """A reconstruction run folder in the runner's format; ``faces`` overrides the test cards."""
    root.mkdir(parents=True, exist_ok=True)
    models, summary, per_image = [], [], []
    for label, (psnr, ssim, lpips, mps) in RECON[scale].items():
        missing = label in lpips_missing
        name = f"{label.lower()}_x{scale}"
        models.append({
            "label": label, "name": name, "scale": scale,
            "checkpoint": None if label == "Bicubic" else f"/w/{name}.safetensors",
            "checkpoint_sha256": None if label == "Bicubic" else hashlib.sha256(name.encode()).hexdigest(),
            "params": 0 if label == "Bicubic" else 10_500_000, "gflops": None if label == "Bicubic" else 4.2,
            "images_per_s": 123.4, "n_images": 219,
            "metrics": {"psnr": psnr, "ssim": ssim, "lpips": None if missing else lpips,
                        "mps": None if missing else mps},
            **({"unavailable": {"lpips": "AlexNet backbone weights not downloadable offline"}} if missing else {}),
        })
        summary.append([name, scale, label, psnr, ssim, None if missing else lpips,
                        None if missing else mps, 219, 0, None, 123.4])
    stems = [f"img{i:03d}" for i in range(n_samples)]
    for i, stem in enumerate(stems):
        face = faces[i] if faces is not None else _face(hr, seed=i)
        lr = np.asarray(Image.fromarray(face).resize((face.shape[1] // scale, face.shape[0] // scale),
                                                     Image.Resampling.BICUBIC))
        _save(root / "samples" / stem / "hr.png", face)
        _save(root / "samples" / stem / "lr.png", lr)
        for j, (label, (psnr, ssim, lpips, _)) in enumerate(RECON[scale].items()):
            up = Image.fromarray(lr).resize((face.shape[1], face.shape[0]), Image.Resampling.BICUBIC)
            sr = (np.asarray(up).astype(float) * (1 - 0.25 * j) + face.astype(float) * 0.25 * j)
            _save(root / "samples" / stem / f"{label}.png", sr.clip(0, 255).astype(np.uint8))
            per_image.append([f"{label.lower()}_x{scale}", label, f"7201/{stem}.jpg",
                              psnr + i * 0.1, ssim, None if label in lpips_missing else lpips])
    results = {"kind": "reconstruction", "protocol_name": f"faces_x{scale}", "protocol_hash": f"{scale}" * 16,
               "protocol": {"scale": scale}, "conventions": _conventions_recon(scale),
               "provenance": _provenance(), "models": models}
    (root / "results.json").write_text(json.dumps(results, indent=2))
    _write_csv(root / "summary.csv", ["model", "scale", "label", "psnr", "ssim", "lpips", "mps", "n_images",
                                      "params", "gflops", "images_per_s"], summary)
    _write_csv(root / "per_image.csv", ["model", "label", "image", "psnr", "ssim", "lpips"], per_image)
    return root


# label -> (matching accuracy, average similarity, detection rate); "LR image" is never detected.
RECOG = {"LR image": (0.0, None, 0.0), "Bicubic": (4 / 130, 0.186256, 0.6),
         "SRFBN": (18 / 130, 0.280387, 0.9), "TANet": (22 / 130, 0.292729, 0.95)}


def make_recog_run(root: Path, scale: int = 8, *, n_samples: int = 2,
                   faces: Sequence[np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    models, summary, per_probe = [], [], []
    for k, (label, (acc, sim, det)) in enumerate(RECOG.items()):
        dead = det == 0.0
        far = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        tar = [min(1.0, 0.05 * k + f ** 0.3) for f in far]
        metrics = {"matching_accuracy": acc, "average_similarity": sim, "detection_rate": det,
                   "rank1": None if dead else 0.05 * k, "rank5": None if dead else 0.1 * k,
                   "tar_at_far_1e-2": None if dead else tar[2], "tar_at_far_1e-3": None if dead else tar[1],
                   "eer": None if dead else 0.4 - 0.05 * k, "n_probes": 130, "n_matched": round(acc * 130)}
        models.append({
            "label": label, "name": label.lower().replace(" ", "_"), "scale": scale, "checkpoint": None,
            "checkpoint_sha256": None, "metrics": metrics,
            "ci95": {} if dead else {"matching_accuracy": [max(0.0, acc - 0.05), acc + 0.06]},
            "per_distance": {d: {"matching_accuracy": 0.0 if dead else acc * f, "average_similarity": sim,
                                 "detection_rate": 0.0 if dead else min(1.0, det * f), "n_probes": 43}
                             for d, f in (("d1", 0.5), ("d2", 1.0), ("d3", 1.5))},
            "roc": {"far": [] if dead else far, "tar": [] if dead else tar},
            "cmc": [] if dead else [min(1.0, 0.05 * k + 0.03 * r) for r in range(10)],
        })
        summary.append([models[-1]["name"], scale, label, acc, sim, det, metrics["rank1"],
                        metrics["tar_at_far_1e-3"], metrics["eer"], 130])
    stems = [f"{i + 1:03d}_cam1_1" for i in range(n_samples)]
    for i, stem in enumerate(stems):
        face = faces[i] if faces is not None else _face(64, seed=10 + i)
        small = np.asarray(Image.fromarray(face).resize((face.shape[1] // scale, face.shape[0] // scale)))
        _save(root / "samples" / stem / "lr.png", small)
        _save(root / "samples" / stem / "gallery.png", face)
        for k, label in enumerate(RECOG):
            if label == "LR image":
                continue
            up = Image.fromarray(small).resize((face.shape[1], face.shape[0]), Image.Resampling.BICUBIC)
            _save(root / "samples" / stem / f"{label}.png", np.asarray(up))
            sim = 0.2 + 0.08 * k - 0.05 * i
            per_probe.append([label, stem, f"{i + 1:03d}", round(sim, 4), "true"])
        per_probe.append(["LR image", stem, f"{i + 1:03d}", None, "false"])
    results = {"kind": "recognition", "protocol_name": f"scface_x{scale}", "protocol_hash": "ab" * 32,
               "protocol": {}, "conventions": {
                   "threshold": 0.4, "recogniser": {"name": "mobilefacenet", "weights_sha256": "cd" * 32},
                   "detector": {"name": "mtcnn", "min_face": 12},
                   "degradation": {"type": "real", "scale": scale},
                   "dataset": {"name": "scface-like", "root": "/data/scface", "n_images": 130, "skipped": 0}},
               "provenance": _provenance(), "models": models}
    (root / "results.json").write_text(json.dumps(results, indent=2))
    _write_csv(root / "summary.csv", ["model", "scale", "label", "matching_accuracy", "average_similarity",
                                      "detection_rate", "rank1", "tar_at_far_1e-3", "eer", "n_probes"], summary)
    _write_csv(root / "per_probe.csv", ["label", "probe", "subject", "similarity", "detected"], per_probe)
    return root


def _row(table: str, label: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{table}")


def _rows(table: str, label: str) -> list[list[str]]:
    out = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            out.append(cells)
    return out


# -- tables ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_scales(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    return make_recon_run(base / "x4", 4), make_recon_run(base / "x8", 8, lpips_missing=("SPARNet",))


def test_both_scales_in_one_table_with_best_bold_per_scale(two_scales):
    groups = group_runs(load_runs(two_scales))
    assert len(groups) == 1 and groups[0].scales == (4, 8)
    table = reconstruction_table(groups[0].runs)
    header = table.splitlines()[0]
    assert all(h in header for h in ("PSNR ↑", "SSIM ↑", "LPIPS ↓", "MPS ↑"))
    tanet4, tanet8 = _rows(table, "TANet")
    bic4, bic8 = _rows(table, "Bicubic")
    assert bic4[1] == "×4" and bic8[1] == "×8"
    # x4: TANet best on every metric, LPIPS lowest is best
    assert tanet4[2:] == ["**32.61**", "**0.8910**", "**0.1590**", "**0.8660**"]
    assert bic4[2:] == ["29.60", "0.8340", "0.3138", "0.7601"]
    # x8: SPARNet has the best SSIM, TANet the best PSNR; bold is decided per scale
    spar8 = _rows(table, "SPARNet")[1]
    assert spar8[3] == "**0.7990**" and tanet8[3] == "0.7972" and tanet8[2] == "**28.62**"


def test_lpips_unavailable_is_na_with_footnote(two_scales):
    runs = load_runs(two_scales)
    table = reconstruction_table(runs)
    spar8 = _rows(table, "SPARNet")[1]
    assert spar8[4].startswith("n/a") and spar8[5].startswith("n/a")
    mark = spar8[4][len("n/a"):]
    assert mark, "the n/a needs a footnote mark"
    note = next(line for line in table.splitlines() if line.startswith(f"- {mark} "))
    assert "AlexNet backbone weights not downloadable offline" in note and "SPARNet ×8" in note
    # best LPIPS at x8 is among the rows that have one
    assert _rows(table, "TANet")[1][4] == "**0.2844**"


def test_conventions_and_provenance_footnote(two_scales):
    table = reconstruction_table(load_runs(two_scales))
    notes = table.split("\n\n", 1)[1]
    for needle in ("Y channel", "border crop = scale (4 px at ×4, 8 px at ×8)", "8 bits", "gaussian 11x11", "LPIPS alex v0.1",
                   "bicubic ×4/×8", "matlab_bicubic", "faces256-val", "219 images", "git 0123456789",
                   "protocol faces_x4 #444444444444"):
        assert needle in notes, needle
    sha = json.loads((two_scales[0] / "results.json").read_text())["models"][2]["checkpoint_sha256"]
    assert f"TANet ×4 {sha[:12]}" in notes and sha not in notes  # short form only


def test_efficiency_table(two_scales):
    table = efficiency_table(load_runs(two_scales))
    assert _row(table, "TANet")[2:] == ["10.50 M", "4.20", "123.4"]
    assert _row(table, "Bicubic")[3] == "n/a"
    assert "cpu (test)" in table


def test_different_conventions_are_never_merged(tmp_path, two_scales):
    other = make_recon_run(tmp_path / "rgb", 4)
    data = json.loads((other / "results.json").read_text())
    data["conventions"]["metrics"]["y_channel"] = False
    (other / "results.json").write_text(json.dumps(data))
    groups = group_runs(load_runs([two_scales[0], other]))
    assert len(groups) == 2 and "conventions set 2" in groups[1].title


def test_duplicate_label_at_same_scale_is_an_error(tmp_path, two_scales):
    copy = make_recon_run(tmp_path / "again", 4)
    with pytest.raises(ReportInputError, match="'Bicubic' at ×4 appears in both"):
        group_runs(load_runs([two_scales[0], copy]))


@pytest.fixture(scope="module")
def recog_run(tmp_path_factory) -> Path:
    return make_recog_run(tmp_path_factory.mktemp("recog") / "scface")


def test_recognition_table_percent_dash_and_bold(recog_run):
    table = recognition_table([load_run(recog_run)])
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    # the lead table: paper Table 4 first, units in the heading, at most eight columns (no calibration here:
    # no TAR@cal column)
    assert header == ["Methods", "Matching Accuracy (%) ↑", "Average Similarity ↑", "Detection rate (%) ↑",
                      "Rank-1 (%) ↑", "TAR@FAR=1e-3 (%) ↑", "EER (%) ↓"]
    assert _row(table, "LR image")[1:3] == ["-", "-"]
    tanet, bicubic = _row(table, "TANet"), _row(table, "Bicubic")
    assert tanet[1] == "**16.9** [11.9, 22.9]"  # one decimal, the CI in the narrow form
    assert tanet[2] == "**0.2927**"
    assert bicubic[1].startswith("3.1 [") and bicubic[2] == "0.1863"
    assert "best per scale" not in table  # no Scale column here
    assert "no probe face reached the recogniser" in table and "≥ 0.4" in table and "mobilefacenet" in table


def test_null_average_similarity_prints_dash_even_when_probes_were_detected(recog_run):
    """The runner's null average similarity (no probe/gallery pair detected) is Table 4's "-"."""
    run = load_run(recog_run)
    srfbn = next(r for r in run.rows if r.label == "SRFBN")
    gone = dataclasses.replace(srfbn, metrics={**srfbn.metrics, "average_similarity": None})
    run = dataclasses.replace(run, rows=tuple(gone if r is srfbn else r for r in run.rows))
    row = _row(recognition_table([run]), "SRFBN")
    assert row[1:3] == ["-", "-"] and row[3] == "90.0"


def test_per_distance_table(recog_run):
    table = per_distance_table([load_run(recog_run)])
    assert table is not None and "d1 MA ↑" in table.splitlines()[0]
    lr = _row(table, "LR image")
    assert lr[1:3] == ["-", "-"] and lr[3] == "0.0%"
    assert _row(table, "TANet")[4] == "**16.9%**"  # d2 MA, one decimal as every percentage


# -- validation ------------------------------------------------------------------------------------
def test_folder_without_results_json_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match=r"results\.json not found.*not a finished fsr-bench run"):
        load_run(tmp_path / "empty")


def test_corrupt_files_are_named(tmp_path):
    run = make_recon_run(tmp_path / "r", 4, n_samples=1)
    (run / "results.json").write_text('{"kind": "reconstruction", "models": [')
    with pytest.raises(ReportInputError, match=r"results\.json is not valid JSON \(line 1"):
        load_run(run)
    run = make_recon_run(tmp_path / "s", 4, n_samples=1)
    data = json.loads((run / "results.json").read_text())
    del data["models"][1]["metrics"]["ssim"]
    (run / "results.json").write_text(json.dumps(data))
    with pytest.raises(ReportInputError, match=r"missing field \"models\[1\] \('SPARNet'\)\.metrics\.ssim\""):
        load_run(run)
    run = make_recon_run(tmp_path / "t", 4, n_samples=1)
    (run / "per_image.csv").write_text("model,label,image,psnr,ssim,lpips\nx,TANet,a.png,abc,0.5,\n")
    with pytest.raises(ReportInputError, match=r"per_image\.csv: line 2, column 'psnr'"):
        load_run(run)
    # a truncated row (a file cut short mid-write) is named, not read as empty scores (README: why this
    # reader stays on the csv module rather than pandas.read_csv, which pads short rows)
    (run / "per_image.csv").write_text("model,label,image,psnr,ssim,lpips\nx,TANet,a.png,30.0\n")
    with pytest.raises(ReportInputError, match=r"per_image\.csv: line 2 has the wrong number of fields"):
        load_run(run)
    (run / "per_image.csv").unlink()
    (run / "summary.csv").write_text("model,scale,label\n")
    with pytest.raises(ReportInputError, match=r"summary\.csv: missing column"):
        load_run(run)


# -- figures, report, CLI --------------------------------------------------------------------------
def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        img.verify()
    return path.read_bytes()[:8] == PNG_MAGIC


def test_write_report_writes_markdown_and_valid_figures(tmp_path, two_scales, recog_run):
    from fsr_bench.reporting import write_report

    out = write_report([*two_scales, recog_run], tmp_path / "report")
    assert out == tmp_path / "report" / "report.md"
    text = out.read_text()
    for needle in ("# fsr-bench report", "## What was run", "Reconstruction — faces256-val",
                   "Recognition — scface-like", "## Conventions & provenance", "**32.61**", "**16.9** [11.9, 22.9]"):
        assert needle in text, needle
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    expected = {"metrics", "vs-scale", "x4-samples", "x8-samples", "roc", "cmc", "x8-distance"}
    assert {re.sub(r"^figures/[a-z0-9-]*?-(x\d-samples|x\d-distance|vs-scale|metrics|roc|cmc)\.png$",
                   r"\1", link) for link in links} >= expected
    for link in links:
        assert _is_png(out.parent / link), link
    assert not list(out.parent.rglob("*.tmp"))  # atomic writes left nothing behind


def test_cli_report(tmp_path, two_scales):
    from typer.testing import CliRunner

    from fsr_bench.cli import app

    result = CliRunner().invoke(app, ["report", *map(str, two_scales), "--out", str(tmp_path / "r"),
                                      "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert "| TANet" in result.output and "**32.61**" in result.output
    assert str(tmp_path / "r" / "report.md") in result.output
    assert (tmp_path / "r" / "report.md").is_file()


def test_cli_report_default_out_and_clear_error(tmp_path):
    from typer.testing import CliRunner

    from fsr_bench.cli import app

    run = make_recon_run(tmp_path / "only", 4, n_samples=1)
    result = CliRunner().invoke(app, ["report", str(run), "--crop", "none"])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "report.md").is_file()
    (tmp_path / "notarun").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "notarun")])
    assert result.exit_code != 0
    assert "results.json not found" in result.output and "Traceback" not in result.output


def test_grids_annotate_tiles_from_per_image_and_per_probe(two_scales, recog_run):
    from fsr_bench.reporting.grids import recognition_grid, reconstruction_grid
    from fsr_bench.reporting.plots import method_colours

    run = load_run(two_scales[0])
    fig = reconstruction_grid(run, method_colours(r.label for r in run.rows), max_samples=1)
    labels = {ax.get_xlabel(): ax.xaxis.label.get_fontweight() for ax in fig.axes}
    assert labels["32.61 dB / 0.8910"] == "bold" and labels["29.60 dB / 0.8340"] == "normal"
    assert "input 16×16 px" in labels
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["LR (nearest ×4)", "Bicubic", "SPARNet", "TANet", "HR"]
    assert sum(1 for ax in fig.axes if ax.patches) == 5  # crop rectangle on every tile

    run = load_run(recog_run)
    fig = recognition_grid(run, method_colours(r.label for r in run.rows))
    texts = {ax.get_xlabel() for ax in fig.axes}
    assert "cos 0.4400 ✓ match" in texts and "cos 0.2800 ✗ no match" in texts
    assert "subject 001" in texts


def test_corrupt_sample_image_is_named(tmp_path):
    from fsr_bench.reporting import write_report

    run = make_recon_run(tmp_path / "r", 4, n_samples=1)
    (run / "samples" / "img000" / "TANet.png").write_bytes(PNG_MAGIC + b"garbage")
    with pytest.raises(ReportInputError, match=r"img000/TANet\.png"):
        write_report([run], tmp_path / "out")


def test_declared_references_are_shown_but_not_ranked(recog_run):
    run = load_run(recog_run)
    run = dataclasses.replace(run, conventions={**run.conventions,
                                                "references": {"TANet": "upper bound (test)"}})
    table = recognition_table([run])
    assert _row(table, "TANet")[1].startswith("16.9 [")  # shown, not bold
    assert _row(table, "SRFBN")[1].startswith("**13.8** [")
    assert "not ranked for bold — TANet: upper bound (test)" in table


def test_runs_sharing_a_scale_get_distinct_figure_names(tmp_path):
    from fsr_bench.reporting.report import _run_tags

    a = make_recon_run(tmp_path / "a", 4, n_samples=1)
    b = make_recon_run(tmp_path / "b", 4, n_samples=1)
    data = json.loads((b / "results.json").read_text())
    for m in data["models"]:
        m["label"] += " v2"
    (b / "results.json").write_text(json.dumps(data))
    (b / "summary.csv").unlink()
    groups = group_runs(load_runs([a, b]))
    assert len(groups) == 1 and _run_tags(groups[0]) == ["x4-1", "x4-2"]
