"""Protocols for the real low-resolution benchmarks (TinyFace, QMUL-SurvFace, SCface with bob's
groups): they validate, their data blocks build the official-layout adapters on synthetic trees
(tests/test_tinyface.py and test_survface.py make them), and without the data a run stops with an
error that says where to get it."""
from __future__ import annotations

import pytest
import test_survface
import test_tinyface
from conftest import REPO

from fsr_bench.data.survface import SurvFaceIdentificationSet
from fsr_bench.data.tinyface import TinyFaceSet
from fsr_bench.protocol import ProtocolError, load_protocol
from fsr_bench.run.recognition import build_recognition_set, run_recognition

FILES = {"tinyface_x4": ("tinyface", "https://qmul-tinyface.github.io/"),
         "survface_x4": ("survface", "https://qmul-survface.github.io/"),
         "survface_verification_x4": ("survface_verification", "https://qmul-survface.github.io/"),
         "scface_bob_x8": ("scface", "https://www.scface.org/")}


@pytest.mark.parametrize("name", sorted(FILES))
def test_protocol_validates_and_missing_data_says_where_to_get_it(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FSR_BENCH_DATA", str(tmp_path / "absent"))
    p = load_protocol(REPO / "protocols" / f"{name}.yaml")
    assert p.data.type == FILES[name][0] and p.data.root.startswith(str(tmp_path / "absent"))
    assert p.recognition.names == ["mobilefacenet", "dlib"]
    with pytest.raises(ProtocolError, match="does not exist") as err:
        run_recognition(p, tmp_path / "out", progress=False, log=lambda _: None)
    assert FILES[name][1] in str(err.value)


def test_scface_bob_protocol_calibrates_on_dev_and_evaluates_eval():
    p = load_protocol(REPO / "protocols" / "scface_bob_x8.yaml")
    assert p.data.subjects == "eval" and p.calibration is not None
    assert (p.calibration.protocol, p.calibration.group) == ("combined", "dev")


def test_data_blocks_build_the_adapters_on_synthetic_layouts(tmp_path, monkeypatch):
    tiny = test_tinyface.make_tree(tmp_path / "TinyFace")
    surv = test_survface.make_tree(tmp_path / "QMUL-SurvFace")
    monkeypatch.setenv("FSR_BENCH_DATA", str(tmp_path))
    for name, cls, root in (("tinyface_x4", TinyFaceSet, tiny), ("survface_x4", SurvFaceIdentificationSet, surv)):
        p = load_protocol(REPO / "protocols" / f"{name}.yaml")
        built = build_recognition_set(p, tmp_path / "cache")
        direct = cls(root=root)  # the adapter with its defaults: the block must give the same set
        assert isinstance(built, cls) and built.scale == 4
        assert [(g.subject, g.path) for g in built.gallery] == [(g.subject, g.path) for g in direct.gallery]
        assert [(q.subject, q.path) for q in built.probes] == [(q.subject, q.path) for q in direct.probes]
