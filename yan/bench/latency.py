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
the machine's peak, and ``frac_of_peak`` (the median over repeats of achieved FLOP/s over that
peak) is the model-FLOP utilisation: achieved tokens/s over the FLOP-bound tokens/s.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yan.bench.report import (
    fmt,
    machine_info,
    markdown_table,
    new_figure,
    save_figure,
    write_json,
    write_text,
)
from yan.bench.timing import (
    count_flops,
    load_average,
    matmul_peak,
    resolve_device,
    time_call,
)
from yan.bench.workloads import (
    AR_MODELS,
    MODELS,
    PRESETS,
    YAN_MODELS,
    Generator,
    build_generator,
    random_source,
    supports,
)

LENGTHS = (64, 128, 256, 512, 1024)
TINY_LENGTHS = (16, 64)  # the tiny preset is for tests
STEPS = (1, 2, 3, 4, 6, 8)
REFERENCE = ("yan-trf", 3)  # Fig. 4 reports inference time relative to YAN-TRF at T = 3
REQUIRED_KEYS = ("model", "preset", "L", "T", "batch", "seconds", "tokens_per_s", "device")

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

    def __post_init__(self) -> None:
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

    @classmethod
    def quick(cls, **overrides: Any) -> LatencyConfig:
        """A run of a few minutes on a 2-core CPU: paper presets at L = 512, small at 128/512."""
        base: dict[str, Any] = dict(
            lengths={"paper": (512,), "small": (128, 512)},
            steps=(1, 3, 8),
            diffusion_steps=(1, 3),
            batch_sizes=(1, 4),
            batch_lengths=(128,),
            budget=30.0,
            extrapolate_above=20.0,
        )
        return cls(**{**base, **overrides})


