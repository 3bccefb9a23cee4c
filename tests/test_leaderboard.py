"""fsr-bench leaderboard: the same model across runs is one line, every cell equals its results.json."""
from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint
from fsr_bench.protocol import load_protocol
from fsr_bench.run import run_protocol

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = ["data.dataset.hr_size=64", "run.report=false", "run.flops=false"]


def test_leaderboard_joins_runs_and_copies_their_numbers(tmp_path):
    ckpt = save_checkpoint(create_model("tanet_x4", **MODELS.get("tanet_x4").tiny), tmp_path / "t.pt")
    models = f"models=[{{name: bicubic_x4, label: Bicubic}}, {{name: tanet_x4, label: TANet-tiny, checkpoint: {ckpt}}}]"
    runs = []
    for name, size in (("a", 64), ("b", 96)):
        proto = load_protocol(str(REPO / "protocols/quickstart.yaml"),
                              SMALL + [models, f"name={name}", f"data.dataset.hr_size={size}"])
        run_protocol(proto, tmp_path / name, progress=False, log=lambda s: None)
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    result = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv")))
    # one line per model, both runs joined; a TANet row names its tokenisation
    assert [r["method"] for r in rows] == ["Bicubic", "TANet-tiny (patch tokens)"]
    for run, tag in zip(runs, "ab"):
        for m in run["models"]:
            line = next(r for r in rows if r["method"].startswith(m["label"]))
            assert float(line[f"{tag}:psnr"]) == pytest.approx(m["metrics"]["psnr"], abs=1e-9)
            assert run["protocol_hash"][:12] in line["sources"]
    tanet = next(r for r in rows if r["method"].startswith("TANet-tiny"))
    assert not tanet.get("budget_steps")  # a checkpoint not written by fsr-bench train has no budget: not invented
    assert "| Bicubic" in (tmp_path / "lb" / "leaderboard.md").read_text()
    bad = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "no results.json" in bad.output
