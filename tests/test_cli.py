"""Command-line behaviour: lazy imports, `list`, `sr` on real faces, clear refusals."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint

runner = CliRunner()


def test_help_does_not_import_torch():
    code = "import sys, fsr_bench.cli; fsr_bench.cli.app(['--help'], standalone_mode=False); " \
           "sys.exit(1 if 'torch' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, "fsr-bench --help imported torch (heavy imports must stay lazy)"
    assert "run" in proc.stdout and "train" in proc.stdout


def test_list_models():
    result = runner.invoke(app, ["list", "models"])
    assert result.exit_code == 0, result.output
    assert "tanet_x8" in result.output and "bicubic_x4" in result.output


def test_sr_on_real_face(faces256, tmp_path):
    from fsr_bench.data.io import read_image, write_image
    from fsr_bench.data.resize import imresize

    hr_path = sorted(faces256.glob("*/*.jpg"))[0]
    lr = imresize(read_image(hr_path), scale=1 / 4).clamp(0, 1)  # 64x64
    write_image(lr, tmp_path / "in" / "face.png")
    result = runner.invoke(app, ["sr", str(tmp_path / "in"), "--model", "bicubic_x4", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    sr = read_image(tmp_path / "out" / "face_bicubic_x4.png")
    assert sr.shape == (3, 256, 256)
    # bicubic of the LR must resemble the HR face far better than a flat grey image would
    hr = read_image(hr_path)
    assert (sr - hr).abs().mean() < 0.5 * (hr - 0.5).abs().mean()


def test_sr_with_checkpoint_rebuilds_the_model(faces256, tmp_path):
    model = create_model("tanet_x4", **MODELS.get("tanet_x4").tiny)
    ckpt = save_checkpoint(model, tmp_path / "tanet.pt")
    face = sorted(faces256.glob("*/*.jpg"))[1]
    result = runner.invoke(app, ["sr", str(face), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from fsr_bench.data.io import read_image

    assert read_image(tmp_path / "o" / f"{face.stem}_tanet_x4.png").shape == (3, 1024, 1024)


def test_sr_refuses_random_weights(tmp_path):
    result = runner.invoke(app, ["sr", "--example", "--model", "tanet_x4", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "random weights" in result.output


def test_sr_example_face(tmp_path):
    result = runner.invoke(app, ["sr", "--example", "--model", "bicubic_x8", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "astronaut_bicubic_x8.png").is_file()


def test_run_reports_bad_input_without_traceback(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "broken.png").write_bytes(b"\x89PNG garbage")
    result = runner.invoke(app, ["run", "protocols/quickstart.yaml", "-o", str(tmp_path / "out"), "-q",
                                 "--set", f"data.dataset={{type: folder, root: {tmp_path / 'faces'}}}"])
    assert result.exit_code == 2
    assert "broken.png" in result.output and "Traceback" not in result.output


def test_run_unknown_key_is_located(tmp_path):
    result = runner.invoke(app, ["run", "protocols/quickstart.yaml", "--set", "run.batchsize=2"])
    assert result.exit_code == 2 and "run.batchsize: unknown key" in result.output


def test_list_models_with_flops():
    result = runner.invoke(app, ["list", "models", "tanet_x8", "--flops"])
    assert result.exit_code == 0, result.output
    row = [line for line in result.output.splitlines() if line.startswith("tanet_x8")][0]
    assert float(row.split()[3]) > 1.0  # GFLOPs at 32x32 -> 256x256


def test_sr_precision_options(tmp_path):
    from fsr_bench.data.io import read_image

    ok = runner.invoke(app, ["sr", "--example", "--model", "bicubic_x4", "--out", str(tmp_path / "a"),
                             "--device", "cpu", "--precision", "fp32", "--no-channels-last"])
    assert ok.exit_code == 0, ok.output
    assert "fp32, NCHW" in ok.output
    bf = runner.invoke(app, ["sr", "--example", "--model", "bicubic_x4", "--out", str(tmp_path / "b"),
                             "--device", "cpu", "--precision", "bf16"])
    assert bf.exit_code == 0, bf.output
    assert "bf16 autocast (fp32 weights), channels-last" in bf.output
    # bicubic has no autocast ops: the two precisions must write the same image
    a, b = (read_image(tmp_path / d / "astronaut_bicubic_x4.png") for d in "ab")
    assert torch.equal(a, b)
    bad = runner.invoke(app, ["sr", "--example", "--model", "bicubic_x4", "--out", str(tmp_path / "c"),
                              "--device", "cpu", "--precision", "fp16"])
    assert bad.exit_code != 0 and "fp16 is not supported on the CPU" in bad.output
