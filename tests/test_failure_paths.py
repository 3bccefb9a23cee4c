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
