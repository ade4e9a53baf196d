"""Latency and tokens/s versus target length (sec. 5.3, Fig. 4 bottom, App. C.2).

Protocol (sec. 5.1): oracle target lengths, greedy decoding, batch size 1 (plus a batched run),
``torch.inference_mode()``, warm-up runs, the median of repeats. The source is as long as the
target (``src_len = L``, the infilling setting of Fig. 4), random ids, no padding. Weights are
random: the cost of a forward pass does not depend on them.

What is timed per model:

- YAN-TRF / YAN-M at each T: encode the source, T Euler steps with frozen routing (only the
  chosen expert's head is evaluated), one parallel decode of all L tokens;
- GPT-2 / BART: greedy decoding of L tokens with a KV cache (prefill of the source included);
- masked diffusion (LLaDA-style) at each T and at ``T = L`` (one token per step, its best
  quality setting in the paper). Each of its steps is the same forward pass, so when ``T = L``
  would take longer than ``extrapolate_above`` seconds it is extrapolated from the measured
  per-step time, and the record says ``extrapolated: true``.

Speed-ups (``time_vs_reference``, Fig. 4's ratio to YAN-TRF at T = 3) come from pairs: every
repeat of a model is followed at once by a YAN-TRF T=3 run on the same shapes, so a change of
load on a shared machine affects both sides of each ratio alike. FLOPs of YAN and masked
diffusion are counted with ``FlopCounterMode``; after every repeat a square fp32 matmul measures
the machine's peak in the record's dtype, and ``frac_of_peak`` (the median over repeats of
achieved FLOP/s over that peak) is the model-FLOP utilisation: achieved tokens/s over the
FLOP-bound tokens/s.

Dtypes (``LatencyConfig.dtypes``): every model is timed with its weights in each dtype (see
:mod:`yan.precision`); the paired reference is YAN-TRF T=3 in ``reference_dtype`` (bfloat16
when timed), so every ratio of one (preset, L, batch) goes through the same reference runs.
Peak memory per record (:func:`yan.bench.timing.peak_memory`) is read on an untimed call with
the timed shapes: the warm-up of YAN and masked diffusion (one step of the same forward pass),
the first timed repeat of the autoregressive models (L passes, next to which the page faults
the measurement causes cost nothing measurable).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yan.bench.latency_report import (
    REFERENCE,
    add_reference_ratios,
    goal_check,
    markdown_report,
    plot,
    write_outputs,
)
from yan.bench.report import machine_info
from yan.bench.timing import (
    count_flops,
    load_average,
    matmul_peak,
    peak_memory,
    resolve_device,
    time_call,
)
from yan.bench.workloads import (
    AR_MODELS,
    MODELS,
    PRESETS,
    Generator,
    build_generator,
    random_source,
    supports,
)
from yan.precision import dtype_name, fast_dtypes, resolve_dtype

LENGTHS = (64, 128, 256, 512, 1024, 2048)  # the baselines stop at 1024 (GPT-2 at 512)
TINY_LENGTHS = (16, 64)  # the tiny preset is for tests
STEPS = (1, 2, 3, 4, 6, 8)
DTYPES = ("float32", "bfloat16")
REQUIRED_KEYS = (
    "model", "preset", "L", "T", "batch", "seconds", "tokens_per_s", "device", "dtype",
)  # fmt: skip

Progress = Callable[[str], None]


@dataclass
class LatencyConfig:
    """What to time.

    Attributes:
        models: subset of :data:`yan.bench.workloads.MODELS`.
        lengths: target lengths L per preset (``paper``, ``small``, ``tiny``).
        steps: T values for YAN (and masked diffusion) at batch size 1.
        diffusion_steps: T values for masked diffusion (``None``: ``steps``); ``T = L`` is
            added by ``full_diffusion``.
        batch_sizes: batch sizes; sizes > 1 run only at ``batch_lengths`` with ``batch_steps``.
        repeats: timed repeats per configuration (the median is reported).
        warmup: untimed runs before them (a cheaper call with the same shapes: T = 1, or a
            4-token target for the autoregressive models).
        budget: seconds of timed repeats per configuration after which no new repeat starts.
        full_diffusion: also time masked diffusion at ``T = L``.
        extrapolate_above: predicted seconds above which ``T = L`` is extrapolated.
        count_flops: count FLOPs of YAN and masked diffusion and compare with the matmul peak.
        paired_reference: time YAN-TRF T=3 right after every repeat of the other models (same
            L and batch) and report ``time_vs_reference`` from these pairs (see :class:`Paired`).
        peak_size: side of the square fp32 matmul that measures the peak (``None``: 2048 on
            CPU, 8192 on CUDA).
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
        seed: seeds weights, sources and YAN's noise.
        dtypes: the weights' dtypes every model is timed in (names of
            :data:`yan.precision.DTYPES`); ``None``: float32, and bfloat16 where the device
            runs it natively (:func:`yan.precision.fast_dtypes`: a CPU without AVX512-BF16 or
            AMX emulates it, and a paper-size YAN-TRF generation takes ~5x as long as in
            float32 there; asked for by name, it is timed anyway).
        reference_dtype: the dtype of the paired YAN-TRF T=3 reference (``None``: bfloat16
            when in ``dtypes``, else the first).
        measure_memory: read each record's peak memory (see the module docstring).
        skip: ``(model, preset)`` pairs not timed (the quick run skips the paper-size YAN-M and
            BART, which no target needs).
    """

    models: tuple[str, ...] = MODELS
    lengths: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"paper": LENGTHS, "small": LENGTHS}
    )
    steps: tuple[int, ...] = STEPS
    diffusion_steps: tuple[int, ...] | None = (1, 2, 4, 8)
    batch_sizes: tuple[int, ...] = (1, 8)
    batch_lengths: tuple[int, ...] = (128, 512)
    batch_steps: tuple[int, ...] = (3,)
    repeats: int = 3
    warmup: int = 1
    budget: float = 60.0
    full_diffusion: bool = True
    extrapolate_above: float = 60.0
    count_flops: bool = True
    paired_reference: bool = True
    peak_size: int | None = None
    device: str | None = None
    seed: int = 0
    dtypes: tuple[str, ...] | None = None
    reference_dtype: str | None = None
    measure_memory: bool = True
    skip: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.dtypes is None:
            self.dtypes = fast_dtypes(self._dtype_device())
        if not self.dtypes:
            raise ValueError("dtypes must name at least one dtype")
        self.dtypes = tuple(dict.fromkeys(dtype_name(resolve_dtype(d)) for d in self.dtypes))
        if self.reference_dtype is None:
            self.reference_dtype = "bfloat16" if "bfloat16" in self.dtypes else self.dtypes[0]
        self.reference_dtype = dtype_name(resolve_dtype(self.reference_dtype))
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown or not self.models:
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {self.models}")
        bad = sorted(set(self.lengths) - set(PRESETS))
        if bad or not self.lengths:
            raise ValueError(f"lengths must map presets {PRESETS} to lengths, got {bad or '{}'}")
        for name, values in {
            "lengths": [v for ls in self.lengths.values() for v in ls],
            "steps": self.steps,
            "diffusion_steps": self.steps if self.diffusion_steps is None else self.diffusion_steps,
            "batch_sizes": self.batch_sizes,
            "batch_steps": self.batch_steps,
        }.items():
            if not values or any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
                raise ValueError(f"{name} must be integers >= 1, got {list(values)}")
        if self.peak_size is not None and self.peak_size < 1:
            raise ValueError(f"peak_size must be >= 1, got {self.peak_size}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"need repeats >= 1, warmup >= 0; got {self.repeats}, {self.warmup}")

    def _dtype_device(self) -> torch.device:
        """The device whose native dtypes the default ``dtypes`` are; not checked here (a
        missing GPU is refused by :func:`~yan.bench.timing.resolve_device` when the run
        starts), so that a config can be built anywhere."""
        return torch.device(self.device) if self.device else resolve_device(None)

    @classmethod
    def quick(cls, **overrides: Any) -> LatencyConfig:
        """Under 5 minutes on a 2-core CPU (one thread): the targets' models at paper size and
        L = 512 (YAN-TRF, GPT-2, masked diffusion with T = L extrapolated from T = 1), every
        model at the small preset at L = 128; float32, and bfloat16 where it is native.

        The small preset at L = 512 (in the full run) is left out: no target reads it, and
        without it the quick run fits its 5 minutes; the L sweep is the full run's."""
        base: dict[str, Any] = dict(
            lengths={"paper": (512,), "small": (128,)},
            steps=(1, 3, 8),
            diffusion_steps=(1,),
            batch_sizes=(1, 4),
            batch_lengths=(128,),
            budget=30.0,
            extrapolate_above=5.0,
            skip=(("yan-mamba", "paper"), ("bart", "paper")),
        )
        return cls(**{**base, **overrides})


