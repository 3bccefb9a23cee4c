"""ONNX export of any registered super-resolver, and a parity check against PyTorch.

    path = export_onnx(model, "tanet_x4.onnx")                  # dynamic batch and H x W
    parity = onnx_parity(model, "tanet_x4.onnx", [lr_face])     # {"max_abs_diff": ..., "psnr_db": ...}

Exporter: ``torch.export.export`` (non-strict, symbolic batch/H/W), then ``torch.onnx.export`` of
that program (onnxscript translation): the path PyTorch recommends. The TorchScript exporter is
deprecated and bakes every Python-level size computation into the graph without complaint.

**What the exported graph computes.** The same function as ``model(lr)``, padding included: a model
with ``size_multiple > 1`` (TANet's 4x4 patch tokens, IPT's 3x3 patches) is exported through
:class:`_PadCropForward`, which reflect-pads bottom/right to the multiple and crops the output
back, with the pad amount computed *in the graph* from the input size (``SuperResolver.forward``
decides in Python, which an exporter would freeze at the example's size). Reflect padding is what
``SuperResolver.forward`` uses whenever the input is at least ``size_multiple`` on each side;
smaller inputs (where it may switch to replicate) are outside the graph's declared range, written
into the ONNX metadata (``fsr_bench.shape``); nothing is checked there.

**Dynamic or static.** ``dynamic=True`` exports a graph for any batch and any H x W in
``[min_input_side, 4096]``, and then *checks* that claim before writing the file: onnxruntime vs
PyTorch on a batch at the traced size, at an odd size that is a multiple of nothing, and at the
smallest size declared. A model whose forward computes something from the input size outside tensor
operations (the MATLAB-bicubic index tables of ``bicubic_x*`` and SPARNet's pre-upsampling, NLSN's
bucket counts) fails to export dynamically with an :class:`ExportError` that says to export at a
fixed size (``dynamic=False, size=(h, w)``; ``--static HxW`` on the command line). No exporter output
is ever written unchecked.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fsr_bench.atomic import write_bytes
from fsr_bench.models.base import SuperResolver

DEFAULT_OPSET = 18  # col2im (IPT's fold) needs 18; onnxruntime >= 1.17 runs it
# the dynamo exporter translates to opset 18 and converts from there: a lower request comes back
# as 18 (onnx's converter has no down-adapters for Pad & co.), a higher one up to onnx's newest
MIN_OPSET = 18
MAX_SIDE = 4096  # upper bound of the dynamic H and W (torch.export needs a range)
# tolerance of export's own self-check on random inputs: fp32 reorderings stay ~1e-6; a frozen
# size-dependent constant (wrong pad, wrong interpolation table) is off by >1e-2
SELF_CHECK_ATOL = 1e-3


class ExportError(RuntimeError):
    """A model that cannot be exported as asked; the message says what to do instead."""


class _PadCropForward(nn.Module):
    """``SuperResolver.forward`` (reflect-pad to ``size_multiple``, run, crop) with the pad amount
    computed from the input's symbolic size, so one exported graph serves every H x W."""

    def __init__(self, model: SuperResolver):
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2], lr.shape[-1]
        m, s = self.model.size_multiple, self.model.scale
        # (m - h % m) % m == (-h) % m, written with non-negative operands for the exporters
        lr = F.pad(lr, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="reflect")
        return self.model.forward_native(lr)[..., : h * s, : w * s]


def min_input_side(model: SuperResolver) -> int:
    """Smallest H, W the exported graph accepts (reflect padding needs pad < size; torch.export
    treats sizes 0 and 1 as special, so never below 2)."""
    return max(2, model.size_multiple)


def _example_size(model: SuperResolver) -> tuple[int, int]:
    """Trace at a size that is a multiple of ``size_multiple`` but no other special value
    (not square, not TANet's position grid), so nothing is silently specialised to it."""
    m = model.size_multiple
    return (m * max(1, math.ceil(20 / m)), m * max(1, math.ceil(28 / m)))


def _check_size(model: SuperResolver, size: Sequence[int], what: str) -> tuple[int, int]:
    if len(size) != 2 or min(int(size[0]), int(size[1])) < min_input_side(model):
        raise ExportError(
            f"{what} {tuple(size)} is too small for {model.name or type(model).__name__}: "
            f"H and W must be >= {min_input_side(model)}"
        )
    h, w = int(size[0]), int(size[1])
    if max(h, w) > MAX_SIDE:  # the example input alone would be h*w*12 bytes, before any tracing
        raise ExportError(f"{what} {h}x{w}: H and W must be at most {MAX_SIDE} (the range a dynamic graph "
                          "takes too); choose a smaller --static size")
    return h, w


