"""``fsr-bench list models|recognisers|detectors|protocols``."""
from __future__ import annotations

import typer

from fsr_bench.cli._common import catches_errors

app = typer.Typer(help="List registered models, recognisers or bundled protocols.", no_args_is_help=True)


@app.command("models")
@catches_errors
def models(
    pattern: str = typer.Argument("*", help="shell-style filter, e.g. 'tanet*'"),
    flops: bool = typer.Option(False, "--flops", help="add GFLOPs/image at 256x256 HR (64x64 LR at x4, 32x32 at x8)"),
) -> None:
    """Registered super-resolvers: name, scale, parameters, paper (CPU img/s: README model table)."""
    from fsr_bench.models import MODELS, list_models, model_summary

    names = list_models(pattern)
    rows = [model_summary(n, flops=flops) for n in names]
    width = max([len(r["name"]) for r in rows] + [4])
    extra = f"  {'GFLOPs':>8}" if flops else ""
    typer.echo(f"{'name':<{width}}  scale  {'params':>11}{extra}  paper")
    for r in rows:
        extra = f"  {r['gflops']:>8.1f}" if flops else ""
        typer.echo(f"{r['name']:<{width}}  x{r['scale']:<4}  {r['params']:>11,}{extra}  {r['paper']}")
    for ep, err in MODELS.plugin_errors.items():
        typer.secho(f"plug-in {ep!r} failed to load: {err}", fg=typer.colors.YELLOW, err=True)


@app.command("recognisers")
@catches_errors
def recognisers() -> None:
    """Registered face recognisers (plus ``onnx:<path>`` for any ONNX model)."""
    from fsr_bench.face import list_recognisers

    for name in list_recognisers():
        typer.echo(name)
    typer.echo("onnx:<path>   any ONNX face recogniser, run with onnxruntime")


@app.command("detectors")
@catches_errors
def detectors() -> None:
    """Registered face detectors (``sr --faces --detector NAME``)."""
    from fsr_bench.face import DETECTORS, list_detectors

    for name in list_detectors():
        typer.echo(name)
    for ep, err in DETECTORS.plugin_errors.items():
        typer.secho(f"plug-in {ep!r} failed to load: {err}", fg=typer.colors.YELLOW, err=True)


@app.command("protocols")
@catches_errors
def protocols() -> None:
    """Bundled protocols (`fsr-bench run NAME`, `fsr-bench train NAME`), then other YAML files in ./protocols."""
    from pathlib import Path

    from fsr_bench.config_io import read_yaml_mapping
    from fsr_bench.protocol import ProtocolError, bundled_protocols

    bundled = bundled_protocols()
    width = max([len(n) for n in bundled] + [4])
    typer.echo(f"{'name':<{width}}  {'kind':<14}  description")
    for name, path in sorted(bundled.items()):
        doc = read_yaml_mapping(path, ProtocolError, "protocol")
        kind = doc.get("kind", "reconstruction")
        about = doc.get("description") or (f"trains {(doc.get('model') or {}).get('name')}" if kind == "train" else "")
        typer.echo(f"{name:<{width}}  {kind:<14}  {about}")
    shipped = {p.resolve() for p in bundled.values()}
    local = [p for p in sorted(Path("protocols").glob("*.yaml")) if p.resolve() not in shipped]
    for p in local:  # a user's own folder beside the bundled ones: run these by path
        typer.echo(str(p))
