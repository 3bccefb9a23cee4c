"""Weight resolution: explicit path > cache > extra paths > download, with checksums and offline mode."""
from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import pytest

from fsr_bench import weights as W
from fsr_bench.weights import (
    ChecksumMismatch,
    WeightSpec,
    WeightsUnavailable,
    cache_path,
    resolve_weights,
)

PAYLOAD = b"pretend these are weights"
URL = "https://example.org/releases/v1/model.pt"


def make_spec(sha: str | None = None, url: str = URL) -> WeightSpec:
    return WeightSpec(
        name="TestNet",
        url=url,
        sha256=hashlib.sha256(PAYLOAD).hexdigest() if sha is None else sha,
        filename="testnet-v1.pt",
        licence="MIT",
        source="https://example.org/testnet",
    )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(W.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.delenv(W.ENV_OFFLINE, raising=False)
    return tmp_path / "home"


@pytest.fixture
def no_network(monkeypatch):
    def forbidden(url, dst, timeout=60.0):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(W, "download_url", forbidden)


def put(path: Path, data: bytes = PAYLOAD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- spec --------------------------------------------------------------------------------------
def test_spec_validates_filename_and_sha():
    with pytest.raises(ValueError, match="bare file name"):
        WeightSpec("x", URL, "", "sub/dir.pt")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        WeightSpec("x", URL, "ABC", "x.pt")


def test_default_home_is_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(W.ENV_HOME, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_path(make_spec()) == tmp_path / ".cache" / "fsr-bench" / "weights" / "testnet-v1.pt"


# -- explicit path -----------------------------------------------------------------------------
def test_explicit_path_wins_over_cache(home, tmp_path, no_network):
    spec = make_spec()
    put(cache_path(spec))
    mine = put(tmp_path / "mine.pt")
    assert resolve_weights(spec, mine) == mine


def test_explicit_path_missing_is_an_error(home, tmp_path, no_network):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        resolve_weights(make_spec(), tmp_path / "nope.pt")


def test_explicit_path_with_wrong_checksum_is_an_error(home, tmp_path, no_network):
    bad = put(tmp_path / "bad.pt", b"something else")
    with pytest.raises(ChecksumMismatch, match="expected"):
        resolve_weights(make_spec(), bad)


def test_explicit_path_without_known_checksum_is_accepted(home, tmp_path, no_network):
    any_file = put(tmp_path / "any.pt", b"unverifiable")
    assert resolve_weights(make_spec(sha=""), any_file) == any_file


# -- cache and extra paths ---------------------------------------------------------------------
def test_cache_hit(home, no_network):
    spec = make_spec()
    target = put(home / "weights" / spec.filename)
    assert resolve_weights(spec) == target


def test_corrupt_cache_is_reported_not_overwritten(home, no_network):
    spec = make_spec()
    target = put(cache_path(spec), b"truncated")
    with pytest.raises(ChecksumMismatch, match="cached file"):
        resolve_weights(spec)
    assert target.read_bytes() == b"truncated"


def test_extra_paths_after_cache(home, tmp_path, no_network):
    spec = make_spec()
    extra = put(tmp_path / "shared" / "model.pt")
    assert resolve_weights(spec, extra_paths=[tmp_path / "missing.pt", extra]) == extra
    put(cache_path(spec))
    assert resolve_weights(spec, extra_paths=[extra]) == cache_path(spec)


# -- download ----------------------------------------------------------------------------------
def fake_download(data: bytes, calls: list):
    def download(url: str, dst: Path, timeout: float = 60.0) -> None:
        calls.append((url, Path(dst)))
        Path(dst).write_bytes(data)

    return download


def test_download_verifies_then_moves_into_cache(home, monkeypatch):
    calls: list = []
    monkeypatch.setattr(W, "download_url", fake_download(PAYLOAD, calls))
    spec = make_spec()
    path = resolve_weights(spec)
    assert path == cache_path(spec) and path.read_bytes() == PAYLOAD
    (url, tmp), = calls
    assert url == URL and tmp.parent == path.parent and tmp != path  # temp file beside the target
    assert sorted(p.name for p in path.parent.iterdir()) == [spec.filename]  # no leftovers
    assert resolve_weights(spec) == path and len(calls) == 1  # second call: cache hit


def test_download_with_wrong_checksum_leaves_nothing(home, monkeypatch):
    monkeypatch.setattr(W, "download_url", fake_download(b"tampered", []))
    spec = make_spec()
    with pytest.raises(ChecksumMismatch, match="downloaded file"):
        resolve_weights(spec)
    assert not cache_path(spec).exists()
    assert list(cache_path(spec).parent.iterdir()) == []  # the partial file is removed


def test_download_failure_names_url_and_target(home, monkeypatch):
    def fail(url, dst, timeout=60.0):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(W, "download_url", fail)
    spec = make_spec()
    with pytest.raises(WeightsUnavailable) as info:
        resolve_weights(spec)
    msg = str(info.value)
    assert "no route to host" in msg and URL in msg and str(cache_path(spec)) in msg
    assert list(cache_path(spec).parent.iterdir()) == []


def test_offline_forbids_download_and_says_what_to_do(home, monkeypatch, no_network):
    monkeypatch.setenv(W.ENV_OFFLINE, "1")
    spec = make_spec()
    with pytest.raises(WeightsUnavailable) as info:
        resolve_weights(spec)
    msg = str(info.value)
    for needle in (URL, str(cache_path(spec)), W.ENV_HOME, W.ENV_OFFLINE, spec.sha256):
        assert needle in msg


def test_no_url_points_to_the_source(home, no_network):
    spec = make_spec(url="")
    with pytest.raises(WeightsUnavailable, match="example.org/testnet"):
        resolve_weights(spec)
