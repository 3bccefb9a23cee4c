"""Identity-preserving training (issue 14): landmarks follow the augmentation, the differentiable
alignment equals cv2.warpAffine (insightface's norm_crop), the loss is frozen and gradient-correct,
and any registered model trains with ``loss.identity`` from a config."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fsr_bench.train.data import dihedral
from fsr_bench.train.identity import ALIGNED, IdentityLoss, align_faces, dihedral_points, face_affine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a plausible 5-point face in a 96 x 80 image (x, y): eyes, nose, mouth corners
PTS = np.array([[30.0, 40.0], [52.0, 39.0], [41.0, 52.0], [33.0, 64.0], [50.0, 63.0]])


@pytest.mark.parametrize("op", range(8))
def test_landmarks_follow_the_dihedral_ops_of_the_pixels(op):
    h, w = 96, 80
    img = torch.zeros(1, h, w)
    for k, (x, y) in enumerate(PTS.astype(int)):
        img[0, y, x] = k + 1  # point k marked with value k + 1
    moved = dihedral(img, op)
    new = dihedral_points(PTS, op, h, w)
    order = [1, 0, 2, 4, 3] if op >= 4 else [0, 1, 2, 3, 4]  # a mirror swaps left and right points
    for k, (x, y) in enumerate(new):
        assert moved[0, int(round(y)), int(round(x))].item() == order[k] + 1, (op, k)


def test_alignment_equals_cv2_warp_affine_of_insightface():
    cv2 = pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 10, generator=g), size=(96, 80), mode="bicubic",
                                          align_corners=False).clamp(0, 1)
    m = face_affine(PTS)
    ref = cv2.warpAffine(img[0].permute(1, 2, 0).numpy().astype(np.float32), m.astype(np.float64), (ALIGNED, ALIGNED),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    ours = align_faces(img, torch.from_numpy(m)[None])[0].permute(1, 2, 0).numpy()
    inner = (slice(4, -4), slice(4, -4))  # borders: cv2's and grid_sample's zero padding differ by half a pixel
    diff = np.abs(ours - ref)[inner]
    assert diff.mean() < 2e-3 and diff.max() < 3e-2  # cv2 quantises coordinates to 1/32 px


class _Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(16))

    def forward(self, x):
        return self.net(x)


def test_identity_loss_is_frozen_aligned_and_skips_faces_without_landmarks():
    emb = _Embedder()
    emb(torch.zeros(1, 3, ALIGNED, ALIGNED))  # materialise the lazy layer
    id_loss = IdentityLoss(emb).train()

    def loss_fn(*args):
        return id_loss(*args)["identity"]

    assert not emb.training and not any(p.requires_grad for p in emb.parameters())
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(3, 3, 96, 80, generator=g)
    affine = torch.from_numpy(np.stack([face_affine(PTS), face_affine(PTS), face_affine(None)]))
    assert torch.isnan(affine[2]).all()
    sr = hr.clone().requires_grad_(True)
    same = loss_fn(sr, hr, affine)
    assert abs(same.item()) < 1e-6
    other = torch.rand(3, 3, 96, 80, generator=g).requires_grad_(True)
    loss = loss_fn(other, hr, affine)
    loss.backward()
    assert loss.item() > 1e-3
    assert other.grad[:2].abs().sum() > 0 and other.grad[2].abs().sum() == 0  # no landmarks: no term
    assert all(p.grad is None for p in emb.parameters())
    # pixels outside the aligned face cannot change the loss (alignment from HR landmarks only)
    # (the crop's top edge maps to image row ~7.7 here: eye distance 22 px -> 35.2 px in the template)
    moved = other.detach().clone()
    moved[:, :, :5, :] = 0.5
    assert torch.equal(loss_fn(moved, hr, affine), loss_fn(other.detach(), hr, affine))
    moved[:, :, 40:50, 30:50] = 0.5  # inside the face: the loss must see it
    assert not torch.equal(loss_fn(moved, hr, affine), loss_fn(other.detach(), hr, affine))
    none = loss_fn(other, hr, affine[2:].expand(3, 2, 3))
    assert none.item() == 0.0 and none.requires_grad


def test_any_model_trains_with_the_identity_loss(tmp_path, shared_dir, faces256):
    """tanet (no identity hook of its own) trains on real faces with loss.identity = MobileFaceNet."""
    import yaml

    from fsr_bench.models import MODELS
    from fsr_bench.train.config import load_config
    from fsr_bench.train.trainer import train

    ids = [line.strip() for line in (shared_dir / "data/splits/faces256_train.txt").read_text().splitlines()][:2]
    (tmp_path / "train.txt").write_text("\n".join(ids) + "\n")
    cfg = {
        "model": {"name": "tanet_x8", "overrides": dict(MODELS.get("tanet_x8").tiny)},
        "data": {"train": {"type": "faces256", "root": str(faces256), "list_file": str(tmp_path / "train.txt")},
                 "degradation": {"type": "bicubic", "scale": 8}, "patch_size": None, "batch_size": 2, "workers": 0},
        "loss": {"pixel": "l1", "identity": {"weight": 0.5, "recogniser": "mobilefacenet",
                                             "weights": str(shared_dir / "weights/mobilefacenet/mobilefacenet.pt"),
                                             "landmarks_cache": str(tmp_path / "lmk")}},
        "schedule": {"max_steps": 2, "log_every": 1}, "log": {"progress": False}, "val_every": 0,
        "out_dir": str(tmp_path / "run"),
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    summary = train(load_config(tmp_path / "t.yaml"), echo=lambda s: None)
    assert summary["steps"] == 2
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert "loss_identity" in log[0]
    assert list((tmp_path / "lmk").glob("landmarks-*.json"))  # computed once, cached
    # patches are refused: a patch is not a face
    cfg["data"]["patch_size"] = 64
    cfg["out_dir"] = str(tmp_path / "run2")
    (tmp_path / "t2.yaml").write_text(yaml.safe_dump(cfg))
    from fsr_bench.train.trainer import TrainError

    with pytest.raises(TrainError, match="patch_size: null"):
        train(load_config(tmp_path / "t2.yaml"), echo=lambda s: None)


# -- the InfoNCE term, DIDnet's terms through loss.identity, autocast, DDP ------------------------
def _written_out_terms(e_sr: np.ndarray, e_hr: np.ndarray, tau: float) -> tuple[float, float]:
    """1 − cos and InfoNCE, mean_i [−s_ii/τ + log Σ_j exp(s_ij/τ)], s = ê_SR ê_HRᵀ, in float64."""
    a = e_sr / np.linalg.norm(e_sr, axis=1, keepdims=True)
    b = e_hr / np.linalg.norm(e_hr, axis=1, keepdims=True)
    s = a @ b.T
    nce = [-s[i, i] / tau + np.log(np.exp(s[i] / tau).sum()) for i in range(len(s))]
    return float(np.mean(1.0 - np.diag(s))), float(np.mean(nce))


def _faces(n: int, seed: int, size: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, size // 16, size // 16, generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _landmarks(n: int, size: int = 256) -> list[np.ndarray]:
    """PTS scaled to a size x size face, shifted and scaled a little differently per face."""
    rng = np.random.default_rng(3)
    return [PTS * (size / 96) * rng.uniform(0.9, 1.1) + rng.uniform(-8, 8, size=2) for _ in range(n)]


def _embedder() -> nn.Module:
    emb = _Embedder()
    emb(torch.zeros(1, 3, ALIGNED, ALIGNED))  # materialise the lazy layer
    return emb


def test_infonce_term_equals_the_written_out_formula_and_skips_faces_without_landmarks():
    emb = _embedder()
    hr, sr = _faces(4, 0), _faces(4, 1)
    pts = _landmarks(4)
    affine = torch.from_numpy(np.stack([face_affine(pts[0]), face_affine(None), face_affine(pts[2]),
                                        face_affine(pts[3])]))
    terms = IdentityLoss(emb, infonce_weight=0.5, temperature=0.07)(sr, hr, affine)
    assert set(terms) == {"identity", "identity_infonce"}
    keep = [0, 2, 3]  # face 1 has no landmarks: neither an anchor nor a negative
    with torch.no_grad():
        e_sr = emb(align_faces(sr[keep], affine[keep])).double().numpy()
        e_hr = emb(align_faces(hr[keep], affine[keep])).double().numpy()
    cos, nce = _written_out_terms(e_sr, e_hr, 0.07)
    assert terms["identity"].item() == pytest.approx(cos, rel=1e-5)
    assert terms["identity_infonce"].item() == pytest.approx(nce, rel=1e-5)
    assert nce > 0.1  # not the degenerate log(1) of a single face
    # a single face has no negative: the term is 0, and it still carries a graph
    one = IdentityLoss(emb, infonce_weight=0.5)(sr[:1].requires_grad_(True), hr[:1], affine[:1])
    assert one["identity_infonce"].item() == 0.0 and one["identity_infonce"].requires_grad
    assert "identity_infonce" not in IdentityLoss(emb)(sr, hr, affine)  # off by default


def test_didnet_recipe_terms_are_the_shared_loss_on_hr_aligned_faces():
    """DIDnet's recipe states its two terms as loss.identity; through TrainStep they equal 1 − cos and
    InfoNCE computed independently on cv2.warpAffine crops at the **HR** landmarks' alignment."""
    cv2 = pytest.importorskip("cv2")
    from conftest import REPO

    from fsr_bench.models import MODELS, create_model
    from fsr_bench.train.config import load_config
    from fsr_bench.train.losses import TrainStep

    cfg = load_config(REPO / "protocols" / "train_didnet_s_identity_faces256_x8.yaml")
    spec = cfg.loss.identity
    assert cfg.model.name == "didnet_s_x8" and spec is not None and spec.recogniser == "mobilefacenet"
    assert (spec.weight, spec.infonce_weight, spec.temperature) == (0.1, 0.1, 0.1)
    emb = _embedder()
    torch.manual_seed(0)
    model = create_model(cfg.model.name, **MODELS.get(cfg.model.name).tiny)
    hr = _faces(3, 2)
    lr = torch.nn.functional.interpolate(hr, scale_factor=1 / 8, mode="area")
    pts = _landmarks(3)
    affine = torch.from_numpy(np.stack([face_affine(p) for p in pts]))
    step = TrainStep(model, cfg.loss.pixel, cfg.loss.weights, IdentityLoss.from_config(spec, emb))
    total, terms = step(lr, hr, affine)
    with torch.no_grad():
        sr = model(lr)

    def warp(img: torch.Tensor, m: np.ndarray) -> torch.Tensor:
        out = cv2.warpAffine(img.permute(1, 2, 0).numpy().astype(np.float32), m.astype(np.float64),
                             (ALIGNED, ALIGNED), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return torch.from_numpy(out).permute(2, 0, 1)

    from insightface.utils.face_align import estimate_norm

    ms = [estimate_norm(p, image_size=ALIGNED) for p in pts]  # insightface's own alignment matrix
    with torch.no_grad():
        e_sr = emb(torch.stack([warp(sr[i], ms[i]) for i in range(3)])).double().numpy()
        e_hr = emb(torch.stack([warp(hr[i], ms[i]) for i in range(3)])).double().numpy()
        # what DIDnet's private path did: the whole 256x256 frame resized to 112x112
        r = lambda x: torch.nn.functional.interpolate(x, size=(ALIGNED, ALIGNED), mode="bilinear",  # noqa: E731
                                                      align_corners=False, antialias=True)
        whole = _written_out_terms(emb(r(sr)).double().numpy(), emb(r(hr)).double().numpy(), 0.1)
    cos, nce = _written_out_terms(e_sr, e_hr, 0.1)
    tol = 2e-3  # cv2 quantises sampling coordinates to 1/32 px
    assert terms["identity"].item() == pytest.approx(cos, abs=tol * cos)
    assert terms["identity_infonce"].item() == pytest.approx(nce, abs=tol * nce)
    assert abs(whole[0] - cos) > 20 * tol * cos  # the test can tell the alignments apart
    pixel = torch.nn.functional.l1_loss(sr, hr).item()
    assert total.item() == pytest.approx(pixel + 0.1 * terms["identity"].item() + 0.1 * terms["identity_infonce"].item(),
                                         rel=1e-5)


def test_identity_terms_are_float32_under_autocast():
    emb = _embedder()
    hr, sr = _faces(3, 4), _faces(3, 5)
    affine = torch.from_numpy(np.stack([face_affine(p) for p in _landmarks(3)]))
    loss = IdentityLoss(emb, infonce_weight=0.1)
    ref = loss(sr, hr, affine)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(sr.bfloat16(), hr.bfloat16(), affine)  # what a bf16 super-resolver hands over
    ref16 = loss(sr.bfloat16().float(), hr.bfloat16().float(), affine)
    for name in ref:
        assert got[name].dtype == torch.float32
        torch.testing.assert_close(got[name], ref16[name], rtol=1e-6, atol=1e-7)  # recogniser ran in fp32
    assert not torch.equal(ref["identity"], ref16["identity"])  # (the inputs did change)


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        emb = _embedder()
        hr, sr = _faces(5, 0), _faces(5, 1)
        pts = _landmarks(5)
        affine = np.stack([face_affine(pts[i] if i != 3 else None) for i in range(5)])
        rows = [[0, 1, 2], [3, 4]][rank]  # unequal shards; rank 1's first face has no landmarks
        terms = IdentityLoss(emb, infonce_weight=1.0, temperature=0.2)(
            sr[rows], hr[rows], torch.from_numpy(affine[rows]))
        torch.save({k: v.detach() for k, v in terms.items()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_infonce_negatives_span_every_ddp_process(tmp_path):
    """2 gloo processes: each row's InfoNCE uses the HR faces of the whole global batch."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "terms")
    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path / 'store'}", out), nprocs=2, join=True)
    emb = _embedder()
    hr, sr = _faces(5, 0), _faces(5, 1)
    pts = _landmarks(5)
    keep = [0, 1, 2, 4]
    affine = torch.from_numpy(np.stack([face_affine(pts[i]) for i in keep]))
    with torch.no_grad():
        e_sr = emb(align_faces(sr[keep], affine)).double().numpy()
        e_hr = emb(align_faces(hr[keep], affine)).double().numpy()
    a = e_sr / np.linalg.norm(e_sr, axis=1, keepdims=True)
    b = e_hr / np.linalg.norm(e_hr, axis=1, keepdims=True)
    s = a @ b.T / 0.2
    nce = -np.diag(s) + np.log(np.exp(s).sum(axis=1))  # per face, negatives from both processes
    got = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    assert got[0]["identity_infonce"].item() == pytest.approx(nce[:3].mean(), rel=1e-5)
    assert got[1]["identity_infonce"].item() == pytest.approx(nce[3:].mean(), rel=1e-5)


def test_didnet_recipe_trains_with_both_identity_terms(tmp_path, shared_dir, faces256):
    """The shipped DIDnet identity recipe (bf16 autocast, channels-last) on two real faces, MobileFaceNet."""
    import csv

    from conftest import REPO

    from fsr_bench.models import MODELS
    from fsr_bench.models.checkpoint import read_checkpoint
    from fsr_bench.train.config import load_config
    from fsr_bench.train.trainer import train

    ids = [line.strip() for line in (shared_dir / "data/splits/faces256_train.txt").read_text().splitlines()][:2]
    (tmp_path / "train.txt").write_text("\n".join(ids) + "\n")
    tiny = MODELS.get("didnet_s_x8").tiny
    cfg = load_config(REPO / "protocols" / "train_didnet_s_identity_faces256_x8.yaml", [
        f"model.overrides={tiny}", f"data.train.root={faces256}", f"data.train.list_file={tmp_path / 'train.txt'}",
        "data.val=", "data.batch_size=2", "data.workers=0", "schedule.max_steps=2", "schedule.log_every=1",
        "log.progress=false", "val_every=0", f"out_dir={tmp_path / 'run'}",
        f"loss.identity.weights={shared_dir / 'weights/mobilefacenet/mobilefacenet.pt'}",
        f"loss.identity.landmarks_cache={tmp_path / 'lmk'}"])
    assert cfg.precision == "bf16" and cfg.channels_last
    train(cfg, echo=lambda s: None)
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    ident, nce = float(row["loss_identity"]), float(row["loss_identity_infonce"])
    assert ident > 0 and nce > 0
    assert float(row["loss_total"]) == pytest.approx(float(row["loss_pixel"]) + 0.1 * ident + 0.1 * nce, rel=1e-4)
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert not any("embedder" in k or "identity" in k for k in ck["state_dict"])  # φ is never saved
    assert ck["train_config"]["loss"]["identity"]["infonce_weight"] == 0.1  # what trained_with reads
