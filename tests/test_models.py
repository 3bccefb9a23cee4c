"""Registry-wide model tests: every registered super-resolver (built-in, baseline or plug-in) is
built with its ``tiny`` config and checked against the SuperResolver contract."""
from __future__ import annotations

import pytest
import torch

from fsr_bench.models import MODELS, create_model, list_models
from fsr_bench.models.checkpoint import CheckpointError, save_checkpoint

ALL = list_models()


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return create_model(name, **{**(MODELS.get(name).tiny or {}), **extra})


def test_registry_has_paper_models():
    for expected in ["tanet_x4", "tanet_x8", "tanet_no_global_x4", "tanet_no_global_x8",
                     "tanet_no_local_x4", "tanet_no_local_x8", "bicubic_x4", "bicubic_x8"]:
        assert expected in ALL


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(11, 9), (12, 10), (7, 13)])
def test_output_shape_any_size(name, size):
    model = tiny(name).eval()
    lr = torch.rand(2, 3, *size)
    with torch.no_grad():
        sr = model(lr)
    assert sr.shape == (2, 3, size[0] * model.scale, size[1] * model.scale)
    assert torch.isfinite(sr).all()


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    model = tiny(name).train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        pytest.skip(f"{name} has no learned parameters")
    sr = model(torch.rand(2, 3, 12, 10))
    (sr - torch.rand_like(sr)).abs().mean().backward()
    dead = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient reaches: {dead[:10]}"


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_rebuilds_identical_model(name, tmp_path):
    model = tiny(name).eval()
    with torch.no_grad():
        for p in model.parameters():  # make sure weights differ from a fresh init
            p.add_(0.01 * torch.randn_like(p))
    path = save_checkpoint(model, tmp_path / "m.pt")
    rebuilt = create_model(checkpoint=path).eval()  # no name, no config: the checkpoint has both
    assert type(rebuilt) is type(model) and rebuilt.config_dict() == model.config_dict()
    lr = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(lr), rebuilt(lr))


def test_metadata_present_for_all():
    for name in ALL:
        model = tiny(name)
        assert model.info.paper, f"{name} has no paper"
        assert model.name == name and model.scale in (2, 3, 4, 8)


# -- TANet specifics ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("removed", ["global", "local"])
def test_tanet_ablation_equals_path_removed(scale, removed):
    cfg = MODELS.get(f"tanet_x{scale}").tiny
    ablation = tiny(f"tanet_no_{removed}_x{scale}").eval()
    manual = tiny(f"tanet_x{scale}", **{f"use_{removed}": False}).eval()
    assert ablation.state_dict().keys() == manual.state_dict().keys()
    manual.load_state_dict(ablation.state_dict())
    lr = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(ablation(lr), manual(lr))
    path_attr = f"{removed}_path"
    assert getattr(ablation, path_attr) is None
    full = tiny(f"tanet_x{scale}")
    assert ablation.num_parameters() < full.num_parameters()
    assert cfg is not None


def test_tanet_paper_defaults():
    cfg = create_model("tanet_x4").config
    assert (cfg.channels, cfg.num_modules, cfg.num_resblocks, cfg.patch_size) == (64, 10, 10, 4)
    assert cfg.tokenizer == "patch"


def test_tanet_global_attention_spans_the_face():
    """With the default patch tokenizer, a change in one corner reaches the opposite corner's
    output through the global path alone; the literal window reading stays local."""
    torch.manual_seed(0)
    for tokenizer, expect_global in [("patch", True), ("window", False)]:
        model = tiny("tanet_no_local_x4", tokenizer=tokenizer).eval()
        lr = torch.rand(1, 3, 16, 16)
        poked = lr.clone()
        poked[..., :4, :4] += 0.5
        with torch.no_grad():
            diff = (model(lr) - model(poked)).abs()[..., -8:, -8:].max().item()
        assert (diff > 1e-6) == expect_global, (tokenizer, diff)


def test_tanet_celeba_x8_size():
    model = tiny("tanet_x8").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 27, 22)).shape == (1, 3, 216, 176)


def test_create_model_with_checkpoint_of_other_model_is_clear(tmp_path):
    path = save_checkpoint(tiny("tanet_x4"), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="saved for model 'tanet_x4'"):
        create_model("tanet_x8", checkpoint=path)


def test_strict_load_reports_mismatch(tmp_path):
    model = tiny("tanet_x4")
    torch.save({k: v for k, v in model.state_dict().items() if "shallow" not in k}, tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        create_model("tanet_x4", checkpoint=tmp_path / "sd.pt", **MODELS.get("tanet_x4").tiny)
