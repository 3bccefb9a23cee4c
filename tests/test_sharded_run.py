"""``torchrun --nproc_per_node=2 fsr-bench run`` (gloo, CPU) equals the single-process run.

Each process evaluates a contiguous block of whole batches of the single-process batch order, so
every image goes through the model, the detector and the recogniser in the same batch as in one
process: per-image numbers, means, score matrices, sample images and caches are compared for
exact equality (no tolerance). Only timings differ (``images_per_s``, ``work.seconds``) and the
provenance (``world_size``). Both runs use one thread per process (``OMP_NUM_THREADS=1``).
"""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from fsr_bench.distributed import Ranks

QUICKSTART = REPO / "protocols" / "quickstart.yaml"
# 2 images, one per batch: each of the 2 processes gets one batch of every model
SMALL = ["--set", "run.batch_size=1", "--set", "run.report=false", "--set", "metrics.lpips=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _run(out: Path, protocol: Path, *sets: str, procs: int = 1) -> subprocess.CompletedProcess:
    cli = ["-m", "fsr_bench.cli", "run", str(protocol), "-o", str(out), "-q", *sets]
    cmd = [sys.executable, *cli] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={procs}",
        f"--master_port={_free_port()}", *cli]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but those that hold timings or provenance, and the lock."""
    skip = {"results.json", ".lock", "summary.csv"}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and not p.match("models/*/result.json")}


def _without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def test_block_is_contiguous_covers_everything_and_rank0_holds_the_first():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            blocks = [Ranks(r, world).block(n) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            if n:
                assert 0 in blocks[0]


@pytest.mark.slow
def test_reconstruction_two_processes_equal_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    proc = _run(two, QUICKSTART, *SMALL, procs=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("results:") == 1  # rank 0 alone reports
    proc1 = _run(one, QUICKSTART, *SMALL)
    assert proc1.returncode == 0, proc1.stderr[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert [_without(r, "images_per_s") for r in a["models"]] == [_without(r, "images_per_s") for r in b["models"]]
    assert len(a["models"]) == 5 and all(r["n_images"] == 2 for r in b["models"])
    assert a["conventions"] == b["conventions"] and a["samples"] == b["samples"]
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert "2 processes" in b["provenance"]["sharding"]
    assert _csv(one / "per_image.csv") == _csv(two / "per_image.csv")  # per image, exactly
    assert [_without(r, "images_per_s") for r in _csv(one / "summary.csv")] == \
        [_without(r, "images_per_s") for r in _csv(two / "summary.csv")]
    for label in ("Bicubic_MATLAB_a_-0.5", "TANet-S_shipped_patch_tokens"):
        ra, rb = (json.loads((d / "models" / label / "result.json").read_text()) for d in (one, two))
        assert ra["per_image"] == rb["per_image"] and ra["gflops"] == rb["gflops"] is not None
    fa, fb = _files(one), _files(two)
    assert fa.keys() == fb.keys() and fa == fb  # sample PNGs, CSVs, owner.json, protocol.yaml: byte-identical
    # a 2-process rerun reuses every finished model, like a 1-process rerun
    again = _run(two, QUICKSTART, *SMALL, procs=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing finished result") == 5


def test_a_refused_output_folder_stops_every_process(tmp_path):
    out = tmp_path / "owned"
    first = _run(out, QUICKSTART, *SMALL, "--set", "models=[{name: bicubic_x4, label: Bic}]")
    assert first.returncode == 0, first.stderr[-3000:]
    proc = _run(out, QUICKSTART, *SMALL, "--set", "name=other", procs=2)
    assert proc.returncode != 0
    assert "belongs to protocol 'quickstart'" in proc.stderr  # rank 0's own error
    assert "process 0 of 2 failed" in proc.stderr  # rank 1 says why it stopped
    assert "fsr_bench/run" not in proc.stderr  # no traceback through fsr-bench (torchrun prints its own)


@pytest.mark.shared
@pytest.mark.slow
def test_recognition_two_processes_equal_one(tmp_path, shared_dir):
    """LFW development identities: gallery, calibration and probes span several batches, so both
    processes embed part of each; every number of every row equals the single-process run."""
    import yaml

    data = shared_dir / "data"
    doc = {
        "kind": "recognition", "name": "sharded",
        "data": {"type": "identity_folder", "root": str(data / "lfw"),
                 "list_file": str(data / "splits" / "lfw_dev.txt"), "max_identities": 10,
                 "max_probes_per_identity": 2, "unmated_identities": 2, "seed": 1,
                 "probe_degradation": {"crop": [160, 120]}},
        "models": [{"name": "bicubic_x8", "label": "Bicubic"}],
        "references": {"lr_image": True, "hr_probes": True},
        "recognition": {"bootstrap": {"n": 50}, "detector": {"batch_size": 4}},
        "calibration": {"fraction": 0.5, "seed": 0, "max_identities": 8, "max_probes_per_identity": 3,
                        "fars": [0.05], "fpirs": [0.25, 0.5], "ranks": [1, 2]},
        "run": {"device": "cpu", "batch_size": 4, "num_samples": 3, "report": False},
    }
    protocol = tmp_path / "p.yaml"
    protocol.write_text(yaml.safe_dump(doc))
    one, two = tmp_path / "one", tmp_path / "two"
    proc = _run(two, protocol, procs=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc1 = _run(one, protocol)
    assert proc1.returncode == 0, proc1.stderr[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    rows_a, rows_b = a["models"], b["models"]
    assert [r["label"] for r in rows_b] == ["LR image", "Bicubic", "HR probes"]
    for ra, rb in zip(rows_a, rows_b):
        assert _without(ra, "work") == _without(rb, "work"), ra["label"]
        assert _without(ra["work"], "seconds") == _without(rb["work"], "seconds")
    assert a["gallery"] == b["gallery"] and a["conventions"] == b["conventions"] and a["samples"] == b["samples"]
    assert b["provenance"]["world_size"] == 2
    assert rows_b[0]["metrics"]["n_probes"] == 10  # 10 mated probes (+ 4 unmated): > one batch of 4
    sa, sb = np.load(one / "scores.npz"), np.load(two / "scores.npz")
    assert sorted(sa.files) == sorted(sb.files)
    for k in sa.files:
        assert sa[k].dtype == sb[k].dtype and sa[k].tobytes() == sb[k].tobytes(), k
    assert _csv(one / "summary.csv") == _csv(two / "summary.csv")
    fa, fb = _files(one), _files(two)
    assert fa.keys() == fb.keys() and fa == fb  # per_probe.csv, samples, face and SR caches
