"""fsr-bench train: exact resume, DDP (gloo, 2 processes) = 1 process, dry run, config, clear errors.

All on CPU with tiny models and 32x32 synthetic faces; each training run takes a few steps.
"""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from torch import nn
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.io import write_image
from fsr_bench.models import MODELS, create_model, register_model
from fsr_bench.models.base import SuperResolver
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint
from fsr_bench.train.config import ConfigError, load_config
from fsr_bench.train.data import EpochSampler, TrainPairs, dihedral
from fsr_bench.train.logs import CsvLog
from fsr_bench.train.losses import TrainStep
from fsr_bench.train.trainer import Trainer, TrainError, train

TINY = MODELS.get("tanet_x4").tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _smooth(g: torch.Generator, size: int) -> torch.Tensor:
    x = torch.rand(1, 3, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """9 train faces (3 identities x 3) and 3 val faces, 32x32 PNG."""
    root = tmp_path_factory.mktemp("faces")
    g = torch.Generator().manual_seed(0)
    for split, ids in (("train", 3), ("val", 1)):
        for i in range(ids):
            for j in range(3):
                write_image(_smooth(g, 32), root / split / f"id{i}" / f"{j}.png")
    return root


def _yaml(tmp_path: Path, data: Path, **extra) -> Path:
    cfg = {
        "model": {"name": "tanet_x4", "overrides": dict(TINY)},
        "data": {
            "train": {"type": "folder", "root": str(data / "train")},
            "val": {"type": "folder", "root": str(data / "val")},
            "batch_size": 2,
            "workers": 0,
        },
        "optim": {"step_epochs": 1},  # lr halves every epoch: resume must restore the scheduler
        "schedule": {"max_steps": 6, "log_every": 1},
        "log": {"progress": False},
        "out_dir": str(tmp_path / "run"),
    }
    for key, value in extra.items():
        node = cfg
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cfg(tmp_path, data, *sets, **extra):
    return load_config(_yaml(tmp_path, data, **extra), list(sets))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "train_log.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss_total"])) for r in csv.DictReader(f)]


def _cli(*args: str):
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.output


quiet = dict(echo=lambda s: None)


# -- exact resume -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> Path:
    tmp = tmp_path_factory.mktemp("full")
    # 9 images / batch 2 = 4 steps per epoch: 7 steps cross an epoch end and an lr halving
    train(_cfg(tmp, data, "schedule.max_steps=7", "data.workers=1"), **quiet)
    return tmp / "run"


@pytest.mark.parametrize("stop_at", [3, 4], ids=["mid-epoch", "epoch-end"])
def test_resume_is_exact(tmp_path, data, uninterrupted, stop_at):
    cfg = _cfg(tmp_path, data, "schedule.max_steps=7")

    def interrupt(trainer):
        if trainer.step == stop_at:
            trainer.request_stop("test interrupt")

    first = train(cfg, callbacks=[interrupt], **quiet)
    assert first["steps"] == stop_at
    ck = read_checkpoint(tmp_path / "run" / "last.pt")  # weights_only=True
    assert (ck["step"], ck["epoch"], ck["epoch_step"]) == (stop_at, stop_at // 4, stop_at % 4)
    assert {"optimizer", "scheduler", "rng", "train_config", "config", "model"} <= set(ck)
    second = train(cfg, resume=True, **quiet)
    assert second["steps"] == 7
    want, got = _weights(uninterrupted / "last.pt"), _weights(tmp_path / "run" / "last.pt")
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k  # bitwise
    assert _losses(tmp_path / "run")[-1] == _losses(uninterrupted)[-1]
    # best.pt rebuilds its own architecture
    model = create_model(checkpoint=tmp_path / "run" / "best.pt")
    assert model.name == "tanet_x4" and model.config_dict()["channels"] == TINY["channels"]


def test_cpu_adam_is_fused_and_is_adam(tmp_path, data):
    """The CPU trainer uses the fused Adam kernel; its steps are the written-out Adam update
    (Kingma & Ba 2015, Algorithm 1, bias-corrected) for the recipe's lr/betas/eps."""
    trainer = Trainer(_cfg(tmp_path, data, "device=cpu"), write_outputs=False, echo=lambda s: None)
    opt = trainer.optimizer
    assert opt.param_groups[0]["fused"] is True
    lr, (b1, b2), eps = opt.param_groups[0]["lr"], opt.param_groups[0]["betas"], opt.param_groups[0]["eps"]
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(5, generator=g)
    p = nn.Parameter(p0.clone())
    fused = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, fused=True)
    m = torch.zeros(5, dtype=torch.float64)
    v = torch.zeros(5, dtype=torch.float64)
    want = p0.double()
    for t in range(1, 4):
        grad = torch.randn(5, generator=g)
        p.grad = grad.clone()
        fused.step()
        m = b1 * m + (1 - b1) * grad.double()
        v = b2 * v + (1 - b2) * grad.double() ** 2
        want = want - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    # float32 parameters (~1): 1e-6 is a few ulps, 0.5% of one lr=2e-4 step
    torch.testing.assert_close(p.detach().double(), want, rtol=0, atol=1e-6)


