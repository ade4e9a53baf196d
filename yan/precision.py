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

On a CPU with AMX / AVX512-BF16, bfloat16 matmuls run ~3-4x faster than float32 ones. The
quality cost on trained ``small`` checkpoints is measured in ``reports/yan/learn.md`` (tokens
identical to float32 generation); float16 is for CUDA (CPU float16 kernels are slow).
"""

from __future__ import annotations

import torch

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


__all__ = ["ALIASES", "DTYPES", "dtype_name", "resolve_dtype"]
