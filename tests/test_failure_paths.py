"""Failure paths of the output folders, footage, export, caches and memory guards (issue 25)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.io import write_image
from fsr_bench.errors import FsrBenchError
from fsr_bench.protocol import ProtocolError, load_protocol
from fsr_bench.run import run_protocol

QUICKSTART = REPO / "protocols" / "quickstart.yaml"
SMALL = ["data.dataset.hr_size=32", "run.report=false", "run.flops=false", "metrics.lpips=false",
         "models=[{name: bicubic_x4, label: Bic}]"]
runner = CliRunner()


def quiet(msg: str) -> None:
    pass


def _run(out, *sets, force=False):
    return run_protocol(load_protocol(str(QUICKSTART), SMALL + list(sets)), out, progress=False, log=quiet, force=force)


def _folder_set(root) -> list[str]:
    return [f"data.dataset={{type: folder, root: {root}}}"]


# -- item 1: a failed first run claims nothing -------------------------------------------------------

def test_a_failed_first_run_does_not_claim_its_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FsrBenchError, match="no_such_root"):
        _run(out, *_folder_set(tmp_path / "no_such_root"))
    assert not (out / "owner.json").exists()
    good = tmp_path / "good"
    write_image(torch.rand(3, 32, 32), good / "a.png")
    _run(out, *_folder_set(good))  # the corrected rerun is not refused
    assert json.loads((out / "owner.json").read_text())["protocol_name"] == "quickstart"


def test_a_corrupt_image_first_run_does_not_claim_its_folder(tmp_path):
    bad = tmp_path / "bad"
    write_image(torch.rand(3, 32, 32), bad / "a.png")
    (bad / "b.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    with pytest.raises(FsrBenchError, match="b.png"):
        _run(out, *_folder_set(bad))
    (bad / "b.png").unlink()
    _run(out, *_folder_set(tmp_path / "bad"), "data.degradation.scale=8", "models.0.name=bicubic_x8")  # another data block
    assert (out / "results.json").is_file()


def test_a_failing_rerun_leaves_owner_json_alone(tmp_path):
    _run(tmp_path)
    before = (tmp_path / "owner.json").read_bytes()
    with pytest.raises(ProtocolError):
        _run(tmp_path, "models.1={name: tanet_x4}")  # refused: no checkpoint (another protocol hash)
    assert (tmp_path / "owner.json").read_bytes() == before


def test_refusing_another_protocol_does_not_promise_reuse(tmp_path):
    _run(tmp_path)
    result = runner.invoke(app, ["run", str(QUICKSTART), "-o", str(tmp_path), "-q", "--set", "name=other",
                                 *[a for s in SMALL for a in ("--set", s)]])
    assert result.exit_code == 2, result.output
    assert "belongs to protocol" in result.output and "a rerun reuses them" not in result.output


def test_force_over_another_owner_starts_clean(tmp_path):
    _run(tmp_path)
    assert (tmp_path / "models" / "Bic").is_dir()
    (tmp_path / "notes.txt").write_text("the user's")
    _run(tmp_path, "name=other", "models=[{name: bicubic_x4, label: Other}]", force=True)
    assert not (tmp_path / "models" / "Bic").exists()
    import csv

    with open(tmp_path / "summary.csv") as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    assert labels == {"Other"}
    assert (tmp_path / "notes.txt").read_text() == "the user's"  # not an fsr-bench file: kept


# -- item 3: --force sweeps only fsr-bench's own temp files, only in its run folders ----------------

def test_force_into_a_foreign_folder_keeps_its_temp_files(tmp_path):
    draft = tmp_path / "notes" / ".draft.tmp"
    office = tmp_path / ".~lock.sheet.ods#.tmp"
    for p in (draft, office):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("mine")
    _run(tmp_path, force=True)
    assert draft.read_text() == "mine" and office.read_text() == "mine"


def test_a_run_folder_sweeps_only_atomic_temp_names(tmp_path):
    _run(tmp_path)
    ours = tmp_path / "models" / "Bic" / ".result.json.k3x_9abq.tmp"  # mkstemp's 8 random characters
    theirs = tmp_path / "models" / ".draft.tmp"
    for p in (ours, theirs):
        p.write_text("partial")
    _run(tmp_path)
    assert not ours.exists() and theirs.read_text() == "partial"


# -- item 2: an `sr --faces` job folder has one run in it ------------------------------------------

def _faces(tmp_path, *args):
    return runner.invoke(app, ["sr", str(tmp_path / "frame.png"), "--faces", "-m", "bicubic_x4", "--precision", "fp32",
                               "-o", str(tmp_path / "o"), *args])


def test_sr_faces_rerun_into_a_used_job_folder_is_refused_then_replaced(tmp_path):
    write_image(torch.full((3, 64, 96), 0.5), tmp_path / "frame.png")
    assert _faces(tmp_path).exit_code == 0
    job = tmp_path / "o" / "frame_bicubic_x4"
    stale = job / "faces" / "000000_f00.png"  # what an earlier run with other options found
    write_image(torch.rand(3, 8, 8), stale)
    (job / "watchlist.json").write_text("{}")
    again = _faces(tmp_path, "--min-face", "30")
    assert again.exit_code == 2 and "--force" in again.output and str(job) in again.output, again.output
    assert stale.exists()  # refused: nothing touched
    forced = _faces(tmp_path, "--min-face", "30", "--force")
    assert forced.exit_code == 0, forced.output
    assert not stale.exists() and not (job / "watchlist.json").exists()
    assert json.loads((job / "frames" / "000000.json").read_text())["detector"]["min_face"] == 30


def test_sr_faces_job_folder_names_the_checkpoint(tmp_path):
    from fsr_bench.models import MODELS, create_model
    from fsr_bench.models.checkpoint import save_checkpoint

    write_image(torch.full((3, 32, 48), 0.5), tmp_path / "frame.png")
    tiny = MODELS.get("tanet_x4").tiny
    torch.manual_seed(0)
    a = save_checkpoint(create_model("tanet_x4", **tiny), tmp_path / "a.pt")
    torch.manual_seed(1)
    b = save_checkpoint(create_model("tanet_x4", **tiny), tmp_path / "b.pt")
    for ckpt in (a, b):
        result = runner.invoke(app, ["sr", str(tmp_path / "frame.png"), "--faces", "-c", str(ckpt), "--precision",
                                     "fp32", "--device", "cpu", "-o", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
    jobs = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert len(jobs) == 2 and all(j.startswith("frame_tanet_x4_") for j in jobs), jobs


@pytest.mark.parametrize("args,message", [(["--track-iou", "-1"], "--track-iou"), (["--min-score", "2"], "--min-score")])
def test_sr_faces_options_checked_before_loading(tmp_path, monkeypatch, args, message):
    from fsr_bench.run import frames

    def no_detector(*a, **k):
        raise AssertionError("the detector was built before the options were checked")

    monkeypatch.setattr(frames, "build_detector", no_detector)
    write_image(torch.full((3, 32, 48), 0.5), tmp_path / "frame.png")
    result = _faces(tmp_path, *args)
    assert result.exit_code == 2 and message in result.output and "error:" in result.output, result.output


# -- item 4: a threshold read from a run is checked like a stated one --------------------------------

def _calibrated_run(folder, threshold, extra=None):
    """A schema-valid recognition results.json whose calibrated threshold at FAR 0.001 is ``threshold``
    (written as raw JSON: a tampered or hand-edited file)."""
    from fsr_bench.results import RecognitionRow, RunResult, write_run

    run = RunResult(kind="recognition", protocol_name="synthetic", conventions={
        "calibration": {"per_recogniser": {"mobilefacenet": {"thresholds": {"0.001": 0.3}, **(extra or {})}}}},
        models=[RecognitionRow(label="HR", name="hr", metrics={"matching_accuracy": 1.0, "detection_rate": 1.0})])
    folder.mkdir(parents=True, exist_ok=True)
    write_run(folder, run)
    doc = json.loads((folder / "results.json").read_text())
    doc["conventions"]["calibration"]["per_recogniser"]["mobilefacenet"]["thresholds"]["0.001"] = threshold
    (folder / "results.json").write_text(json.dumps(doc))  # json writes nan as NaN, as a tampered file may
    return folder


@pytest.mark.parametrize("value", [5.0, float("nan"), float("inf"), "abc", None, [0.3], True])
def test_a_calibrated_threshold_is_checked_and_names_its_key(tmp_path, value):
    from fsr_bench.run.watchlist import WatchlistError, resolve_threshold

    run = _calibrated_run(tmp_path / "run", value)
    with pytest.raises(WatchlistError, match=r"conventions\.calibration\.per_recogniser\.mobilefacenet\."
                                             r"thresholds\.0\.001.*\[-1, 1\]"):
        resolve_threshold(str(run), "mobilefacenet", 1e-3)


def test_a_calibrated_threshold_source_never_carries_nan(tmp_path):
    from fsr_bench.run.watchlist import resolve_threshold

    run = _calibrated_run(tmp_path / "run", 0.3, {"far_reached": {"0.001": float("nan")}, "tar": {"0.001": "x"}})
    threshold, source = resolve_threshold(str(run), "mobilefacenet", 1e-3)
    assert threshold == 0.3
    json.dumps(source, allow_nan=False)  # strict JSON: no NaN / Infinity token
    assert source["far_reached"] is None and source["tar"] is None


@pytest.mark.parametrize("per", [[1], {"mobilefacenet": [0.3]}, {"mobilefacenet": {"thresholds": [0.3]}}])
def test_a_malformed_calibration_block_is_an_error_line(tmp_path, per):
    from fsr_bench.run.watchlist import WatchlistError, resolve_threshold

    run = _calibrated_run(tmp_path / "run", 0.3)
    doc = json.loads((run / "results.json").read_text())
    doc["conventions"]["calibration"]["per_recogniser"] = per
    (run / "results.json").write_text(json.dumps(doc))
    with pytest.raises(WatchlistError, match="conventions.calibration.per_recogniser"):
        resolve_threshold(str(run), "mobilefacenet", 1e-3)


def test_a_missing_threshold_run_names_the_path_given(tmp_path):  # item 9
    from fsr_bench.run.watchlist import WatchlistError, resolve_threshold

    with pytest.raises(WatchlistError, match=f"{tmp_path / 'nope'}: not a number.*no such"):
        resolve_threshold(str(tmp_path / "nope"), "mobilefacenet", 1e-3)


# -- item 7: an error line where a traceback was ---------------------------------------------------

@pytest.mark.parametrize("command", ["report", "leaderboard"])
def test_report_and_leaderboard_onto_a_file_or_read_only_disk(tmp_path, monkeypatch, command):
    import errno

    from fsr_bench import atomic

    _run(tmp_path / "run")
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, [command, str(tmp_path / "run"), "-o", str(afile)])
    assert result.exit_code == 2 and f"error: cannot write {afile}" in result.output, result.output

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic, "write_bytes", read_only)
    result = runner.invoke(app, [command, str(tmp_path / "run"), "-o", str(tmp_path / "ro")])
    assert result.exit_code == 2 and "Read-only file system" in result.output and "writable" in result.output, \
        result.output


# -- items 7 and 8: a tampered cache costs a recomputation, never a wrong number or a traceback ------

class _Aligner:
    def describe(self):
        return {"detector": "stub"}


class _Recogniser:
    embedding_dim = 4

    def describe(self):
        return {"name": "stub", "dim": 4}


def test_a_face_cache_with_another_embedding_size_is_recomputed(tmp_path):
    from fsr_bench.run.caches import CACHE_VERSION, FaceStore

    store = FaceStore(tmp_path, _Aligner(), _Recogniser(), None)
    torch.save({"version": CACHE_VERSION, "keys": ["a", "b"], "detected": torch.tensor([True, False]),
                "embeddings": torch.zeros(2, 512)}, store.path)  # a 512-d recogniser's cache
    assert FaceStore(tmp_path, _Aligner(), _Recogniser(), None).entries == {}
    torch.save({"version": CACHE_VERSION, "keys": ["a", "b"], "detected": torch.tensor([True]),
                "embeddings": torch.zeros(2, 4)}, store.path)  # lengths disagree
    assert FaceStore(tmp_path, _Aligner(), _Recogniser(), None).entries == {}
    torch.save({"version": CACHE_VERSION, "keys": ["a"], "detected": torch.tensor([True]),
                "embeddings": torch.ones(1, 4)}, store.path)
    assert set(FaceStore(tmp_path, _Aligner(), _Recogniser(), None).entries) == {"a"}  # a sound one is used


def _sr_cache(tmp_path, scale, outputs):
    from fsr_bench.protocol import ModelSpec
    from fsr_bench.run.caches import CACHE_VERSION, SRStore

    spec = ModelSpec(name="bicubic_x8")
    store = SRStore(tmp_path, spec, None, fresh=False, scale=8)
    torch.save({"version": CACHE_VERSION, "scale": scale, "variant": None, "keys": list(outputs),
                "outputs": list(outputs.values())}, store.path)
    return SRStore(tmp_path, spec, None, fresh=False, scale=8)


def test_an_sr_cache_of_another_scale_is_not_used(tmp_path):
    store = _sr_cache(tmp_path, 4, {"k": torch.zeros(3, 32, 32, dtype=torch.uint8)})
    assert store.scale is None and store.outputs == {}  # the row's scale is not read from a wrong cache


def test_sr_cache_outputs_of_the_wrong_size_or_dtype_are_recomputed(tmp_path):
    lr = torch.zeros(3, 4, 5)
    store = _sr_cache(tmp_path, 8, {"good": torch.zeros(3, 32, 40, dtype=torch.uint8),
                                    "size": torch.zeros(3, 16, 20, dtype=torch.uint8),
                                    "dtype": torch.zeros(3, 32, 40)})
    assert store.scale == 8
    assert store.holds("good", lr) and not store.holds("size", lr) and not store.holds("dtype", lr)
    assert not store.holds("absent", lr)


@pytest.mark.parametrize("value", [True, "29.5"])
def test_a_metric_that_is_not_a_number_is_refused(tmp_path, value):  # item 8: `psnr: true` was 1.0
    from fsr_bench.results import ResultsError, read_run

    _run(tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    doc["models"][0]["metrics"]["psnr"] = value
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"models\[0\] \('Bic'\)\.(reconstruction\.)?metrics\.psnr.*must be a number"):
        read_run(tmp_path / "results.json")
    result = runner.invoke(app, ["leaderboard", str(tmp_path), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 2 and "metrics.psnr" in result.output, result.output


@pytest.mark.parametrize("block", [5, [1], {"metrics": [0.5]}, {"metrics": {"rank1": "high"}}])
def test_a_malformed_by_recogniser_entry_is_named(tmp_path, block):  # item 7
    from fsr_bench.results import RecognitionRow, ResultsError, RunResult, read_run, write_run

    run = RunResult(kind="recognition", protocol_name="synthetic", conventions={}, models=[RecognitionRow(
        label="HR", name="hr", metrics={"matching_accuracy": 1.0, "detection_rate": 1.0},
        by_recogniser={"mobilefacenet": {"metrics": {"rank1": 1.0}}})])
    write_run(tmp_path, run)
    doc = json.loads((tmp_path / "results.json").read_text())
    doc["models"][0]["by_recogniser"]["mobilefacenet"] = block
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"models\[0\] \('HR'\)\.(recognition\.)?by_recogniser\.mobilefacenet"):
        read_run(tmp_path / "results.json")


def test_a_malformed_manifest_sha256_is_an_error_line(tmp_path):  # item 7
    import fsr_bench.models.pretrained as pretrained
    from fsr_bench.models.pretrained import PretrainedError

    doc = json.loads(pretrained.MANIFEST.read_text())
    doc["weights"][0]["sha256"] = "not-a-digest"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(PretrainedError, match=r"manifest\.json: weights\[0\] is malformed.*sha256.*reinstall"):
        pretrained.read_manifest(manifest)


# -- item 5: export --opset is checked and read back ---------------------------------------------

@pytest.mark.parametrize("opset", [11, 17, 99])
def test_export_refuses_an_opset_it_cannot_write(opset, monkeypatch):
    pytest.importorskip("onnxscript")
    from fsr_bench.models import MODELS, create_model
    from fsr_bench.models.export import ExportError, export_onnx

    def no_export(*a, **k):
        raise AssertionError("exported before the opset was checked")

    monkeypatch.setattr(torch.export, "export", no_export)
    model = create_model("tanet_x4", **MODELS.get("tanet_x4").tiny)
    with pytest.raises(ExportError, match=rf"--opset {opset}: .*18 to \d+"):
        export_onnx(model, "unused.onnx", dynamic=False, size=(16, 16), opset=opset)


def test_export_reads_the_opset_back_from_the_graph():
    onnx = pytest.importorskip("onnx")
    from fsr_bench.models.export import ExportError, written_opset

    graph = onnx.helper.make_graph([], "g", [], [])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    assert written_opset(proto, 18) == 18
    with pytest.raises(ExportError, match="asked for opset 20.*wrote opset 18"):
        written_opset(proto, 20)


def test_export_cli_refuses_opset_17(tmp_path):
    pytest.importorskip("onnxscript")
    result = runner.invoke(app, ["export", "bicubic_x4", "--onnx", str(tmp_path / "m.onnx"), "--static", "16x16",
                                 "--opset", "17"])
    assert result.exit_code == 2 and "--opset 17" in result.output and not (tmp_path / "m.onnx").exists(), \
        result.output


# -- item 6: every large allocation under a budget, with the way out -------------------------------

def test_export_refuses_a_static_size_beyond_the_graph_range(monkeypatch):
    pytest.importorskip("onnxscript")
    from fsr_bench.models import create_model
    from fsr_bench.models.export import MAX_SIDE, ExportError, export_onnx

    def no_alloc(*a, **k):
        raise AssertionError("the example input was allocated before the size was checked")

    monkeypatch.setattr(torch, "rand", no_alloc)
    with pytest.raises(ExportError, match=rf"30000x30000.*at most {MAX_SIDE}.*smaller --static"):
        export_onnx(create_model("bicubic_x4"), "unused.onnx", dynamic=False, size=(30000, 30000))


def test_sr_tile_keeps_the_assembled_output_under_a_budget(tmp_path, monkeypatch):
    from fsr_bench.models import tiling

    monkeypatch.setattr(tiling, "MAX_ASSEMBLED_PIXELS", 10_000)  # 32x32 at x4 assembles 16,384 px
    write_image(torch.rand(3, 32, 32), tmp_path / "in.png")
    result = runner.invoke(app, ["sr", str(tmp_path / "in.png"), "-m", "bicubic_x4", "--tile", "16",
                                 "--max-pixels", "1000", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "assembled output" in result.output and "error:" in result.output, result.output
    assert not (tmp_path / "o" / "in_bicubic_x4.png").exists()
    monkeypatch.undo()
    ok = runner.invoke(app, ["sr", str(tmp_path / "in.png"), "-m", "bicubic_x4", "--tile", "16", "-o",
                             str(tmp_path / "o")])
    assert ok.exit_code == 0 and "tiles bicubic_x4" in ok.output, ok.output  # progress over the tiles


def test_sr_allocator_failure_is_an_error_line(tmp_path, monkeypatch):
    from fsr_bench.models import precision

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 7900000000 bytes.")

    monkeypatch.setattr(precision, "infer", oom)
    write_image(torch.rand(3, 16, 16), tmp_path / "in.png")
    result = runner.invoke(app, ["sr", str(tmp_path / "in.png"), "-m", "bicubic_x4", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "out of memory" in result.output and "--tile" in result.output, result.output
    assert not isinstance(result.exception, RuntimeError)


def test_sr_faces_paste_canvas_is_under_a_budget(tmp_path, monkeypatch):
    from fsr_bench.run import frames

    monkeypatch.setattr(frames, "PASTE_PIXELS", 10_000)  # a 64x96 frame at x4 is 98,304 px
    write_image(torch.full((3, 64, 96), 0.5), tmp_path / "frame.png")
    result = _faces(tmp_path)
    assert result.exit_code == 1 and "--paste-scale 1" in result.output and "--no-paste" in result.output, \
        result.output
    assert _faces(tmp_path, "--paste-scale", "1", "--force").exit_code == 0


# -- item 9: the smaller ones ---------------------------------------------------------------------

def test_a_checkpoint_folder_is_named_as_a_folder(tmp_path):
    from fsr_bench.models.checkpoint import CheckpointError, read_checkpoint

    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a folder, not a file \(it holds: best\.pt\)"):
        read_checkpoint(tmp_path)
    result = runner.invoke(app, ["export", "tanet_x4", "-c", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "is a folder" in result.output, result.output


def test_a_fractional_scale_names_the_protocol_key(tmp_path):
    with pytest.raises(ProtocolError, match=r"data\.degradation\.scale must be a positive integer"):
        _run(tmp_path, "data.degradation.scale=3.5")
