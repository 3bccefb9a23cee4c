"""`fsr-bench run` on the embedded quickstart data: outputs, provenance, reuse, refusals."""
from __future__ import annotations

import csv
import json

import pytest
from conftest import REPO

from fsr_bench.errors import FsrBenchError
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint
from fsr_bench.protocol import ProtocolError, load_protocol, load_protocol_dict
from fsr_bench.run import run_protocol

QUICKSTART = REPO / "protocols" / "quickstart.yaml"  # tests run from any working directory

SMALL = ["data.dataset.hr_size=64", "run.report=false", "run.flops=false"]


def quiet(msg: str) -> None:
    pass


def test_quickstart_outputs(tmp_path):
    proto = load_protocol(str(QUICKSTART), SMALL)
    results = run_protocol(proto, tmp_path, progress=False, log=quiet)
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["label"] for r in rows] == [m.display for m in proto.models]
    assert set(rows[0]) >= {"model", "scale", "psnr", "ssim", "lpips", "mps"}
    by = {r["label"]: float(r["psnr"]) for r in rows}
    assert by["Bicubic (MATLAB a=-0.5)"] > by["Nearest"]  # interpolation order is a known fact
    per_image = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    assert len(per_image) == 2 * len(rows)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["protocol_hash"] == proto.hash()
    assert saved["conventions"]["metrics"]["crop_border"] == 4  # null -> the scale
    assert saved["conventions"]["degradation"]["scale"] == 4
    assert {"versions", "git", "device"} <= set(saved["provenance"])
    assert (tmp_path / "samples" / "astronaut" / "lr.png").is_file()
    assert results["models"][0]["n_images"] == 2


def test_rerun_reuses_finished_models_and_adds_only_new_ones(tmp_path):
    proto = load_protocol(str(QUICKSTART), SMALL + ["models=[{name: bicubic_x4}]"])
    run_protocol(proto, tmp_path, progress=False, log=quiet)
    first = (tmp_path / "models" / "bicubic_x4" / "result.json").stat().st_mtime_ns
    logs: list[str] = []
    more = load_protocol(str(QUICKSTART), SMALL + [
        "models=[{name: bicubic_x4}, {name: bicubic_x4, label: nn, overrides: {kernel: nearest}}]"])
    run_protocol(more, tmp_path, progress=False, log=logs.append)
    assert any("bicubic_x4: reusing" in m for m in logs)
    assert not any("nn: reusing" in m for m in logs)
    assert (tmp_path / "models" / "bicubic_x4" / "result.json").stat().st_mtime_ns == first
    assert len(list(csv.DictReader(open(tmp_path / "summary.csv")))) == 2


def test_learned_model_without_checkpoint_is_refused(tmp_path):
    proto = load_protocol(str(QUICKSTART), SMALL + ["models=[{name: tanet_x4}]"])
    with pytest.raises(ProtocolError, match="random weights are never benchmarked"):
        run_protocol(proto, tmp_path, progress=False, log=quiet)


def test_scale_mismatch_is_refused(tmp_path):
    proto = load_protocol(str(QUICKSTART), SMALL + ["models=[{name: bicubic_x8}]"])
    with pytest.raises(ProtocolError, match="x8 but the degradation is x4"):
        run_protocol(proto, tmp_path, progress=False, log=quiet)


def test_checkpoint_sha_recorded(tmp_path):
    model = create_model("tanet_x4", **MODELS.get("tanet_x4").tiny)
    ckpt = save_checkpoint(model, tmp_path / "tiny.pt")
    proto = load_protocol(str(QUICKSTART), SMALL + [f"models=[{{name: tanet_x4, checkpoint: {ckpt}}}]"])
    results = run_protocol(proto, tmp_path / "run", progress=False, log=quiet)
    from fsr_bench.models.checkpoint import sha256_file

    assert results["models"][0]["checkpoint_sha256"] == sha256_file(ckpt)
    assert results["models"][0]["params"] == model.num_parameters()


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).tiny is not None])
def test_every_registered_model_runs_in_a_protocol(name, tmp_path):
    """Any registered model (tiny config, saved as a checkpoint) goes through `fsr-bench run`."""
    model = create_model(name, **MODELS.get(name).tiny)
    ckpt = save_checkpoint(model, tmp_path / f"{name}.pt")
    proto = load_protocol(str(QUICKSTART), SMALL + [
        f"data.degradation.scale={model.scale}", "run.limit=1", "run.num_samples=0", "metrics.lpips=false",
        f"models=[{{name: {name}, checkpoint: {ckpt}}}]"])
    results = run_protocol(proto, tmp_path / "run", progress=False, log=quiet)
    row = results["models"][0]
    assert row["n_images"] == 1 and row["scale"] == model.scale
    assert row["metrics"]["psnr"] is not None and row["checkpoint_sha256"]


def test_folder_with_odd_sizes_and_a_corrupt_file(tmp_path):
    """Sizes not divisible by the scale are mod-cropped and counted; a corrupt file is an error
    naming it, or skipped and counted with on_error: skip — never silently dropped."""
    import torch

    from fsr_bench.data.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(torch.rand(3, 50, 42, generator=g), tmp_path / "faces" / f"f{i}.png")
    (tmp_path / "faces" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    base = SMALL + ["models=[{name: bicubic_x4}]", "metrics.lpips=false",
                    f"data.dataset={{type: folder, root: {tmp_path / 'faces'}}}"]
    with pytest.raises(FsrBenchError, match="broken.jpg"):
        run_protocol(load_protocol(str(QUICKSTART), base), tmp_path / "a", progress=False, log=quiet)
    proto = load_protocol(str(QUICKSTART), base + ["data.dataset.on_error=skip"])
    results = run_protocol(proto, tmp_path / "b", progress=False, log=quiet)
    assert results["conventions"]["dataset"]["skipped"] == 1
    assert results["models"][0]["n_images"] == 2 and results["models"][0]["n_mod_cropped"] == 2


def test_a_real_run_feeds_the_report_reader(tmp_path):
    """What the runner writes is what the report reads: schema, roles, samples manifest, CSVs."""
    from fsr_bench.reporting.load import load_run
    from fsr_bench.reporting.tables import tables_for_terminal
    from fsr_bench.results import COLUMNS, read_run

    proto = load_protocol(QUICKSTART, SMALL + ["run.num_samples=1"])
    result = run_protocol(proto, tmp_path, progress=False, log=quiet)
    on_disk = read_run(tmp_path / "results.json")
    assert on_disk.model_dump() == result.model_dump()
    # interpolation floors, and the shipped TANet-S (learned weights)
    assert {r.label: r.role for r in on_disk.models} == {
        m.display: ("model" if m.pretrained else "floor") for m in proto.models}
    assert [s.folder for s in on_disk.samples] == ["astronaut"]
    assert set(on_disk.samples[0].outputs) == {m.display for m in proto.models}
    run = load_run(tmp_path)
    assert run.absent == () and [r.label for r in run.rows] == [m.display for m in proto.models]
    assert run.samples[0].reference == tmp_path / "samples" / "astronaut" / "hr.png"
    assert load_run(tmp_path, result=result) == run  # the in-memory result reads like the folder
    with open(tmp_path / "summary.csv") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS["reconstruction"]["summary"]
    table = tables_for_terminal([run])
    for m in proto.models:
        assert m.display in table
