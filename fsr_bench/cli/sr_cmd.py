"""``fsr-bench sr``: super-resolve a user's own images (files or folders)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fsr_bench.cli._common import catches_errors, fail


@catches_errors
def sr(
    images: List[Path] = typer.Argument(None, help="image files and/or folders (searched recursively)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered model name (see `fsr-bench list models`); default: the shipped TANet-S at --scale"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="weights; an fsr-bench checkpoint also names its model"),
    pretrained: bool = typer.Option(False, "--pretrained", help="the model's registered pretrained weights (shipped or downloaded once, sha256-checked)"),
    scale: int = typer.Option(4, "--scale", "-s", help="with no --model/--checkpoint: 4 or 8 (the shipped tanet_s_x4 / tanet_s_x8)"),
    out: Path = typer.Option(Path("sr_out"), "--out", "-o", help="output folder"),
    device: str = typer.Option("auto", help="cpu | cuda | auto"),
    precision: str = typer.Option(
        "auto", help="fp32 | bf16 | fp16 | auto (bf16 where the CPU/GPU runs it natively, else fp32)"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last",
                                       help="NHWC activations (faster convolutions on CPU and GPU)"),
    example: bool = typer.Option(False, "--example", help="use the face that ships with scikit-image (astronaut) as input"),
    random_init: bool = typer.Option(False, "--random-init", help="allow a learned model without weights (debugging only; outputs are meaningless)"),
) -> None:
    """Super-resolve LR face images; writes PNGs named like the inputs into OUT.

    Defaults to the fastest mode this hardware supports (``--precision auto``, channels-last);
    ``--precision fp32 --no-channels-last`` reproduces the reference path exactly.
    """
    from tqdm import tqdm

    from fsr_bench.data.io import list_images, read_image, write_image
    from fsr_bench.models import create_model
    from fsr_bench.models.precision import PrecisionError, describe, infer, prepare, resolve_precision
    from fsr_bench.models.pretrained import list_pretrained

    if model is None and checkpoint is None:  # the embedded default: a trained TANet, no argument needed
        model, pretrained = f"tanet_s_x{scale}", True
        if model not in list_pretrained():
            raise fail(f"no shipped weights for --scale {scale}; shipped: {', '.join(list_pretrained()) or 'none'}")
    net = create_model(model, checkpoint=checkpoint, pretrained=pretrained)
    if checkpoint is None and not pretrained and net.num_parameters() > 0 and not random_init:
        hint = (" Pass --pretrained for its shipped weights." if net.name in list_pretrained()
                else " Train one with `fsr-bench train`.")
        raise fail(
            f"{net.name} has learned parameters but no --checkpoint was given; its output would come "
            f"from random weights.{hint} (--random-init to debug.)"
        )
    from fsr_bench.devices import resolve_device

    dev = resolve_device(device, option="--device")
    try:
        precision = resolve_precision(precision, dev)
    except PrecisionError as exc:
        raise fail(f"--precision: {exc}") from None
    net = prepare(net, dev, channels_last)  # type: ignore[assignment]  # same module, moved and in eval mode

    sources: list[tuple[str, Path | None]] = []
    if example:
        sources.append(("astronaut", None))
    for item in images or []:
        if item.is_dir():
            sources += [(str(p.relative_to(item).with_suffix("")), p) for p in list_images(item)]
        elif item.is_file():
            sources.append((item.stem, item))
        else:
            raise fail(f"{item}: no such file or folder")
    if not sources:
        raise fail("no input images: pass files/folders or --example")

    out.mkdir(parents=True, exist_ok=True)
    for stem, path in tqdm(sources, desc=f"sr {net.name}", unit="img"):
        lr = example_face() if path is None else read_image(path)
        sr_img = infer(net, lr.unsqueeze(0).to(dev), precision, channels_last)[0].clamp(0, 1).cpu()
        write_image(sr_img, out / f"{stem}_{net.name}.png")
    typer.echo(f"wrote {len(sources)} image(s) x{net.scale} to {out}/ ({describe(precision, channels_last, dev)})")


def example_face(side: int = 64):
    """The astronaut portrait bundled with scikit-image, face-cropped and shrunk to ``side``²."""
    import torch
    from skimage import data

    from fsr_bench.data.resize import imresize

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255.0  # (3, 512, 512)
    face = img[:, 20:276, 100:356]  # 256x256 around the face
    return imresize(face, size=(side, side)).clamp(0, 1)
