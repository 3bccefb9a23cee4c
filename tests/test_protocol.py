"""Protocol schema: unknown keys are located errors, precedence is CLI > YAML > defaults."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from fsr_bench.protocol import ProtocolError, find_protocol, load_protocol, load_protocol_dict

BASE = {
    "name": "t",
    "data": {"dataset": {"type": "package_faces", "hr_size": 64}, "degradation": {"type": "bicubic", "scale": 4}},
    "models": [{"name": "bicubic_x4"}],
    "run": {"batch_size": 2},
}


def test_defaults_and_yaml_values():
    p = load_protocol_dict(BASE)
    assert p.run.batch_size == 2  # YAML over default 8
    assert p.run.seed == 0 and p.metrics.y_channel is True and p.metrics.crop_border is None


def test_set_beats_yaml_and_types_values():
    p = load_protocol_dict(BASE, ["run.batch_size=5", "metrics.y_channel=false", "models.0.label=B"])
    assert p.run.batch_size == 5 and p.metrics.y_channel is False and p.models[0].label == "B"


def test_set_appends_a_model():
    p = load_protocol_dict(BASE, ["models.1.name=bicubic_x4", "models.1.label=second"])
    assert [m.display for m in p.models] == ["bicubic_x4", "second"]


def test_plus_appends_one_entry_without_counting():
    # the protocol's own rows are untouched; consecutive `+` keys fill ONE new entry
    p = load_protocol_dict({**BASE, "models": [{"name": "bicubic_x4"}, {"name": "bilinear_x4"}]},
                           ["models.+.name=nearest_x4", "models.+.label=mine"])
    assert [(m.name, m.display) for m in p.models] == [
        ("bicubic_x4", "bicubic_x4"), ("bilinear_x4", "bilinear_x4"), ("nearest_x4", "mine")]


def test_plus_repeated_key_opens_the_next_entry():
    p = load_protocol_dict(BASE, ["models.+.name=nearest_x4", "models.+.label=a",
                                  "models.+.name=bilinear_x4", "models.+.label=b"])
    assert [(m.name, m.display) for m in p.models] == [
        ("bicubic_x4", "bicubic_x4"), ("nearest_x4", "a"), ("bilinear_x4", "b")]


def test_plus_whole_entry_and_empty_list():
    p = load_protocol_dict({**BASE, "models": []}, ["models.+={name: nearest_x4, label: a}",
                                                   "models.+.name=bilinear_x4"])
    assert [m.display for m in p.models] == ["a", "bilinear_x4"]


def test_plus_on_a_section_is_an_error():
    with pytest.raises(ProtocolError, match="run is not a list"):
        load_protocol_dict(BASE, ["run.+.x=1"])


@pytest.mark.parametrize("override,where", [
    ("models.0.chekpoint=x.pt", "models.0.chekpoint"),
    ("run.batchsize=3", "run.batchsize"),
    ("typo=1", "typo"),
])
def test_unknown_keys_are_located_errors(override, where):
    with pytest.raises(ProtocolError, match=rf"{where}: unknown key"):
        load_protocol_dict(BASE, [override])


def test_bad_value_names_key():
    with pytest.raises(ProtocolError, match="run.batch_size"):
        load_protocol_dict(BASE, ["run.batch_size=0"])


def test_duplicate_labels_rejected():
    with pytest.raises(ProtocolError, match="distinct `label`"):
        load_protocol_dict(BASE, ["models.1.name=bicubic_x4"])


def test_env_expansion(monkeypatch):
    doc = {**BASE, "models": [{"name": "bicubic_x4", "checkpoint": "${FSR_TEST_VAR}/best.pt"}]}
    monkeypatch.setenv("FSR_TEST_VAR", "hello")
    assert load_protocol_dict(doc).models[0].checkpoint == "hello/best.pt"
    monkeypatch.delenv("FSR_TEST_VAR")
    with pytest.raises(ProtocolError, match="FSR_TEST_VAR is not set"):
        load_protocol_dict(doc)
    doc["models"][0]["checkpoint"] = "${FSR_TEST_VAR:-dflt}"
    assert load_protocol_dict(doc).models[0].checkpoint == "dflt"


def test_env_expands_only_in_path_fields(monkeypatch):  # issue 11 item 11
    monkeypatch.setenv("FSR_TEST_SECRET", "s3cret")
    doc = {**BASE, "description": "uses ${FSR_TEST_SECRET}",
           "models": [{"name": "bicubic_x4", "label": "B ${FSR_TEST_SECRET}"}]}
    p = load_protocol_dict(doc)
    assert p.description == "uses ${FSR_TEST_SECRET}" and p.models[0].label == "B ${FSR_TEST_SECRET}"
    doc = {**BASE, "data": {**BASE["data"], "dataset": {"type": "image_folder", "root": "${FSR_TEST_SECRET}/x",
                                                         "list_file": "${FSR_TEST_SECRET}/l.txt"}}}
    ds = load_protocol_dict(doc).data.dataset
    assert ds["root"] == "s3cret/x" and ds["list_file"] == "s3cret/l.txt"


@pytest.mark.parametrize("name", ["/abs/path", "../../..", "..", "a/b", "", ".hidden"])
def test_protocol_name_must_be_a_safe_folder_name(name):  # issue 11 item 11
    with pytest.raises(ProtocolError, match="not a safe folder name"):
        load_protocol_dict({**BASE, "name": name})


@pytest.mark.parametrize("labels", [["Bic/A", "Bic A"], ["x", "X"], ["..", "b"], ["hr", "b"], ["///", "b"]])
def test_labels_are_checked_as_file_names(labels):  # issue 11 item 3
    doc = {**BASE, "models": [{"name": "bicubic_x4", "label": lab} for lab in labels]}
    with pytest.raises(ProtocolError, match="file name"):
        load_protocol_dict(doc)


def test_missing_file_lists_available(tmp_path):
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "nope.yaml")


def test_a_bundled_name_is_the_checkouts_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no protocols/ here
    want = (REPO / "protocols" / "quickstart.yaml").resolve()
    assert find_protocol("quickstart").resolve() == want
    assert find_protocol("quickstart.yaml").resolve() == want
    assert load_protocol("quickstart").name == "quickstart"
    with pytest.raises(ProtocolError, match="did you mean quickstart"):
        find_protocol("quickstrat")
    with pytest.raises(ProtocolError, match="not found: sub/quickstart"):
        find_protocol("sub/quickstart")  # a path is never read as a bundled name
    (tmp_path / "quickstart").write_text("name: mine\n")  # an existing file wins over the bundled name
    assert find_protocol("quickstart") == Path("quickstart")


def test_training_configs_load_by_bundled_name(tmp_path, monkeypatch):
    from fsr_bench.train.config import load_config

    monkeypatch.chdir(tmp_path)
    by_name = load_config("train_tanet_s_faces256_x4")
    by_path = load_config(REPO / "protocols" / "train_tanet_s_faces256_x4.yaml")
    assert by_name.to_dict() == by_path.to_dict()


def test_bundled_protocols_validate(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("FSR_BENCH_DATA", "/data")
    root = Path(__file__).resolve().parents[1] / "protocols"
    checked = 0
    for path in sorted(root.glob("*.yaml")):
        if path.name.startswith("train_"):
            continue  # training configs have their own schema (fsr_bench.train.config)
        proto = load_protocol(path)
        assert proto.name == path.stem
        checked += 1
    assert checked >= 5


# -- one config reader (fsr_bench.config_io), shared with training ----------------------------------
def test_empty_set_value_is_null_in_protocols_and_training(tmp_path):
    from fsr_bench.train.config import load_config

    p = load_protocol_dict({**BASE, "models": [{"name": "bicubic_x4", "checkpoint": "x.pt"}]},
                           ["models.0.checkpoint="])
    assert p.models[0].checkpoint is None
    cfg = load_config(base={"model": {"name": "bicubic_x4", "checkpoint": "x.pt"},
                            "data": {"train": {"type": "folder", "root": str(tmp_path)}}},
                      overrides=["model.checkpoint="])
    assert cfg.model.checkpoint is None


def test_set_with_list_index_and_did_you_mean():
    p = load_protocol_dict(BASE, ["models.0.overrides.kernel=bilinear"])
    assert p.models[0].overrides == {"kernel": "bilinear"}
    with pytest.raises(ProtocolError, match=r"models\.0\.chekpoint: unknown key \(from --set\); did you mean "
                                            r"models\.0\.checkpoint\?"):
        load_protocol_dict(BASE, ["models.0.chekpoint=x.pt"])
    with pytest.raises(ProtocolError, match="list index '5' out of range"):
        load_protocol_dict(BASE, ["models.5=x"])
    with pytest.raises(ProtocolError, match=r"run is a value \(5\), not a section"):
        load_protocol_dict(BASE, ["run=5", "run.batch_size=2"])


def test_training_configs_declare_their_kind_and_are_pointed_at_train():
    from pathlib import Path

    from fsr_bench.train.config import ConfigError, load_config

    root = Path(__file__).resolve().parents[1] / "protocols"
    train_files = sorted(root.glob("train_*.yaml"))
    assert train_files
    for path in train_files:
        with pytest.raises(ProtocolError, match=r"training config \(kind: train\); run it with `fsr-bench train"):
            load_protocol(path)
    with pytest.raises(ConfigError, match="reconstruction protocol, not a training config; run it with `fsr-bench run"):
        load_config(root / "quickstart.yaml")
    # every registered kind, not a list of its own (a face-size sweep was taken for a training config)
    sweep = next(p for p in sorted(root.glob("*.yaml")) if "kind: face_size_sweep" in p.read_text())
    with pytest.raises(ConfigError, match="face_size_sweep protocol, not a training config"):
        load_config(sweep)


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(ProtocolError, match=r"'nope' is not one of \['face_size_sweep', 'footage', 'recognition', 'reconstruction', 'train'\]"):
        load_protocol_dict({**BASE, "kind": "nope"})


def test_every_registered_kind_has_a_runner_and_validates_its_fields():
    from fsr_bench.protocol import PROTOCOL_KINDS, BaseProtocol
    from fsr_bench.run import RUNNERS

    kinds = PROTOCOL_KINDS.names()
    assert {"reconstruction", "recognition"} <= set(kinds)
    for kind in kinds:
        cls = PROTOCOL_KINDS.get(kind).builder
        assert issubclass(cls, BaseProtocol) and cls.model_fields["kind"].default == kind
        assert {"name", "models", "run"} <= set(cls.model_fields)
        assert kind in RUNNERS