# ---- measuring ---------------------------------------------------------------------------------
def _steps_for(gen: Generator, cfg: LatencyConfig, length: int, batch: int) -> list[int | None]:
    if not gen.uses_steps:
        return [None]
    limit = gen.max_steps(length)  # bounded: denoising steps (``diffusion_steps``)
    if batch > 1:
        steps = cfg.batch_steps
    elif limit is not None and cfg.diffusion_steps is not None:
        steps = cfg.diffusion_steps
    else:
        steps = cfg.steps
    # masked diffusion unmasks at least one token per step: T <= L
    return [t for t in steps if limit is None or t <= limit]


@dataclass
class Paired:
    """Timed repeats of one configuration, each followed at once by its paired measurements.

    Pairing makes ratios robust to a machine whose load changes during the run: the reference
    model (YAN-TRF, T=3, same L and batch) and a fp32 matmul are timed right after every repeat,
    so each ratio compares runs made under the same conditions.

    Attributes:
        seconds: the configuration's timed repeats.
        reference: the reference's time after each repeat (empty when not paired).
        peaks: the matmul FLOP/s after each repeat (empty when FLOPs are not counted).
        memory: peak extra bytes of one call (``None``: not measured / not measurable).
    """

    seconds: list[float]
    reference: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    memory: int | None = None


