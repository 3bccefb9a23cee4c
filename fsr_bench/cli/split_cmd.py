"""``fsr-bench split``: the paper's seeded random train/val/test split of an image folder."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from fsr_bench.cli._common import catches_errors, fail


@catches_errors
def split(
    root: Path = typer.Argument(..., help="image folder (flat or identity sub-folders), e.g. $FSR_BENCH_DATA/ffhq"),
    out: Path = typer.Option(None, "--out", "-o", help="where train.txt/val.txt/test.txt go (default: ROOT/splits)"),
    sizes: List[int] = typer.Option([3800, 100, 100], "--size", help="train, val, test sizes (repeat --size three times)"),
    seed: int = typer.Option(0, help="permutation seed (the bundled protocols assume 0)"),
) -> None:
    """Write list files of relative paths, read back by protocols through ``list_file``."""
    from fsr_bench.data.folders import make_split

    if len(sizes) != 3:
        raise fail(f"give exactly three --size values (train, val, test), got {sizes}")
    written = make_split(root, out or root / "splits", sizes=sizes, seed=seed)
    for name, path in written.items():
        typer.echo(f"{name}: {path}")