def test_resume_keeps_the_adam_implementation_the_run_started_with(tmp_path, data):
    """A run started before CPU Adam was fused resumes with the for-loop Adam it was trained with
    (the optimizer state's `fused` entry), so its continuation stays exact."""
    cfg = _cfg(tmp_path, data, "schedule.max_steps=2", "val_every=0", "device=cpu")
    train(cfg, **quiet)
    path = tmp_path / "run" / "last.pt"
    ck = torch.load(path, map_location="cpu", weights_only=True)
    for group in ck["optimizer"]["param_groups"]:
        group["fused"] = None  # what a checkpoint of the unfused trainer holds
    torch.save(ck, path)
    trainer = Trainer(load_config(_yaml(tmp_path, data), ["schedule.max_steps=3", "val_every=0", "device=cpu"]),
                      resume=True, echo=lambda s: None)
    trainer._load_resume()
    assert trainer.optimizer.param_groups[0]["fused"] is None


def test_resume_refuses_other_model_and_changed_recipe(tmp_path, data):
    train(_cfg(tmp_path, data, "schedule.max_steps=1"), **quiet)
    cfg = str(_yaml(tmp_path, data))
    code, out = _cli(cfg, "--set", "schedule.max_steps=2")
    assert code == 2 and "already holds a run" in out and "--resume" in out
    code, out = _cli(cfg, "--resume", "--set", "optim.lr=1e-3")
    assert code == 2 and "optim.lr: 0.0002 -> 0.001" in out
    code, out = _cli(cfg, "--resume", "--set", "model.name=tanet_x8")
    assert code == 2 and "checkpoint of model 'tanet_x4'" in out
    code, out = _cli(cfg, "--resume", "--set", "schedule.max_steps=2")  # schedule may change
    assert code == 0, out
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


# -- DDP ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes_match_one(tmp_path, data):
    """torchrun, 2 CPU processes x batch 2 vs 1 process x batch 4: same losses, same weights."""
    cfg = _yaml(tmp_path, data, schedule={"max_steps": 4, "log_every": 1})
    sets = ["--set", "data.batch_size=4", "--set", "val_every=0"]
    exe = Path(sys.executable).parent / "fsr-bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(exe), "train", str(cfg), "--out", str(tmp_path / "ddp"), *sets]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, out = _cli(str(cfg), "--out", str(tmp_path / "one"), *sets)  # 1 thread, like each DDP rank
    assert code == 0, out
    ddp, one = _losses(tmp_path / "ddp"), _losses(tmp_path / "one")
    assert [s for s, _ in ddp] == [s for s, _ in one] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(ddp, one):
        assert a == pytest.approx(b, rel=1e-5)
    wa, wb = _weights(tmp_path / "ddp" / "last.pt"), _weights(tmp_path / "one" / "last.pt")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)
    assert read_checkpoint(tmp_path / "ddp" / "last.pt")["world_size"] == 2
    assert len(read_checkpoint(tmp_path / "ddp" / "last.pt")["rng"]) == 2


