"""Pretrained weights: the shipped files load, verified; published ones download once, checked, cached;
offline and mismatching files are clear errors, never random weights."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from fsr_bench.models import MODELS, create_model
from fsr_bench.models import pretrained as pre
from fsr_bench.models.checkpoint import CheckpointError
from fsr_bench.weights import ChecksumMismatch, WeightSpec, WeightsUnavailable

SHIPPED = sorted(pre.list_pretrained())


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """An empty cache and a registry we can add to without leaking into other tests."""
    monkeypatch.setenv("FSR_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pre, "_REGISTRY", dict(pre._REGISTRY))
    return tmp_path


def _published(tmp_path, name="tanet_x4"):
    """A model's weights saved as a user would publish them: fp16 safetensors + its sha256."""
    torch.manual_seed(0)
    tiny = MODELS.get(name).tiny
    model = create_model(name, **tiny).eval()
    path = tmp_path / "published" / "weights.safetensors"
    path.parent.mkdir(parents=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path, hashlib.sha256(path.read_bytes()).hexdigest(), tiny


def test_published_weights_download_verify_and_cache(isolated):
    model, path, sha, tiny = _published(isolated)
    pre.register_pretrained(pre.Pretrained("tanet_x4", WeightSpec(
        name="my TANet", url=path.as_uri(), sha256=sha, filename="my_tanet_x4.safetensors"), config=tiny))
    loaded = create_model("tanet_x4", pretrained=True).eval()
    cached = isolated / "home" / "weights" / "my_tanet_x4.safetensors"
    assert cached.is_file() and loaded.checkpoint_path == str(cached)
    lr = torch.rand(1, 3, 12, 12)
    with torch.no_grad():  # same function as the fp16-rounded original
        ref = create_model("tanet_x4", **tiny)
        ref.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        torch.testing.assert_close(loaded(lr), ref.eval()(lr))
    path.unlink()  # second load: from the cache, no download
    create_model("tanet_x4", pretrained=True)


def test_offline_and_checksum_errors_name_the_file(isolated, monkeypatch):
    _, path, sha, tiny = _published(isolated)
    spec = WeightSpec(name="my TANet", url=path.as_uri(), sha256=sha, filename="w.safetensors")
    pre.register_pretrained(pre.Pretrained("tanet_x4", spec, config=tiny))
    monkeypatch.setenv("FSR_BENCH_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match=r"FSR_BENCH_OFFLINE is set(.|\n)*w\.safetensors"):
        create_model("tanet_x4", pretrained=True)
    monkeypatch.delenv("FSR_BENCH_OFFLINE")
    bad = WeightSpec(name="my TANet", url=path.as_uri(), sha256="0" * 64, filename="w2.safetensors")
    pre.register_pretrained(pre.Pretrained("tanet_x4", bad, config=tiny), replace=True)
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        create_model("tanet_x4", pretrained=True)
    assert not (isolated / "home" / "weights" / "w2.safetensors").exists()  # never cached


def test_hugging_face_reference_becomes_a_resolve_url(isolated):
    assert pre.hf_url("hf://me/faces/tanet/w.safetensors@v1") == (
        "https://huggingface.co/me/faces/resolve/v1/tanet/w.safetensors")
    assert pre.hf_url("hf://me/faces/w.safetensors").endswith("/resolve/main/w.safetensors")
    with pytest.raises(pre.PretrainedError, match="hf://OWNER/REPO"):
        pre.hf_url("hf://only-owner")
    entry = pre.register_pretrained(pre.Pretrained("tanet_x8", WeightSpec(
        name="hub", url="hf://me/faces/w.safetensors", sha256="a" * 64, filename="hub.safetensors")))
    assert entry.weights.url.startswith("https://huggingface.co/me/faces/resolve/main/")


def test_no_pretrained_is_an_error_not_random_weights():
    with pytest.raises(pre.PretrainedError, match="no pretrained weights are registered for 'srfbn_x4'"):
        create_model("srfbn_x4", pretrained=True)
    with pytest.raises(CheckpointError, match="not both"):
        create_model("tanet_x4", checkpoint="x.pt", pretrained=True)


def test_manifest_lists_only_files_that_exist_with_their_sha():
    if not pre.MANIFEST.is_file():
        pytest.skip("no weights are packaged in this checkout")
    for row in json.loads(pre.MANIFEST.read_text())["weights"]:
        path = pre.HERE / row["file"]
        assert path.is_file() and path.stat().st_size <= 2 * 1024 * 1024, row["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert (pre.HERE / row["card"]).is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_beat_bicubic_on_a_package_face(name):
    """The shipped model must beat bicubic on a face it never saw (scikit-image's astronaut)."""
    from fsr_bench.data.package_faces import PackageFaces
    from fsr_bench.data.resize import imresize
    from fsr_bench.metrics.functional import psnr

    model = create_model(name, pretrained=True).eval()
    assert next(model.parameters()).dtype == torch.float32
    hr = PackageFaces(hr_size=128)[0]["hr"][None]
    lr = imresize(hr, scale=1 / model.scale).clamp(0, 1)
    with torch.no_grad():
        sr = model(lr).clamp(0, 1)
    bic = imresize(lr, scale=model.scale).clamp(0, 1)
    assert psnr(sr, hr, crop_border=model.scale, y_channel=True).item() > psnr(
        bic, hr, crop_border=model.scale, y_channel=True).item()
