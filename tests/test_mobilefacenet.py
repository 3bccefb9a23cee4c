"""MobileFaceNet: exact key layout, strict load of the real weights, ONNX equivalence, sanity on LFW.

Tests that need the real weights or LFW use the ``shared_dir`` fixture and skip without ../shared.
LFW identities are taken from the dev split only (lfw_dev.txt); the rest are held out.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fsr_bench.data.io import read_image
from fsr_bench.face import create_recogniser, list_recognisers
from fsr_bench.face import mobilefacenet as mfn_module
from fsr_bench.face.mobilefacenet import MOBILEFACENET_WEIGHTS, MobileFaceNet
from fsr_bench.face.onnx_recogniser import KNOWN_MODELS
from fsr_bench.face.recogniser import RecogniserInputError
from fsr_bench.registry import RegistryError
from fsr_bench.weights import WeightsUnavailable

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")  # all in lfw_dev.txt
IMAGES_PER_PERSON = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights_dir(shared_dir) -> Path:
    return shared_dir / "weights" / "mobilefacenet"


@pytest.fixture(scope="module")
def recogniser(weights_dir):
    return create_recogniser("mobilefacenet", weights=weights_dir / "mobilefacenet.pt")


@pytest.fixture(scope="module")
def onnx_recogniser(weights_dir):
    return create_recogniser(f"onnx:{weights_dir / 'MobileFaceNet.onnx'}")


@pytest.fixture(scope="module")
def lfw_faces(shared_dir):
    """Aligned faces (len(PEOPLE)·3, 3, 112, 112) and their labels, from the dev split."""
    from fsr_bench.face.detect import FaceAligner

    dev = set((shared_dir / "data" / "splits" / "lfw_dev.txt").read_text().split())
    assert set(PEOPLE) <= dev
    paths, labels = [], []
    for person in PEOPLE:
        files = sorted((shared_dir / "data" / "lfw" / person).glob("*.jpg"))[:IMAGES_PER_PERSON]
        paths += files
        labels += [person] * len(files)
    aligned = FaceAligner(selection="center").align([read_image(p) for p in paths])
    assert bool(aligned.detected.all())
    return aligned.faces, np.array(labels)


# -- architecture ------------------------------------------------------------------------------
def test_state_dict_keys_and_shapes_match_the_release(shared_dir):
    listed = {}
    for line in (shared_dir / "weights/mobilefacenet/state_dict_keys.txt").read_text().splitlines():
        key, shape = line.split("\t")
        listed[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    ours = {k: tuple(v.shape) for k, v in MobileFaceNet().state_dict().items()}
    assert ours == listed


def _mobilefacenet_parameters(embedding: int = 128) -> int:
    """Written out from Chen et al. 2018 (MobileFaceNets, arXiv:1804.07573) Table 1: conv3×3/2 (64),
    depthwise 3×3 (64), bottlenecks (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2)
    (2,128,2,1), conv1×1 (512), linear GDConv 7×7, linear conv1×1 (embedding). Convs without bias
    but the last, each followed by BatchNorm (weight + bias), as foamliu/MobileFaceNet's release."""
    bn = lambda c: 2 * c  # noqa: E731
    n = 3 * 64 * 9 + bn(64)  # conv1
    n += 64 * 9 + bn(64) + 64 * 64 + bn(64)  # depthwise 3×3 + pointwise 1×1
    cin = 64
    for t, c, repeats, _ in [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]:
        for _ in range(repeats):
            hidden = cin * t  # expand 1×1, depthwise 3×3, linear project 1×1
            n += cin * hidden + bn(hidden) + hidden * 9 + bn(hidden) + hidden * c + bn(c)
            cin = c
    n += cin * 512 + bn(512)  # conv 1×1 to 512
    n += 512 * 49 + bn(512)  # GDConv: depthwise 7×7
    n += 512 * embedding + embedding + bn(embedding)  # linear conv 1×1 (with bias), BN
    return n


def test_parameter_count_and_output_shape():
    net = MobileFaceNet().eval()
    assert sum(p.numel() for p in net.parameters()) == _mobilefacenet_parameters()  # 999,936
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_inference_copy_matches_the_module():
    torch.manual_seed(0)
    net = MobileFaceNet()
    for m in net.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ref, fast = net(x), net.inference_copy()(x.contiguous(memory_format=torch.channels_last))
    assert float((ref - fast).abs().max() / ref.abs().max()) < 1e-4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # original untouched


# -- loading -----------------------------------------------------------------------------------
def test_strict_load_of_real_weights(recogniser, weights_dir):
    info = recogniser.describe()
    assert info["weights_sha256"] == MOBILEFACENET_WEIGHTS.sha256
    assert "ImageNet" in info["normalization"] and info["flip_augmentation"] is True
    assert recogniser.name == "mobilefacenet" and recogniser.embedding_dim == 128
    state = torch.load(weights_dir / "mobilefacenet.pt", map_location="cpu", weights_only=True)
    for key, value in recogniser.net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_default_resolution_finds_the_shared_copy(shared_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path))  # empty cache
    monkeypatch.setenv("FSR_BENCH_OFFLINE", "1")
    monkeypatch.setenv("FSR_BENCH_SHARED", str(shared_dir))
    rec = create_recogniser("mobilefacenet")
    assert Path(rec.weights_path).resolve() == (
        shared_dir / "weights/mobilefacenet/mobilefacenet.pt"
    ).resolve()