def time_paired(
    run: Callable[[], Any],
    warm: Callable[[], Any],
    device: torch.device,
    cfg: LatencyConfig,
    *,
    reference: Callable[[], Any] | None = None,
    peak: torch.dtype | None = None,
    memory: str | None = None,
) -> Paired:
    """``cfg.warmup`` runs of ``warm`` (and one of ``reference``), then up to ``cfg.repeats``
    paired repeats of ``run``; no new repeat starts once they have taken ``cfg.budget`` s.

    ``peak``: measure the matmul peak in this dtype after every repeat. ``memory``: read the
    peak memory on the first ``"warmup"`` run or the first timed ``"repeat"``.
    """
    out = Paired([])
    if memory == "warmup" and not cfg.warmup:
        memory = "repeat"
    with torch.inference_mode():
        for i in range(cfg.warmup):
            if i == 0 and memory == "warmup":
                with peak_memory(device) as reading:
                    warm()
                out.memory = reading.bytes
            else:
                warm()
        if reference is not None and cfg.warmup:
            reference()
    for i in range(cfg.repeats):
        if out.seconds and sum(out.seconds) >= cfg.budget:
            break
        if i == 0 and memory == "repeat":
            with peak_memory(device) as reading:
                out.seconds.append(time_call(run, device, repeats=1, warmup=0).median)
            out.memory = reading.bytes
        else:
            out.seconds.append(time_call(run, device, repeats=1, warmup=0).median)
        if reference is not None:
            out.reference.append(time_call(reference, device, repeats=1, warmup=0).median)
        if peak:
            out.peaks.append(matmul_peak(device, n=cfg.peak_size, repeats=1, warmup=1, dtype=peak))
    return out


def _record(
    gen: Generator,
    length: int,
    steps: int | None,
    batch: int,
    timing: Paired,
    device: torch.device,
    *,
    flops: int | None = None,
    extrapolated: bool = False,
) -> dict[str, Any]:
    median = float(np.median(timing.seconds))
    rec: dict[str, Any] = {
        "model": gen.model,
        "dtype": gen.dtype,
        "preset": gen.preset,
        "L": length,
        "T": steps,
        "batch": batch,
        "src_len": length,
        "seconds": median,
        "tokens_per_s": batch * length / median,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "params": gen.params,
        "nfe": steps if gen.uses_steps else length,
        "repeats": 0 if extrapolated else len(timing.seconds),
        "seconds_all": [round(s, 6) for s in timing.seconds],
        "extrapolated": extrapolated,
        "load_1min": load_average(),
        "reference_seconds": float(np.median(timing.reference)) if timing.reference else None,
        "flops": flops,
        "flops_per_s": None if flops is None else flops / median,
        "peak_flops_per_s": float(np.median(timing.peaks)) if timing.peaks else None,
        "frac_of_peak": None,
        "weights_mb": gen.weight_bytes / 2**20,
        "peak_mem_mb": None if timing.memory is None else timing.memory / 2**20,
    }
    if flops is not None and timing.peaks:
        # per repeat: achieved FLOP/s over the peak measured right after it
        fracs = [flops / t / p for t, p in zip(timing.seconds, timing.peaks)]
        rec["frac_of_peak"] = float(np.median(fracs))
    return rec


_FLOPS: dict[tuple, int] = {}  # FLOPs do not depend on the weights' values or dtype


