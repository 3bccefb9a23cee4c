"""The selection flag: a training run records the split its best.pt was selected on (list file +
sha256); a row scored on that very split is marked in the report (one footnote) and the leaderboard."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from fsr_bench.data.io import write_image
from fsr_bench.models import MODELS
from fsr_bench.models.checkpoint import read_checkpoint, training_record
from fsr_bench.protocol import load_protocol_dict
from fsr_bench.results import SELECTION_NOTE
from fsr_bench.run import run_protocol
from fsr_bench.train.config import load_config
from fsr_bench.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """Four identities x 2 smooth 32x32 faces; val.txt lists two of them, test.txt the other two."""
    root = tmp_path_factory.mktemp("sel")
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        for j in range(2):
            x = torch.rand(1, 3, 8, 8, generator=g)
            write_image(nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)[0],
                        root / "faces" / f"id{i}" / f"{j}.png")
    (root / "val.txt").write_text("id0\nid1\n")
    (root / "test.txt").write_text("id2\nid3\n")
    return root


@pytest.fixture(scope="module")
def trained(faces) -> Path:
    cfg = {"model": {"name": "tanet_x4", "overrides": dict(MODELS.get("tanet_x4").tiny)},
           "data": {"train": {"type": "folder", "root": str(faces / "faces"), "list_file": str(faces / "test.txt")},
                    "val": {"type": "folder", "root": str(faces / "faces"), "list_file": str(faces / "val.txt")},
                    "batch_size": 2, "workers": 0},
           "schedule": {"max_steps": 2, "log_every": 1}, "log": {"progress": False},
           "out_dir": str(faces / "run")}
    (faces / "train.yaml").write_text(yaml.safe_dump(cfg))
    train(load_config(faces / "train.yaml"), echo=lambda s: None)
    return faces / "run" / "best.pt"


def test_the_training_record_keeps_the_validation_split(faces, trained):
    expected = hashlib.sha256(b"id0\nid1\n").hexdigest()  # the list file's bytes, hashed here
    recorded = read_checkpoint(trained)["validation"]
    assert recorded["list_sha256"] == expected and recorded["list_file"] == str(faces / "val.txt")
    assert recorded["root_name"] == "faces"
    assert training_record(trained)["validation"] == recorded


def _run(faces: Path, ckpt: Path, list_name: str, out: Path):
    doc = {"name": f"sel_{list_name}",
           "data": {"dataset": {"type": "folder", "root": str(faces / "faces"), "list_file": str(faces / list_name)},
                    "degradation": {"type": "bicubic", "scale": 4}},
           "models": [{"name": "bicubic_x4", "label": "Bicubic"}, {"checkpoint": str(ckpt), "label": "Mine"}],
           "metrics": {"lpips": False}, "run": {"flops": False, "num_samples": 0}}
    return run_protocol(load_protocol_dict(doc), out, progress=False, log=lambda s: None)


def test_a_row_scored_on_its_selection_split_is_marked_once(faces, trained, tmp_path):
    on_val = _run(faces, trained, "val.txt", tmp_path / "val")
    rows = {r.label: r for r in on_val.models}
    assert rows["Mine"].training["selected_on_evaluated_data"] is True
    assert rows["Mine"].selected_on_evaluated_data and not rows["Bicubic"].selected_on_evaluated_data
    from fsr_bench.reporting.load import load_run
    from fsr_bench.reporting.report import write_report_for

    report = write_report_for([load_run(tmp_path / "val")], tmp_path / "val" / "report").read_text()
    assert report.count(SELECTION_NOTE) == 1  # one footnote
    mark = next(line for line in report.splitlines() if SELECTION_NOTE in line).lstrip("- ")[0]
    mine = next(line for line in report.splitlines() if line.startswith("| Mine"))
    assert mine.split("|")[1].strip().endswith(mark)
    assert not any(line.split("|")[1].strip().endswith(mark) for line in report.splitlines()
                   if line.startswith("| Bicubic"))

    on_test = _run(faces, trained, "test.txt", tmp_path / "test")
    mine_test = next(r for r in on_test.models if r.label == "Mine")
    assert mine_test.training["selected_on_evaluated_data"] is False
    report = write_report_for([load_run(tmp_path / "test")], tmp_path / "test" / "report").read_text()
    assert SELECTION_NOTE not in report
    saved = json.loads((tmp_path / "test" / "results.json").read_text())
    assert saved["models"][1]["training"]["validation"]["list_sha256"] == hashlib.sha256(b"id0\nid1\n").hexdigest()


def test_shipped_models_are_flagged_on_faces256_val():
    """The shipped TANet-S were selected on faces256 val (their cards say so): faces256_val_x4 flags them."""
    from fsr_bench.protocol import load_protocol
    from fsr_bench.run.common import evaluated_split, training_of

    shared = Path("../shared/data/splits/faces256_val.txt")
    if not shared.is_file():
        pytest.skip("needs ../shared (the faces256 val list file)")
    proto = load_protocol("faces256_val_x4")
    spec = next(m for m in proto.models if m.pretrained)
    assert training_of(spec, evaluated_split(proto))["selected_on_evaluated_data"] is True
    lfw = load_protocol("lfw_surveillance_x8")
    spec = next(m for m in lfw.models if m.pretrained)
    assert training_of(spec, evaluated_split(lfw)).get("selected_on_evaluated_data") is False


def test_a_card_selection_split_flags_shipped_weights(faces, monkeypatch):
    """Shipped weights whose card names its selection split (package_pretrained.py's `selection`) are
    flagged on that split and not on another, without a training record in the budget."""
    from fsr_bench.models import pretrained as pre
    from fsr_bench.protocol import ModelSpec
    from fsr_bench.run.common import training_of
    from fsr_bench.weights import WeightSpec

    val = faces / "val.txt"
    entry = pre.Pretrained("bicubic_x4", WeightSpec(name="test", url="", sha256="0" * 64, filename="test.safetensors"), summary={
        "budget": {"steps": 3},
        "selection": {"split": {"type": "folder", "root": str(faces / "faces"), "list_file": str(val)},
                      "list_file": str(val), "list_sha256": hashlib.sha256(val.read_bytes()).hexdigest()}})
    monkeypatch.setitem(pre._REGISTRY, "bicubic_x4", entry)
    spec = ModelSpec(name="bicubic_x4", pretrained=True)
    on = {"type": "folder", "root_name": "faces", "list_file": "x", "list_sha256": hashlib.sha256(b"id0\nid1\n").hexdigest()}
    off = {**on, "list_sha256": hashlib.sha256(b"id2\nid3\n").hexdigest()}
    assert training_of(spec, on)["selected_on_evaluated_data"] is True
    assert training_of(spec, off)["selected_on_evaluated_data"] is False
