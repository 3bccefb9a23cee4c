"""``fsr-bench list models|recognisers|detectors|protocols``."""
from __future__ import annotations

import typer

from fsr_bench.cli._common import catches_errors

app = typer.Typer(help="List registered models, recognisers or bundled protocols.", no_args_is_help=True)


@app.command("models")
@catches_errors
def models(
    pattern: str = typer.Argument("*", help="a substring ('srfbn') or a shell glob ('tanet_s_*')"),
    flops: bool = typer.Option(False, "--flops", help="add GFLOPs/image at 256x256 HR (64x64 LR at x4, 32x32 at x8); builds every listed model"),
    pretrained: bool = typer.Option(False, "--pretrained", help="list pretrained weights (ids MODEL or MODEL.TAG) instead: scale, faces256 val PSNR, which is `sr`'s default"),
) -> None:
    """Registered super-resolvers: name, scale, parameters, pretrained weights, paper (CPU img/s: README model table).

    Listed from a cache (rebuilt when a model module or plug-in changes), so no model is built to be listed.
    """
    from fsr_bench.models import catalog
    from fsr_bench.models import pretrained as pre

    cat = catalog.catalogue(echo=lambda m: typer.echo(m, err=True))
    weights = pre.list_pretrained()
    by_model: dict[str, list[str]] = {}
    for pid, entry in weights.items():
        by_model.setdefault(entry.model, []).append(pid)
    for pid, model in cat["plugin_pretrained"].items():
        if pid not in weights:
            by_model.setdefault(model, []).append(pid)
    defaults: dict[str, int] = {}  # pretrained id -> the scale it is the default of
    for scale in sorted({s for s in map(pre.entry_scale, weights.values()) if s is not None}):
        try:
            defaults[pre.default_pretrained(scale).id] = scale
        except pre.PretrainedError:
            continue
    if pretrained:
        _list_pretrained(pattern, weights, defaults)
        return
    rows = {r["name"]: r for r in cat["rows"]}
    names = catalog.match(sorted(rows), pattern)
    if not names:
        raise _no_match("model", pattern, sorted(rows))
    if flops:
        from fsr_bench.models import model_summary

        rows.update({n: model_summary(n, flops=True) for n in names})
    cells = {n: ", ".join(f"{i}*" if i in defaults else i for i in sorted(by_model.get(n, []))) or "-" for n in names}
    width = max([len(n) for n in names] + [4])
    pw = max([len(c) for c in cells.values()] + [10])
    extra = f"  {'GFLOPs':>8}" if flops else ""
    typer.echo(f"{'name':<{width}}  scale  {'params':>11}{extra}  {'pretrained':<{pw}}  paper")
    for n in names:
        r = rows[n]
        extra = f"  {r['gflops']:>8.1f}" if flops else ""
        typer.echo(f"{n:<{width}}  x{r['scale']:<4}  {r['params']:>11,}{extra}  {cells[n]:<{pw}}  {r['paper']}")
    for pid, scale in sorted(defaults.items(), key=lambda kv: kv[1]):
        if any(pid in by_model.get(n, []) for n in names):
            typer.echo(f"* {pid}: {pre.default_reason(weights[pid], scale)}")
    for ep, err in cat["plugin_errors"].items():
        typer.secho(f"plug-in {ep!r} failed to load: {err}", fg=typer.colors.YELLOW, err=True)


def _no_match(kind: str, pattern: str, names: list[str]) -> typer.Exit:
    import difflib

    close = difflib.get_close_matches(pattern.strip("*?"), names, n=5, cutoff=0.5)
    typer.secho(f"no {kind} matches {pattern!r}" + (f"; close: {', '.join(close)}" if close else "")
                + f". PATTERN is a substring ('srfbn') or a shell glob ('tanet_s_*'); {len(names)} are registered"
                " (`fsr-bench list models` with no pattern lists them all).", fg=typer.colors.YELLOW, err=True)
    return typer.Exit(1)


def _list_pretrained(pattern: str, weights: dict, defaults: dict[str, int]) -> None:
    from fsr_bench.models import catalog
    from fsr_bench.models import pretrained as pre

    ids = catalog.match(sorted(weights), pattern)
    if not ids:
        raise _no_match("pretrained id", pattern, sorted(weights))
    width = max([len(i) for i in ids] + [2])
    typer.echo(f"{'id':<{width}}  scale  {'val PSNR':>8}  {'where':<8}  default")
    for pid in ids:
        entry = weights[pid]
        scale = pre.entry_scale(entry)
        psnr = pre.val_psnr(entry, scale) if scale else None
        cell = f"{psnr:8.2f}" if psnr is not None else f"{'-':>8}"
        typer.echo(f"{pid:<{width}}  x{scale or '?':<4}  {cell}  {'package' if entry.packaged else 'download':<8}  "
                   + (f"yes ({pre.default_reason(entry, scale)})" if pid in defaults and scale else ""))
    typer.echo(f"val PSNR: Y-channel dB on {pre.DEFAULT_PROTOCOL.format(scale='<scale>')} as recorded in each card; "
               "load one with `fsr-bench sr -m ID --pretrained` or a protocol row {name: ID, pretrained: true}")


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
