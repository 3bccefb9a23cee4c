"""``fsr-bench list models|recognisers|protocols``."""
from __future__ import annotations

import typer

app = typer.Typer(help="List registered models, recognisers or bundled protocols.", no_args_is_help=True)


@app.command("models")
def models(pattern: str = typer.Argument("*", help="shell-style filter, e.g. 'tanet*'")) -> None:
    """Registered super-resolvers: name, scale, parameters, paper."""
    from fsr_bench.models import MODELS, list_models, model_summary

    names = list_models(pattern)
    rows = [model_summary(n) for n in names]
    width = max([len(r["name"]) for r in rows] + [4])
    typer.echo(f"{'name':<{width}}  scale  {'params':>11}  paper")
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  x{r['scale']:<4}  {r['params']:>11,}  {r['paper']}")
    for ep, err in MODELS.plugin_errors.items():
        typer.secho(f"plug-in {ep!r} failed to load: {err}", fg=typer.colors.YELLOW, err=True)


@app.command("recognisers")
def recognisers() -> None:
    """Registered face recognisers (plus ``onnx:<path>`` for any ONNX model)."""
    from fsr_bench.face import list_recognisers

    for name in list_recognisers():
        typer.echo(name)
    typer.echo("onnx:<path>   any ONNX face recogniser, run with onnxruntime")


@app.command("protocols")
def protocols() -> None:
    """Protocol YAML files in ./protocols."""
    from pathlib import Path

    for p in sorted(Path("protocols").glob("*.yaml")):
        typer.echo(str(p))
