"""Every row is checked before any row runs (fsr_bench.run.preflight): one error lists every problem,
nothing is computed and OUT is not claimed; a row without `name` takes the model its checkpoint names."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO

from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint
from fsr_bench.protocol import ProtocolError, load_protocol
from fsr_bench.registry import RegistryError
from fsr_bench.run import run_protocol

QUICKSTART = REPO / "protocols" / "quickstart.yaml"
SMALL = ["data.dataset.hr_size=64", "run.report=false", "run.flops=false", "metrics.lpips=false"]


def quiet(msg: str) -> None:
    pass


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = create_model("tanet_x4", **MODELS.get("tanet_x4").tiny)
    return save_checkpoint(model, tmp_path / "tiny_tanet.pt")


def test_every_problem_in_one_error_before_any_row_runs(tmp_path, tiny_ckpt):
    rows = ("[{name: bicubic_x4}, {name: bicubc_x4}, {name: bicubic_x8}, {name: tanet_x4}, "
            f"{{checkpoint: {tmp_path / 'missing.pt'}}}, {{name: sparnet_x4, checkpoint: {tiny_ckpt}}}]")
    proto = load_protocol(QUICKSTART, SMALL + [f"models={rows}", "metrics.identity.recogniser=mobilefacenett",
                                               f"data.dataset={{type: folder, root: {tmp_path / 'no_faces'}}}"])
    out = tmp_path / "out"
    with pytest.raises(ProtocolError) as err:
        run_protocol(proto, out, progress=False, log=quiet)
    msg = str(err.value)
    assert "7 problem(s), found before any row ran" in msg
    lines = msg.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "models.1", "models.2", "models.3", "models.4", "models.5", "metrics.identity.recogniser", "data.dataset.root"]
    assert "`fsr-bench list models`" in lines[0] and "Did you mean: bicubic_x4" in lines[0]
    assert "x8 but the degradation is x4" in lines[1]
    assert "random weights are never benchmarked" in lines[2]
    assert "checkpoint not found" in lines[3]
    assert "saved for model 'tanet_x4', not 'sparnet_x4'" in lines[4]
    assert "`fsr-bench list recognisers`" in lines[5]
    assert "no_faces" in lines[6] and "--set data.dataset.root=" in lines[6]
    assert not out.exists()  # nothing ran and the folder was never claimed


def test_recognition_rows_recognisers_and_data_checked_up_front(tmp_path):
    proto = load_protocol("lfw_surveillance_x8", [
        "recognition.recognisers=[mobilefacenet, dlb]", f"data.root={tmp_path / 'lfw'}",
        "calibration.list_file=", "calibration.fraction=0.5", "models.+.name=bicubic_x4"])
    with pytest.raises(ProtocolError) as err:
        run_protocol(proto, tmp_path / "out", progress=False, log=quiet)
    msg = str(err.value)
    assert "models.2: model 'bicubic_x4' (bicubic_x4) is x4 but the degradation is x8" in msg
    assert "recognition.recognisers: unknown recogniser 'dlb'. Did you mean: dlib?" in msg
    assert f"data.root: '{tmp_path / 'lfw'}' does not exist" in msg
    assert not (tmp_path / "out").exists()


def test_run_takes_the_model_name_from_the_checkpoint(tmp_path, tiny_ckpt):
    proto = load_protocol(QUICKSTART, SMALL + ["models=[{name: bicubic_x4}]", "run.limit=1", "run.num_samples=0",
                                               f"models.+.checkpoint={tiny_ckpt}"])
    assert proto.models[1].name == ""
    result = run_protocol(proto, tmp_path / "run", progress=False, log=quiet)
    assert [(r.name, r.label) for r in result.models] == [("bicubic_x4", "bicubic_x4"), ("tanet_x4", "tanet_x4")]
    assert "name: tanet_x4" in (tmp_path / "run" / "protocol.yaml").read_text()  # the resolved protocol
    assert json.loads((tmp_path / "run" / "results.json").read_text())["protocol"]["models"][1]["name"] == "tanet_x4"


def test_bare_state_dict_without_name_says_to_name_the_model(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(create_model("tanet_x4", **MODELS.get("tanet_x4").tiny).state_dict(), bare)
    proto = load_protocol(QUICKSTART, SMALL + ["models=[{name: bicubic_x4}]", f"models.+.checkpoint={bare}"])
    with pytest.raises(ProtocolError, match=r"models\.1: checkpoint .*bare.pt does not name its model .* "
                                            r"--set models\.1\.name=\.\.\. \(`fsr-bench list models`"):
        run_protocol(proto, tmp_path / "out", progress=False, log=quiet)


def test_row_without_name_or_checkpoint_is_refused():
    with pytest.raises(ProtocolError, match="models.5: give `name`"):
        load_protocol(QUICKSTART, ["models.+.label=mine"])


def test_unknown_name_hint_names_the_list_command():
    with pytest.raises(RegistryError) as err:
        MODELS.get("tanet_x5")
    assert "`fsr-bench list models` shows all" in str(err.value)
