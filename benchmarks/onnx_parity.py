"""Per-model ONNX export status and onnxruntime-vs-PyTorch parity on real faces (issue 15).

    python benchmarks/onnx_parity.py                      # every registered model, paper configs
    python benchmarks/onnx_parity.py --pattern "tanet*" --n-faces 4

For each model (paper-default config, random weights fixed by seed 0: parity is a property of the
graph, not of trained values): export with dynamic H x W; if that is refused, export at the faces'
LR size and record the model as ``static`` with the reason; if that is refused too, record
``not exportable`` with the reason. Parity runs on the first ``--n-faces`` faces of the shared
faces256 validation split (MATLAB-bicubic LR at the paper's 64x64 / 32x32), else on the package
faces. Results: ``benchmarks/results/onnx_parity_cpu.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench.atomic import write_json
from fsr_bench.data.resize import imresize
from fsr_bench.models import create_model, list_models
from fsr_bench.models.export import ExportError, export_onnx, onnx_parity
from fsr_bench.provenance import collect


def hr_faces(n: int) -> tuple[str, list[torch.Tensor]]:
    shared = Path(os.environ.get("FSR_BENCH_SHARED", ROOT.parent / "shared"))
    split = shared / "data" / "splits" / "faces256_val.txt"
    if split.is_file():
        from fsr_bench.data.io import list_images, read_image

        return f"faces256 val (first {n})", [read_image(p) for p in list_images(shared / "data" / "faces256", split)[:n]]
    from fsr_bench.data.package_faces import PackageFaces

    faces = PackageFaces(hr_size=128)
    return "package faces", [faces[i]["hr"] for i in range(len(faces))]


def save(out: Path, source: str, rows: list[dict]) -> None:
    write_json(out, {
        "benchmark": "onnx_parity",
        "faces": source,
        "weights": "random, torch.manual_seed(0), paper-default configs",
        "what": "max |onnxruntime - PyTorch| on raw fp32 outputs; PSNR between them on outputs clamped to [0, 1]",
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "provenance": collect("cpu"),
        "results": rows,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--n-faces", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_parity_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source, hr = hr_faces(args.n_faces)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in list_models(args.pattern):
            torch.manual_seed(0)
            model = create_model(name).eval()
            lrs = [imresize(x, scale=1 / model.scale).clamp(0, 1) for x in hr]
            path, row, t0 = Path(tmp) / f"{name}.onnx", {"model": name, "scale": model.scale}, time.perf_counter()
            try:
                export_onnx(model, path)
                row["status"] = "dynamic"
            except ExportError as dynamic_error:
                try:
                    export_onnx(model, path, dynamic=False, size=lrs[0].shape[-2:])
                    row.update(status="static", reason=str(dynamic_error))
                except ExportError as static_error:
                    row.update(status="not exportable", reason=str(static_error))
            row["export_s"] = round(time.perf_counter() - t0, 1)
            if row["status"] != "not exportable":
                parity = onnx_parity(model, path, lrs)
                row.update(lr_size=list(lrs[0].shape[-2:]), max_abs_diff=parity["max_abs_diff"],
                           psnr_db=parity["psnr_db"], onnx_mb=round(path.stat().st_size / 1e6, 1))
                path.unlink()
            rows.append(row)
            print(f"{name:20s} {row['status']:15s} max|diff| {row.get('max_abs_diff', float('nan')):.2e}  "
                  f"PSNR {row.get('psnr_db', float('nan')):6.1f} dB  ({row['export_s']:.0f} s)", flush=True)
            save(args.out, source, rows)  # after every model: a long run cut short keeps what it measured
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
