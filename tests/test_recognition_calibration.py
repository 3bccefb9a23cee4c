"""Calibrated operating points, open set and several recognisers in the recognition protocol.

The end-to-end run goes through ``fsr-bench run`` on a few real LFW development identities; every
new column is recomputed from the run's own score matrices (``scores.npz``) with the pure
functions of :mod:`fsr_bench.metrics.operating_points` (tested against brute force there), and
the wrong-identity rate also by a hand loop here.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.identity_folders import IdentityFolderSet, split_identities
from fsr_bench.metrics.operating_points import (
    calibrate_thresholds,
    operating_point_metrics,
    with_ratios,
)
from fsr_bench.protocol import ProtocolError, load_protocol_dict
from fsr_bench.results import OperatingPoints
from fsr_bench.run.recognition import calibration_blocks, run_recognition


def _tree(root, n_ids=12, n_img=3):
    from PIL import Image

    for i in range(n_ids):
        d = root / f"id{i:02d}"
        d.mkdir(parents=True)
        for j in range(n_img):
            Image.new("RGB", (48, 64), (10 * i, 5 * j, 0)).save(d / f"{j}.png")
    return root


def _doc(root, **extra):
    return {"kind": "recognition", "name": "t", "data": {"type": "identity_folder", "root": str(root)},
            "models": [{"name": "bicubic_x8", "label": "Bicubic"}], **extra}


# -- schema and the identity split (no faces needed) -----------------------------------------------
def test_split_identities_is_seeded_disjoint_and_complete(tmp_path):
    root = _tree(tmp_path / "ids")
    cal, ev = split_identities(root, None, 0.25, seed=0)
    assert len(cal) == 3 and len(ev) == 9 and not cal & ev and cal | ev == {f"id{i:02d}" for i in range(12)}
    assert split_identities(root, None, 0.25, seed=0) == (cal, ev)  # deterministic
    assert any(split_identities(root, None, 0.25, seed=s)[0] != cal for s in range(1, 6))  # the seed matters


def test_calibration_blocks_give_disjoint_sets(tmp_path):
    root = _tree(tmp_path / "ids")
    p = load_protocol_dict(_doc(root, calibration={"fraction": 0.5, "fars": [0.1]}))
    eval_block, cal_block = calibration_blocks(p)
    ev = IdentityFolderSet(root=root, include_identities=frozenset(eval_block["include_identities"]))
    cal = IdentityFolderSet(root=root, include_identities=frozenset(cal_block["include_identities"]))
    assert {g.subject for g in ev.gallery}.isdisjoint({g.subject for g in cal.gallery})
    assert len(ev.gallery) + len(cal.gallery) == 12


def test_calibration_schema_errors_name_the_key(tmp_path):
    root = _tree(tmp_path / "ids")
    with pytest.raises(ProtocolError, match="exactly one of list_file"):
        load_protocol_dict(_doc(root, calibration={"fars": [0.1]}))
    with pytest.raises(ProtocolError, match="group"):
        load_protocol_dict(_doc(root, calibration={"fraction": 0.5, "group": "dev"}))
    scface = {"kind": "recognition", "name": "s", "data": {"type": "scface", "root": str(tmp_path), "subjects": "dev"},
              "calibration": {"group": "dev"}}
    with pytest.raises(ProtocolError, match="also data.subjects"):
        load_protocol_dict(scface)
    with pytest.raises(ProtocolError, match="listed twice"):
        load_protocol_dict(_doc(root, recognition={"recognisers": ["dlib", "dlib"]}))
    p = load_protocol_dict(_doc(root, recognition={"recognisers": ["mobilefacenet", "dlib"]}))
    assert p.recognition.names == ["mobilefacenet", "dlib"]
    assert load_protocol_dict(_doc(root)).recognition.names == ["mobilefacenet"]  # the single key still works


def test_overlapping_calibration_list_is_refused(tmp_path):
    root = _tree(tmp_path / "ids")
    (tmp_path / "cal.txt").write_text("id00\nid01\n")
    doc = _doc(root, calibration={"list_file": str(tmp_path / "cal.txt"), "fars": [0.1]},
               references={"lr_image": False, "hr_probes": True}, models=[], run={"device": "cpu"})
    with pytest.raises(ProtocolError, match="calibration: calibration and evaluation share 2 subject"):
        run_recognition(load_protocol_dict(doc), tmp_path / "out", progress=False, log=lambda _: None)


# -- end to end on real LFW dev faces, two recognisers ----------------------------------------------
def _wrong_id_by_hand(s, pid, gid, t):
    """Probes whose best-scoring identity is wrong (ties pessimistic) and scores >= t; NaN row: none."""
    n = 0
    for i in range(s.shape[0]):
        if np.isnan(s[i]).all():
            continue
        own = max((s[i, j] for j in range(s.shape[1]) if gid[j] == pid[i]), default=-np.inf)
        wrong = max((s[i, j] for j in range(s.shape[1]) if gid[j] != pid[i]), default=-np.inf)
        n += wrong >= own and wrong >= t
    return n / s.shape[0]


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_calibrated_open_set_two_recognisers_through_the_cli(tmp_path, shared_dir):
    pytest.importorskip("dlib")
    data = shared_dir / "data"
    doc = {
        "kind": "recognition", "name": "cal",
        "data": {"type": "identity_folder", "root": str(data / "lfw"), "list_file": str(data / "splits" / "lfw_dev.txt"),
                 "max_identities": 6, "max_probes_per_identity": 2, "unmated_identities": 2, "seed": 1,
                 "probe_degradation": {"crop": [160, 120]}},
        "models": [{"name": "bicubic_x8", "label": "Bicubic"}],
        "references": {"lr_image": False, "hr_probes": True},
        "recognition": {"recognisers": ["mobilefacenet", "dlib"], "bootstrap": {"n": 0}},
        "calibration": {"fraction": 0.5, "seed": 0, "max_identities": 8, "max_probes_per_identity": 3,
                        "fars": [0.05, 0.01], "fpirs": [0.25, 0.5], "ranks": [1, 2]},
        "run": {"device": "cpu", "batch_size": 8, "num_samples": 1},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "results.json").read_text())
    arrays = np.load(out / "scores.npz")
    pid, gid = arrays["probe_ids"], arrays["gallery_ids"]
    assert len(set(gid)) == 4 and len(set(pid) - set(gid)) == 2  # 2 identities not enrolled: open set
    rows = {r["label"]: r for r in result["models"]}
    assert list(rows) == ["Bicubic", "HR probes"]
    cal_conv = result["conventions"]["calibration"]["per_recogniser"]
    assert set(cal_conv) == {"mobilefacenet", "dlib"}
    assert set(result["conventions"]["recognisers"]) == {"mobilefacenet", "dlib"}
    # calibration subjects are disjoint from the evaluation subjects
    assert not set(cal_conv["dlib"]["subjects"]) & (set(pid) | set(gid))

    for name in ("mobilefacenet", "dlib"):
        cal = calibrate_thresholds(arrays[f"{name}|calibration_genuine"], arrays[f"{name}|calibration_impostor"],
                                   [0.05, 0.01])
        assert cal_conv[name]["thresholds"] == {"0.05": cal.points[0].threshold, "0.01": cal.points[1].threshold}
        ops = {label: operating_point_metrics(arrays[f"{name}|{label}"].astype(np.float64), pid, gid, cal,
                                              fixed_threshold=0.4, fpirs=[0.25, 0.5], ranks=[1, 2])
               for label in rows}
        rel = with_ratios(ops, ["Bicubic", "HR probes"])
        for label, row in rows.items():
            block = row["by_recogniser"][name]
            assert block["trained_with"] is False
            got = OperatingPoints.model_validate(block["operating_points"])
            assert got.columns() == pytest.approx(rel[label].columns(), nan_ok=True), (name, label)
            assert got.unavailable == rel[label].unavailable
            for ref in ("Bicubic", "HR probes"):  # ratios from the two rows' counts, independently
                mine, theirs = ops[label].rates[("at", 0.4, "far")], ops[ref].rates[("at", 0.4, "far")]
                if theirs.count and mine.total and theirs.total:
                    assert got.fixed.far_vs[ref] == pytest.approx((mine.count / mine.total) / (theirs.count / theirs.total))
            # the calibrated threshold is the same for every row; columns side by side with 0.4
            s = arrays[f"{name}|{label}"].astype(np.float64)
            assert got.at_far(0.05).threshold == cal.points[0].threshold
            assert got.at_far(0.05).wrong_id == pytest.approx(_wrong_id_by_hand(s, pid, gid, cal.points[0].threshold))
            assert got.fixed.wrong_id == pytest.approx(_wrong_id_by_hand(s, pid, gid, 0.4))
            assert got.at_fpir(0.25) is not None and 2 in got.at_fpir(0.25).tpir
            assert got.n_unmated == int((~np.isin(pid, gid)).sum())
    # the top-level metrics are the first recogniser's
    for row in rows.values():
        first = row["by_recogniser"]["mobilefacenet"]
        assert row["metrics"] == first["metrics"] and row["operating_points"] == first["operating_points"]
        assert row["recogniser"] == "mobilefacenet"

    # per_probe.csv: one block per recogniser (mated probes), similarities = the matrices' own-gallery entries
    with open(out / "per_probe.csv") as f:
        per_probe = list(csv.DictReader(f))
    mated = np.isin(pid, gid)
    for name in ("mobilefacenet", "dlib"):
        for label in rows:
            lines = [r for r in per_probe if r["recogniser"] == name and r["label"] == label]
            assert len(lines) == int(mated.sum())
            s = arrays[f"{name}|{label}"]
            for line, i in zip(lines, np.flatnonzero(mated)):
                own = s[i, list(gid).index(pid[i])]
                if line["similarity"]:
                    assert float(line["similarity"]) == pytest.approx(float(own), abs=1e-5)
                else:
                    assert not np.isfinite(own)

    # the report: operating points per recogniser (thresholds as calibrated), open set with n_unmated
    from fsr_bench.reporting.load import load_run
    from fsr_bench.reporting.tables import open_set_table, operating_points_table

    run = load_run(out)
    ops_text, open_text = operating_points_table([run]), open_set_table([run])
    assert ops_text is not None and open_text is not None
    for name in ("mobilefacenet", "dlib"):
        assert f"**{name}**" in ops_text and f"**{name}**" in open_text
        assert f"{cal_conv[name]['thresholds']['0.01']:.4f}" in ops_text
    assert "FAR reached (0.05)" in ops_text and "WrongID@0.4" in ops_text and "TPIR2@FPIR 0.25" in open_text
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in open_text.splitlines() if line.startswith("| HR")]
    assert cells and all(c[1] == str(int((~mated).sum())) for c in cells)


def test_lfw_protocols_ship_both_crops_two_recognisers_and_calibration():
    from conftest import REPO

    from fsr_bench.protocol import load_protocol

    crops = {}
    for name in ("lfw_surveillance_x8", "lfw_surveillance_wide_x8"):
        p = load_protocol(REPO / "protocols" / f"{name}.yaml")
        assert p.recognition.names == ["mobilefacenet", "dlib"] and p.recognition.threshold == 0.4
        assert p.calibration is not None and p.calibration.fraction == 0.5 and p.calibration.fars == [1e-2, 1e-3, 1e-4]
        assert p.data.unmated_identities and p.data.probe_degradation.preset == "tanet_21x28_x8"
        crops[name] = p.data.probe_degradation.crop
    assert crops == {"lfw_surveillance_x8": (160, 120), "lfw_surveillance_wide_x8": (224, 168)}


@pytest.mark.parametrize("loss, expected", [
    ({"identity": {"weight": 0.1, "recogniser": "dlib"}}, ["dlib"]),
    ({"identity_net": "mobilefacenet"}, ["mobilefacenet"]),
    ({"pixel": "l1"}, []),
])
def test_trained_with_reads_the_checkpoints_identity_loss(tmp_path, loss, expected):
    from fsr_bench import create_model
    from fsr_bench.models.checkpoint import save_checkpoint
    from fsr_bench.protocol import ModelSpec
    from fsr_bench.run.recognition import trained_with

    path = save_checkpoint(create_model("tanet_s_x8"), tmp_path / "m.pt", train_config={"loss": loss})
    assert trained_with(ModelSpec(name="tanet_s_x8", checkpoint=str(path))) == expected
    assert trained_with(ModelSpec(name="bicubic_x8")) == []


def test_score_matrix_survives_undetected_faces_with_zero_embeddings():
    """A real LFW run has undetected probes (zero embeddings): NaN rows / -inf columns, never an error."""
    import numpy as np

    from fsr_bench.run.recognition import score_matrix

    p = np.array([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]])
    g = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    s = score_matrix(p, np.array([True, False, True]), g, np.array([True, True, False]))
    assert np.isnan(s[1]).all() and np.isneginf(s[[0, 2], 2]).all()
    np.testing.assert_allclose(s[[0, 2]][:, :2], [[1.0, 0.0], [0.6, 0.8]])  # cosines written out
