"""Fine-tuning starts (`model.pretrained` / `model.checkpoint` in a training config): the run starts
from exactly those weights and records them by content (issue 14's four-way recipes fine-tune the
shipped TANet-S)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from fsr_bench.data.io import write_image
from fsr_bench.models import create_model
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint
from fsr_bench.train.config import load_config
from fsr_bench.train.trainer import Trainer, TrainError, train


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            x = torch.rand(1, 3, 8, 8, generator=g)
            write_image(torch.nn.functional.interpolate(x, size=32, mode="bilinear")[0], root / split / f"{i}.png")
    return root


def _cfg(tmp_path: Path, faces: Path, model: dict):
    cfg = {
        "model": model,
        "data": {"train": {"type": "folder", "root": str(faces / "train")},
                 "val": {"type": "folder", "root": str(faces / "val")}, "batch_size": 2, "workers": 0},
        "schedule": {"max_steps": 1, "log_every": 1},
        "log": {"progress": False},
        "out_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path, [])


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_pretrained_start_is_the_shipped_weights_and_is_recorded(tmp_path, faces):
    shipped = create_model("tanet_s_x4", pretrained=True)
    trainer = Trainer(_cfg(tmp_path, faces, {"name": "tanet_s_x4", "pretrained": True}), echo=lambda s: None)
    try:
        start = trainer.model.state_dict()
        for key, value in shipped.state_dict().items():
            assert torch.equal(start[key], value), key
        trainer.fit()
    finally:
        trainer.close()
    init = read_checkpoint(tmp_path / "run" / "last.pt")["init_weights"]
    assert init["pretrained"] is True
    assert init["sha256"] == _sha256(Path(shipped.checkpoint_path))  # hashlib, not the toolkit's hasher


def test_checkpoint_start_is_recorded(tmp_path, faces):
    start = create_model("tanet_s_x4")
    save_checkpoint(start, tmp_path / "start.pt")
    summary = train(_cfg(tmp_path, faces, {"name": "tanet_s_x4", "checkpoint": str(tmp_path / "start.pt")}),
                    echo=lambda s: None)
    assert summary["init_weights"]["sha256"] == _sha256(tmp_path / "start.pt")
    assert summary["init_weights"]["pretrained"] is False


def test_scratch_run_records_no_start(tmp_path, faces):
    summary = train(_cfg(tmp_path, faces, {"name": "tanet_s_x4"}), echo=lambda s: None)
    assert summary["init_weights"] is None


def test_pretrained_and_checkpoint_together_is_an_error(tmp_path, faces):
    save_checkpoint(create_model("tanet_s_x4"), tmp_path / "start.pt")
    with pytest.raises(TrainError, match="both set"):
        Trainer(_cfg(tmp_path, faces, {"name": "tanet_s_x4", "pretrained": True,
                                       "checkpoint": str(tmp_path / "start.pt")}), echo=lambda s: None)
