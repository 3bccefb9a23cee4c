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
    loss_fn = IdentityLoss(emb).train()
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
