"""Config reading is safe (issue 11 items 11, 12): ${VAR} only in path fields (training too), a YAML
alias bomb is refused quickly."""
from __future__ import annotations

import time

import pytest
import yaml

from fsr_bench.config_io import ConfigInputError, read_yaml_mapping
from fsr_bench.train.config import load_config


def _train_yaml(tmp_path, **extra):
    cfg = {"kind": "train", "model": {"name": "bicubic_x4"},
           "data": {"train": {"type": "folder", "root": "${FSR_BENCH_DATA}/x"}}, **extra}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_out_dir_and_checkpoint_expand_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FSR_TEST_X", str(tmp_path))
    monkeypatch.delenv("FSR_BENCH_DATA", raising=False)  # data paths expand later (data.data_root)
    cfg = load_config(_train_yaml(tmp_path, out_dir="${FSR_TEST_X}/t"),
                      ["model.checkpoint=${FSR_TEST_X}/w.pt"])
    assert cfg.out_dir == f"{tmp_path}/t"
    assert cfg.model.checkpoint == f"{tmp_path}/w.pt"
    assert cfg.data.train["root"] == "${FSR_BENCH_DATA}/x"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigInputError, match="alias"):
        read_yaml_mapping(bomb)
    assert time.perf_counter() - t0 < 2.0


def test_a_huge_config_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("k: " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigInputError, match="too large"):
        read_yaml_mapping(big)
