"""Registry behaviour and the entry-point plug-in mechanism."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from fsr_bench.models import MODELS, create_model, register_model
from fsr_bench.registry import Registry, RegistryError


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError, match="Did you mean: .*tanet_x4"):
        create_model("tanet_x44")


def test_duplicate_name_is_an_error():
    with pytest.raises(RegistryError, match="already registered"):

        @register_model(name="tanet_x4")
        def _dup(**kw):  # pragma: no cover - never built
            raise AssertionError


def test_list_pattern():
    reg = Registry("thing", "fsr_bench.nothing")
    reg.register("a_x4")(lambda: 1)
    reg.register("b_x8")(lambda: 2)
    assert reg.names("*_x4") == ["a_x4"]
    assert "b_x8" in reg


PLUGIN = textwrap.dedent(
    '''
    from dataclasses import dataclass
    import torch
    from fsr_bench.models import register_model, SuperResolver, ModelInfo

    @dataclass
    class Cfg:
        scale: int = 2
        width: int = 8

    class Toy(SuperResolver):
        info = ModelInfo(paper="toy plug-in")
        def __init__(self, cfg):
            super().__init__(cfg.scale, cfg)
            self.body = torch.nn.Conv2d(3, 3 * cfg.scale ** 2, 3, padding=1)
            self.shuffle = torch.nn.PixelShuffle(cfg.scale)
        def forward_native(self, lr):
            return self.shuffle(self.body(lr))

    @register_model(tiny={"width": 4})
    def toyplug_x2(**kw):
        return Toy(Cfg(**kw))
    '''
)


@pytest.fixture()
def plugin_site(tmp_path):
    """A tiny third-party distribution: module + dist-info declaring the entry point."""
    (tmp_path / "toyplug.py").write_text(PLUGIN)
    dist = tmp_path / "toyplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fsr_bench.models]\ntoyplug = toyplug\n")
    return tmp_path


def test_entry_point_plugin_in_process(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    try:
        MODELS.load_plugins(force=True)
        import torch

        model = create_model("toyplug_x2")
        assert model(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)
        assert MODELS.get("toyplug_x2").source == "toyplug"
    finally:
        MODELS.unregister("toyplug_x2")
        sys.modules.pop("toyplug", None)


def test_entry_point_plugin_from_cli(plugin_site):
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run(
        [sys.executable, "-m", "fsr_bench.cli", "list", "models", "toy*"],
        capture_output=True, text=True, env=env, check=True,
    )
    assert "toyplug_x2" in out.stdout and "toy plug-in" in out.stdout
