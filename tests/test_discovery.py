"""Discovery (issue 23 item 7): --version, a fast `list models` with a pretrained column, pattern hints,
full-width help when piped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.models import catalog
from fsr_bench.models import pretrained as pre

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One catalogue cache for the module (building it imports and counts every model)."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("home")
        mp.setenv("FSR_BENCH_HOME", str(path))
        yield path


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"fsr-bench {metadata.version('fsr-bench')}")


def test_list_models_from_the_cache_without_torch(home):
    built = runner.invoke(app, ["list", "models"])  # in-process: builds the cache once
    assert built.exit_code == 0, built.output
    code = ("import sys; from fsr_bench.cli import app; app(['list', 'models'], standalone_mode=False); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "FSR_BENCH_HOME": str(home)})
    assert proc.returncode == 0, f"list models imported torch or failed: {proc.stderr[-500:]}"
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:] if line and line[0] != "*"}
    assert rows["tanet_s_x4"][2] == "459,683"  # TANet-S x4's parameter count, as the README's model table has it
    default = pre.default_pretrained(4)  # whichever shipped x4 weights the rule picks
    assert f"{default.id}*" in rows[default.model][3].split(",")  # pretrained column, * = sr's default
    assert rows["tanet_x8"][3] == "-"  # 8.3 M parameters: too large to ship
    assert f"* {default.id}: default for `fsr-bench sr --scale 4`" in proc.stdout


def test_cache_is_used_only_while_its_fingerprint_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path))
    path = catalog.cache_path()
    path.parent.mkdir(parents=True)
    fake = {"fingerprint": catalog.fingerprint(), "rows": [{"name": "only_x4", "scale": 4, "params": 1, "paper": "p"}],
            "plugin_errors": {}, "plugin_pretrained": {}}
    path.write_text(json.dumps(fake))
    monkeypatch.setattr(catalog, "_with_live_registrations", lambda c: c)  # as in a fresh process
    assert [r["name"] for r in catalog.catalogue()["rows"]] == ["only_x4"]
    path.write_text(json.dumps({**fake, "fingerprint": "stale"}))
    names = [r["name"] for r in catalog.catalogue()["rows"]]
    assert "tanet_s_x4" in names and "only_x4" not in names
    assert json.loads(path.read_text())["fingerprint"] == catalog.fingerprint()  # rewritten


def test_patterns_substring_glob_and_a_hint(home):
    sub = runner.invoke(app, ["list", "models", "srfbn_s"])
    assert sub.exit_code == 0, sub.output
    assert [line.split()[0] for line in sub.output.splitlines() if line.startswith("srfbn")] == [
        "srfbn_s_x4", "srfbn_s_x8"]
    glob = runner.invoke(app, ["list", "models", "*_s_x8"])
    assert "didnet_s_x8" in glob.output and "didnet_s_x4" not in glob.output
    none = runner.invoke(app, ["list", "models", "tanet_s_x9"])
    assert none.exit_code == 1 and "no model matches 'tanet_s_x9'" in none.output
    assert "close: " in none.output and "tanet_s_x8" in none.output


def test_help_is_full_width_when_piped():
    proc = subprocess.run([sys.executable, "-m", "fsr_bench.cli", "sr", "--help"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")})
    assert proc.returncode == 0
    assert max(len(line) for line in proc.stdout.splitlines()) > 120
    assert "registered model name or pretrained id MODEL.TAG (see `fsr-bench list models`)" in proc.stdout
