"""fsr_bench.results: a closed, versioned schema; committed version-1 files read through one migration."""
from __future__ import annotations

import json

import pytest
from conftest import REPO

from fsr_bench import results
from fsr_bench.results import (
    SCHEMA_VERSION,
    OperatingPoints,
    RecognitionRow,
    ReconstructionRow,
    ResultsError,
    RunResult,
    read_run,
    write_run,
)

COMMITTED = sorted((REPO / "reports").rglob("results.json"))
# committed before version 2 (what the migration must read) / regenerated since (written by the v2 writer)
VERSION_1 = [p for p in COMMITTED if "schema_version" not in json.loads(p.read_text())]
VERSION_2 = [p for p in COMMITTED if p not in VERSION_1]


def _version_1(file):
    doc = json.loads(file.read_text())
    assert "schema_version" not in doc
    return doc


@pytest.mark.parametrize("file", VERSION_2, ids=[str(p.relative_to(REPO)) for p in VERSION_2])
def test_committed_version_2_files_read_back_unchanged(file, tmp_path):
    """A committed v2 file is what the writer writes: read, rewritten, it is the same document."""
    run = read_run(file)
    assert run.schema_version == SCHEMA_VERSION
    write_run(tmp_path, run)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(file.read_text())


@pytest.mark.parametrize("file", VERSION_1, ids=[str(p.relative_to(REPO)) for p in VERSION_1])
def test_committed_version_1_files_migrate_without_losing_a_number(file, tmp_path):
    """Every flat column the old runner wrote comes back from the structured operating points, value for
    value (the committed file, written by the old code, is the reference); a v2 rewrite reads back equal."""
    doc = _version_1(file)
    run = read_run(file)
    assert run.schema_version == SCHEMA_VERSION
    for old, row in zip(doc["models"], run.models):
        assert row.kind == doc["kind"] and row.role == old.get("role", row.role)
        blocks = [(old, row)]
        if isinstance(row, RecognitionRow):
            blocks += [(old["by_recogniser"][k], row.by_recogniser[k]) for k in old.get("by_recogniser", {})]
        for was, now in blocks:
            ops = now.operating_points if not isinstance(now, ReconstructionRow) else None
            flat = {**now.metrics, **(ops.columns() if ops else {})}
            assert flat == was["metrics"]
            assert {**now.unavailable, **(ops.unavailable if ops else {})} == was["unavailable"]
            assert not any(k.startswith(("tar_cal_", "fpir_", "far_at_")) for k in now.metrics)
    write_run(tmp_path, run)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION and all(m["kind"] == doc["kind"] for m in written["models"])
    assert read_run(tmp_path / "results.json") == run


def _minimal(kind="reconstruction", **row):
    metrics = {"ssim": 0.9} if kind == "reconstruction" else {"matching_accuracy": 0.5, "detection_rate": 1.0}
    return {"kind": kind, "conventions": {}, "models": [{"label": "A", "name": "a", "metrics": metrics, **row}]}


def test_an_undeclared_field_is_refused_on_write_and_on_read(tmp_path):
    with pytest.raises(ValueError, match="recogniser_typo"):
        RunResult.model_validate(_minimal("recognition", recogniser_typo="dlib"))
    doc = {"schema_version": SCHEMA_VERSION, **_minimal(extra_number=3)}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"models\[0\] \('A'\)\.reconstruction\.extra_number"):
        read_run(tmp_path / "results.json")


def test_rows_are_typed_by_the_run_kind(tmp_path):
    run = RunResult.model_validate(_minimal("recognition", recogniser="mobilefacenet", trained_with=["dlib"]))
    assert isinstance(run.models[0], RecognitionRow) and run.models[0].trained_with == ["dlib"]
    assert isinstance(RunResult.model_validate(_minimal(params=12)).models[0], ReconstructionRow)
    with pytest.raises(ValueError, match="params"):  # a reconstruction field on a recognition row
        RunResult.model_validate(_minimal("recognition", params=12))
    mixed = _minimal()
    mixed["models"][0]["kind"] = "recognition"
    with pytest.raises(ValueError, match="recognition row in a reconstruction run"):
        RunResult.model_validate({**mixed, "models": [{**mixed["models"][0],
                                                       "metrics": {"matching_accuracy": 1, "detection_rate": 1}}]})


def test_a_newer_schema_version_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, **_minimal()}))
    with pytest.raises(ResultsError, match="newer than this fsr-bench reads.*upgrade"):
        read_run(tmp_path / "results.json")


def test_version_1_flat_columns_become_fields():
    """A version-1 row, written out by hand in the old column spelling, reads as structured points."""
    doc = _minimal("recognition")
    doc["models"][0]["metrics"].update({
        "n_genuine": 3, "n_impostor": 12, "threshold_cal_1e-2": 0.99, "far_cal_1e-2": 0.0, "n_false_accepts_cal_1e-2": 0,
        "wrong_id_cal_1e-2": 0.0, "n_wrong_id_cal_1e-2": 0, "tar_cal_1e-2": 0.25, "fnmr_cal_1e-2": 0.75,
        "far_at_0.4": 1 / 3, "n_false_accepts_at_0.4": 4, "wrong_id_at_0.4": 0.4, "n_wrong_id_at_0.4": 2,
        "n_mated": 3, "n_unmated": 2, "threshold_fpir_0.5": 0.35, "fpir_0.5": 0.5, "tpir1_fpir_0.5": 1 / 3,
        "tpir2_fpir_0.5": 2 / 3, "fpir_cal_1e-2": 0.0, "tpir1_cal_1e-2": 0.0, "far_at_0.4_vs_HR probes": 2.0})
    doc["models"][0]["unavailable"] = {"fpir_1e-2": "too few unmated probes", "average_similarity": "none detected"}
    run = RunResult.model_validate(results.migrate(doc))
    row = run.models[0]
    assert isinstance(row, RecognitionRow) and row.operating_points is not None
    ops: OperatingPoints = row.operating_points
    cal = ops.at_far(0.01)
    assert cal is not None and (cal.threshold, cal.tar, cal.fpir, cal.tpir) == (0.99, 0.25, 0.0, {1: 0.0})
    assert (ops.fixed.threshold, ops.fixed.n_false_accepts, ops.fixed.far_vs) == (0.4, 4, {"HR probes": 2.0})
    assert ops.at_fpir(0.5).tpir == {1: 1 / 3, 2: 2 / 3} and (ops.n_mated, ops.n_unmated) == (3, 2)
    assert ops.unavailable == {"fpir_1e-2": "too few unmated probes"}
    assert row.metrics == {"matching_accuracy": 0.5, "detection_rate": 1.0}
    assert row.unavailable == {"average_similarity": "none detected"}
