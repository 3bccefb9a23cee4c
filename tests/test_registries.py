"""Every pluggable kind is one registry, and every registered entry passes the same checks.

Like the model registry's tests, these run over whatever is registered (plug-ins included), so a new
degradation, dataset type, recognition-set adapter, protocol kind or metric is tested without
editing this file — except for the few kinds whose entries need data on disk, where a missing
example fixture fails loudly instead of skipping.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsr_bench.data.degradations import DEGRADATIONS, build_degradation
from fsr_bench.data.folders import DATASETS, build_dataset
from fsr_bench.data.identity_folders import RECOGNITION_SETS, RecognitionSet
from fsr_bench.errors import FsrBenchError
from fsr_bench.metrics.specs import METRICS, metric
from fsr_bench.protocol import PROTOCOL_KINDS, BaseProtocol
from fsr_bench.registry import Registry, RegistryError
from fsr_bench.results import REQUIRED_METRICS, RESULT_KINDS
from fsr_bench.run import RUNNERS

ALL = {"degradation": DEGRADATIONS, "dataset type": DATASETS, "recognition set": RECOGNITION_SETS,
       "protocol kind": PROTOCOL_KINDS, "metric": METRICS, "protocol runner": RUNNERS}


@pytest.mark.parametrize("kind", sorted(ALL))
def test_one_registry_idiom_with_did_you_mean(kind):
    reg = ALL[kind]
    assert isinstance(reg, Registry) and reg.names()
    name = reg.names()[0]
    with pytest.raises(RegistryError, match=rf"unknown {kind} '{name}x'.*Did you mean: {name}") as info:
        reg.get(name + "x")
    assert isinstance(info.value, FsrBenchError)


# -- degradations ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    return build_dataset({"type": "package_faces", "hr_size": 64})[0]["hr"]


@pytest.mark.parametrize("name", DEGRADATIONS.names())
def test_every_degradation_shrinks_by_its_scale_deterministically(name, face):
    deg = build_degradation({"type": name, "scale": 4})
    lr = deg(face, index=3, seed=1)
    assert lr.shape == (3, 16, 16) and float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0
    assert torch.equal(lr, deg(face, index=3, seed=1))  # seeded: same draw, same pixels
    assert deg.describe()["scale"] == 4 and deg.describe()["type"] == name
    with pytest.raises(FsrBenchError, match="unknown key"):
        build_degradation({"type": name, "scale": 4, "scael": 2})


# -- dataset types ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, face) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for k in range(3):
        pixels = (face.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(np.roll(pixels, 7 * k, axis=1)).save(root / f"face{k}.png")
    return root


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_type_yields_rgb_hr_images(name, image_folder):
    entry = DATASETS.get(name).builder
    block = {"type": name, **({"root": str(image_folder)} if entry.needs_root else {})}
    if "hr_size" in entry.keys:
        block["hr_size"] = 32
    ds = build_dataset(block)
    assert len(ds) >= 2
    item = ds[0]
    assert item["hr"].shape == (3, 32, 32) and item["hr"].dtype == torch.float32
    assert 0.0 <= float(item["hr"].min()) and float(item["hr"].max()) <= 1.0 and isinstance(item["name"], str)
    with pytest.raises(FsrBenchError, match="unknown key"):
        build_dataset({**block, "rooot": "x"})


# -- recognition-set adapters ----------------------------------------------------------------------
def _identity_folder(root: Path) -> dict:
    for identity in ("a", "b", "c"):
        for i in range(2):
            path = root / identity / f"{identity}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.random.default_rng([ord(identity), i]).integers(0, 256, (48, 40, 3), np.uint8)).save(path)
    return {"root": str(root), "list_file": None, "gallery_list": None, "max_identities": None,
            "max_probes_per_identity": None, "seed": 0, "name": None,
            "probe_degradation": {"preset": None, "crop": None, "lr_size": [8, 6],
                                  "degradation": {"type": "bicubic", "scale": 4}}}


def _scface(root: Path) -> dict:
    from test_scface import make_tree  # the official layout, generated (tests/ is on sys.path)

    make_tree(root, subjects=range(1, 4), cameras=range(1, 3))
    return {"root": str(root), "subjects": [1, 2, 3], "distances": [1, 2, 3], "cameras": [1, 2],
            "face_crop": {"enabled": False}, "lr_size": [28, 21], "scale": 8}


def _tinyface(root: Path) -> dict:
    from test_tinyface import make_tree  # the official layout, generated

    make_tree(root)
    return {"root": str(root)}


def _survface(root: Path) -> dict:
    from test_survface import make_tree  # the official layout, generated

    make_tree(root)
    return {"root": str(root)}


def _native_identity_folder(root: Path) -> dict:
    _identity_folder(root / "gallery")
    _identity_folder(root / "probes")  # real LR probes would be small; the adapter reads them as stored
    return {"gallery_root": str(root / "gallery"), "probe_root": str(root / "probes"), "scale": 4}


EXAMPLES = {"identity_folder": _identity_folder, "scface": _scface, "tinyface": _tinyface, "survface": _survface,
            "native_identity_folder": _native_identity_folder}
#: sets whose gallery holds several images of a subject (TinyFace Gallery_Match, SurvFace gallery)
MULTI_IMAGE_GALLERY = {"tinyface", "survface"}
#: sets with unmated probes by design (open-set search)
OPEN_SET = {"survface"}


@pytest.mark.parametrize("name", RECOGNITION_SETS.names())
def test_every_recognition_set_has_gallery_and_labelled_probes(name, tmp_path):
    assert name in EXAMPLES, f"recognition set {name!r} has no example here; add one to EXAMPLES"
    ds = RECOGNITION_SETS.get(name).builder(EXAMPLES[name](tmp_path / name), cache_dir=tmp_path / "cache")
    assert isinstance(ds, RecognitionSet)
    subjects = {g.subject for g in ds.gallery}
    assert len(subjects) >= 2 and ds.probes
    assert (len(subjects) < len(ds.gallery)) == (name in MULTI_IMAGE_GALLERY)
    enrolled = [p.subject in subjects for p in ds.probes]
    assert any(enrolled) and all(enrolled) == (name not in OPEN_SET)
    probe = ds.read_probe(ds.probes[0], seed=0)
    assert probe.lr is not None and probe.lr.shape[0] == 3 and ds.scale >= 1
    assert ds.describe()["n_probes"] == len(ds.probes)


# -- protocol kinds --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PROTOCOL_KINDS.names())
def test_every_protocol_kind_has_a_runner_and_the_shared_fields(kind):
    cls = PROTOCOL_KINDS.get(kind).builder
    assert issubclass(cls, BaseProtocol) and cls.model_fields["kind"].default == kind
    assert {"name", "description", "models", "run"} <= set(cls.model_fields)
    # a kind either writes its own results kind or runs of one (face_size_sweep: a recognition run per size)
    assert kind in RUNNERS and getattr(cls, "result_kind", kind) in RESULT_KINDS


# -- metrics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", METRICS.names())
def test_every_metric_declares_its_semantics(key):
    m = metric(key)
    assert m.key == key and m.name and isinstance(m.higher_is_better, bool) and m.decimals >= 0
    assert m.aggregation and m.kind in REQUIRED_METRICS
    assert m.format(None) == "n/a" and m.heading.endswith("↑" if m.higher_is_better else "↓")
    text = m.format(0.123456789)
    assert text.endswith("%") == m.percent
    shown = float(text.rstrip("%"))
    assert math.isclose(shown, round((12.3456789 if m.percent else 0.123456789), m.decimals))