# ---- measuring ---------------------------------------------------------------------------------
def _steps_for(gen: Generator, cfg: LatencyConfig, length: int, batch: int) -> list[int | None]:
    if not gen.uses_steps:
        return [None]
    if batch > 1:
        steps = cfg.batch_steps
    elif gen.model == "masked-diffusion" and cfg.diffusion_steps is not None:
        steps = cfg.diffusion_steps
    else:
        steps = cfg.steps
    # masked diffusion unmasks at least one token per step: T <= L
    return [t for t in steps if gen.model in YAN_MODELS or t <= length]


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
    """

    seconds: list[float]
    reference: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)


def time_paired(
    run: Callable[[], Any],
    warm: Callable[[], Any],
    device: torch.device,
    cfg: LatencyConfig,
    *,
    reference: Callable[[], Any] | None = None,
    peak: bool = False,
) -> Paired:
    """``cfg.warmup`` runs of ``warm`` (and one of ``reference``), then up to ``cfg.repeats``
    paired repeats of ``run``; no new repeat starts once they have taken ``cfg.budget`` s."""
    with torch.inference_mode():
        for _ in range(cfg.warmup):
            warm()
        if reference is not None and cfg.warmup:
            reference()
    out = Paired([])
    for _ in range(cfg.repeats):
        if out.seconds and sum(out.seconds) >= cfg.budget:
            break
        out.seconds.append(time_call(run, device, repeats=1, warmup=0).median)
        if reference is not None:
            out.reference.append(time_call(reference, device, repeats=1, warmup=0).median)
        if peak:
            out.peaks.append(matmul_peak(device, n=cfg.peak_size, repeats=2, warmup=1))
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
    }
    if flops is not None and timing.peaks:
        # per repeat: achieved FLOP/s over the peak measured right after it
        fracs = [flops / t / p for t, p in zip(timing.seconds, timing.peaks)]
        rec["frac_of_peak"] = float(np.median(fracs))
    return rec


def _flops(gen: Generator, src: torch.Tensor, mask: torch.Tensor, length: int, steps: int) -> int:
    if gen.model == "masked-diffusion":
        # every denoising step is the same forward pass over [source, target]
        return steps * count_flops(lambda: gen.generate(src, mask, length, 1))
    return count_flops(lambda: gen.generate(src, mask, length, steps))


def is_reference(gen: Generator, steps: int | None) -> bool:
    return (gen.model, steps) == REFERENCE


def measure(
    gen: Generator,
    length: int,
    steps: int | None,
    batch: int,
    cfg: LatencyConfig,
    device: torch.device,
    reference: Generator | None = None,
) -> dict[str, Any]:
    """Time one (model, L, T, batch) configuration and return its flat record.

    With ``reference`` (a YAN-TRF generator of the same preset), every repeat is paired with a
    run of the reference at T = 3 on the same input shape (see :class:`Paired`).
    """
    src, mask = random_source(gen, batch, length, device, seed=cfg.seed)
    warm_len = length if gen.uses_steps else min(length, 4)
    counted = cfg.count_flops and steps is not None
    ref_run = None
    # YAN-TRF's own records are timed back to back with the reference record: no pairing
    if reference is not None and gen.model != REFERENCE[0]:
        ref_src, ref_mask = random_source(reference, batch, length, device, seed=cfg.seed)
        ref_run = lambda: reference.generate(ref_src, ref_mask, length, REFERENCE[1])  # noqa: E731
    timing = time_paired(
        lambda: gen.generate(src, mask, length, steps),
        lambda: gen.generate(src, mask, warm_len, 1 if gen.uses_steps else None),
        device,
        cfg,
        reference=ref_run,
        peak=counted,
    )
    if is_reference(gen, steps):
        timing.reference = list(timing.seconds)
    flops = _flops(gen, src, mask, length, steps) if counted and steps is not None else None
    return _record(gen, length, steps, batch, timing, device, flops=flops)


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
    fracs = [r["frac_of_peak"] for r in measured if r["frac_of_peak"] is not None]
    if fracs:  # the same forward pass as the measured steps, so their utilisation
        rec["frac_of_peak"] = float(np.median(fracs))
        rec["peak_flops_per_s"] = float(np.median([r["peak_flops_per_s"] for r in measured]))
    return rec


def run_latency(cfg: LatencyConfig, progress: Progress | None = print) -> list[dict[str, Any]]:
    """Time every configured (model, preset, L, T, batch); one flat record each."""
    device = resolve_device(cfg.device)
    say = progress or (lambda _msg: None)
    records: list[dict[str, Any]] = []
    for preset, lengths in cfg.lengths.items():
        reference = None
        if cfg.paired_reference and REFERENCE[0] in cfg.models:
            reference = build_generator(
                REFERENCE[0], preset, max_len=max(lengths), device=device, seed=cfg.seed
            )
        for model in cfg.models:
            usable = [n for n in lengths if supports(model, n, n)]
            if not usable:
                say(f"skip {model} ({preset}): no supported length in {list(lengths)}")
                continue
            if reference is not None and model == REFERENCE[0]:
                gen = reference
            else:
                gen = build_generator(
                    model, preset, max_len=max(usable), device=device, seed=cfg.seed
                )
            say(f"{model} ({preset}, {gen.params / 1e6:.1f}M parameters)")
            for length in usable:
                for batch in cfg.batch_sizes:
                    if batch > 1 and length not in cfg.batch_lengths:
                        continue
                    measured = []
                    for steps in _steps_for(gen, cfg, length, batch):
                        rec = measure(gen, length, steps, batch, cfg, device, reference)
                        measured.append(rec)
                        say(_line(rec))
                    full = cfg.full_diffusion and gen.model == "masked-diffusion"
                    if full and measured and length not in [r["T"] for r in measured]:
                        rec = _diffusion_at_full_steps(
                            gen, length, batch, measured, cfg, device, reference
                        )
                        measured.append(rec)
                        say(_line(rec))
                    records.extend(measured)
            del gen
            gc.collect()
        del reference
        gc.collect()
    add_reference_ratios(records)
    return records


def _line(rec: dict[str, Any]) -> str:
    t = "-" if rec["T"] is None else rec["T"]
    extra = " (extrapolated)" if rec["extrapolated"] else ""
    util = ""
    if rec["frac_of_peak"] is not None:
        util = (
            f", {rec['flops_per_s'] / 1e9:.0f} GFLOP/s = {100 * rec['frac_of_peak']:.0f}% of peak"
        )
    return (
        f"  {rec['model']:<17} {rec['preset']:<5} L={rec['L']:<5} T={t:<5} B={rec['batch']:<2} "
        f"{rec['seconds']:8.3f} s {rec['tokens_per_s']:10.1f} tok/s{util}{extra}"
    )


# ---- summaries ---------------------------------------------------------------------------------
def _key(rec: dict[str, Any]) -> tuple:
    return rec["preset"], rec["L"], rec["batch"], rec["device"]


def add_reference_ratios(
    records: list[dict[str, Any]], reference: tuple[str, int] = REFERENCE
) -> None:
    """Set ``time_vs_reference``: seconds over YAN-TRF T=3's (Fig. 4 bottom).

    The paired reference time of the record when there is one, else the reference record of
    the same run (preset, L, batch, device); ``None`` when neither exists. Its inverse is
    YAN-TRF's speed-up over that record.
    """
    ref = {_key(r): r["seconds"] for r in records if (r["model"], r["T"]) == reference}
    for r in records:
        base = r.get("reference_seconds") or ref.get(_key(r))
        r["time_vs_reference"] = None if base is None else r["seconds"] / base


def _label(rec: dict[str, Any]) -> str:
    if rec["T"] is None:
        return rec["model"]
    if rec["model"] == "masked-diffusion" and rec["T"] == rec["L"]:
        return f"{rec['model']} T=L"
    return f"{rec['model']} T={rec['T']}"


def _pivot(records: list[dict[str, Any]], value: str, digits: int) -> str:
    lengths = sorted({r["L"] for r in records})
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        row = rows.setdefault(
            _label(r), {"model": _label(r), "params": f"{r['params'] / 1e6:.1f}M"}
        )
        v = r[value]
        row[f"L={r['L']}"] = v if not r["extrapolated"] else f"{fmt(v, digits)}*"
    columns = ["model", "params", *[f"L={n}" for n in lengths]]
    return markdown_table(list(rows.values()), columns, digits)


def goal_check(records: list[dict[str, Any]]) -> list[str]:
    """The CPU targets: YAN-TRF T=3 vs GPT-2 at L=512 (paper presets, batch 1) and MFU."""
    pick = {
        (r["model"], r["T"]): r
        for r in records
        if r["preset"] == "paper" and r["L"] == 512 and r["batch"] == 1
    }
    yan, gpt2 = pick.get(REFERENCE), pick.get(("gpt2", None))
    lines = []
    if yan and gpt2:
        ratio = gpt2["time_vs_reference"] or yan["tokens_per_s"] / gpt2["tokens_per_s"]
        paired = " (paired runs)" if gpt2.get("reference_seconds") else ""
        lines.append(
            f"- YAN-TRF (T=3) {yan['tokens_per_s']:.0f} tokens/s vs GPT-2 124M with KV cache "
            f"{gpt2['tokens_per_s']:.1f} tokens/s: **{ratio:.1f}x**{paired} (goal >= 15x)"
        )
    if yan and yan["frac_of_peak"] is not None:
        bound = yan["peak_flops_per_s"] / (yan["flops"] / yan["L"])
        lines.append(
            f"- YAN-TRF (T=3): {yan['flops'] / 1e9:.0f} GFLOP per sequence, "
            f"{yan['flops_per_s'] / 1e9:.0f} GFLOP/s achieved vs a measured matmul peak of "
            f"{yan['peak_flops_per_s'] / 1e9:.0f} GFLOP/s: **{100 * yan['frac_of_peak']:.0f}%** "
            f"of the FLOP-bound {bound:.0f} tokens/s (goal >= 70%)"
        )
    return lines


def markdown_report(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The latency report: goal check, tokens/s and time ratios per preset and batch, MFU."""
    out = [
        "# Inference latency and throughput\n",
        f"Device {meta['device']}, {meta['threads']} threads, torch {meta['torch']}; "
        f"1-minute load average {meta['load_start']} at the start and {meta['load_end']} at "
        "the end (the machine is shared).\n",
        "Oracle lengths, greedy decoding, source length = target length L, random weights; "
        "median over repeats after warm-up. `*` = extrapolated from the measured per-step "
        "time (masked diffusion at T = L). Time ratios pair every repeat with a YAN-TRF T=3 "
        "run made right after it, so load changes on the machine cancel.\n",
    ]
    goals = goal_check(records)
    if goals:
        out += ["## Targets (paper presets, L = 512, batch 1)\n", *goals, ""]
    groups = sorted({(r["preset"], r["batch"]) for r in records}, key=lambda k: (k[1], k[0]))
    for preset, batch in groups:
        group = [r for r in records if r["preset"] == preset and r["batch"] == batch]
        out.append(f"## Tokens/s: preset `{preset}`, batch {batch}\n")
        out.append(_pivot(group, "tokens_per_s", 1))
        if any(r["time_vs_reference"] is not None for r in group):
            out.append(
                f"\nInference time relative to YAN-TRF T=3 (preset `{preset}`, batch {batch}):\n"
            )
            out.append(_pivot(group, "time_vs_reference", 2))
        out.append("")
    util = [r for r in records if r["frac_of_peak"] is not None]
    if util:
        rows = [
            {
                "model": _label(r),
                "preset": r["preset"],
                "L": r["L"],
                "batch": r["batch"],
                "GFLOP": r["flops"] / 1e9,
                "GFLOP/s": r["flops_per_s"] / 1e9,
                "peak GFLOP/s": r["peak_flops_per_s"] / 1e9,
                "% of peak": 100 * r["frac_of_peak"],
                "FLOP-bound tok/s": r["peak_flops_per_s"] * r["L"] * r["batch"] / r["flops"],
                "tok/s": r["tokens_per_s"],
            }
            for r in util
        ]
        out.append("## FLOP utilisation (FLOPs counted with FlopCounterMode)\n")
        out.append(markdown_table(rows, list(rows[0]), 1))
    return "\n".join(out)


