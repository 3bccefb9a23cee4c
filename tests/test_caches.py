"""fsr_bench.run.caches on its own: keys, reuse across processes' saves, and damaged or foreign files."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import torch

from fsr_bench.protocol import ModelSpec
from fsr_bench.run.caches import FaceStore, SRStore, content_key


class _Aligner:
    """A face pipeline stand-in: an image is "detected" when its mean is above 0.5; counts its calls."""

    def __init__(self, min_face_size=20):
        self.min_face_size, self.calls = min_face_size, 0

    def describe(self):
        return {"name": "stub", "min_face_size": self.min_face_size}

    def align(self, images):
        self.calls += len(images)
        faces = torch.stack([im.mean().expand(3, 2, 2) for im in images])
        return SimpleNamespace(faces=faces, detected=torch.tensor([bool(im.mean() > 0.5) for im in images]))


class _Recogniser:
    embedding_dim = 2

    def describe(self):
        return {"name": "stub", "weights_sha256": "0" * 64, "device": "cpu"}

    def embed(self, faces):
        return torch.stack([faces.mean(dim=(1, 2, 3)), -faces.mean(dim=(1, 2, 3))], dim=1)


def test_content_key_is_the_sha256_of_the_8bit_pixels_and_shape():
    image = torch.full((3, 4, 5), 0.6)
    pixels = np.full((3, 4, 5), int(0.6 * 255 + 0.5), dtype=np.uint8)  # round half up, by hand
    want = hashlib.sha256(str((3, 4, 5)).encode() + pixels.tobytes()).hexdigest()
    assert content_key(image) == want
    assert content_key(image + 0.4 / 255) == want  # the same 8-bit level: the same key
    assert content_key(image + 1 / 255) != want
    assert content_key(image.reshape(3, 5, 4)) != want  # same bytes, other shape


def test_face_store_reuses_saved_entries_and_keys_files_by_pipeline(tmp_path):
    bright, dark = torch.full((3, 8, 8), 0.8), torch.full((3, 8, 8), 0.2)
    store = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    keys, emb, det = store.embed([bright, dark, None, bright])
    assert keys[2] is None and det.tolist() == [True, False, False, True]
    assert torch.equal(emb[1], torch.zeros(2)) and emb[0].tolist() == emb[3].tolist()
    assert (store.computed, store.reused, store.aligner.calls) == (2, 1, 2)  # the repeat is computed once
    store.save()
    again = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    _, emb2, det2 = again.embed([bright, dark])
    assert again.aligner.calls == 0 and (again.computed, again.reused) == (0, 2)
    assert torch.equal(emb2, emb[:2]) and torch.equal(det2, det[:2])
    other = FaceStore(tmp_path, _Aligner(min_face_size=40), _Recogniser(), max_side=None)
    assert other.path != again.path and not other.entries  # another detector setting: another file
    fresh = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None, fresh=True)
    assert not fresh.entries


def test_face_store_merges_another_processes_entries(tmp_path):
    image = torch.full((3, 8, 8), 0.9)
    worker = FaceStore(tmp_path / "w", _Aligner(), _Recogniser(), max_side=None)
    worker.embed([image])
    sent = worker.take_fresh()
    assert list(sent) == [content_key(image)] and worker.take_fresh() == {}
    main = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    main.merge(sent)
    main.save()
    reread = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    reread.embed([image])
    assert reread.aligner.calls == 0


def test_a_damaged_or_foreign_cache_file_costs_a_recomputation(tmp_path):
    image = torch.full((3, 8, 8), 0.9)
    store = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    store.embed([image])
    store.save()
    store.path.write_bytes(store.path.read_bytes()[:40])  # cut off
    cut = FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None)
    assert not cut.entries
    torch.save({"version": 999, "keys": [], "detected": torch.zeros(0), "embeddings": torch.zeros(0, 2)}, store.path)
    assert not FaceStore(tmp_path, _Aligner(), _Recogniser(), max_side=None).entries  # another cache version


def test_sr_store_keeps_outputs_per_weights_and_inference(tmp_path):
    spec = ModelSpec(name="bicubic_x4", label="B")
    store = SRStore(tmp_path, spec, None, fresh=False)
    out = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    store.put("k", out)
    store.scale = 4
    store.save()
    again = SRStore(tmp_path, spec, None, fresh=False)
    assert again.scale == 4 and torch.equal(again.outputs["k"], out)
    assert SRStore(tmp_path, spec, "ab" * 32, fresh=False).outputs == {}  # other weights: other file
    assert SRStore(tmp_path, spec, None, fresh=False, inference="bf16, NCHW").outputs == {}
    assert SRStore(tmp_path, spec, None, fresh=True).outputs == {}