def test_sampler_shards_are_the_global_batches():
    one = list(EpochSampler(11, 4, seed=3))
    ranks = [list(EpochSampler(11, 4, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert len(one) == 8 and all(len(r) == 4 for r in ranks)
    for step in range(2):  # global batch k = positions [4k, 4k+4) for any world size
        single = {k[0] for k in one[4 * step: 4 * step + 4]}
        split = {k[0] for r in ranks for k in r[2 * step: 2 * step + 2]}
        assert single == split
    s = EpochSampler(11, 4, seed=3)
    s.set_epoch(0, start_step=1)
    assert list(s) == one[4:] and len(s) == 4
    s.set_epoch(1)
    assert [k[0] for k in s] != [k[0] for k in one]


def test_train_pairs_are_keyed_and_aligned(data):
    from fsr_bench.data.degradations import build_degradation
    from fsr_bench.data.folders import FaceFolder

    hr_set = FaceFolder(data / "train")
    deg = build_degradation({"type": "bicubic", "scale": 4})
    pairs = TrainPairs(hr_set, 4, deg, patch=(16, 8), seed=1, global_batch=2)
    a, b = pairs[(3, 0, 5)], pairs[(3, 0, 5)]
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    assert torch.equal(a["lr"], deg(a["hr"]))  # LR is the degradation of the augmented HR crop
    shapes = {tuple(pairs[(i, 0, p)]["hr"].shape) for i, p in [(0, 0), (1, 1)]}  # same global batch
    assert len(shapes) == 1  # non-square patch: one dihedral op per global batch
    hr = torch.arange(12.0).view(1, 3, 4)
    assert len({tuple(dihedral(hr, k).flatten().tolist()) for k in range(8)}) == 8


def test_surveillance_chain_training_draws_per_sample_parameters_the_checkpoint_recovers(tmp_path, data):
    """Issue 14 §2: every sample gets its own chain parameters from the configured ranges, new each epoch;
    the checkpoint's train_config records ranges and seed, from which any sample's parameters follow."""
    from fsr_bench.data.degradations import SurveillanceChain
    from fsr_bench.train.config import TrainConfig
    from fsr_bench.train.data import _stream

    chain = "{type: surveillance, blur_sigma: [0.5, 2.0], noise_sigma: [1, 10], jpeg_quality: [30, 70]}"
    train(_cfg(tmp_path, data, f"data.degradation={chain}", "schedule.max_steps=2", "val_every=0"), **quiet)
    recorded = read_checkpoint(tmp_path / "run" / "last.pt")["train_config"]
    assert recorded["data"]["degradation"] == {"type": "surveillance", "blur_sigma": [0.5, 2.0],
                                               "noise_sigma": [1, 10], "jpeg_quality": [30, 70]}
    pairs = Trainer(TrainConfig.model_validate(recorded), write_outputs=False).train_pairs
    params = {(i, e): pairs.degradation_params(i, e) for i in range(len(pairs)) for e in range(2)}
    for p in params.values():
        assert 0.5 <= p["blur_sigma"] <= 2.0 and 1 <= p["noise_sigma"] <= 10 and 30 <= p["jpeg_quality"] <= 70
    assert len({p["blur_sigma"] for p in params.values()}) == len(params)  # per sample and per epoch
    # the recovered parameters are the ones the sample was made with
    item = pairs[(4, 1, 0)]
    p = params[(4, 1)]
    fixed = SurveillanceChain(4, blur_sigma=p["blur_sigma"], noise_sigma=p["noise_sigma"],
                              jpeg_quality=p["jpeg_quality"])
    assert torch.equal(item["lr"], fixed(item["hr"], index=4, seed=_stream(recorded["seed"], 1, 4)[3]))
    assert not torch.equal(item["lr"], SurveillanceChain(4, blur_sigma=p["blur_sigma"] + 0.3, noise_sigma=p[
        "noise_sigma"], jpeg_quality=p["jpeg_quality"])(item["hr"], index=4, seed=_stream(recorded["seed"], 1, 4)[3]))
    from fsr_bench.data.degradations import BicubicDown

    assert TrainPairs(pairs.hr_set, 4, BicubicDown(4)).degradation_params(0, 0) is None  # nothing random to record


# -- losses for baselines: forward_steps (SRFBN) and training_loss (DIDnet) ----------------------
class _Feedback(SuperResolver):
    def __init__(self, scale: int = 4):
        super().__init__(scale, {"scale": scale})
        self.body = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward_native(self, lr):
        return self.forward_steps(lr)[-1]

    def forward_steps(self, lr):
        first = self.up(self.body(lr))
        return [first, first + 0.1 * first.tanh()]

    def training_loss(self, sr, hr, lr):
        return {"aux": (sr.mean() - hr.mean()).abs()}


@pytest.fixture()
def feedback_model():
    register_model(lambda **kw: _Feedback(**kw), name="test_feedback_x4")
    yield "test_feedback_x4"
    MODELS.unregister("test_feedback_x4")


def test_step_losses_for_steps_and_extra_terms():
    m = _Feedback()
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    step = TrainStep(m, "l1", {"aux": 0.5})
    total, terms = step(lr, hr)
    outs = m.forward_steps(lr)
    pix = (nn.functional.l1_loss(outs[0], hr) + nn.functional.l1_loss(outs[1], hr)) / 2
    torch.testing.assert_close(terms["pixel"], pix)
    torch.testing.assert_close(total, pix + 0.5 * terms["aux"])
    with pytest.raises(ValueError, match="does not produce"):
        TrainStep(m, "l1", {"identity": 1.0}).check_terms(terms)


def test_any_registered_model_trains(tmp_path, data, feedback_model):
    summary = train(_cfg(tmp_path, data, f"model.name={feedback_model}", "model.overrides={}",
                         "loss.weights={aux: 0.1}", "schedule.max_steps=2"), **quiet)
    assert summary["steps"] == 2
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        assert {"loss_total", "loss_pixel", "loss_aux"} <= set(next(csv.DictReader(f)))


# -- dry run, config ------------------------------------------------------------------------------
def test_dry_run(tmp_path, data):
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--estimate-steps", "1", "--set", "precision=bf16")
    assert code == 0, out
    assert "# resolved config" in out and "precision: bf16" in out and "batch_size: 2" in out
    params = create_model("tanet_x4", **TINY).num_parameters()
    assert f"{params:,} parameters" in out
    assert "s/step" in out and "estimate:" in out and "4 steps/epoch" in out
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_config_precedence_and_types(tmp_path, data):
    path = _yaml(tmp_path, data, optim={"lr": 1e-3})
    assert load_config(path).optim.lr == 1e-3  # YAML over default
    assert load_config(path).optim.betas == (0.9, 0.999)  # default (the paper's)
    cfg = load_config(path, ["optim.lr=5e-4", "data.augment.hflip=false", "data.patch_size=[16, 8]",
                             "optim.lr=4e-4", "model.checkpoint="])
    assert cfg.optim.lr == 4e-4  # --set over YAML; the last --set wins
    assert cfg.data.augment.hflip is False and cfg.data.patch_size == (16, 8) and cfg.model.checkpoint is None
    assert load_config(tmp_path / "train.yaml").out_dir == str(tmp_path / "run")
    bare = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "out_dir"}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(bare))
    assert load_config(tmp_path / "mine.yaml").out_dir == str(Path("runs") / "mine")


def test_config_unknown_keys_name_their_location(tmp_path, data):
    raw = yaml.safe_load(_yaml(tmp_path, data).read_text())
    raw["data"]["bach_size"] = 4
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"data\.bach_size: unknown key; did you mean data\.batch_size\?"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"optim\.lrate: unknown key \(from --set\)"):
        load_config(_yaml(tmp_path, data), ["optim.lrate=1"])
    with pytest.raises(ConfigError, match=r"data\.train\.rooot: unknown key"):
        load_config(_yaml(tmp_path, data), ["data.train.rooot=x"])
    with pytest.raises(ConfigError, match=r"precision: .*'fp32', 'bf16' or 'fp16'"):
        load_config(_yaml(tmp_path, data), ["precision=fp8"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(_yaml(tmp_path, data), ["optim.lr"])
    code, out = _cli(str(tmp_path / "bad.yaml"), "--dry-run")
    assert code == 2 and "data.bach_size" in out


# -- clear errors -----------------------------------------------------------------------------------
def test_error_empty_dataset(tmp_path, data):
    (tmp_path / "empty").mkdir()
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", f"data.train.root={tmp_path / 'empty'}")
    assert code == 2 and "no images" in out
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", "data.batch_size=16")
    assert code == 2 and "fewer than data.batch_size 16" in out


def test_error_image_smaller_than_crop(tmp_path, data):
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", "data.patch_size=64")
    assert code == 2 and "smaller than data.patch_size 64x64" in out and "id0/0" in out
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", "data.patch_size=18")
    assert code == 2 and "multiple of the scale 4" in out


def test_error_scale_mismatch(tmp_path, data):
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", "data.degradation={type: bicubic, scale: 8}")
    assert code == 2 and "data.degradation.scale is 8, but model 'tanet_x4' upscales x4" in out


def test_error_checkpoint_of_another_model(tmp_path, data):
    other = create_model("tanet_x8", **TINY)
    save_checkpoint(other, tmp_path / "x8.pt")
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", f"model.checkpoint={tmp_path / 'x8.pt'}")
    assert code == 2 and "saved for model 'tanet_x8', not 'tanet_x4'" in out


def test_error_out_of_memory_names_a_batch_size(tmp_path, data, monkeypatch):
    def oom(self, lr, hr):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "_train_step", oom)
    with pytest.raises(TrainError, match=r"out of GPU memory .* try --set data\.batch_size=1"):
        train(_cfg(tmp_path, data), **quiet)


def test_error_nothing_to_train(tmp_path, data):
    code, out = _cli(str(_yaml(tmp_path, data)), "--dry-run", "--set", "model={name: bicubic_x4}")
    assert code == 2 and "no trainable parameters" in out


# -- every registered model trains (baselines and plug-ins too) --------------------------------
def _trainable():
    from fsr_bench.models import list_models

    names = []
    for name in list_models():
        entry = MODELS.get(name)
        model = create_model(name, **(entry.tiny or {}))
        if model.num_parameters(trainable_only=True):
            names.append(name)
    return names


@pytest.mark.parametrize("name", _trainable())
def test_every_registered_model_trains(tmp_path, data, name):
    scale = create_model(name, **(MODELS.get(name).tiny or {})).scale
    hr = {"hr_size": 16 * scale}  # LR 16x16 for every scale
    cfg = _cfg(tmp_path, data, f"model.name={name}", "schedule.max_steps=1",
               model={"name": name, "overrides": MODELS.get(name).tiny or {}},
               data__train={"type": "folder", "root": str(data / "train"), **hr},
               data__val={"type": "folder", "root": str(data / "val"), **hr})
    summary = train(cfg, **quiet)
    assert summary["steps"] == 1 and summary["last_val"]["n"] == 3


def test_removed_identity_net_keys_name_their_replacement(tmp_path, data):
    with pytest.raises(ConfigError, match=r"replaced by the identity loss.*loss.identity: \{recogniser: mobilefacenet"):
        _cfg(tmp_path, data, "loss.identity_net=mobilefacenet")
    # resolved configs of older runs (OUT/config.yaml) carry them as null: still readable
    assert _cfg(tmp_path, data, "loss.identity_net=", "loss.identity_weights=").loss.identity is None


def test_tensorboard_optional(tmp_path, data):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(TrainError, match=r"pip install 'fsr-bench\[tensorboard\]'"):
            train(_cfg(tmp_path, data, "log.tensorboard=true", "schedule.max_steps=1"), **quiet)
    else:
        train(_cfg(tmp_path, data, "log.tensorboard=true", "schedule.max_steps=1"), **quiet)
        assert any((tmp_path / "run" / "tb").iterdir())


@pytest.mark.parametrize("path", sorted((REPO / "protocols").glob("train_*.yaml")), ids=lambda p: p.stem)
def test_training_protocols_validate(path):
    cfg = load_config(path)
    assert cfg.optim.betas == (0.9, 0.999) and cfg.optim.eps == 1e-8
    assert (cfg.optim.gamma, cfg.loss.pixel) == (0.5, "l1")
    assert cfg.data.augment.hflip and cfg.data.augment.rot90
    scale = int(cfg.model.name.rsplit("_x", 1)[1])
    if cfg.model.pretrained or cfg.model.checkpoint:
        # fine-tuning recipes (issue 14's four-way comparison) continue a finished schedule: a constant lr
        # no higher than the paper's, on bicubic or the surveillance chain at the model's scale
        assert cfg.optim.lr < 2e-4 and cfg.optim.step_epochs > cfg.schedule.epochs
        assert cfg.data.degradation["type"] in ("bicubic", "surveillance") and cfg.data.degradation["scale"] == scale
        return
    assert cfg.optim.lr == 2e-4
    # the paper's 300 epochs halve every 60; shortened recipes keep a halving inside their budget
    assert cfg.optim.step_epochs == 60 if cfg.schedule.epochs >= 300 else cfg.optim.step_epochs < cfg.schedule.epochs
    assert cfg.data.degradation == {"type": "bicubic", "scale": scale}


def test_cpu_protocol_dry_run_on_shared_faces(shared_dir, monkeypatch):
    monkeypatch.chdir(REPO)  # its data paths are relative to the repository root
    code, out = _cli("protocols/train_tanet_faces256_x4_cpu.yaml", "--dry-run", "--estimate-steps", "0")
    assert code == 0, out
    # expected counts from the split lists and the config's own model, not pinned numbers
    faces, splits = shared_dir / "data" / "faces256", shared_dir / "data" / "splits"
    n_train, n_val = (sum(len(list((faces / ident).glob("*.jpg"))) for ident in (splits / f).read_text().split())
                      for f in ("faces256_train.txt", "faces256_val.txt"))
    cfg = load_config(REPO / "protocols" / "train_tanet_faces256_x4_cpu.yaml")
    params = create_model(cfg.model.name, **cfg.model.overrides).num_parameters()
    assert f"{n_train} train / {n_val} val images" in out and f"{params:,} parameters" in out


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on CPU needs a C++ compiler")
def test_compile_trains_like_eager(tmp_path, data):
    """compile: true must train (gradients reach the weights) and match eager closely."""
    (tmp_path / "e").mkdir()
    (tmp_path / "c").mkdir()
    eager = _cfg(tmp_path / "e", data, "schedule.max_steps=2", "val_every=0")
    compiled = _cfg(tmp_path / "c", data, "schedule.max_steps=2", "val_every=0", "compile=true")
    train(eager, **quiet)
    torch._dynamo.reset()
    train(compiled, **quiet)
    torch.manual_seed(0)  # the trainer's init (seed 0)
    init = create_model("tanet_x4", **TINY).state_dict()
    we, wc = _weights(tmp_path / "e" / "run" / "last.pt"), _weights(tmp_path / "c" / "run" / "last.pt")
    for k in we:
        torch.testing.assert_close(wc[k], we[k], rtol=1e-3, atol=1e-5)
    assert not torch.equal(wc["shallow.weight"], init["shallow.weight"])


def test_bf16_channels_last_cpu_training_keeps_fp32_weights_and_validates_in_bf16(tmp_path, data, monkeypatch):
    """CPU bf16 autocast: fp32 master weights, steps close to fp32's, validation in the training precision."""
    import fsr_bench.models.precision as precision_mod

    seen = []
    real_infer = precision_mod.infer

    def spy(model, lr, precision, channels_last):
        seen.append((precision, channels_last))
        return real_infer(model, lr, precision, channels_last)

    monkeypatch.setattr(precision_mod, "infer", spy)  # validation looks it up when it runs
    for sub, sets in (("f", ()), ("b", ("precision=bf16", "channels_last=true"))):
        (tmp_path / sub).mkdir()
        train(_cfg(tmp_path / sub, data, "schedule.max_steps=2", "val_every=0", *sets), **quiet)
    assert ("fp32", False) in seen and ("bf16", True) in seen
    torch.manual_seed(0)
    init = create_model("tanet_x4", **TINY).state_dict()
    wf, wb = _weights(tmp_path / "f" / "run" / "last.pt"), _weights(tmp_path / "b" / "run" / "last.pt")
    assert all(v.dtype == torch.float32 for v in wb.values() if v.is_floating_point())
    step_f = wf["shallow.weight"] - init["shallow.weight"]
    step_b = wb["shallow.weight"] - init["shallow.weight"]
    assert step_b.abs().max() > 0  # it trained
    # Adam's first steps are ~lr * sign(grad): bf16 gradients must point the same way as fp32's
    assert torch.nn.functional.cosine_similarity(step_f.flatten(), step_b.flatten(), dim=0) > 0.9


def test_fp16_on_cpu_is_refused(tmp_path, data):
    with pytest.raises(TrainError, match="fp16 is not supported on the CPU"):
        train(_cfg(tmp_path, data, "precision=fp16", "device=cpu"), **quiet)


# -- crash safety of best.pt / last.pt (issue 11, items 4 and 10) -------------------------------
def _checkpoint_replaces(monkeypatch, fail_at: int | None = None) -> list[str]:
    """Record (and optionally fail, like ENOSPC) the atomic renames that publish checkpoints."""
    import errno

    calls: list[str] = []
    real = os.replace

    def replace(src, dst, *a, **k):
        name = Path(dst).name
        if name in ("best.pt", "last.pt"):
            calls.append(name)
            if fail_at is not None and len(calls) - 1 == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_best_pt_is_never_older_than_the_best_last_pt_records(tmp_path, data, monkeypatch):
    sets = ("schedule.max_steps=6", "val_every_steps=2", "optim.lr=0.01")
    (tmp_path / "probe").mkdir()
    with monkeypatch.context() as m:
        calls = _checkpoint_replaces(m)
        train(_cfg(tmp_path / "probe", data, *sets), **quiet)
    assert "best.pt" in calls
    for k in range(len(calls)):
        run = tmp_path / f"fail{k}"
        run.mkdir()
        with monkeypatch.context() as m:
            _checkpoint_replaces(m, fail_at=k)
            with pytest.raises(OSError):
                train(_cfg(run, data, *sets), **quiet)
        last, best = run / "run" / "last.pt", run / "run" / "best.pt"
        if last.is_file() and best.is_file():
            recorded = read_checkpoint(last)["best"]["step"]
            assert read_checkpoint(best)["step"] >= recorded, (k, calls)
            if k < len(calls) - 1:  # resuming knows the newest best, wherever it was written
                t = Trainer(_cfg(run, data, *sets), resume=True, **quiet)
                t._load_resume()
                assert t.best["step"] == read_checkpoint(best)["step"]
                t.close()


def test_stale_temp_files_of_a_killed_run_are_swept(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    for name in (".last.pt.abc123.tmp", ".best.pt.4242.tmp", "keep.tmp"):
        (out / name).write_bytes(b"x" * 10)
    train(_cfg(tmp_path, data, "schedule.max_steps=1"), **quiet)
    assert sorted(p.name for p in out.glob("*.tmp")) == ["keep.tmp"]


# -- the streaming CSV logs (pandas; issue 16) ----------------------------------------------------
def _csv_module_log(path: Path, rows: list[dict]) -> None:
    """The reference: what the csv-module writer the trainer used before wrote for these rows."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_csv_log_writes_what_the_csv_module_wrote_and_resume_drops_later_rows(tmp_path):
    rows = [{"step": 1, "epoch": "0.250", "loss_total": "0.500000", "note": "a,b"},  # a quoted cell
            {"step": 2, "epoch": "0.500", "loss_total": "0.400000", "note": "", "gpu_mem_gb": "1.00"},  # extra key
            {"step": 3, "epoch": "0.750", "note": 'say "hi"'},  # a missing key: empty cell
            {"step": 4, "epoch": "1.000", "loss_total": "0.300000", "note": ""}]
    log = CsvLog(tmp_path / "log.csv", resume_step=None)
    for r in rows:
        log.write(r)
    _csv_module_log(tmp_path / "ref.csv", rows)
    assert (tmp_path / "log.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    with open(tmp_path / "log.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [
            {"step": "1", "epoch": "0.250", "loss_total": "0.500000", "note": "a,b"},
            {"step": "2", "epoch": "0.500", "loss_total": "0.400000", "note": ""},
            {"step": "3", "epoch": "0.750", "loss_total": "", "note": 'say "hi"'},
            {"step": "4", "epoch": "1.000", "loss_total": "0.300000", "note": ""}]
    # resume at step 2: rows 3 and 4 are logged again by the resumed run; kept rows unchanged
    log = CsvLog(tmp_path / "log.csv", resume_step=2)
    log.write({"step": 3, "epoch": "0.750", "loss_total": "0.350000", "note": ""})
    _csv_module_log(tmp_path / "ref.csv", rows[:2] + [{"step": 3, "epoch": "0.750", "loss_total": "0.350000", "note": ""}])
    assert (tmp_path / "log.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    # a resume before the first logged row keeps the header only, once
    CsvLog(tmp_path / "log.csv", resume_step=0).write({"step": 1, "epoch": "0.250", "loss_total": "0.1", "note": ""})
    assert (tmp_path / "log.csv").read_text() == "step,epoch,loss_total,note\n1,0.250,0.1,\n"
    CsvLog(tmp_path / "log.csv", resume_step=None)  # a fresh run replaces an old log
    assert not (tmp_path / "log.csv").exists()


# -- a full or read-only disk (issue 25, item 7) ---------------------------------------------------
def _disk_full_on(monkeypatch, name: str, at: int) -> None:
    """The ``at``-th write (0-based) of a temp file for ``name`` hits a full disk, as ENOSPC does: at
    the flush to disk, after the bytes went into the page cache."""
    import errno

    real = os.fsync
    seen = [0]

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(f".{name}."):
            seen[0] += 1
            if seen[0] - 1 == at:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("at", [0, 1])
def test_full_disk_keeps_a_resumable_last_pt_and_is_an_error_line(tmp_path, data, monkeypatch, at):
    path = _yaml(tmp_path, data)
    sets = ["--set", "schedule.max_steps=4", "--set", "val_every_steps=2", "--set", "optim.lr=0.01"]
    _disk_full_on(monkeypatch, "last.pt", at)
    code, output = _cli(str(path), *sets)
    assert code == 2 and "No space left on device" in output and "free some space" in output, output
    run = tmp_path / "run"
    assert (run / "last.pt").is_file() == (run / "best.pt").is_file()  # never a best.pt without last.pt
    if at == 1:  # the first pair stays, whole: the run resumes from it
        monkeypatch.undo()
        assert read_checkpoint(run / "last.pt")["step"] == 2
        code, output = _cli(str(path), "--resume", *sets)
        assert code == 0, output


def test_read_only_out_is_an_error_line(tmp_path, data, monkeypatch):
    import errno

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run"))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, output = _cli(str(_yaml(tmp_path, data)))
    assert code == 2 and "Read-only file system" in output and "writable --out" in output, output


def test_config_and_summary_are_written_atomically(tmp_path, data, monkeypatch):
    from fsr_bench import atomic

    published: list[str] = []
    real = atomic.write_bytes
    monkeypatch.setattr(atomic, "write_bytes", lambda p, d: (published.append(Path(p).name), real(p, d))[1])
    train(_cfg(tmp_path, data, "schedule.max_steps=1"), **quiet)
    assert {"config.yaml", "summary.json"} <= set(published)
