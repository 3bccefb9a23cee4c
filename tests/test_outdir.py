"""The output folder has one owner (issue 11, items 1, 6, 10): lock, owner hash, keyed samples,
protocol.yaml only on success, missing samples of reused models, stale temp files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from fsr_bench.data.io import read_image
from fsr_bench.protocol import load_protocol
from fsr_bench.run import run_protocol
from fsr_bench.run.outdir import OutputFolderError

QUICKSTART = REPO / "protocols" / "quickstart.yaml"
SMALL = ["data.dataset.hr_size=32", "run.report=false", "run.flops=false", "metrics.lpips=false",
         "models=[{name: bicubic_x4, label: Bic}]"]


def quiet(msg: str) -> None:
    pass


def _run(out, *sets, force=False, log=quiet):
    return run_protocol(load_protocol(str(QUICKSTART), SMALL + list(sets)), out, progress=False, log=log, force=force)


def test_owner_hash_recorded_and_another_protocol_refused(tmp_path):
    _run(tmp_path)
    owner = json.loads((tmp_path / "owner.json").read_text())
    assert owner["protocol_name"] == "quickstart"
    with pytest.raises(OutputFolderError, match="belongs to protocol .quickstart.*not to .other.*--force"):
        _run(tmp_path, "name=other")
    with pytest.raises(OutputFolderError, match="data block.*differs.*--force"):  # another degradation
        _run(tmp_path, "data.degradation.scale=8", "models.0.name=bicubic_x8")
    _run(tmp_path, "name=other", force=True)
    assert json.loads((tmp_path / "owner.json").read_text())["protocol_name"] == "other"


def test_adding_a_model_is_the_same_owner(tmp_path):
    _run(tmp_path)
    logs: list[str] = []
    _run(tmp_path, "models.1={name: bicubic_x4, label: NN, overrides: {kernel: nearest}}", log=logs.append)
    assert any("Bic: reusing" in m for m in logs)


def test_a_foreign_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="not an fsr-bench run folder"):
        _run(tmp_path)


def test_samples_are_keyed_by_the_data(tmp_path):
    _run(tmp_path)
    lr4 = read_image(tmp_path / "samples" / "astronaut" / "lr.png")
    _run(tmp_path, "data.degradation.scale=8", "models.0.name=bicubic_x8", force=True)
    lr8 = read_image(tmp_path / "samples" / "astronaut" / "lr.png")
    assert lr4.shape[-1] == 8 and lr8.shape[-1] == 4  # 32 px HR: x4 -> 8, x8 -> 4


def test_protocol_yaml_written_only_on_success(tmp_path):
    _run(tmp_path)
    before = (tmp_path / "protocol.yaml").read_text()
    with pytest.raises(Exception):
        _run(tmp_path, "models=[{name: tanet_x4}]")  # refused: no checkpoint
    assert (tmp_path / "protocol.yaml").read_text() == before


def test_second_run_on_a_locked_folder_says_who_holds_it(tmp_path):
    _run(tmp_path)
    code = ("import fcntl, json, os, socket, sys, time\n"
            f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.pwrite(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),"
            " 'started': 'T0'}).encode(), 0)\n"
            "print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputFolderError, match=f"pid {holder.pid} on .*started T0"):
            _run(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    _run(tmp_path)  # released: runs again


def test_raising_num_samples_writes_samples_for_reused_models(tmp_path):
    _run(tmp_path, "run.num_samples=1")
    assert not (tmp_path / "samples" / "camera").exists() or not (tmp_path / "samples" / "camera" / "Bic.png").exists()
    logs: list[str] = []
    res = _run(tmp_path, "run.num_samples=2", log=logs.append)
    assert any("Bic: reusing" in m for m in logs)
    assert len(res["samples"]) == 2
    for s in res["samples"]:
        assert (tmp_path / "samples" / s["folder"] / "Bic.png").is_file()
        assert s["outputs"] == {"Bic": "Bic.png"}


def test_stale_temp_files_are_swept_on_the_next_run(tmp_path):
    _run(tmp_path)
    stale = [tmp_path / ".results.json.abc_1234.tmp", tmp_path / "cache" / "sr" / ".Bic_1.pt.x1yz9876.tmp",
             tmp_path / "models" / "Bic" / ".result.json.q0q0q0q0.tmp"]  # mkstemp's 8 random characters
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    _run(tmp_path)
    assert not any(p.exists() for p in stale)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_names_the_path(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputFolderError, match=f"{ro}.*writable --out"):
            _run(ro / "run")
    finally:
        ro.chmod(0o700)


def test_file_as_out_names_the_path(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(OutputFolderError, match=f"cannot write the run to {f}"):
        _run(f)


@pytest.mark.parametrize("size,scale", [((1, 1), 4), ((5, 7), 8)])
def test_hr_smaller_than_the_scale_names_the_file(tmp_path, size, scale):  # issue 11 item 9
    import torch

    from fsr_bench.data.io import write_image
    from fsr_bench.protocol import ProtocolError

    write_image(torch.rand(3, 16, 16), tmp_path / "d" / "ok.png")
    write_image(torch.rand(3, *size), tmp_path / "d" / "tiny.png")
    with pytest.raises(ProtocolError, match=r"tiny\.png.*smaller than the scale.*data\.degradation\.scale"):
        _run(tmp_path / "o", f"data.dataset={{type: folder, root: {tmp_path / 'd'}}}",
             f"data.degradation.scale={scale}", f"models.0.name=bicubic_x{scale}")


def test_protocol_checkpoint_error_does_not_advise_sr_options(tmp_path):  # issue 11 item 12
    from fsr_bench.models import create_model
    from fsr_bench.models.checkpoint import save_checkpoint
    from fsr_bench.protocol import ProtocolError

    save_checkpoint(create_model("bicubic_x8"), tmp_path / "x8.pt")
    with pytest.raises(ProtocolError, match="saved for model 'bicubic_x8'") as err:
        _run(tmp_path / "o", f"models.0.checkpoint={tmp_path / 'x8.pt'}")
    assert "--model" not in str(err.value)


def test_full_disk_names_the_file(tmp_path, monkeypatch):  # issue 11 item 9
    import errno

    from fsr_bench import atomic

    real = atomic.write_bytes

    def full(path, data):
        if str(path).endswith("result.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(OutputFolderError, match=r"models/Bic/result\.json: No space left on device; free some space"):
        _run(tmp_path)


def _lfw_recognition(lfw_dir, lr_size: list[int]) -> dict:
    """3 development identities, one probe each, the LR image as the only row (no SR model)."""
    return {"kind": "recognition", "name": "keyed",
            "data": {"type": "identity_folder", "root": str(lfw_dir),
                     "list_file": str(lfw_dir.parent / "splits" / "lfw_dev.txt"), "max_identities": 3,
                     "max_probes_per_identity": 1,
                     "probe_degradation": {"crop": [160, 120], "preset": None, "lr_size": lr_size,
                                           "degradation": {"type": "bicubic", "scale": 8}}},
            "models": [], "references": {"hr_probes": False},
            "recognition": {"bootstrap": {"n": 10}},
            "run": {"device": "cpu", "batch_size": 4, "num_samples": 2, "report": False}}


@pytest.mark.shared
def test_recognition_samples_are_keyed_by_the_data(tmp_path, lfw_dir):  # issue 11 item 1 (recognition)
    from PIL import Image

    from fsr_bench.protocol import load_protocol_dict

    run_protocol(load_protocol_dict(_lfw_recognition(lfw_dir, [28, 21])), tmp_path, progress=False, log=quiet)
    folders = sorted(p for p in (tmp_path / "samples").iterdir())
    assert len(folders) == 2 and all((f / ".key").is_file() for f in folders)
    assert Image.open(folders[0] / "lr.png").size == (21, 28)
    (folders[0] / "stale.png").write_bytes(b"")  # an image of the old data that no row writes again
    # another degradation (taken over with --force): every sample image is of the new data
    run_protocol(load_protocol_dict(_lfw_recognition(lfw_dir, [20, 15])), tmp_path, progress=False, log=quiet,
                 force=True)
    assert Image.open(folders[0] / "lr.png").size == (15, 20)
    assert Image.open(folders[0] / "LR_image.png").size == (15, 20)
    assert not (folders[0] / "stale.png").exists()
