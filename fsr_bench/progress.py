"""Progress for every long command (``sr``, ``run``, ``train``): a tqdm bar on a terminal, periodic lines in a log.

tqdm redraws its bar with carriage returns; with stderr redirected to a file (a batch job, ``nohup``,
CI) that became hundreds of ``\\r`` updates on one line. :func:`progress_bar` takes tqdm's arguments
and returns a tqdm bar when stderr is a terminal, else a :class:`LineProgress` that writes one plain
line every ``FSR_BENCH_PROGRESS_SECONDS`` seconds (default 60) and one at the end::

    train tanet_s_x8: 1200/7530 steps (16%), 9.1 min, 2.19 steps/s, ~48.2 min left [loss=0.0312, left=48 min (steps)]
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

ENV_SECONDS = "FSR_BENCH_PROGRESS_SECONDS"
DEFAULT_SECONDS = 60.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``1.8 h``: what progress lines and the trainer print."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """The part of tqdm's interface fsr-bench uses, as periodic log lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, initial: float = 0, interval: float | None = None,
                 stream: Any = None, **_: Any):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.n = self._start_n = initial
        self.interval = float(os.environ.get(ENV_SECONDS, DEFAULT_SECONDS)) if interval is None else interval
        self.stream = stream
        self.postfix: dict[str, Any] = {}
        self._t0 = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable is not iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            self._write()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        n = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = (f", ~{format_duration((self.total - self.n) / rate)} left"
                if self.total and rate > 0 and self.n < self.total else "")
        post = f" [{', '.join(f'{k}={v}' for k, v in self.postfix.items())}]" if self.postfix else ""
        return f"{self.desc}: {n} {self.unit}{pct}, {format_duration(elapsed)}, {rate:.3g} {self.unit}/s{left}{post}"

    def _write(self) -> None:
        stream = self.stream or sys.stderr
        print(self.line(), file=stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n > self._start_n:
            self._write()


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal, else a :class:`LineProgress`; takes tqdm's arguments."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)
