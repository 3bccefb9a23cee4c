"""``fsr-bench train``: train any registered model with the paper's recipe (or your own config).

Examples::

    fsr-bench train protocols/train_tanet_ffhq_x8.yaml
    fsr-bench train protocols/train_tanet_ffhq_x8.yaml --set data.batch_size=8 --set precision=bf16
    fsr-bench train protocols/train_tanet_ffhq_x8.yaml --resume          # continue OUT/last.pt exactly
    fsr-bench train protocols/train_tanet_ffhq_x8.yaml --dry-run         # config, params, time estimate
    torchrun --nproc_per_node=4 --no-python fsr-bench train protocols/train_tanet_ffhq_x8.yaml
"""
from __future__ import annotations

import errno
from pathlib import Path
from typing import List, Optional

import typer

from fsr_bench.cli._common import catches_errors, fail

#: OSErrors that mean the run folder cannot be written (full, read-only, not ours): an error line, not a traceback
_WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR)


@catches_errors
def train(
    config: Path = typer.Argument(..., help="training config YAML (protocols/train_tanet_ffhq_x4.yaml) or bundled name (train_tanet_ffhq_x4)"),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", "-s", metavar="KEY=VALUE",
        help="override a config value, dotted key, YAML-typed value (repeatable): --set optim.lr=1e-4",
    ),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from OUT/last.pt, exactly"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the resolved config, parameter count and a time estimate; train nothing"
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default: config's out_dir, else runs/<config stem>)"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (default: the config's)"),
    estimate_steps: int = typer.Option(2, "--estimate-steps", help="training steps timed by --dry-run (0: no estimate)"),
) -> None:
    """Train a super-resolver: L1, Adam 2e-4, lr halved every 60 epochs, rot90/flip augmentation.

    Writes OUT/last.pt and OUT/best.pt (full checkpoints, loadable with `fsr-bench sr -c`), CSV logs and
    summary.json. Multi-GPU / multi-node: launch the same command under torchrun (--no-python);
    data.batch_size is the global batch.
    """
    from fsr_bench.train.config import load_config

    overrides = list(set_ or [])
    if out is not None:
        overrides.append(f"out_dir={out}")
    if device is not None:
        overrides.append(f"device={device}")
    cfg = load_config(config, overrides)

    from fsr_bench.train import trainer as tr

    if dry_run:
        info = tr.dry_run(cfg, estimate_steps=estimate_steps, echo=typer.echo)
        typer.echo(tr.format_dry_run(info))
        return
    try:
        summary = tr.train(cfg, resume=resume)
    except OSError as exc:  # the run folder cannot be written (full, read-only): an error line, not a traceback
        if exc.errno not in _WRITE_ERRNOS:
            raise
        from fsr_bench.run.outdir import os_error

        raise fail(str(os_error(exc, Path(cfg.out_dir or ".")))) from None
    if summary.get("stop_reason") == "interrupted":
        raise typer.Exit(130)