def export_onnx(
    model: SuperResolver,
    path: str | os.PathLike,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    size: Sequence[int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` to ``path`` and verify the graph against PyTorch first.

    The model is put in eval mode, fp32, on the CPU (in place: the exported graph is fp32 CPU).

    ``dynamic=True``: batch, H and W are graph inputs (see the module docstring for the range);
    ``dynamic=False``: the graph is fixed to batch 1 and ``size`` = (h, w) (required then).
    ``metadata``: extra string key/values stored in the ONNX file (e.g. the checkpoint's sha256).
    Raises :class:`ExportError` naming the model and the alternative when it does not export.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter's translator)
    except ImportError as exc:
        raise ExportError("ONNX export needs onnxscript: pip install 'fsr-bench[export]'") from exc
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(f"--opset {opset}: this exporter writes opsets {MIN_OPSET} to {newest} (onnx "
                          f"{onnx.__version__}); the default is {DEFAULT_OPSET}")
    name = model.name or type(model).__name__
    model = model.cpu().float().eval()
    net = (_PadCropForward(model) if model.size_multiple > 1 else model).eval()
    gen = torch.Generator().manual_seed(0)  # example and check inputs; the global RNG is not touched
    if dynamic:
        if size is not None:
            raise ExportError("give size only with dynamic=False (a dynamic graph takes any size)")
        h, w = _example_size(model)
        example = torch.rand(2, 3, h, w, generator=gen)  # batch 2: a batch of 1 would be specialised
        lo = min_input_side(model)
        dim = torch.export.Dim
        shapes = ({0: dim("batch", min=1, max=1024), 2: dim("height", min=lo, max=MAX_SIDE),
                   3: dim("width", min=lo, max=MAX_SIDE)},)
    else:
        if size is None:
            raise ExportError("a static export needs its input size: size=(h, w) (--static HxW)")
        h, w = _check_size(model, size, "static size")
        example, shapes = torch.rand(1, 3, h, w, generator=gen), None

    try:
        # our own capture, then the ONNX translation of that one program: torch.onnx.export's
        # fallbacks (strict tracing, draft export, shape refinement) would either take minutes to
        # fail or quietly narrow the sizes the graph is valid for. Deferred asserts: a shape guard
        # (e.g. TANet's "token grid != position grid") becomes a runtime check rather than a failed
        # export; ONNX drops such checks, which is why the graph is verified at several sizes below
        with torch.no_grad():
            exported = torch.export.export(net, (example,), dynamic_shapes=shapes, strict=False,
                                           prefer_deferred_runtime_asserts_over_guards=True)
            program = torch.onnx.export(exported, (example,), dynamo=True, input_names=["lr"],
                                        output_names=["sr"], opset_version=opset, external_data=False,
                                        verbose=False)
    except Exception as exc:
        hint = (" Its forward probably computes something from the input size outside tensor operations"
                " (a cached table, a Python-level count); export at a fixed size instead:"
                " dynamic=False, size=(h, w) (--static HxW)." if dynamic else "")
        raise ExportError(
            f"{name} does not export to ONNX{' with dynamic H x W' if dynamic else f' at {h}x{w}'}: "
            f"{_first_line(exc)}.{hint}"
        ) from exc

    if program is None:  # torch.onnx.export returns None only without dynamo=True
        raise ExportError(f"{name}: torch.onnx.export returned no ONNX program")
    proto = program.model_proto
    written_opset(proto, opset)
    meta = {
        "fsr_bench.model": name,
        "fsr_bench.scale": str(model.scale),
        "fsr_bench.size_multiple": str(model.size_multiple),
        "fsr_bench.input": "lr: float32 (N, 3, H, W) RGB in [0, 1]; sr: (N, 3, scale*H, scale*W), unclamped",
        "fsr_bench.shape": (f"dynamic: N >= 1, {min_input_side(model)} <= H, W <= {MAX_SIDE}"
                            if dynamic else f"static: 1x3x{h}x{w}"),
        "fsr_bench.config": str(model.config_dict()),
        **{f"fsr_bench.{k}": str(v) for k, v in (metadata or {}).items()},
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()

    # verify before writing: a batch at the traced size and, for a dynamic graph, an odd size that is
    # a multiple of nothing, and the smallest size the metadata promises
    checks = [torch.rand(2 if dynamic else 1, 3, h, w, generator=gen)]
    if dynamic:
        lo, m = min_input_side(model), model.size_multiple
        checks += [torch.rand(1, 3, 4 * m + 1, 2 * m + 3, generator=gen), torch.rand(1, 3, lo, lo + 1, generator=gen)]
    try:
        worst = max(onnx_parity(model, data, batch)["max_abs_diff"] for batch in checks)
        failure = None if worst <= SELF_CHECK_ATOL else f"max |onnx - torch| = {worst:.3g} > {SELF_CHECK_ATOL:g}"
    except Exception as exc:  # noqa: BLE001 - onnxruntime refusing a size the graph claims to take
        failure = f"onnxruntime failed: {_first_line(exc)}"
    if failure:
        where = ", ".join("{}x{}x{}x{}".format(*c.shape) for c in checks)
        raise ExportError(
            f"{name}: the exported graph does not reproduce PyTorch at {where} ({failure}); "
            + ("its forward computes size-dependent constants outside the graph. Export at a fixed "
               "size instead: dynamic=False, size=(h, w) (--static HxW)." if dynamic else
               "the model cannot be exported faithfully.")
        )
    return write_bytes(path, data)


def written_opset(proto: Any, opset: int) -> int:
    """The default-domain opset ``proto`` declares; an :class:`ExportError` when it is not ``opset``
    (an exporter that quietly wrote another must not be reported as the one asked for)."""
    got = [int(entry.version) for entry in proto.opset_import if entry.domain in ("", "ai.onnx")]
    if got != [opset]:
        raise ExportError(f"asked for opset {opset}, but the exporter wrote opset "
                          f"{', '.join(map(str, got)) or 'none'}; choose --opset {got[0] if got else DEFAULT_OPSET}")
    return opset


def _first_line(exc: BaseException) -> str:
    """The root cause's first line: the exporter wraps it in generic "step n/3" advice."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def onnx_session(onnx_model: str | os.PathLike | bytes):
    """An onnxruntime CPU session with PyTorch's thread count (fair comparisons, no oversubscription)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # the same CPU budget as PyTorch
    opts.inter_op_num_threads = 1
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_parity(
    model: SuperResolver,
    onnx_model: str | os.PathLike | bytes,
    images: torch.Tensor | Sequence[torch.Tensor],
) -> dict[str, Any]:
    """onnxruntime vs PyTorch (fp32, CPU) on LR ``images``: an (N, 3, h, w) batch (one run), or a
    sequence of (3, h, w) images of any sizes (one run each).

    Returns ``max_abs_diff`` (raw, unclamped outputs, over everything) and ``psnr_db`` (outputs
    clamped to [0, 1] as evaluation does, peak 1, MSE pooled over all pixels; ``inf`` when
    identical), plus ``per_run`` rows. The reference is ``model`` in eval mode, fp32, on the CPU
    (moved there in place).
    """
    batches = [images] if isinstance(images, torch.Tensor) and images.ndim == 4 else [x.unsqueeze(0) for x in images]
    if not batches:
        raise ValueError("onnx_parity needs at least one image")
    session = onnx_session(onnx_model)
    input_name = session.get_inputs()[0].name
    model = model.cpu().float().eval()
    rows: list[dict[str, Any]] = []
    sq_err, n_values, max_diff = 0.0, 0, 0.0
    for lr in batches:
        lr = lr.detach().float().cpu()
        with torch.no_grad():
            ref = model(lr).numpy()
        out = session.run(None, {input_name: lr.numpy()})[0]
        if out.shape != ref.shape:
            raise ExportError(f"onnx output shape {out.shape} != PyTorch {ref.shape} for input {tuple(lr.shape)}")
        diff = float(np.abs(out - ref).max())
        err = float(np.square(np.clip(out, 0, 1).astype(np.float64) - np.clip(ref, 0, 1)).sum())
        rows.append({"input": list(lr.shape), "max_abs_diff": diff, "psnr_db": _psnr(err, ref.size)})
        sq_err, n_values, max_diff = sq_err + err, n_values + ref.size, max(max_diff, diff)
    return {"max_abs_diff": max_diff, "psnr_db": _psnr(sq_err, n_values),
            "n_images": sum(r["input"][0] for r in rows), "per_run": rows}


def _psnr(sq_err: float, n: int) -> float:
    mse = sq_err / n
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
