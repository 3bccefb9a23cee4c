"""Command-line behaviour: lazy imports, `list`, `sr` on real faces, clear refusals."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint

QUICKSTART = REPO / "protocols" / "quickstart.yaml"  # tests run from any working directory

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
    result = runner.invoke(app, ["run", str(QUICKSTART), "-o", str(tmp_path / "out"), "-q",
                                 "--set", f"data.dataset={{type: folder, root: {tmp_path / 'faces'}}}"])
    assert result.exit_code == 2
    assert "broken.png" in result.output and "Traceback" not in result.output


def test_run_unknown_key_is_located(tmp_path):
    result = runner.invoke(app, ["run", str(QUICKSTART), "--set", "run.batchsize=2"])
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


def test_sr_unknown_model_is_one_error_line():
    result = runner.invoke(app, ["sr", "-m", "tanet_x44", "x.png"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] and "Traceback" not in result.output
    assert "did you mean" in result.output.lower() and "tanet_x4" in result.output


def _commands():
    from fsr_bench.cli import list_cmd

    top = [c.callback for c in app.registered_commands]
    return top + [c.callback for c in list_cmd.app.registered_commands]


@pytest.mark.parametrize("callback", _commands(), ids=lambda c: c.__name__)
def test_every_command_catches_toolkit_errors(callback):
    from fsr_bench.cli._common import catches_errors

    assert getattr(callback, "__wrapped__", None) is not None, f"{callback.__name__} is not @catches_errors"
    assert callback.__code__ is catches_errors(lambda: None).__code__


def test_error_classes_share_one_root():
    from fsr_bench.data.degradations import DegradationConfigError
    from fsr_bench.data.folders import DatasetConfigError
    from fsr_bench.data.io import FsrBenchDataError, ImageReadError
    from fsr_bench.data.scface import SCfaceLayoutError
    from fsr_bench.errors import FsrBenchError
    from fsr_bench.metrics.lpips import MetricUnavailable
    from fsr_bench.models.checkpoint import CheckpointError
    from fsr_bench.protocol import ProtocolError
    from fsr_bench.registry import RegistryError
    from fsr_bench.reporting.load import ReportInputError
    from fsr_bench.train.config import ConfigError
    from fsr_bench.train.trainer import TrainError
    from fsr_bench.weights import ChecksumMismatch, WeightsError, WeightsUnavailable

    classes = [DegradationConfigError, DatasetConfigError, FsrBenchDataError, ImageReadError, SCfaceLayoutError,
               MetricUnavailable, CheckpointError, ProtocolError, RegistryError, ReportInputError, ConfigError,
               TrainError, ChecksumMismatch, WeightsError, WeightsUnavailable]
    assert all(issubclass(c, FsrBenchError) for c in classes)
    assert issubclass(RegistryError, KeyError) and issubclass(ProtocolError, ValueError)


@pytest.mark.parametrize("args", [
    ["sr", "--example", "-m", "bicubic_x4", "--device", "tpu"],
    ["run", str(QUICKSTART), "-q", "--set", "run.device=tpu"],
    ["train", str(QUICKSTART)],
    ["run", str(REPO / "protocols" / "train_tanet_faces256_x4_cpu.yaml")],
], ids=["sr-device", "run-device", "train-a-protocol", "run-a-training-config"])
def test_bad_input_is_one_error_line(args, tmp_path):
    result = runner.invoke(app, args + ["-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_sr_with_no_model_uses_the_shipped_tanet(tmp_path):
    """Issue 12: `fsr-bench sr IMAGE` works with no other argument (the best shipped x4 model; --scale 8)."""
    from fsr_bench.cli.sr_cmd import example_face
    from fsr_bench.data.io import read_image, write_image
    from fsr_bench.models.pretrained import default_pretrained

    face = tmp_path / "face.png"
    write_image(example_face(24), face)
    for extra, scale in (([], 4), (["--scale", "8"], 8)):
        out = tmp_path / f"o{scale}"
        result = CliRunner().invoke(app, ["sr", str(face), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        (written,) = list(out.glob("*.png"))
        default = default_pretrained(scale)  # the rule (best faces256 val PSNR), not a fixed name: issue 21
        assert f"_{default.model}.png" in written.name and read_image(written).shape == (3, 24 * scale, 24 * scale)
        assert f"model: {default.id}" in result.output
    refused = CliRunner().invoke(app, ["sr", str(face), "-m", "tanet_s_x4", "-o", str(tmp_path / "r")])
    assert refused.exit_code != 0 and "--pretrained" in refused.output
