"""Quick training and honest progress (issue 23 item 6): the README's quick-trial command, a measured
dry-run validation estimate, the bar's real time left, and plain periodic lines when stderr is a log."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import REPO

from fsr_bench.data.io import write_image
from fsr_bench.models import MODELS
from fsr_bench.progress import LineProgress
from fsr_bench.train import trainer as tr
from fsr_bench.train.config import load_config
from fsr_bench.train.data import ValPairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = MODELS.get("tanet_x4").tiny


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """6 train and 12 val faces, 32x32 PNG."""
    root = tmp_path_factory.mktemp("faces")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 12)):
        for j in range(n):
            x = torch.rand(1, 3, 8, 8, generator=g)
            write_image(torch.nn.functional.interpolate(x, size=32, mode="bilinear")[0], root / split / f"id{j % 3}" / f"{j}.png")
    return root


def _cfg(tmp_path, faces, *sets):
    cfg = {"model": {"name": "tanet_x4", "overrides": dict(TINY)},
           "data": {"train": {"type": "folder", "root": str(faces / "train")},
                    "val": {"type": "folder", "root": str(faces / "val")},
                    "batch_size": 2, "val_batch_size": 2, "workers": 0},
           "schedule": {"max_steps": 4, "log_every": 1}, "out_dir": str(tmp_path / "run")}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp_path / "t.yaml", list(sets))


def test_readme_quick_trial_command_sets_real_knobs():
    readme = (REPO / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith("fsr-bench train") and x.endswith("# quick trial")]
    args = shlex.split(line.split("#")[0])
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    cfg = load_config(args[2], sets)
    assert cfg.schedule.max_steps == 200 and cfg.val_every_steps == 100
    assert "`schedule.max_steps`" in readme and "`val_every_steps`" in readme


def test_dry_run_times_a_real_validation_pass(tmp_path, faces, monkeypatch):
    """Reading and degrading a val image is part of every validation; the estimate must include it."""
    slow = 0.05
    original = ValPairs.__getitem__

    def slow_item(self, i):
        time.sleep(slow)
        return original(self, i)

    monkeypatch.setattr(ValPairs, "__getitem__", slow_item)
    info = tr.dry_run(_cfg(tmp_path, faces), estimate_steps=1, echo=lambda s: None)
    assert info["val_images"] == 12 and info["val_timed_images"] == 8
    assert info["val_s"] >= 0.9 * 12 * slow  # the loading alone of 12 images
    trainer = tr.Trainer(_cfg(tmp_path, faces), echo=lambda s: None, write_outputs=False)
    real = trainer.validate()["seconds"]
    assert 0.5 * real <= info["val_s"] <= 2.0 * real, (info["val_s"], real)
    assert "timed on 8 of 12 val images" in tr.format_dry_run(info)


def _progress_lines(err: str, desc: str) -> list[str]:
    return [x for x in err.splitlines() if x.startswith(desc + ":")]


def test_train_progress_is_periodic_lines_with_the_real_time_left(tmp_path, faces, monkeypatch, capsys):
    monkeypatch.setenv("FSR_BENCH_PROGRESS_SECONDS", "0")
    # a 110-minute budget that max_steps ends after 4 steps: the bar showed budget=1.8 h
    tr.train(_cfg(tmp_path, faces, "schedule.max_minutes=110", "log.progress=true"), echo=lambda s: None)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = _progress_lines(err, "train tanet_x4")
    assert lines and lines[-1].startswith("train tanet_x4: 4/4 step (100%)")
    left = re.findall(r"left=([0-9.]+) (s|min|h) \((steps|time budget)\)", err)
    assert left and all(unit == "s" and what == "steps" for _, unit, what in left), left

    tr.train(_cfg(tmp_path / "b", faces, "schedule.max_minutes=0.0001", "schedule.max_steps=1000",
                  "log.progress=true", "val_every=0"), echo=lambda s: None)
    assert "(time budget)]" in capsys.readouterr().err


def test_sr_and_run_write_lines_not_carriage_returns(tmp_path, monkeypatch, capsys):
    from fsr_bench.cli.sr_cmd import example_face
    from fsr_bench.protocol import load_protocol
    from fsr_bench.run import run_protocol

    for i in range(3):
        write_image(example_face(16), tmp_path / "in" / f"{i}.png")
    env = {**os.environ, "FSR_BENCH_PROGRESS_SECONDS": "0"}
    proc = subprocess.run([sys.executable, "-m", "fsr_bench.cli", "sr", str(tmp_path / "in"), "-m", "bicubic_x4",
                           "-o", str(tmp_path / "out"), "--device", "cpu"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    assert _progress_lines(proc.stderr, "sr bicubic_x4")[-1].startswith("sr bicubic_x4: 3/3 img (100%)")

    monkeypatch.setenv("FSR_BENCH_PROGRESS_SECONDS", "0")
    proto = load_protocol("quickstart", overrides=["models=[{name: bicubic_x4, label: Bicubic}]", "run.report=false",
                                                   "metrics.lpips=false", "run.num_samples=0", "run.flops=false"])
    run_protocol(proto, tmp_path / "run", progress=True, log=lambda s: None)
    err = capsys.readouterr().err
    assert "\r" not in err and _progress_lines(err, "Bicubic")[-1].startswith("Bicubic: 2/2 img (100%)")


def test_line_progress_writes_every_interval_and_at_the_end():
    import io

    out = io.StringIO()
    bar = LineProgress(total=10, desc="x", unit="img", interval=3600, stream=out)
    for _ in range(10):
        bar.update()
    assert out.getvalue() == ""  # nothing before the interval has passed
    bar.set_postfix({"loss": "0.1"})
    bar.close()
    bar.close()
    (line,) = out.getvalue().splitlines()
    assert line.startswith("x: 10/10 img (100%), ") and line.endswith("[loss=0.1]")
