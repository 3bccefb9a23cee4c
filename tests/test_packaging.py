"""An installed wheel carries the bundled protocols and ``py.typed``; a bundled name runs from anywhere.

The wheel is built from a copy of the sources (the checkout stays clean) with the environment's own
setuptools (``pip wheel --no-build-isolation``: offline), installed into a folder of its own and
imported from there, in a working directory with no ``protocols/`` folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fsr_bench.results import RunResult

pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pip install -e '.[dev]')")

SOURCES = ("pyproject.toml", "README.md", "fsr_bench", "baselines", "protocols")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("fsr_bench-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _python(installed: Path, cwd: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}  # the wheel, not the checkout
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_carries_every_protocol_yaml_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (REPO / "protocols").glob("*.yaml"))
    assert len(shipped) > 10
    missing = [n for n in shipped if f"fsr_bench/protocols/{n}" not in names]
    assert not missing, missing
    with zipfile.ZipFile(wheel) as z:  # the same bytes as the checkout's one copy
        for n in shipped:
            assert z.read(f"fsr_bench/protocols/{n}") == (REPO / "protocols" / n).read_bytes(), n
    assert "fsr_bench/py.typed" in names


def test_the_package_links_to_the_one_copy_in_git():
    link = REPO / "fsr_bench" / "protocols"
    assert link.is_symlink() and link.resolve() == (REPO / "protocols").resolve()


def test_installed_package_loads_and_lists_bundled_protocols(installed, tmp_path):
    code = ("import json, fsr_bench; from fsr_bench.protocol import bundled_protocols, load_protocol;"
            "b = bundled_protocols(); p = load_protocol('quickstart', ['run.num_samples=1']);"
            "print(json.dumps({'file': fsr_bench.__file__, 'names': sorted(b), 'quickstart': str(b['quickstart']),"
            " 'name': p.name, 'samples': p.run.num_samples}))")
    proc = _python(installed, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(installed)  # imported from the wheel's files
    assert Path(got["quickstart"]).is_relative_to(installed)
    assert got["names"] == sorted(p.stem for p in (REPO / "protocols").glob("*.yaml"))
    assert (got["name"], got["samples"]) == ("quickstart", 1)
    listed = _python(installed, tmp_path, "-m", "fsr_bench.cli", "list", "protocols")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert any(line.split()[:2] == ["quickstart", "reconstruction"] for line in listed.stdout.splitlines())


@pytest.mark.slow
def test_installed_package_runs_the_bundled_quickstart_by_name(installed, tmp_path):
    proc = _python(installed, tmp_path, "-m", "fsr_bench.cli", "run", "quickstart", "--out", "out", "--quiet",
                   "--set", "run.report=false", timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = RunResult.model_validate_json((tmp_path / "out" / "results.json").read_text())
    want = [m["label"] for m in yaml.safe_load((REPO / "protocols" / "quickstart.yaml").read_text())["models"]]
    assert result.protocol_name == "quickstart" and [m.label for m in result.models] == want
    assert not (tmp_path / "protocols").exists()
