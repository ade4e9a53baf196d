"""Inference precision: the dtypes a model may be cast to for generation, by name.

A model runs in a lower precision by casting its weights, ``model.to(torch.bfloat16)`` (or
``YAN.from_pretrained(path, dtype="bfloat16")``, ``yan generate --dtype bfloat16``). What stays
in float32, and why:

- YAN's flow state ``z_t``: the noise is drawn and the Euler steps are accumulated in float32
  (:func:`yan.flow.state_dtype`), the trunk's input is cast to the weights' dtype;
- the gate's log-softmax, which frozen routing draws experts from (:mod:`moefm.heads`);
- every softmax / log-softmax over the vocabulary (sampling, rank classification, the
  baselines' confidences), and the argmax of greedy decoding;
- what PyTorch's kernels accumulate internally (layer norms, matmuls, SDPA).

On a CPU with AMX / AVX512-BF16, bfloat16 matmuls run ~3-4x faster than float32 ones. On a
CPU without them (AVX2 only: many AMD EPYC / Ryzen and older Intel parts) PyTorch emulates
them: on one thread of an AVX2 AMD EPYC a 512-row matmul runs at 0.5-1.2 GFLOP/s in bfloat16
against 34-48 in float32, and a paper-size YAN-TRF generation (L = 512, T = 3) takes 25.4 s
against 4.8 s. :func:`native_dtype` tells the two apart; :func:`cast`
warns (:class:`SlowDtypeWarning`) before a model is cast to a dtype its device emulates, and
the latency benchmark times bfloat16 by default only where it is native. The quality cost on
trained ``small`` checkpoints is measured in ``reports/yan/learn.md`` (tokens identical to
float32 generation); float16 is for CUDA (CPU float16 kernels are slow).
"""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)


class SlowDtypeWarning(UserWarning):
    """A model is cast to a dtype whose matmuls its device only emulates."""


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype for a name (``float32``, ``bfloat16``, ``float16``, or ``fp32`` /
    ``bf16`` / ``fp16``) or a floating torch dtype; anything else is a ``ValueError``."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype}")
    if not isinstance(dtype, str):
        raise ValueError(f"dtype must be a name in {list(DTYPES)}, got {dtype!r}")
    name = ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPES:
        raise ValueError(
            f"unknown dtype {dtype!r}; expected one of {list(DTYPES)} or {list(ALIASES)}"
        )
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The name :func:`resolve_dtype` reads back (``torch.bfloat16`` -> ``"bfloat16"``)."""
    return str(dtype).removeprefix("torch.")


def _cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the instructions oneDNN's fast bfloat16 matmuls need."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    found = [getattr(torch.cpu, name, None) for name in probes]
    if all(f is None for f in found):  # an older PyTorch: ask oneDNN instead
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return any(bool(f()) for f in found if f is not None)


def native_dtype(dtype: str | torch.dtype, device: str | torch.device) -> bool:
    """Whether ``device`` runs matmuls in ``dtype`` natively, i.e. not slower than float32.

    float32 is native everywhere. On a CPU, bfloat16 needs AVX512-BF16 or AMX and float16 is
    never native; on CUDA, bfloat16 needs an Ampere or later GPU. Other devices are trusted.
    """
    dtype, device = resolve_dtype(dtype), torch.device(device)
    if dtype == torch.float32:
        return True
    if device.type == "cpu":
        return dtype == torch.bfloat16 and _cpu_has_bf16()
    if device.type == "cuda" and dtype == torch.bfloat16:
        return bool(torch.cuda.is_bf16_supported())
    return True


def fast_dtypes(device: str | torch.device) -> tuple[str, ...]:
    """float32, and bfloat16 where ``device`` runs it natively: what ``yan bench latency``
    times by default."""
    return ("float32", "bfloat16") if native_dtype(torch.bfloat16, device) else ("float32",)


def cast(module: M, dtype: str | torch.dtype) -> M:
    """``module.to(dtype)`` for inference, with a :class:`SlowDtypeWarning` when the module's
    device only emulates ``dtype`` (the cast still happens: the results are correct, only
    slow)."""
    target = resolve_dtype(dtype)
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    if not native_dtype(target, device):
        warnings.warn(
            f"{dtype_name(target)} on this {device.type} is emulated, not native"
            + (" (no AVX512-BF16 or AMX)" if device.type == "cpu" else "")
            + ": its matmuls run many times slower than float32 here; use float32",
            SlowDtypeWarning,
            stacklevel=2,
        )
    return module.to(target)


__all__ = [
    "ALIASES",
    "DTYPES",
    "SlowDtypeWarning",
    "cast",
    "dtype_name",
    "fast_dtypes",
    "native_dtype",
    "resolve_dtype",
]
