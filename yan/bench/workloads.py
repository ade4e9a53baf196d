"""The models the latency benchmark times, built at a size preset with random weights.

Timing does not depend on the weights, so nothing is trained or loaded here. Each model is
wrapped in a :class:`Generator` with one call, ``generate(src, src_mask, L, T)``, that produces
``L`` target tokens per row with oracle length and greedy decoding (sec. 5.1):

========================  =============================================  ======================
model                     generation                                     ``T``
========================  =============================================  ======================
``yan-trf``, ``yan-mamba``  encode source, T Euler steps (frozen routing),  Euler steps
                          one parallel decode (``YAN.generate``)
``gpt2``, ``bart``        greedy autoregressive decoding, KV cache        ``None`` (L passes)
``masked-diffusion``      LLaDA low-confidence remasking in T steps       denoising steps
========================  =============================================  ======================

Presets and vocabularies (each model with its own tokenizer, as in the paper, App. B.3):

- ``paper``: YAN-TRF / YAN-M at App. B.3 sizes with the LLaMA-3 vocabulary (128,258 ids);
  GPT-2 124M, BART-base 139M and the ~200M masked-diffusion model with the GPT-2 vocabulary
  (50,257 + 2 specials).
- ``small``: the ``small`` presets of YAN and the baselines, all on the 8,192-id BPE.
- ``tiny``: test sizes, vocabulary 64.

Position tables are sized to the longest benchmarked sequence (``max_len``), so long lengths
can be timed with random weights. GPT-2 is timed up to ``L = 512`` only, as in the paper's
Fig. 4 (its 1,024-token context holds a 512-token source and a 512-token target; the one
separator position we add costs nothing measurable); BART and masked diffusion up to
``L = 1024``, YAN up to 2048 (see :func:`supports`).

``dtype`` casts the weights (``bfloat16``: see :mod:`yan.precision` for what stays float32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from yan.baselines import baseline_class, build_baseline, count_parameters
from yan.config import preset as yan_preset
from yan.generation import GenerationModel
from yan.model import YAN
from yan.precision import cast, dtype_name, resolve_dtype

PRESETS = ("paper", "small", "tiny")

# vocabulary per (preset, family): YAN reads LLaMA-3 ids, the baselines GPT-2 ids (paper)
VOCAB = {
    ("paper", "yan"): 128_258,
    ("paper", "baseline"): 50_259,
    ("small", "yan"): 8192,
    ("small", "baseline"): 8192,
    ("tiny", "yan"): 64,
    ("tiny", "baseline"): 64,
}
GPT2_MAX_LEN = 512  # Fig. 4 truncates GPT-2 at its context: source and target of 512 each
# BART-base and the masked-diffusion model have 1,024 positions (source + target for the
# latter); only YAN, whose cost grows slowest with L, is timed beyond (L = 2048)
BASELINE_MAX_LEN = 1024


def _build_yan(arch: str, preset: str, max_len: int) -> tuple[nn.Module, int]:
    """YAN with ``arch`` at ``preset`` (paper: App. B.3 sizes), positions for ``max_len``."""
    vocab = VOCAB[preset, "yan"]
    if preset == "paper":
        name, overrides = f"paper-{'trf' if arch == 'transformer' else 'mamba'}", {}
    else:
        name, overrides = preset, {"arch": arch}
    config = yan_preset(name, vocab_size=vocab, **overrides)
    if config.max_len < max_len:
        config = config.replace(max_len=max_len)
    return YAN(config), vocab


def _build_baseline(name: str, cap: int, preset: str, max_len: int) -> tuple[nn.Module, int]:
    """Baseline ``name`` at ``preset``, positions for a source and target of ``max_len`` each
    (at most ``cap``, the longest it is timed at)."""
    vocab = VOCAB[preset, "baseline"]
    n = min(max_len, cap)
    positions = baseline_class(name).positions(n, n)
    model = build_baseline(
        name, preset, vocab_size=vocab, pad_id=vocab - 2, mask_id=vocab - 1, max_len=positions
    )
    return model, vocab


@dataclass(frozen=True)
class Workload:
    """How the benchmark builds one model, and the longest source / target it times it at.

    Attributes:
        build: ``(preset, max_len) -> (model, vocab_size)``, random weights.
        max_length: the paper's context for the model (Fig. 4); ``None``: no limit.
    """

    build: Callable[[str, int], tuple[nn.Module, int]]
    max_length: int | None = None


def _baseline(name: str, cap: int) -> Workload:
    return Workload(partial(_build_baseline, name, cap), cap)


# The registry of timed models: names -> builders. Everything else the benchmark needs to know
# about a model (does T matter, how many steps at most) the built model says itself
# (yan.generation.GenerationModel).
_YAN = {
    "yan-trf": Workload(partial(_build_yan, "transformer")),
    "yan-mamba": Workload(partial(_build_yan, "mamba")),
}
_AUTOREGRESSIVE = {
    "gpt2": _baseline("gpt2", GPT2_MAX_LEN),
    "bart": _baseline("bart", BASELINE_MAX_LEN),
}
WORKLOADS: dict[str, Workload] = {
    **_YAN,
    **_AUTOREGRESSIVE,
    "masked-diffusion": _baseline("masked-diffusion", BASELINE_MAX_LEN),
}
MODELS = tuple(WORKLOADS)
YAN_MODELS, AR_MODELS = tuple(_YAN), tuple(_AUTOREGRESSIVE)  # groups for callers and reports


@dataclass
class Generator:
    """A model ready to time: ``generate(src, src_mask, L, T)`` runs one oracle-length decode.

    Attributes:
        model: benchmark name (one of :data:`MODELS`).
        preset: ``paper``, ``small`` or ``tiny``.
        vocab_size: ids of its tokenizer (source ids are drawn below it).
        params: number of parameters.
        module: the underlying model, a :class:`yan.generation.GenerationModel`.
        generate: the decode call; ``T`` is ignored by the autoregressive models.
        dtype: the weights' dtype name (``float32``, ``bfloat16``, ...).
    """

    model: str
    preset: str
    vocab_size: int
    params: int
    module: GenerationModel
    generate: Callable[[torch.Tensor, torch.Tensor, int, int | None], object]
    dtype: str = "float32"

    @property
    def weight_bytes(self) -> int:
        """Bytes of the parameters and buffers (the weights' share of the memory)."""
        module: nn.Module = self.module  # type: ignore[assignment]  (YAN and baselines are)
        tensors = [*module.parameters(), *module.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def uses_steps(self) -> bool:
        """Whether ``T`` matters (YAN, masked diffusion) or decoding takes L passes (AR)."""
        return self.module.uses_steps  # a GenerationModel answers

    def max_steps(self, length: int) -> int | None:
        """The most steps ``T`` a target of ``length`` tokens takes (``None``: no bound)."""
        return self.module.max_steps(length)


def supports(model: str, src_len: int, length: int) -> bool:
    """Whether ``model`` is timed with a source of ``src_len`` and a target of ``length`` tokens.

    GPT-2's source and target share its 1,024-token context; the other baselines stop at
    :data:`BASELINE_MAX_LEN`; YAN has no limit here.
    """
    if model not in WORKLOADS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    cap = WORKLOADS[model].max_length
    return cap is None or max(src_len, length) <= cap


def build_generator(
    model: str,
    preset: str,
    *,
    max_len: int,
    device: torch.device,
    seed: int = 0,
    dtype: str | torch.dtype = "float32",
) -> Generator:
    """Build ``model`` at ``preset`` with random weights on ``device``, in eval mode, with its
    weights cast to ``dtype``.

    ``max_len`` is the longest source or target it will see (positions are sized to fit).
    """
    gen = _build(model, preset, max_len=max_len, device=device, seed=seed)
    gen.dtype = dtype_name(resolve_dtype(dtype))
    cast(gen.module, dtype)
    return gen


def _build(model: str, preset: str, *, max_len: int, device: torch.device, seed: int) -> Generator:
    if model not in WORKLOADS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    torch.manual_seed(seed)
    module, vocab = WORKLOADS[model].build(preset, max_len)
    net: GenerationModel = module.to(device).eval()  # type: ignore[assignment]

    def run(src: torch.Tensor, mask: torch.Tensor, length: int, steps: int | None):
        lengths = torch.full((src.shape[0],), length, dtype=torch.long, device=src.device)
        return net.generate_ids(src, mask, lengths, steps=steps, seed=seed)

    return Generator(model, preset, vocab, count_parameters(module), net, run)


def random_source(
    gen: Generator, batch: int, src_len: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpadded random source ids ``(batch, src_len)`` below the specials, and an all-True mask.

    No padding: oracle lengths per row make every row the same length (sec. 5.1).
    """
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, gen.vocab_size - 2, (batch, src_len), generator=g).to(device)
    return src, torch.ones_like(src, dtype=torch.bool)


__all__ = [
    "AR_MODELS",
    "BASELINE_MAX_LEN",
    "GPT2_MAX_LEN",
    "MODELS",
    "PRESETS",
    "VOCAB",
    "WORKLOADS",
    "YAN_MODELS",
    "Generator",
    "Workload",
    "build_generator",
    "random_source",
    "supports",
]