def test_missing_weights_never_fall_back_to_random(tmp_path, monkeypatch):
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("FSR_BENCH_OFFLINE", "1")
    monkeypatch.setattr(mfn_module, "_developer_copies", lambda: [])
    with pytest.raises(WeightsUnavailable) as info:
        create_recogniser("mobilefacenet")
    msg = str(info.value)
    assert MOBILEFACENET_WEIGHTS.url in msg
    assert str(tmp_path / "weights" / "mobilefacenet.pt") in msg


def test_registry_names_and_errors():
    assert {"mobilefacenet", "onnx"} <= set(list_recognisers())
    with pytest.raises(RegistryError, match="mobilefacenet"):
        create_recogniser("mobilefacenett")
    with pytest.raises(RegistryError, match="file path"):
        create_recogniser("onnx:")


# -- behaviour ---------------------------------------------------------------------------------
def test_embeddings_are_unit_norm_and_inputs_checked(recogniser):
    e = recogniser.embed(torch.rand(3, 3, 112, 112))
    assert e.shape == (3, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    with pytest.raises(RecogniserInputError, match="FaceAligner"):
        recogniser.embed(torch.rand(1, 3, 128, 128))
    with pytest.raises(RecogniserInputError, match="255"):
        recogniser.embed(torch.rand(1, 3, 112, 112) * 255)


def test_onnx_matches_pytorch(recogniser, onnx_recogniser, lfw_faces):
    faces, _ = lfw_faces
    x = torch.cat([faces, torch.rand(2, 3, 112, 112)])
    raw_pt, raw_onnx = recogniser.forward_raw(x).detach(), onnx_recogniser.forward_raw(x)
    scale = raw_pt.abs().max()
    assert float((raw_pt - raw_onnx).abs().max() / scale) < 1e-4
    for flip in (False, True):
        diff = recogniser.embed(x, flip=flip) - onnx_recogniser.embed(x, flip=flip)
        assert float(diff.abs().max()) < 1e-4


def test_unknown_onnx_file_needs_an_explicit_normalization(weights_dir, monkeypatch):
    monkeypatch.setattr("fsr_bench.face.onnx_recogniser.KNOWN_MODELS", {})
    path = weights_dir / "MobileFaceNet.onnx"
    with pytest.raises(ValueError, match="normalization="):
        create_recogniser(f"onnx:{path}")
    rec = create_recogniser(f"onnx:{path}", normalization="arcface")
    assert "127.5" in rec.describe()["normalization"]
    assert KNOWN_MODELS  # the module-level table itself is untouched


def test_flipped_face_embeds_close_to_the_original(recogniser, lfw_faces):
    faces, _ = lfw_faces
    a = recogniser.embed(faces, flip=False)
    b = recogniser.embed(faces.flip(-1), flip=False)
    assert float((a * b).sum(1).min()) > 0.8
    # flip-sum is symmetric: a face and its mirror get the same flip-augmented embedding
    torch.testing.assert_close(recogniser.embed(faces), recogniser.embed(faces.flip(-1)))


def test_same_person_more_similar_than_different_people(recogniser, lfw_faces):
    faces, labels = lfw_faces
    e = recogniser.embed(faces).numpy()
    sims = e @ e.T
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    genuine, impostor = sims[same & off_diag], sims[~same]
    assert genuine.min() > impostor.max()  # 9 images, 3 people: perfectly separable
    assert genuine.mean() > 0.5 > 0.2 > impostor.mean()


def test_lfw_dev_verification_accuracy_small_sample(recogniser, shared_dir):
    """A small, seeded version of benchmarks/lfw_verification.py (99.28% on 6,000 pairs): MTCNN
    alignment + MobileFaceNet on 200 pairs of LFW development identities must stay >= 96%."""
    import numpy as np

    from fsr_bench.data.io import read_image
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.metrics.recognition import verification_accuracy_10fold

    lfw = shared_dir / "data" / "lfw"
    ids = [i for i in (shared_dir / "data" / "splits" / "lfw_dev.txt").read_text().split() if i]
    rng = np.random.default_rng(0)
    chosen = [ids[k] for k in rng.permutation(len(ids))[:200]]
    pairs = []  # (path_a, path_b, same): alternate genuine / impostor so every fold is balanced
    for k in range(100):
        a, b = chosen[2 * k], chosen[2 * k + 1]
        imgs_a = sorted((lfw / a).glob("*.jpg"))
        pairs.append((imgs_a[0], imgs_a[1], True))
        pairs.append((imgs_a[0], sorted((lfw / b).glob("*.jpg"))[0], False))
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    aligned = FaceAligner(selection="center").align([read_image(p) for p in paths])
    emb = recogniser.embed(aligned.faces)
    index = {p: i for i, p in enumerate(paths)}
    sims = []
    for a, b, _ in pairs:
        ia, ib = index[a], index[b]
        ok = bool(aligned.detected[ia]) and bool(aligned.detected[ib])
        sims.append(float(emb[ia] @ emb[ib]) if ok else -np.inf)
    result = verification_accuracy_10fold(np.array(sims), np.array([s for _, _, s in pairs]))
    assert result.mean >= 0.96, result
