"""Wall-clock timing, the machine's matmul peak and FLOP counting, on CPU and CUDA alike.

Every timed call is bracketed by :func:`synchronize`, so asynchronous CUDA work is inside the
measured interval; on CPU it is a no-op. Times are medians over repeats after warm-up runs, which
absorb one-off costs (allocator growth, kernel selection, lazy initialisation).

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
attention; element-wise work is not counted, as is usual for model-FLOP utilisation). PyTorch's
counter knows the CUDA attention kernels but not the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on CPU, so that one is added here with the same
formula (``sdpa_flop_count``: ``2 L_q L_k (E + E_v)`` per batch and head).

Peak memory (:func:`peak_memory`): on CUDA the allocator's peak; on Linux CPUs the peak
resident set size over the call, above the resident size before it (the heap's free pages are
returned first, so memory freed by earlier calls does not hide new use).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; asking for CUDA without one is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    return dev


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (CUDA); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds of each timed repeat and their median (the reported value)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_call(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    repeats: int = 3,
    warmup: int = 1,
    warmup_fn: Callable[[], Any] | None = None,
    budget: float | None = None,
) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed runs (of ``warmup_fn`` if given).

    ``warmup_fn`` lets an expensive workload warm up on a cheaper call with the same shapes
    (e.g. one denoising step instead of T). With ``budget`` (seconds), no further repeat starts
    once the timed repeats have taken that long (there is always at least one).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    with torch.inference_mode():
        for _ in range(warmup):
            (warmup_fn or fn)()
        synchronize(device)
        seconds = []
        for _ in range(repeats):
            if budget is not None and seconds and sum(seconds) >= budget:
                break
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return Timing(seconds)


@functools.lru_cache(maxsize=4)
def _square_operands(
    device: torch.device, n: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
    return a, torch.randn(n, n, device=device, generator=gen).to(dtype)


def matmul_peak(
    device: torch.device,
    *,
    n: int | None = None,
    repeats: int = 5,
    warmup: int = 2,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Measured FLOP/s of a large square matmul (``2 n^3`` FLOPs), median over repeats.

    ``n`` defaults to 2048 on CPU (~17 GFLOP per product) and 8192 on CUDA. This is the
    practical peak that model-FLOP utilisation is compared against. The operands are drawn once
    per (device, n, dtype) and kept, so a check after every timed repeat costs one product.
    """
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = _square_operands(device, n, dtype)
    timing = time_call(lambda: a @ b, device, repeats=repeats, warmup=warmup)
    return 2.0 * n**3 / timing.median


def _cpu_flash_attention_flops(
    query_shape: tuple[int, ...],
    key_shape: tuple[int, ...],
    value_shape: tuple[int, ...],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _cpu_flash_attention_flops}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn()``: matmuls, convolutions and attention (2 per multiply-add).

    Example:
        >>> layer = torch.nn.Linear(64, 32)
        >>> count_flops(lambda: layer(torch.randn(10, 64)))   # 2 * 10 * 64 * 32
        40960
    """
    counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
    with torch.inference_mode(), counter:
        fn()
    return int(counter.get_total_flops())


def load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), or ``None`` where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


@dataclass
class MemoryReading:
    """Filled in when a :func:`peak_memory` block ends: ``bytes`` stays ``None`` where the
    platform cannot tell (a CPU without ``/proc/self/clear_refs``)."""

    bytes: int | None = None


def _proc_status_kib(*keys: str) -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0])
    return out


def _reset_cpu_peak() -> bool:
    """Return free heap pages to the OS and restart the peak RSS counter (Linux >= 4.0)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the reading may then undercount reused freed memory
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset VmHWM, the peak resident set size, to the current RSS
        return True
    except OSError:
        return False


@contextmanager
def peak_memory(device: torch.device) -> Iterator[MemoryReading]:
    """Measure the extra memory a block needs at its peak, in bytes.

    CUDA: ``max_memory_allocated`` minus the memory allocated before the block. CPU (Linux):
    the peak RSS during the block minus the RSS before it, after the heap's free pages were
    given back (``malloc_trim``), so memory cached from an earlier call does not hide new use.
    The trim makes the block page its memory in afresh: measure an untimed call.
    """
    reading = MemoryReading()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield reading
        synchronize(device)
        reading.bytes = torch.cuda.max_memory_allocated(device) - before
        return
    ok = _reset_cpu_peak()
    before = _proc_status_kib("VmRSS").get("VmRSS") if ok else None
    yield reading
    if before is not None:
        peak = _proc_status_kib("VmHWM").get("VmHWM", before)
        reading.bytes = max(0, peak - before) * 1024


__all__ = [
    "MemoryReading",
    "Timing",
    "count_flops",
    "load_average",
    "matmul_peak",
    "peak_memory",
    "resolve_device",
    "synchronize",
    "time_call",
]
