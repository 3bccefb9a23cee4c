"""TANet's SMFM residual (eq. 16): the scaled default keeps the paper-size network in range at init
and trains from the first steps; ``residual_scale=None`` is eq. 16 read literally; checkpoints
saved before the option existed load with the literal form, function unchanged."""
from __future__ import annotations

import math

import pytest
import torch

from fsr_bench.data.package_faces import PackageFaces
from fsr_bench.data.resize import imresize
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint
from fsr_bench.models.tanet import SMFM

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _module_gains(model, lr: torch.Tensor) -> list[float]:
    """RMS(F^g) / RMS(F^{g-1}) of every SMFM, from forward hooks."""
    gains: list[float] = []
    hooks = [m.register_forward_hook(
        lambda _m, i, o: gains.append((o.pow(2).mean().sqrt() / i[0].pow(2).mean().sqrt()).item()))
        for m in model.local_path]
    with torch.no_grad():
        model(lr)
    for h in hooks:
        h.remove()
    return gains


@pytest.fixture(scope="module")
def face_lr():
    hr = PackageFaces(hr_size=128)[0]["hr"][None]  # a real face (scikit-image's astronaut)
    return {s: imresize(hr, scale=1 / s).clamp(0, 1) for s in (4, 8)}


@pytest.mark.parametrize("name", ["tanet_x4", "tanet_x8"])
def test_paper_size_default_stays_in_range_at_init(name, face_lr):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.config.residual_scale == 0.1 and (model.config.num_modules, model.config.num_resblocks) == (10, 10)
    lr = face_lr[model.scale]
    gains = _module_gains(model, lr)
    assert len(gains) == 10 and max(gains) < 1.1, gains
    with torch.no_grad():
        out = model(lr)
    assert out.abs().mean().item() < 1.0  # images live in [0, 1]


@pytest.mark.parametrize("name", ["tanet_x4", "tanet_x8"])
def test_literal_eq16_roughly_doubles_per_module(name, face_lr):
    """The defect the scaling removes: the input enters each SMFM twice, G = 10 times over."""
    torch.manual_seed(0)
    model = create_model(name, residual_scale=None).eval()
    gains = _module_gains(model, face_lr[model.scale])
    assert min(gains) > 1.8
    assert math.prod(gains) > 100


def test_smfm_formulas_written_out():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 5)
    literal, scaled = SMFM(8, 2, residual_scale=None).eval(), SMFM(8, 2, residual_scale=0.3).eval()
    scaled.load_state_dict({**literal.state_dict(), "res_scale": scaled.res_scale, "fused_scale": scaled.fused_scale})
    with torch.no_grad():
        res = x
        for rb in literal.resblocks:  # each block: x + Conv(ReLU(Conv(x)))
            res = res + rb.body[2](torch.relu(rb.body[0](res)))
        cal = torch.sigmoid(literal.calibrate[1](literal.calibrate[0](x))) * x  # eqs. 13-14
        fused = literal.fuse(torch.cat([res, cal], 1))  # eq. 15
        torch.testing.assert_close(literal(x), res + fused + x)  # eq. 16
        torch.testing.assert_close(scaled(x), x + 0.3 * (res - x) + 0.3 * fused)


def test_paper_size_first_steps_lower_the_loss():
    """Paper-size TANet x8 (C=64, G=I=10): a few Adam steps (paper lr) on one real-face batch."""
    faces = PackageFaces(hr_size=64)
    hr = torch.stack([faces[i]["hr"] for i in range(len(faces))])  # (2, 3, 64, 64)
    lr = imresize(hr, scale=1 / 8).clamp(0, 1)  # (2, 3, 8, 8)
    for residual_scale, must_fall in [(0.1, True), (None, False)]:
        torch.manual_seed(0)
        model = create_model("tanet_x8", residual_scale=residual_scale).train()
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        losses = []
        for _ in range(6):
            loss = (model(lr) - hr).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if must_fall:
            assert losses[-1] < losses[0] and losses[0] < 1.0, losses
        else:  # eq. 16 literally starts orders of magnitude out of range (the audit's finding)
            assert losses[0] > 5.0, losses


def test_checkpoint_from_before_residual_scale_loads_literal(tmp_path):
    tiny = MODELS.get("tanet_x4").tiny
    torch.manual_seed(0)
    old = create_model("tanet_x4", **tiny, residual_scale=None).eval()
    path = save_checkpoint(old, tmp_path / "old.pt")
    payload = read_checkpoint(path)
    del payload["config"]["residual_scale"]  # as written before the field existed
    torch.save(payload, path)
    rebuilt = create_model(checkpoint=path).eval()
    assert rebuilt.config.residual_scale is None
    lr = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(rebuilt(lr), old(lr))
    # a new checkpoint keeps its own value
    new = create_model("tanet_x4", **tiny)
    assert create_model(checkpoint=save_checkpoint(new, tmp_path / "new.pt")).config.residual_scale == 0.1


@pytest.mark.parametrize("name,expect", [
    ("tanet_x4", "patch tokens"), ("tanet_s_x8", "patch tokens"),
    ("tanet_literal_x4", "window tokens"), ("tanet_no_local_x8", "patch tokens"),
])
def test_every_tanet_names_its_tokenisation(name, expect):
    model = create_model(name, **MODELS.get(name).tiny)
    assert expect in model.variant and expect in model.info.notes


def test_literal_preset_drops_every_addition():
    cfg = create_model("tanet_literal_x8").config
    assert (cfg.tokenizer, cfg.norm, cfg.attn_proj, cfg.qkv_bias, cfg.mlp_ratio, cfg.residual_scale) == (
        "window", "none", False, False, 1.0, None)
    model = create_model("tanet_literal_x8")
    block = model.global_path.blocks[0]
    assert block.attn.qkv.bias is None and isinstance(block.attn.proj, torch.nn.Identity)
    assert "literal eqs. 9-11" in model.variant and "eq. 16 literal" in model.variant


def test_report_rows_name_the_tokenisation_even_when_the_label_does_not(tmp_path):
    """Issue 9: every TANet row says which tokenisation reading it used, whatever its label."""
    from fsr_bench.protocol import load_protocol
    from fsr_bench.reporting.load import load_runs
    from fsr_bench.run import run_protocol

    from conftest import REPO

    tiny = MODELS.get("tanet_x4").tiny
    ck = save_checkpoint(create_model("tanet_x4", **tiny, tokenizer="window"), tmp_path / "w.pt")
    proto = load_protocol(str(REPO / "protocols/quickstart.yaml"), [
        "data.dataset.hr_size=64", "run.report=false", "run.flops=false",
        f"models=[{{name: tanet_x4, label: Mine, checkpoint: {ck}}}, {{name: bicubic_x4, label: Bicubic}}]"])
    run_protocol(proto, tmp_path / "run", progress=False, log=lambda s: None)
    rows = {r.label: r for run in load_runs([tmp_path / "run"]) for r in run.rows}
    assert rows["Mine"].shown_label == "Mine (window tokens)" and rows["Bicubic"].shown_label == "Bicubic"
