"""The training loop: exact resume, mixed precision, DistributedDataParallel, validation, checkpoints.

Run with ``fsr-bench train CONFIG.yaml`` (one process) or, for several GPUs / nodes::

    torchrun --nproc_per_node=8 --no-python fsr-bench train CONFIG.yaml
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=8 --no-python fsr-bench train CONFIG.yaml

What a run writes to ``out_dir`` (rank 0 only; every file replaced atomically):

* ``last.pt`` — at every epoch end, every ``schedule.ckpt_every_minutes`` and when stopping;
  ``best.pt`` — whenever validation PSNR improves. Both are full fsr-bench checkpoints (model name +
  config + weights, loadable with ``create_model(checkpoint=...)``) plus ``optimizer``,
  ``scheduler``, ``scaler``, ``rng`` (torch/CUDA/NumPy/``random`` states of every rank, as tensors
  so ``weights_only=True`` loads them), ``epoch``, ``epoch_step``, ``step``, ``elapsed_s``,
  ``best`` and ``train_config``.
* ``config.yaml`` (resolved config), ``train_log.csv`` / ``val_log.csv``, optional ``tb/``,
  ``summary.json``.

Exact resume: the data order and every sample's crop, augmentation and degradation seed are
functions of (seed, epoch, index) (see :mod:`fsr_bench.train.data`), so restoring weights,
optimizer, scheduler, RNG states and the (epoch, step-in-epoch) position continues bit-for-bit on
the same hardware and software (tested on CPU).

Host syncs: the loop never calls ``.item()`` per step; loss terms accumulate on the device and are
read (and all-reduced across ranks) every ``schedule.log_every`` steps. Under DDP, time-based
decisions (time budget, periodic checkpoint, Ctrl-C) are taken by rank 0 and broadcast at those same
points, so all ranks stop at the same step.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fsr_bench import atomic
from fsr_bench.errors import FsrBenchError
from fsr_bench.models.precision import PrecisionError, autocast, resolve_precision
from fsr_bench.progress import format_duration as _fmt_duration
from fsr_bench.train.checkpointing import plain, rng_state, set_rng_state
from fsr_bench.train.config import TrainConfig, recipe_differences
from fsr_bench.train.data import EpochSampler, TrainPairs, ValPairs, as_patch, check_sizes
from fsr_bench.train.distributed import dist_env, resolve_device
from fsr_bench.train.logs import CsvLog
from fsr_bench.train.losses import TrainStep
from fsr_bench.train.validation import score_pairs

__all__ = ["TrainError", "Trainer", "dry_run", "score_pairs", "train"]


class TrainError(FsrBenchError, RuntimeError):
    """A training problem the user can fix; the message says how."""


# -- helpers --------------------------------------------------------------------------------------
VAL_TIMED_IMAGES = 8  # images of the real validation pass --dry-run times (after a warm-up batch)


# -- the trainer ----------------------------------------------------------------------------------
class Trainer:
    """Build everything from a :class:`TrainConfig`; :meth:`fit` trains, :meth:`dry_run` reports.

    ``callbacks``: functions ``f(trainer)`` called after every optimizer step on every rank (tests
    use them to interrupt a run with :meth:`request_stop`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        callbacks: Sequence[Callable[["Trainer"], None]] = (),
        echo: Callable[[str], None] | None = None,
        write_outputs: bool = True,
    ):
        self.cfg = cfg
        self.resume = resume
        self.callbacks = list(callbacks)
        self.rank, self.local_rank, self.world = dist_env()
        self.is_main = self.rank == 0
        self._echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
        self.write_outputs = write_outputs
        self.out_dir = Path(cfg.out_dir or "runs/train")
        self._stop_reason: str | None = None
        self._owns_pg = False
        self._setup()

    def echo(self, msg: str) -> None:
        if self.is_main:
            self._echo(msg)

    def request_stop(self, reason: str = "requested") -> None:
        """Stop after the current step (saving last.pt); safe to call from a signal handler."""
        self._stop_reason = self._stop_reason or reason

    # -- setup ----------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if self.world > 1 and not dist.is_initialized():
            dev = resolve_device(cfg.device, self.local_rank, self.world)
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            self._owns_pg = True
        self.device = resolve_device(cfg.device, self.local_rank, self.world)
        if cfg.cpu_threads is not None:
            torch.set_num_threads(cfg.cpu_threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:  # one rule for what each device runs (fp16 on the CPU, bf16 on old GPUs: refused)
            resolve_precision(cfg.precision, self.device)
        except PrecisionError as exc:
            raise TrainError(f"precision: {exc} (--set precision=...)") from None
        if cfg.data.batch_size % self.world:
            raise TrainError(
                f"data.batch_size {cfg.data.batch_size} (global) is not divisible by the {self.world}"
                f" processes; use a multiple of {self.world}"
            )
        self.local_batch = cfg.data.batch_size // self.world

        # model (same init on every rank; DDP also broadcasts rank 0's weights)
        from fsr_bench.models import MODELS, create_model

        torch.manual_seed(cfg.seed)
        MODELS.get(cfg.model.name)  # unknown names: error with close matches
        if cfg.model.pretrained and cfg.model.checkpoint is not None:
            raise TrainError("model.checkpoint and model.pretrained both set: give one source of initial weights")
        self.model = create_model(cfg.model.name, checkpoint=cfg.model.checkpoint, pretrained=cfg.model.pretrained,
                                  **cfg.model.overrides)
        # provenance of a fine-tuning start: which weights, by content
        self.init_weights: dict[str, Any] | None = None
        if cfg.model.checkpoint is not None or cfg.model.pretrained:
            from fsr_bench.weights import sha256_file

            init_path = Path(self.model.checkpoint_path)
            self.init_weights = {"path": str(init_path), "sha256": sha256_file(init_path),
                                 "pretrained": bool(cfg.model.pretrained)}
        if self.model.num_parameters(trainable_only=True) == 0:
            raise TrainError(f"model {cfg.model.name!r} has no trainable parameters: nothing to train")
        self.scale = self.model.scale
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # global RNGs: per rank (only models with dropout & co. use them; data never does)
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed((cfg.seed + self.rank) % 2**32)
        random.seed(cfg.seed + self.rank)

        self._build_data()
        identity = None
        if cfg.loss.identity is not None:
            from fsr_bench.train.identity import IdentityLoss

            spec = cfg.loss.identity
            identity = IdentityLoss.from_config(spec, _identity_module(spec.recogniser, spec.weights, self.device))
        self.step_module = TrainStep(self.model, cfg.loss.pixel, cfg.loss.weights, identity)
        wrapped: Callable[..., Any] = self.step_module  # (lr, hr, face_affine) -> (loss, terms)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        self.wrapped = wrapped
        # one fused kernel for all parameters (CPU and CUDA) instead of a loop of ~10 small ops per tensor;
        # a resumed run keeps the implementation it started with (load_state_dict restores `fused`)
        kw: dict[str, Any] = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay, **kw,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=cfg.optim.step_epochs, gamma=cfg.optim.gamma
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")

        # counters (overwritten by resume)
        self.epoch = 0  # epochs completed
        self.epoch_step = 0  # optimizer steps done in the current epoch
        self.step = 0  # optimizer steps done in total
        self.elapsed_s = 0.0  # wall time of all sessions of this run
        self.best: dict[str, Any] = {"psnr": -math.inf, "ssim": None, "step": None, "epoch": None}
        self.term_names: list[str] | None = None
        self.last_val: dict[str, Any] | None = None

    def _build_data(self) -> None:
        from fsr_bench.data.degradations import build_degradation
        from fsr_bench.data.folders import build_dataset, expand_path, split_identity

        cfg, d = self.cfg, self.cfg.data
        root = d.data_root
        spec = dict(d.degradation)
        spec.setdefault("scale", self.scale)
        self.degradation = build_degradation(spec)
        if self.degradation.scale != self.scale:
            raise TrainError(
                f"data.degradation.scale is {self.degradation.scale}, but model {cfg.model.name!r} upscales"
                f" x{self.scale}: train a x{self.degradation.scale} model or set data.degradation.scale={self.scale}"
            )
        self.patch = as_patch(d.patch_size)
        if self.patch is not None and (self.patch[0] % self.scale or self.patch[1] % self.scale):
            raise TrainError(f"data.patch_size {d.patch_size} (HR px) must be a multiple of the scale {self.scale}")
        self.train_hr = build_dataset(d.train, "data.train", root)
        n = len(self.train_hr)
        if n < d.batch_size:
            raise TrainError(
                f"data.train has {n} image(s), fewer than data.batch_size {d.batch_size}: the epoch would be"
                " empty. Check the dataset/list file, or lower data.batch_size."
            )
        try:
            check_sizes(self.train_hr, self.patch, self.scale, self.local_batch, "data.train")
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        lr_folder = expand_path(d.lr_folder, "data.lr_folder", root) if d.lr_folder else None
        if lr_folder is not None and not lr_folder.is_dir():
            raise TrainError(f"data.lr_folder {lr_folder} is not a folder")
        landmarks = None
        if cfg.loss.identity is not None:
            if self.patch is not None:
                raise TrainError(
                    f"loss.identity compares whole faces, but data.patch_size is {d.patch_size}: a patch is not a"
                    " face. Set data.patch_size: null (whole aligned faces) to train with the identity loss")
            from fsr_bench.train.identity import training_landmarks
            from fsr_bench.weights import fsr_bench_home

            cache = cfg.loss.identity.landmarks_cache or str(fsr_bench_home() / "landmarks")
            landmarks = training_landmarks(self.train_hr, cache, echo=self.echo)
        self.train_pairs = TrainPairs(
            self.train_hr, self.scale, self.degradation, lr_folder, self.patch,
            hflip=d.augment.hflip, rot90=d.augment.rot90, seed=cfg.seed, global_batch=d.batch_size,
            landmarks=landmarks,
        )
        self.sampler = EpochSampler(n, d.batch_size, self.rank, self.world, seed=cfg.seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        cuda = self.device.type == "cuda"
        workers = d.workers
        self.loader = torch.utils.data.DataLoader(
            self.train_pairs,
            batch_size=self.local_batch,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=cuda and d.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )
        self.val_pairs = None
        self.val_batch = d.val_batch_size
        if d.val is not None:
            val_hr = build_dataset(d.val, "data.val", root)
            try:
                check_sizes(val_hr, None, self.scale, 1, "data.val")
                check_sizes(val_hr, None, self.scale, self.val_batch, "data.val")
            except ValueError as exc:
                if "mixes sizes" not in str(exc):
                    raise TrainError(str(exc)) from None
                self.val_batch = 1  # mixed sizes: score one image at a time
            val_lr = expand_path(d.val_lr_folder, "data.val_lr_folder", root) if d.val_lr_folder else None
            self.val_pairs = ValPairs(val_hr, self.scale, self.degradation, val_lr, seed=0)
        # the split best.pt is selected on (list file + sha256), so a report can flag a row evaluated on it
        self.validation = split_identity(d.val, root) if d.val is not None else None

    # -- resume ---------------------------------------------------------------------------------
    def _load_resume(self) -> None:
        from fsr_bench.models.checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint

        path = self.out_dir / "last.pt"
        if not path.is_file():
            raise TrainError(f"--resume: no checkpoint {path}; start without --resume, or point --out at the run")
        ck = read_checkpoint(path)
        name = self.cfg.model.name
        if ck.get("model") != name:
            raise TrainError(
                f"--resume: {path} is a checkpoint of model {ck.get('model')!r}, but the config trains {name!r};"
                " use the run's config or another --out"
            )
        if plain(ck.get("config")) != plain(self.model.config_dict()):
            a, b = plain(ck.get("config") or {}), plain(self.model.config_dict())
            diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            raise TrainError(f"--resume: {path} holds a {name} with another architecture config ({'; '.join(diff)})")
        diffs = recipe_differences(ck.get("train_config", {}), self.cfg.to_dict())
        if diffs:
            raise TrainError(
                "--resume: the config differs from the run's in settings that change the training itself:\n  "
                + "\n  ".join(diffs)
                + f"\nResume with the run's config ({self.out_dir / 'config.yaml'}), or start a new run with another --out."
                " (schedule.*, log.*, device, workers, compile may change.)"
            )
        try:
            load_state_dict_strict(self.model, ck["state_dict"], source=str(path))
        except CheckpointError as exc:
            raise TrainError(str(exc)) from None
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        rngs = ck.get("rng") or []
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank], self.device)
        elif rngs:
            self.echo(f"note: {path} was written by {len(rngs)} process(es), now {self.world}: RNG states re-seeded")
        self.epoch, self.epoch_step, self.step = int(ck["epoch"]), int(ck["epoch_step"]), int(ck["step"])
        self.elapsed_s = float(ck.get("elapsed_s", 0.0))
        self.best = dict(ck.get("best") or self.best)
        best_file = path.with_name("best.pt")
        if best_file.is_file() and best_file != path:
            # best.pt is written first, so after a crash it may know of a newer best than last.pt
            try:
                best_rec = torch.load(best_file, map_location="cpu", weights_only=True).get("best") or {}
            except Exception as exc:  # a damaged best.pt must not block the resume; it is rewritten on the next best
                self.echo(f"note: {best_file} is unreadable ({type(exc).__name__}); it will be replaced")
                best_rec = {}
            if (best_rec.get("psnr") or -math.inf) > (self.best.get("psnr") or -math.inf):
                self.best = dict(best_rec)
        if self.best.get("psnr") is None:
            self.best["psnr"] = -math.inf
        self.echo(f"resumed {path}: epoch {self.epoch}, step {self.step} ({self.epoch_step} into the epoch)")

    # -- checkpoints ----------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        state = rng_state(self.device)
        if self.world > 1:
            states: list[Any] = [None] * self.world
            dist.all_gather_object(states, state)
        else:
            states = [state]
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": states,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "elapsed_s": self._elapsed(),
            "best": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.best.items()},
            "train_config": self.cfg.to_dict(),
            "validation": self.validation,
            "init_weights": self.init_weights,
            "world_size": self.world,
            "meta": {"torch": str(torch.__version__), "device": str(self.device), "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
        }

    def save(self, best: bool = False) -> None:
        """Write last.pt (and best.pt); a collective under DDP (all ranks must call it)."""
        from fsr_bench.models.checkpoint import checkpoint_bytes

        payload = self._payload()
        if self.is_main and self.write_outputs:
            data = checkpoint_bytes(self.model, **payload)
            # both files complete on disk before either is renamed: a full disk keeps the last good
            # pair (never a best.pt without its last.pt); best.pt is renamed first, so a crash between
            # the renames never leaves a last.pt that records a best newer than best.pt holds
            names = ("best.pt", "last.pt") if best else ("last.pt",)
            atomic.write_together([(self.out_dir / name, data) for name in names])
        self._last_ckpt_time = time.monotonic()

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """Mean Y-channel PSNR/SSIM (border crop = scale, 8-bit outputs) over the val split (sharded)."""
        if self.val_pairs is None:
            return None
        t0 = time.monotonic()
        sums = score_pairs(self.model, self.val_pairs, self.device, self.val_batch, indices=range(
            self.rank, len(self.val_pairs), self.world), workers=min(self.cfg.data.workers, 2),
            channels_last=self.cfg.channels_last, precision=self.cfg.precision)
        if not math.isfinite(float(sums[0])):
            raise TrainError(f"the model produced NaN/inf on the validation set at step {self.step}")
        if self.world > 1:
            dist.all_reduce(sums)
        total, ssim_sum, n, n_exact = sums.tolist()
        # every image exact: the mean PSNR is undefined (null in results); for ranking it is the best
        psnr = total / (n - n_exact) if n > n_exact else math.inf
        result = {"step": self.step, "epoch": self.epoch + self.epoch_step / max(1, self.steps_per_epoch),
                  "psnr": psnr, "ssim": ssim_sum / n, "n": int(n), "n_exact": int(n_exact),
                  "seconds": time.monotonic() - t0}
        self.last_val = result
        return result

    def _after_validation(self, res: dict[str, Any] | None) -> bool:
        """Log a validation result; True if it is the best so far."""
        if res is None:
            return False
        improved = res["psnr"] > (self.best.get("psnr") or -math.inf)
        if improved:
            self.best = {"psnr": res["psnr"], "ssim": res["ssim"], "step": res["step"], "epoch": res["epoch"]}
        if self.is_main and self.write_outputs:
            if self.val_csv is not None:
                self.val_csv.write({"step": res["step"], "epoch": f"{res['epoch']:.3f}", "psnr": f"{res['psnr']:.4f}",
                                    "ssim": f"{res['ssim']:.5f}", "n": res["n"], "best": int(improved),
                                    "elapsed_s": f"{self._elapsed():.1f}"})
            if self.tb is not None:
                self.tb.add_scalar("val/psnr", res["psnr"], res["step"])
                self.tb.add_scalar("val/ssim", res["ssim"], res["step"])
        self.echo(f"val step {res['step']}: PSNR {res['psnr']:.3f} dB  SSIM {res['ssim']:.4f}"
                  f"  ({res['n']} images, {res['seconds']:.0f} s){'  *best*' if improved else ''}")
        self._t_log = time.monotonic()  # keep validation time out of img/s
        return improved

    # -- the step -------------------------------------------------------------------------------
    def _autocast(self):
        # autocast keeps fp32 master weights: Adam updates fp32 parameters, only the maths is bf16
        return autocast(self.device, self.cfg.precision)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        lr = batch["lr"].to(self.device, non_blocking=True)
        hr = batch["hr"].to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
        # the identity loss's per-sample face alignment rides along (None without loss.identity)
        self._face_affine = batch["face_affine"].to(self.device) if "face_affine" in batch else None
        return lr, hr

    def _train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._autocast():
            loss, terms = self.wrapped(lr, hr, getattr(self, "_face_affine", None))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return terms

    def _oom_error(self, exc: BaseException) -> TrainError:
        b = self.cfg.data.batch_size
        half = max(self.world, (b // 2) // self.world * self.world)
        patch = f", patch {self.patch[0]}x{self.patch[1]}" if self.patch else ", whole images"
        return TrainError(
            f"out of GPU memory on {self.device} with data.batch_size={b} ({self.local_batch} per GPU{patch},"
            f" precision {self.cfg.precision}): try --set data.batch_size={half}"
            + (" or --set precision=bf16" if self.cfg.precision == "fp32" else "")
            + f". ({str(exc).splitlines()[0] if str(exc) else 'OutOfMemoryError'})"
        )

    # -- bookkeeping ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed_s + (time.monotonic() - self._session_start if hasattr(self, "_session_start") else 0.0)

    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.cfg.schedule.epochs
        if self.cfg.schedule.max_steps is not None:
            total = min(total, self.cfg.schedule.max_steps)
        return total

    def _flags(self, force_check: bool) -> tuple[bool, bool]:
        """(stop, checkpoint-now) decided by rank 0, agreed by all ranks."""
        sch = self.cfg.schedule
        check_now = self.world == 1 or force_check
        if not check_now:
            return False, False
        now = time.monotonic()
        stop = self._stop_reason is not None
        if sch.max_minutes is not None and self._elapsed() >= sch.max_minutes * 60:
            self._stop_reason = self._stop_reason or "time budget"
            stop = True
        ckpt = sch.ckpt_every_minutes is not None and now - self._last_ckpt_time >= sch.ckpt_every_minutes * 60
        if self.world > 1:
            flags = torch.tensor([float(stop), float(ckpt)], device=self.device)
            dist.broadcast(flags, 0)
            stop, ckpt = bool(flags[0].item()), bool(flags[1].item())
            if stop and self._stop_reason is None:
                self._stop_reason = "stopped by rank 0"
        return stop, ckpt

    def _log(self, acc: torch.Tensor, count: int, bar) -> None:
        if self.world > 1:
            dist.all_reduce(acc)
            acc = acc / self.world
        values = (acc / max(1, count)).tolist()  # the one host sync per log interval
        now = time.monotonic()
        ips = count * self.cfg.data.batch_size / max(1e-9, now - self._t_log)
        self._t_log = now
        self._ips.append(ips)
        if self.term_names is None:  # set by the first optimizer step, which precedes every log
            raise RuntimeError("_log called before the first optimizer step")
        terms = dict(zip(self.term_names, values))
        if not all(math.isfinite(v) for v in values):
            raise TrainError(
                f"the training loss became {terms['total']} at step {self.step}: lower optim.lr, set"
                " optim.grad_clip, or use precision fp32/bf16 instead of fp16"
            )
        lr_now = self.optimizer.param_groups[0]["lr"]
        row = {"step": self.step, "epoch": f"{self.epoch + self.epoch_step / self.steps_per_epoch:.3f}",
               "lr": f"{lr_now:.3e}", "img_per_s": f"{ips:.2f}", "elapsed_s": f"{self._elapsed():.1f}",
               **{f"loss_{k}": f"{v:.6f}" for k, v in terms.items()}}
        if self.device.type == "cuda":
            row["gpu_mem_gb"] = f"{torch.cuda.max_memory_allocated(self.device) / 2**30:.2f}"
        if self.is_main and self.write_outputs:
            if self.train_csv is not None:
                self.train_csv.write(row)
            if self.tb is not None:
                for k, v in terms.items():
                    self.tb.add_scalar(f"train/loss_{k}", v, self.step)
                self.tb.add_scalar("train/img_per_s", ips, self.step)
                self.tb.add_scalar("train/lr", lr_now, self.step)
        if bar is not None:
            post = {"loss": f"{terms['total']:.4f}", "img/s": f"{ips:.1f}", "ep": f"{self.epoch}"}
            left = self._time_left(ips)
            if left is not None:
                post["left"] = f"{_fmt_duration(left[0])} ({left[1]})"
            bar.set_postfix(post, refresh=False)

    def _time_left(self, ips: float) -> tuple[float, str] | None:
        """Training time left and what ends the run: the steps (max_steps/epochs) or the time budget,
        whichever comes first at the current img/s. (The bar used to show the budget's remainder alone:
        ``budget=1.8 h`` for a run that max_steps ended after 39 s.) Validation time is not included."""
        if ips <= 0:
            return None
        by_steps = (self.total_steps() - self.step) * self.cfg.data.batch_size / ips
        budget = self.cfg.schedule.max_minutes
        if budget is not None and budget * 60 - self._elapsed() < by_steps:
            return budget * 60 - self._elapsed(), "time budget"
        return by_steps, "steps"

    def _open_logs(self) -> None:
        self.train_csv = self.val_csv = self.tb = None
        if not (self.is_main and self.write_outputs):
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in atomic.sweep_stale_temp(self.out_dir, ["last.pt", "best.pt", "config.yaml", "summary.json"]):
            self.echo(f"removed a temp file a killed run left behind: {stale.name}")
        atomic.write_text(self.out_dir / "config.yaml", self.cfg.to_yaml())
        resume_step = self.step if self.resume else None
        if self.cfg.log.csv:
            self.train_csv = CsvLog(self.out_dir / "train_log.csv", resume_step)
            self.val_csv = CsvLog(self.out_dir / "val_log.csv", resume_step)
        if self.cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise TrainError(
                    "log.tensorboard is on but TensorBoard is not installed: pip install 'fsr-bench[tensorboard]'"
                    " or --set log.tensorboard=false"
                ) from exc
            self.tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=resume_step)

    @contextlib.contextmanager
    def _signals(self):
        """First Ctrl-C / SIGTERM: stop after this step and save last.pt; a second Ctrl-C aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self._stop_reason == "interrupted" and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request_stop("interrupted")
            self.echo("\nstopping after this step and saving last.pt (Ctrl-C again to abort)")

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # -- fit ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until the schedule ends, a stop is requested or the time budget is spent; the summary.

        One optimizer step per iteration, then the after-step decisions, always in this order:
        stop? (rank 0's clock, agreed by all ranks) -> log -> at an epoch end: lr step, validate,
        checkpoint -> mid-epoch: validate or checkpoint when due, and a final checkpoint on stop.
        """
        cfg, sch = self.cfg, self.cfg.schedule
        self._start_session()
        total = self.total_steps()
        stop = self.step >= total or self.epoch >= sch.epochs
        if not stop and sch.max_minutes is not None and self._elapsed() >= sch.max_minutes * 60:
            self.echo(f"the time budget schedule.max_minutes={sch.max_minutes:g} is used up;"
                      " raise it with --set schedule.max_minutes=... to train on")
            self._stop_reason, stop = "time budget", True
        acc: torch.Tensor | None = None  # loss terms summed on the device since the last log
        count = 0
        batches = None  # this epoch's iterator; None: open the next one
        bar = self._progress_bar(total)
        self.model.train()
        try:
            with self._signals():
                while not stop:
                    if batches is None:  # data order and augmentations: functions of (seed, epoch, position)
                        self.sampler.set_epoch(self.epoch, self.epoch_step)
                        batches = iter(self.loader)
                    terms = self._optimizer_step(next(batches))
                    acc = terms if acc is None else acc + terms
                    count += 1
                    self.step += 1
                    self.epoch_step += 1
                    if bar is not None:
                        bar.update(1)
                    for cb in self.callbacks:
                        cb(self)

                    # -- after-step decisions --
                    log_due = self.step % sch.log_every == 0
                    stop, checkpoint_due = self._flags(force_check=log_due)  # a collective at log steps
                    stop = stop or self.step >= total
                    epoch_end = self.epoch_step >= self.steps_per_epoch
                    if log_due or stop or epoch_end:
                        self._log(acc, count, bar)  # the one host sync of the interval
                        acc, count = None, 0
                    if epoch_end:
                        self.epoch += 1
                        self.epoch_step = 0
                        self.scheduler.step()
                        batches = None
                        stop = stop or self.epoch >= sch.epochs
                        validate = (bool(cfg.val_every) and self.epoch % cfg.val_every == 0) or self._val_step_due()
                        if stop and self._stop_reason != "interrupted":  # the final weights are always scored
                            validate = True
                        self.save(best=self._after_validation(self.validate()) if validate else False)
                        if not stop:
                            stop = self._flags(force_check=True)[0]
                        continue
                    if self._val_step_due():
                        self.save(best=self._after_validation(self.validate()))
                    elif checkpoint_due and not stop:
                        self.save()
                    if stop:  # mid-epoch: last.pt, scored unless interrupted (Ctrl-C) or scored just now
                        scored = self.last_val is not None and self.last_val["step"] == self.step
                        if self._stop_reason != "interrupted" and not scored:
                            self.save(best=self._after_validation(self.validate()))
                        else:
                            self.save()
        finally:
            if bar is not None:
                bar.close()
        return self._finish()

    def _start_session(self) -> None:
        """Refuse to overwrite a run, restore a resumed one, open the logs, start this session's clocks."""
        cfg = self.cfg
        if self.write_outputs and not self.resume and (self.out_dir / "last.pt").exists():  # every rank: no hang
            raise TrainError(
                f"{self.out_dir} already holds a run (last.pt): pass --resume to continue it, or choose another --out"
            )
        if self.resume:
            self._load_resume()
        self._open_logs()
        self._session_start = time.monotonic()
        self._last_ckpt_time = time.monotonic()
        self._t_log = time.monotonic()
        self._ips: list[float] = []
        self.echo(
            f"training {cfg.model.name} ({self.model.num_parameters() / 1e6:.2f} M params) on {self.device}"
            f" x{self.world}: {len(self.train_hr)} train images, {self.steps_per_epoch} steps/epoch, global batch"
            f" {cfg.data.batch_size}, {self.total_steps()} steps"
            + (f", budget {cfg.schedule.max_minutes:g} min" if cfg.schedule.max_minutes else "")
            + f" -> {self.out_dir}"
        )

    def _progress_bar(self, total: int):
        if not (self.is_main and self.cfg.log.progress):
            return None
        from fsr_bench.progress import progress_bar

        return progress_bar(total=total, initial=self.step, desc=f"train {self.cfg.model.name}", unit="step",
                            dynamic_ncols=True, mininterval=1.0, smoothing=0.05)

    def _val_step_due(self) -> bool:
        every = self.cfg.val_every_steps
        if not every:
            return False
        return self.step % every == 0

    def _optimizer_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step on ``batch``; its loss terms as one device vector (no host sync)."""
        lr, hr = self._to_device(batch)
        try:
            terms = self._train_step(lr, hr)
        except torch.OutOfMemoryError as exc:
            raise self._oom_error(exc) from None
        if self.term_names is None:
            try:
                self.term_names = self.step_module.check_terms(terms)
            except ValueError as exc:
                raise TrainError(str(exc)) from None
        return torch.stack([terms[k].float() for k in self.term_names])

    def _finish(self) -> dict[str, Any]:
        reason = self._stop_reason or ("max_steps" if self.cfg.schedule.max_steps and self.step >= self.cfg.schedule.max_steps else "epochs")
        summary: dict[str, Any] = {
            "model": self.cfg.model.name,
            "params": self.model.num_parameters(),
            "device": str(self.device) if self.device.type == "cpu" else torch.cuda.get_device_name(self.device),
            "world_size": self.world,
            "steps": self.step,
            "epochs": round(self.epoch + self.epoch_step / self.steps_per_epoch, 3),
            "elapsed_s": round(self._elapsed(), 1),
            "stop_reason": reason,
            "init_weights": self.init_weights,
            "img_per_s_median": float(np.median(self._ips)) if self._ips else None,
            "best": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.best.items()},
            "last_val": self.last_val,
            "out_dir": str(self.out_dir),
        }
        if self.is_main and self.write_outputs:
            atomic.write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2))
            if self.tb is not None:
                self.tb.close()
        self.echo(f"done ({reason}): step {self.step}, {_fmt_duration(self._elapsed())}"
                  + (f", best val PSNR {summary['best']['psnr']:.3f} dB at step {summary['best']['step']}"
                     if summary["best"].get("psnr") is not None else ""))
        return summary

    def close(self) -> None:
        if self._owns_pg and dist.is_initialized():
            dist.destroy_process_group()

    # -- dry run --------------------------------------------------------------------------------
    def _time_validation(self) -> tuple[float, int]:
        """Seconds of one full validation, extrapolated from a real pass over a few images (loading,
        degradation, forward, PSNR and SSIM: :func:`score_pairs`, as :meth:`validate` runs it), and how
        many images were timed. Timing the forward alone predicted ~1 s where a validation took 9-11 s."""
        pairs, cfg = self.val_pairs, self.cfg
        assert pairs is not None
        n = len(pairs)
        warm = min(self.val_batch, n)
        timed = range(warm, min(n, warm + max(VAL_TIMED_IMAGES, self.val_batch))) if n > warm else range(n)
        kwargs: dict[str, Any] = dict(workers=min(cfg.data.workers, 2), channels_last=cfg.channels_last,
                                      precision=cfg.precision)
        try:
            if n > warm:  # first calls allocate, pick kernels, compile: once per run, not once per validation
                score_pairs(self.model, pairs, self.device, self.val_batch, indices=range(warm), **kwargs)
            t0 = time.perf_counter()
            score_pairs(self.model, pairs, self.device, self.val_batch, indices=timed, **kwargs)
            seconds = time.perf_counter() - t0
        finally:
            self.model.train()
        return seconds * n / (len(timed) * self.world), len(timed)

    def dry_run(self, estimate_steps: int = 2) -> dict[str, Any]:
        """Resolved config, parameter count, data sizes and a time estimate from a few real steps."""
        cfg = self.cfg
        total = self.total_steps()
        info: dict[str, Any] = {
            "config": cfg.to_dict(),
            "model": cfg.model.name,
            "params": self.model.num_parameters(),
            "scale": self.scale,
            "device": str(self.device),
            "world_size": self.world,
            "train_images": len(self.train_hr),
            "val_images": len(self.val_pairs) if self.val_pairs is not None else 0,
            "degradation": self.degradation.describe(),
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": total,
        }
        if estimate_steps > 0:
            self.model.train()
            it = iter(self.loader)
            lr, hr = self._to_device(next(it))
            times = []
            for k in range(estimate_steps + 1):  # the first step warms up (allocations, cudnn, compile)
                t0 = time.perf_counter()
                try:
                    terms = self._train_step(lr, hr)
                except torch.OutOfMemoryError as exc:
                    raise self._oom_error(exc) from None
                terms["total"].item()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times.append(time.perf_counter() - t0)
            del it
            per_step = float(np.median(times[1:]))
            val_s = 0.0
            n_val = 0
            n_timed = 0
            if self.val_pairs is not None:
                val_s, n_timed = self._time_validation()
            val_per_step = 0.0  # validation seconds per training step
            if self.val_pairs is not None:
                val_per_step = val_s * ((1 / (self.steps_per_epoch * cfg.val_every) if cfg.val_every else 0)
                                        + (1 / cfg.val_every_steps if cfg.val_every_steps else 0))
            steps = total
            if cfg.schedule.max_minutes is not None:  # the budget ends the run first?
                steps = min(total, int(cfg.schedule.max_minutes * 60 / (per_step + val_per_step)))
            if self.val_pairs is not None:
                n_val = 1 + (steps // self.steps_per_epoch // cfg.val_every if cfg.val_every else 0) + (
                    steps // cfg.val_every_steps if cfg.val_every_steps else 0)
            est = per_step * steps + val_s * n_val
            if cfg.schedule.max_minutes is not None:
                est = min(est, cfg.schedule.max_minutes * 60 + val_s)  # + the final validation
            info.update({"s_per_step": per_step, "img_per_s": cfg.data.batch_size / per_step,
                         "val_s": val_s, "val_timed_images": n_timed, "validations": n_val,
                         "estimated_steps": steps, "estimate_s": est})
        return info


class _FrozenEmbedder(nn.Module):
    """A recogniser's network as a differentiable map: RGB [0, 1] faces -> embeddings (frozen)."""

    mean: torch.Tensor  # buffers (1, 3, 1, 1)
    std: torch.Tensor

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", mean.detach().clone().view(1, 3, 1, 1))
        self.register_buffer("std", std.detach().clone().view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # always in eval mode (BatchNorm statistics stay fixed)
        return super().train(False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.net((faces - self.mean.to(faces.dtype)) / self.std.to(faces.dtype))


def _identity_module(name: str, weights: str | None, device: torch.device, key: str = "loss.identity") -> nn.Module:
    """The recogniser ``name`` (fsr_bench.face registry) as a frozen, differentiable embedder.

    A recogniser's ``embed`` runs under ``no_grad``; an identity loss needs gradients through the
    network to the SR image, so its PyTorch network and input normalisation are used directly.
    """
    from fsr_bench.face import create_recogniser

    try:
        rec = create_recogniser(name, weights=weights, device=str(device))
    except Exception as exc:
        raise TrainError(f"{key}: cannot build recogniser {name!r}: {exc}") from None
    net = getattr(rec, "net", None)
    mean, std = getattr(rec, "_mean", None), getattr(rec, "_std", None)
    if not isinstance(net, nn.Module) or mean is None or std is None:
        raise TrainError(
            f"{key}: recogniser {name!r} has no PyTorch network to back-propagate through"
            " (an identity loss needs one; use mobilefacenet)"
        )
    return _FrozenEmbedder(net, mean, std).to(device)


# -- functional entry points ----------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, callbacks: Sequence[Callable] = (), echo=None) -> dict[str, Any]:
    """Train with ``cfg`` (inside or outside torchrun); returns the run summary (also in summary.json)."""
    trainer = Trainer(cfg, resume=resume, callbacks=callbacks, echo=echo)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def dry_run(cfg: TrainConfig, estimate_steps: int = 2, echo=None) -> dict[str, Any]:
    trainer = Trainer(cfg, echo=echo, write_outputs=False)
    try:
        return trainer.dry_run(estimate_steps)
    finally:
        trainer.close()


def format_dry_run(info: dict[str, Any]) -> str:
    """Human-readable dry-run report (what ``fsr-bench train --dry-run`` prints)."""
    import yaml

    lines = ["# resolved config", yaml.safe_dump(info["config"], sort_keys=False, default_flow_style=None).rstrip(), ""]
    lines.append(f"model:       {info['model']} (x{info['scale']}), {info['params']:,} parameters")
    lines.append(f"device:      {info['device']} x{info['world_size']} process(es)")
    lines.append(f"data:        {info['train_images']} train / {info['val_images']} val images,"
                 f" degradation {info['degradation']}")
    lines.append(f"schedule:    {info['steps_per_epoch']} steps/epoch, {info['total_steps']} steps in total")
    if "estimate_s" in info:
        lines.append(f"throughput:  {info['s_per_step']:.3f} s/step = {info['img_per_s']:.1f} img/s"
                     f" (measured on {info['device']}, after one warm-up step)")
        budget = info["config"]["schedule"]["max_minutes"]
        lines.append(f"estimate:    {_fmt_duration(info['estimate_s'])} in total for ~{info['estimated_steps']} steps"
                     f" (incl. {info['validations']} validations of ~{_fmt_duration(info['val_s'])}, timed on"
                     f" {info['val_timed_images']} of {info['val_images']} val images)"
                     + (f"; the {budget:g}-minute budget ends the run" if budget and info['estimated_steps'] < info['total_steps'] else ""))
    return "\n".join(lines)