def plot(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Tokens/s and time relative to YAN-TRF T=3 versus L, one pair of panels per preset."""
    ones = [r for r in records if r["batch"] == 1]
    presets = [p for p in PRESETS if any(r["preset"] == p for r in ones)]
    if not presets:
        return None
    fig, axes = new_figure(2 * len(presets), width=4.8)
    for i, preset in enumerate(presets):
        group = [r for r in ones if r["preset"] == preset]
        series: dict[str, list[dict[str, Any]]] = {}
        for r in group:
            series.setdefault(_label(r), []).append(r)
        for label, rs in sorted(series.items()):
            rs = sorted(rs, key=lambda r: r["L"])
            ls = [r["L"] for r in rs]
            style = "-" if label.startswith("yan") else "--"
            width = 2.5 if label == "yan-trf T=3" else 1.2
            axes[2 * i].plot(
                ls, [r["tokens_per_s"] for r in rs], style, lw=width, marker="o", ms=3, label=label
            )
            ratios = [r["time_vs_reference"] for r in rs]
            if all(v is not None for v in ratios):
                axes[2 * i + 1].plot(ls, ratios, style, lw=width, marker="o", ms=3, label=label)
        for ax, ylabel in zip(axes[2 * i : 2 * i + 2], ("tokens / s", "time / YAN-TRF (T=3)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("target length L")
            ax.set_ylabel(ylabel)
            ax.set_title(f"preset {preset}, batch 1")
            ax.grid(True, which="both", alpha=0.3)
        axes[2 * i].legend(fontsize=7)
    return save_figure(fig, path)


def write_outputs(
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    out_dir: str | Path,
    json_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write the records (JSON list), metadata, the markdown report and the figure."""
    out_dir = Path(out_dir)
    paths = {
        "json": write_json(json_path or out_dir / "latency.json", records),
        "meta": write_json(out_dir / "latency_meta.json", meta),
        "markdown": write_text(out_dir / "latency.md", markdown_report(records, meta)),
    }
    figure = plot(records, out_dir / "latency.png")
    if figure is not None:
        paths["figure"] = figure
    return paths


def latency_main(cfg: LatencyConfig, out_dir: str | Path, json_path: str | Path | None) -> dict:
    """Run, print the report, write everything; returns the written paths."""
    device = resolve_device(cfg.device)
    meta = machine_info(device)
    meta["load_start"] = meta.pop("load_1min")
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