def _count(gen: Generator, src: torch.Tensor, mask: torch.Tensor, length: int, steps: int) -> int:
    key = (gen.model, gen.preset, gen.params, tuple(src.shape), length, steps)
    if key not in _FLOPS:
        _FLOPS[key] = count_flops(lambda: gen.generate(src, mask, length, steps))
    return _FLOPS[key]


def _flops(gen: Generator, src: torch.Tensor, mask: torch.Tensor, length: int, steps: int) -> int:
    """FLOPs of one generation with ``steps`` steps, counted once per shape for all dtypes.

    Both step-based models are exactly linear in T: masked diffusion repeats one forward pass;
    YAN's first Euler step adds the gate to a trunk step (frozen routing), every later one is a
    trunk step and the chosen expert, so two counts (T = 1, 2) give every T."""
    one = _count(gen, src, mask, length, 1)
    if gen.max_steps(length) is not None:  # every denoising step is the same forward pass
        return steps * one
    if steps == 1:
        return one
    return one + (steps - 1) * (_count(gen, src, mask, length, 2) - one)


def measure(
    gen: Generator,
    length: int,
    steps: int | None,
    batch: int,
    cfg: LatencyConfig,
    device: torch.device,
    reference: Generator | None = None,
) -> dict[str, Any]:
    """Time one (model, dtype, L, T, batch) configuration and return its flat record.

    With ``reference`` (the YAN-TRF generator of the same preset in the reference dtype), every
    repeat is paired with a run of the reference at T = 3 on the same input shape (see
    :class:`Paired`); the reference's own records are timed back to back, unpaired.
    """
    src, mask = random_source(gen, batch, length, device, seed=cfg.seed)
    warm_len = length if gen.uses_steps else min(length, 4)
    counted = cfg.count_flops and steps is not None
    ref_run = None
    if reference is not None and gen is not reference:
        ref_src, ref_mask = random_source(reference, batch, length, device, seed=cfg.seed)
        ref_run = lambda: reference.generate(ref_src, ref_mask, length, REFERENCE[1])  # noqa: E731
    memory = None
    if cfg.measure_memory:
        memory = "warmup" if gen.uses_steps else "repeat"
    timing = time_paired(
        lambda: gen.generate(src, mask, length, steps),
        lambda: gen.generate(src, mask, warm_len, 1 if gen.uses_steps else None),
        device,
        cfg,
        reference=ref_run,
        peak=resolve_dtype(gen.dtype) if counted else None,
        memory=memory,
    )
    if gen is reference and steps == REFERENCE[1]:
        timing.reference = list(timing.seconds)
    flops = _flops(gen, src, mask, length, steps) if counted and steps is not None else None
    rec = _record(gen, length, steps, batch, timing, device, flops=flops)
    rec["reference_dtype"] = cfg.reference_dtype
    return rec


def _diffusion_at_full_steps(
    gen: Generator,
    length: int,
    batch: int,
    measured: list[dict[str, Any]],
    cfg: LatencyConfig,
    device: torch.device,
    reference: Generator | None,
) -> dict[str, Any]:
    """Masked diffusion at T = L: measured when affordable, else extrapolated.

    Every denoising step is the same forward pass, so the time is linear in T with a negligible
    intercept; the per-step time is the median of ``seconds / T`` over the measured T (robust
    to load spikes), times L.
    """
    per_step = float(np.median([r["seconds"] / r["T"] for r in measured]))
    predicted = per_step * length
    if predicted <= cfg.extrapolate_above:
        return measure(gen, length, length, batch, cfg, device, reference)
    refs = [r["reference_seconds"] for r in measured if r["reference_seconds"] is not None]
    timing = Paired([predicted], [float(np.median(refs))] if refs else [])
    flops = None
    if measured[0]["flops"] is not None:
        flops = measured[0]["flops"] // measured[0]["T"] * length
    rec = _record(gen, length, length, batch, timing, device, flops=flops, extrapolated=True)
    rec["reference_dtype"] = cfg.reference_dtype
    fracs = [r["frac_of_peak"] for r in measured if r["frac_of_peak"] is not None]
    if fracs:  # the same forward pass as the measured steps, so their utilisation
        rec["frac_of_peak"] = float(np.median(fracs))
        rec["peak_flops_per_s"] = float(np.median([r["peak_flops_per_s"] for r in measured]))
    return rec


