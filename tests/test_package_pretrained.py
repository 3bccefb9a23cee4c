"""Shipping a trained checkpoint under a pretrained id of its own (issue 21 items 4-5).

A tiny model is really trained here (``fsr-bench train``, a few steps on synthetic faces), packaged by
``benchmarks/package_pretrained.py`` into a temporary package folder, loaded back by its id, and re-scored
through a protocol row ``pretrained: true``. Expected hashes come from hashlib, not from the code under test.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.io import write_image
from fsr_bench.models import MODELS, create_model
from fsr_bench.models import pretrained as pre
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint
from fsr_bench.train.config import load_config
from fsr_bench.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = MODELS.get("tanet_x4").tiny
spec = importlib.util.spec_from_file_location("package_pretrained", REPO / "benchmarks" / "package_pretrained.py")
assert spec and spec.loader
pkg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pkg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """best.pt of a tiny TANet x4 trained for 4 steps (val split selected through a list file)."""
    root = tmp_path_factory.mktemp("ship")
    g = torch.Generator().manual_seed(0)
    for ident in ("a", "b", "c"):
        for j in range(3):
            x = torch.rand(1, 3, 8, 8, generator=g)
            write_image(torch.nn.functional.interpolate(x, size=32, mode="bilinear")[0], root / "faces" / ident / f"{j}.png")
    (root / "train.txt").write_text("a\nb\n")
    (root / "val.txt").write_text("c\n")
    faces = str(root / "faces")
    cfg = {"model": {"name": "tanet_x4", "overrides": dict(TINY)},
           "data": {"train": {"type": "folder", "root": faces, "list_file": str(root / "train.txt")},
                    "val": {"type": "folder", "root": faces, "list_file": str(root / "val.txt")},
                    "batch_size": 2, "workers": 0},
           "schedule": {"max_steps": 4, "log_every": 2}, "log": {"progress": False}, "out_dir": str(root / "run")}
    (root / "train.yaml").write_text(yaml.safe_dump(cfg))
    train(load_config(root / "train.yaml"), echo=lambda s: None)
    protocol = {"kind": "reconstruction", "name": "ship_eval", "data": {"dataset": {"type": "package_faces", "hr_size": 64},
                "degradation": {"type": "bicubic", "scale": 4, "kernel": "matlab_bicubic"}},
                "models": [{"name": "bicubic_x4"}], "metrics": {"lpips": False},
                "run": {"device": "cpu", "flops": False, "report": False, "num_samples": 0}}
    (root / "eval.yaml").write_text(yaml.safe_dump(protocol))
    return root / "run" / "best.pt", root


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(pre, "_REGISTRY", dict(pre._REGISTRY))
    return pre._REGISTRY


def test_package_load_and_rebuild_a_row(trained, tmp_path, monkeypatch, registry):
    best, root = trained
    folder = tmp_path / "pretrained"
    row = pkg.package(best, "tanet_x4.tiny4", "TANet tiny (4 steps)", str(root / "eval.yaml"), folder, tmp_path / "eval")
    path = folder / "tanet_x4.tiny4.safetensors"
    assert row["id"] == "tanet_x4.tiny4" and row["model"] == "tanet_x4" and row["tag"] == "tiny4"
    assert path.stat().st_size <= 2 * 1024 * 1024
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    ck = read_checkpoint(best)
    recipe = hashlib.sha256(json.dumps(ck["train_config"], sort_keys=True, separators=(",", ":"), default=str)
                            .encode()).hexdigest()
    val_sha = hashlib.sha256((root / "val.txt").read_bytes()).hexdigest()
    card = (folder / "tanet_x4.tiny4.md").read_text()
    for fact in (row["sha256"], recipe[:12], val_sha, "non-commercial", f"**{ck['step']:,} steps**", "fp32", "cpu"):
        assert fact in card, fact
    assert row["summary"]["selection"]["list_sha256"] == val_sha
    assert row["summary"]["budget"]["steps"] == ck["step"] == 4

    # the package folder as fsr-bench would see it: load by id, then a protocol row rebuilds the card's figure
    monkeypatch.setattr(pre, "HERE", folder)
    for entry in pre.read_manifest(folder / "manifest.json"):
        pre.register_pretrained(entry, replace=True)
    net = create_model("tanet_x4.tiny4", pretrained=True)
    assert net.name == "tanet_x4" and net.pretrained.id == "tanet_x4.tiny4"
    for k, v in net.state_dict().items():
        assert torch.equal(v, ck["state_dict"][k].half().float()), k
    assert create_model("tanet_x4", pretrained=True).pretrained.id == "tanet_x4.tiny4"  # its only weights

    from fsr_bench.protocol import load_protocol
    from fsr_bench.run import run_protocol

    proto = load_protocol(root / "eval.yaml", overrides=[
        'models=[{name: "tanet_x4.tiny4", label: shipped, pretrained: true}]'])
    result = run_protocol(proto, tmp_path / "rescored", progress=False, log=lambda s: None)
    rescored = json.loads((tmp_path / "rescored" / "results.json").read_text())["models"][0]
    assert rescored["metrics"]["psnr"] == pytest.approx(row["summary"]["psnr"], abs=1e-9)
    assert rescored["checkpoint_sha256"] == row["sha256"]
    assert result is not None


def test_refusals(trained, tmp_path, monkeypatch):
    best, root = trained
    folder = tmp_path / "pretrained"
    monkeypatch.setattr(pkg, "MAX_BYTES", 1000)
    with pytest.raises(pkg.PackageError, match="over the 1,000-byte limit"):
        pkg.package(best, None, None, str(root / "eval.yaml"), folder, tmp_path / "eval")
    assert not folder.exists()  # refused before anything was written or scored
    monkeypatch.undo()
    with pytest.raises(pkg.PackageError, match="holds a 'tanet_x4'"):
        pkg.package(best, "srfbn_s_x4.mine", None, str(root / "eval.yaml"), folder)
    untrained = save_checkpoint(create_model("tanet_x4", **TINY), tmp_path / "random.pt")
    with pytest.raises(pkg.PackageError, match="not written by `fsr-bench train`"):
        pkg.package(untrained, None, None, str(root / "eval.yaml"), folder)


def _entry(model: str, tag: str, scale: int, psnr: float, protocol: str = "protocols/faces256_val_x{s}.yaml"):
    weights = pre.get_pretrained(f"tanet_s_x{scale}").weights  # a real shipped file: the entry loads
    return pre.Pretrained(model, weights, dict(pre.get_pretrained(f"tanet_s_x{scale}").config), packaged=True,
                          summary={"eval_protocol": protocol.format(s=scale), "psnr": psnr}, tag=tag)


def test_default_is_the_highest_faces256_val_psnr(registry, tmp_path):
    low, high = _entry("tanet_s_x8", "a", 8, 26.1), _entry("tanet_s_x8", "b", 8, 26.9)
    other = _entry("tanet_s_x8", "c", 8, 40.0, protocol="protocols/celeba_x{s}.yaml")  # another split: no say
    assert pre.default_pretrained(8, [low, high, other]).id == "tanet_s_x8.b"
    assert pre.default_pretrained(8, [high, low]).id == "tanet_s_x8.b"
    with pytest.raises(pre.PretrainedError, match="no pretrained x4"):
        pre.default_pretrained(4, [low, high])

    registry.clear()
    for e in (low, high, other):
        pre.register_pretrained(e)
    out = CliRunner().invoke(app, ["sr", "--example", "--scale", "8", "-o", str(tmp_path / "o8"), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "tanet_s_x8.b" in out.output and "faces256_val_x8" in out.output
    listed = CliRunner().invoke(app, ["list", "models", "tanet_s_x8*", "--pretrained"])
    assert listed.exit_code == 0, listed.output
    line = [x for x in listed.output.splitlines() if x.startswith("tanet_s_x8.b")][0]
    assert "default" in line
    with pytest.raises(pre.PretrainedError, match="several pretrained weights"):
        pre.get_pretrained("tanet_s_x8")


def test_default_paragraph_in_the_cards(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    rows = []
    for tag, psnr in (("a", 26.1), ("b", 26.9)):
        (folder / f"tanet_s_x8.{tag}.md").write_text(f"# card {tag}\n")
        rows.append({"id": f"tanet_s_x8.{tag}", "model": "tanet_s_x8", "file": "x.safetensors", "sha256": "0" * 64,
                     "config": {"scale": 8}, "card": f"tanet_s_x8.{tag}.md",
                     "summary": {"eval_protocol": "faces256_val_x8", "psnr": psnr}})
    (folder / "manifest.json").write_text(json.dumps({"weights": rows}))
    assert pkg.mark_defaults(folder) == {8: "tanet_s_x8.b"}
    assert "**Default model** — default for `fsr-bench sr --scale 8`" in (folder / "tanet_s_x8.b.md").read_text()
    a = (folder / "tanet_s_x8.a.md").read_text()
    assert "Not the default" in a and "`tanet_s_x8.b`" in a
    pkg.mark_defaults(folder)  # idempotent: the paragraph is replaced, not appended again
    assert (folder / "tanet_s_x8.a.md").read_text().count("Not the default") == 1


def test_model_names_cannot_hold_a_dot_and_ids_need_pretrained():
    from fsr_bench.models import register_model
    from fsr_bench.models.checkpoint import CheckpointError
    from fsr_bench.registry import RegistryError

    with pytest.raises(RegistryError, match="reserved for pretrained ids"):
        register_model(name="my.model")
    with pytest.raises(CheckpointError, match="pretrained id"):
        create_model("tanet_s_x4.mine")
    with pytest.raises(pre.PretrainedError, match="not a pretrained id"):
        pre.parse_id("a.b.c")
