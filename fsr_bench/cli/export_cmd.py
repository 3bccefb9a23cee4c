"""``fsr-bench export``: a registered super-resolver to ONNX, with its parity on real faces."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fsr_bench.cli._common import catches_errors, fail

PARITY_HR_SIDE = 200  # the package faces' native crop: LR 50x50 at x4 (not a multiple of 4), 25x25 at x8


@catches_errors
def export(
    model: Optional[str] = typer.Argument(None, help="registered model name; optional when the checkpoint records it"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="weights; an fsr-bench checkpoint also names its model"),
    onnx: Path = typer.Option(..., "--onnx", "-o", help="output .onnx file (written atomically, weights inside)"),
    pretrained: bool = typer.Option(False, "--pretrained", help="use the model's registered pretrained weights"),
    static: Optional[str] = typer.Option(None, "--static", help="HxW: fix the input size (for models that do not export with dynamic H x W)"),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset: 18 up to the installed onnx's newest (default: 18); read back from the written file"),
    random_init: bool = typer.Option(False, "--random-init", help="allow a learned model without weights (debugging only)"),
) -> None:
    """Export MODEL to ONNX (dynamic batch and H x W unless --static) and print onnxruntime-vs-PyTorch
    parity (max |diff|, PSNR) on the two faces that ship with scikit-image and matplotlib."""

    from fsr_bench.atomic import sha256_file
    from fsr_bench.data.package_faces import PackageFaces
    from fsr_bench.data.resize import imresize
    from fsr_bench.models import RegistryError, create_model
    from fsr_bench.models.checkpoint import CheckpointError
    from fsr_bench.models.export import DEFAULT_OPSET, ExportError, export_onnx, onnx_parity
    from fsr_bench.weights import WeightsError

    if model is None and checkpoint is None:
        raise fail("give MODEL (e.g. tanet_x4) and --checkpoint PATH, or --pretrained")
    size = None
    if static is not None:
        try:
            size = tuple(int(v) for v in static.lower().split("x"))
            if len(size) != 2 or min(size) < 1:
                raise ValueError
        except ValueError:
            raise fail(f"--static {static!r}: expected HxW, e.g. --static 64x64") from None
    try:
        net = create_model(model, checkpoint=checkpoint, pretrained=pretrained)
        if checkpoint is None and not pretrained and net.num_parameters() > 0 and not random_init:
            raise fail(
                f"{net.name} has learned parameters but neither --checkpoint nor --pretrained was given; "
                "the exported graph would hold random weights. Pass --random-init to export it anyway."
            )
        source = str(getattr(net, "checkpoint_path", "")) or ("random init" if net.num_parameters() else "no weights")
        meta = {"weights": source}
        if checkpoint is not None:
            meta["weights_sha256"] = sha256_file(checkpoint)
        path = export_onnx(net, onnx, dynamic=size is None, size=size,
                           opset=opset or DEFAULT_OPSET, metadata=meta)
        if size is None:
            side = PARITY_HR_SIDE // net.scale
            lr_size = (side, side)
        else:
            lr_size = (int(size[0]), int(size[1]))
        faces = PackageFaces(hr_size=PARITY_HR_SIDE)
        lrs = [imresize(faces[i]["hr"], size=lr_size).clamp(0, 1) for i in range(len(faces))]
        parity = onnx_parity(net, path, lrs)
    except (ExportError, CheckpointError, RegistryError, WeightsError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {onnx}: {exc}") from None
    import onnx as onnx_lib  # `onnx` is the --onnx path here

    graph = onnx_lib.load(str(path), load_external_data=False)
    written = [e.version for e in graph.opset_import if e.domain in ("", "ai.onnx")]  # what the file says
    shape = "static 1x3x{}x{}".format(*size) if size else "dynamic batch and H x W"
    typer.echo(f"wrote {path} ({net.name}, {shape}, opset {', '.join(map(str, written))}, "
               f"{path.stat().st_size / 1e6:.1f} MB, weights: {source})")
    typer.echo(
        f"parity onnxruntime vs PyTorch on {parity['n_images']} package faces (LR {lr_size[0]}x{lr_size[1]}, "
        f"x{net.scale}): max |diff| {parity['max_abs_diff']:.2e}, PSNR {parity['psnr_db']:.1f} dB"
    )
