"""README "Benchmark your own model": the five commands, parsed from the README and run as written, on
the example plug-in trained for two steps, against a leaderboard made here the way
benchmarks/leaderboard.sh makes the committed ones (a pretrained row included). So the section cannot
drift from the code.

Two things differ from a user's shell, both stated: `pip install -e DIR` installs into a folder of this
test (`--target`, no download, no build isolation) instead of the shared environment, which later commands
see on PYTHONPATH; and the training and scoring lines get quick settings appended (two steps validated on
two of the val identities; four faces), which the leaderboard made here uses too, so its protocol is the one
the last command re-scores. (With the quick validation list the row is not selected on faces256 val, so it
is not marked; tests/test_selection.py covers the mark, on the shipped models' faces256 val too.)
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

SHARED = REPO.parent / "shared"
QUICK = {"train": ["--set", "schedule.max_steps=2", "--set", "val_every_steps=2", "--set", "data.workers=0",
                   "--set", "log.progress=false"],
         "run": ["--set", "run.limit=4", "--set", "metrics.lpips=false", "--set", "metrics.identity=",
                 "--set", "run.flops=false", "--set", "run.num_samples=0", "-q"]}
LIMITS = QUICK["run"][:-1]


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Benchmark your own model\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if shlex.split(line, comments=True)]


def test_the_readme_section_has_five_commands():
    commands = readme_commands()
    assert len(commands) == 5
    assert commands[0][:3] == ["pip", "install", "-e"] and all(c[0] == "fsr-bench" for c in commands[1:])


@pytest.mark.skipif(not (SHARED / "data" / "faces256").is_dir(), reason="needs ../shared (faces256)")
def test_readme_commands_take_a_plug_in_to_a_leaderboard_row(tmp_path):
    work = tmp_path / "checkout"  # a checkout's root: ../shared beside it, examples/ inside
    shutil.copytree(REPO / "examples", work / "examples")
    (tmp_path / "shared").symlink_to(SHARED)
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "FSR_BENCH_OFFLINE": "1"}

    def fsr(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "fsr_bench.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"fsr-bench {' '.join(args)}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # the "committed" leaderboard, made as benchmarks/leaderboard.sh makes one (bicubic + the shipped TANet-S)
    fsr("run", "faces256_val_x8", *LIMITS, "--set", "run.report=false", "-q", "-o",
        "reports/leaderboard/runs/faces256_val_x8")
    fsr("leaderboard", "reports/leaderboard/runs/faces256_val_x8", "-o", "reports/leaderboard")

    pip, listing, train, run, board = readme_commands()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), pip[-1]], cwd=work, env=env, check=True, timeout=600)
    assert "my_sr_x8" in fsr(*listing[1:])
    quick_val = tmp_path / "val2.txt"  # two of the val identities: a validation of seconds
    quick_val.write_text("".join((SHARED / "data/splits/faces256_val.txt").read_text().splitlines(True)[:2]))
    fsr(*train[1:], *QUICK["train"], "--set", f"data.val.list_file={quick_val}")
    fsr(*run[1:], *QUICK["run"])
    fsr(*board[1:])

    # step 4: the report of the row; its training record names the split it was selected on
    out = work / run[run.index("-o") + 1]
    assert (out / "report" / "report.md").is_file()
    mine = json.loads((out / "results.json").read_text())["models"][-1]
    assert mine["name"] == "my_sr_x8" and mine["training"]["validation"]["list_file"] == str(quick_val)
    assert mine["training"]["selected_on_evaluated_data"] is False
    # step 5: one table, the committed rows and the new one in the same columns
    lb = work / board[board.index("-o") + 1]
    rows = {r["method"]: r for r in csv.DictReader(open(lb / "leaderboard.csv"))}
    committed = {r["method"]: r for r in csv.DictReader(open(work / "reports/leaderboard/leaderboard.csv"))}
    assert set(rows) == set(committed) | {"MySR"}
    assert [c for c in rows["MySR"] if ":" in c and rows["MySR"][c]] == ["faces256_val_x8:psnr", "faces256_val_x8:ssim"]
    for method, line in committed.items():
        assert rows[method]["faces256_val_x8:psnr"] == line["faces256_val_x8:psnr"]  # the committed numbers
    new = json.loads((lb / "runs" / "faces256_val_x8" / "results.json").read_text())
    assert [m["label"] for m in new["models"]] == ["MySR"]  # only the added row was computed
    assert float(rows["MySR"]["faces256_val_x8:psnr"]) == new["models"][0]["metrics"]["psnr"]
    assert new["models"][0]["name"] == "my_sr_x8"  # read from the checkpoint
    md = (lb / "leaderboard.md").read_text()
    assert md.count("### faces256_val_x8") == 1 and "| MySR" in md  # one table, the new row in it