def run_latency(cfg: LatencyConfig, progress: Progress | None = print) -> list[dict[str, Any]]:
    """Time every configured (model, dtype, preset, L, T, batch); one flat record each."""
    device = resolve_device(cfg.device)
    say = progress or (lambda _msg: None)
    records: list[dict[str, Any]] = []
    for preset, lengths in cfg.lengths.items():
        reference = None
        if cfg.paired_reference and REFERENCE[0] in cfg.models:
            reference = build_generator(
                REFERENCE[0],
                preset,
                max_len=max(lengths),
                device=device,
                seed=cfg.seed,
                dtype=cfg.reference_dtype,
            )
        for model in cfg.models:
            if (model, preset) in cfg.skip:
                continue
            usable = [n for n in lengths if supports(model, n, n)]
            if not usable:
                say(f"skip {model} ({preset}): no supported length in {list(lengths)}")
                continue
            for dtype in cfg.dtypes:
                if reference is not None and (model, dtype) == (REFERENCE[0], reference.dtype):
                    gen = reference
                else:
                    gen = build_generator(
                        model, preset, max_len=max(usable), device=device, seed=cfg.seed,
                        dtype=dtype,
                    )  # fmt: skip
                say(f"{model} ({preset}, {dtype}, {gen.params / 1e6:.1f}M parameters)")
                records += _time_model(gen, usable, cfg, device, reference, say)
                del gen
                gc.collect()
        del reference
        gc.collect()
    add_reference_ratios(records)
    return records


def _time_model(
    gen: Generator,
    lengths: list[int],
    cfg: LatencyConfig,
    device: torch.device,
    reference: Generator | None,
    say: Progress,
) -> list[dict[str, Any]]:
    """Every (L, batch, T) of one built model; masked diffusion also at T = L."""
    records = []
    for length in lengths:
        for batch in cfg.batch_sizes:
            if batch > 1 and length not in cfg.batch_lengths:
                continue
            measured = []
            for steps in _steps_for(gen, cfg, length, batch):
                rec = measure(gen, length, steps, batch, cfg, device, reference)
                measured.append(rec)
                say(_line(rec))
            full = cfg.full_diffusion and gen.max_steps(length) is not None
            if full and measured and length not in [r["T"] for r in measured]:
                rec = _diffusion_at_full_steps(gen, length, batch, measured, cfg, device, reference)
                measured.append(rec)
                say(_line(rec))
            records.extend(measured)
    return records


def _line(rec: dict[str, Any]) -> str:
    t = "-" if rec["T"] is None else rec["T"]
    extra = " (extrapolated)" if rec["extrapolated"] else ""
    util = ""
    if rec["frac_of_peak"] is not None:
        util = (
            f", {rec['flops_per_s'] / 1e9:.0f} GFLOP/s = {100 * rec['frac_of_peak']:.0f}% of peak"
        )
    memory = "" if rec["peak_mem_mb"] is None else f", peak +{rec['peak_mem_mb']:.0f} MB"
    return (
        f"  {rec['model']:<17} {rec['dtype']:<8} {rec['preset']:<5} L={rec['L']:<5} T={t:<5} "
        f"B={rec['batch']:<2} {rec['seconds']:8.3f} s {rec['tokens_per_s']:10.1f} tok/s"
        f"{util}{memory}{extra}"
    )


def latency_main(cfg: LatencyConfig, out_dir: str | Path, json_path: str | Path | None) -> dict:
    """Run, print the report, write everything; returns the written paths."""
    device = resolve_device(cfg.device)
    meta = machine_info(device)
    meta["load_start"] = meta.pop("load_1min")
    meta["dtypes"], meta["reference_dtype"] = list(cfg.dtypes), cfg.reference_dtype
    meta["memory_kind"] = (
        "CUDA max_memory_allocated above the allocated memory before the call"
        if device.type == "cuda"
        else "peak RSS above the RSS before the call"
    )
    meta["matmul_peak_flops_per_s_start"] = matmul_peak(device, n=cfg.peak_size)
    print(
        f"matmul peak {meta['matmul_peak_flops_per_s_start'] / 1e9:.0f} GFLOP/s fp32 "
        f"({meta['threads']} threads, load {meta['load_start']})"
    )
    records = run_latency(cfg)
    meta["load_end"] = load_average()
    meta["matmul_peak_flops_per_s_end"] = matmul_peak(device, n=cfg.peak_size)
    paths = write_outputs(records, meta, out_dir, json_path)
    print(markdown_report(records, meta))
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return paths


__all__ = [
    "AR_MODELS",
    "DTYPES",
    "LENGTHS",
    "REFERENCE",
    "REQUIRED_KEYS",
    "STEPS",
    "LatencyConfig",
    "add_reference_ratios",
    "goal_check",
    "latency_main",
    "markdown_report",
    "measure",
    "plot",
    "run_latency",
    "write_outputs",
]
