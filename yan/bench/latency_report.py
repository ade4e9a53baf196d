"""Summaries of the latency records: reference ratios, the speed targets, markdown and figure.

Every record's ``time_vs_reference`` is its time over YAN-TRF T=3's *in the reference dtype*
(``reference_dtype``, bfloat16 when timed), measured in pairs (see :mod:`yan.bench.latency`).
So two records of one (preset, L, batch) compare through the same reference: GPT-2 in float32
against YAN-TRF in float32 is ``tvr(gpt2, fp32) / tvr(yan, fp32)``, and each model at its
fastest dtype is the ratio of their smallest ``time_vs_reference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yan.bench.report import (
    fmt,
    markdown_table,
    new_figure,
    save_figure,
    write_json,
    write_text,
)
from yan.bench.workloads import PRESETS

REFERENCE = ("yan-trf", 3)  # Fig. 4 reports inference time relative to YAN-TRF at T = 3
GOAL_SPEEDUP = 15.0  # YAN-TRF T=3 over GPT-2 with KV cache, paper presets, L = 512, CPU
GOAL_UTILISATION = 0.70  # of the FLOP-bound rate at the dtype YAN runs
GOAL_DIFFUSION = 1000.0  # masked diffusion at T = L over YAN-TRF T=3


def _dtype(rec: dict[str, Any]) -> str:
    return rec.get("dtype", "float32")


def _key(rec: dict[str, Any]) -> tuple:
    return rec["preset"], rec["L"], rec["batch"], rec["device"]


def add_reference_ratios(
    records: list[dict[str, Any]], reference: tuple[str, int] = REFERENCE
) -> None:
    """Set ``time_vs_reference``: seconds over YAN-TRF T=3's in the reference dtype (Fig. 4).

    The paired reference time of the record when there is one, else the reference record of
    the same run (preset, L, batch, device); ``None`` when neither exists. Its inverse is
    YAN-TRF's speed-up over that record.
    """
    ref = {
        _key(r): r["seconds"]
        for r in records
        if (r["model"], r["T"]) == reference and _dtype(r) == r.get("reference_dtype", _dtype(r))
    }
    for r in records:
        base = r.get("reference_seconds") or ref.get(_key(r))
        r["time_vs_reference"] = None if base is None else r["seconds"] / base


def _label(rec: dict[str, Any], with_dtype: bool = False) -> str:
    if rec["T"] is None:
        name = rec["model"]
    elif rec["model"] == "masked-diffusion" and rec["T"] == rec["L"]:
        name = f"{rec['model']} T=L"
    else:
        name = f"{rec['model']} T={rec['T']}"
    return f"{name} {_dtype(rec)}" if with_dtype else name


def _pivot(records: list[dict[str, Any]], value: str, digits: int) -> str:
    lengths = sorted({r["L"] for r in records})
    with_dtype = len({_dtype(r) for r in records}) > 1
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        label = _label(r, with_dtype)
        row = rows.setdefault(label, {"model": label, "params": f"{r['params'] / 1e6:.1f}M"})
        v = r.get(value)
        row[f"L={r['L']}"] = v if not r["extrapolated"] else f"{fmt(v, digits)}*"
    columns = ["model", "params", *[f"L={n}" for n in lengths]]
    return markdown_table(list(rows.values()), columns, digits)


def _fastest(records: list[dict[str, Any]], model: str, steps: int | None) -> dict | None:
    """The record of ``(model, T)`` with the smallest time (over dtypes), or ``None``."""
    mine = [r for r in records if (r["model"], r["T"]) == (model, steps)]
    return min(mine, key=lambda r: r["seconds"]) if mine else None


def _ratio(slow: dict[str, Any], fast: dict[str, Any]) -> tuple[float, bool]:
    """``slow``'s time over ``fast``'s, through their paired reference ratios when both have
    them (then ``True``), else from their medians."""
    a, b = slow.get("time_vs_reference"), fast.get("time_vs_reference")
    if a and b:
        return a / b, bool(slow.get("reference_seconds") or fast.get("reference_seconds"))
    return slow["seconds"] / fast["seconds"], False


def goal_check(records: list[dict[str, Any]]) -> list[str]:
    """The CPU targets (paper presets, L = 512, batch 1): YAN-TRF T=3 vs GPT-2 at each dtype
    and each at its fastest, YAN-TRF's FLOP utilisation, masked diffusion at T = L."""
    pick = [r for r in records if r["preset"] == "paper" and r["L"] == 512 and r["batch"] == 1]
    lines = []
    yan, gpt2 = _fastest(pick, *REFERENCE), _fastest(pick, "gpt2", None)
    if yan and gpt2:
        ratio, paired = _ratio(gpt2, yan)
        yan_rate = yan["tokens_per_s"]
        if gpt2.get("reference_seconds") and _dtype(yan) == gpt2.get("reference_dtype"):
            # the reference runs paired with GPT-2's: both rates of the line, and their ratio,
            # then come from the same minutes of a shared machine
            yan_rate = yan["L"] * yan["batch"] / gpt2["reference_seconds"]
        lines.append(
            f"- YAN-TRF (T=3, {_dtype(yan)}) {yan_rate:.0f} tokens/s vs GPT-2 124M with KV "
            f"cache ({_dtype(gpt2)}) {gpt2['tokens_per_s']:.1f} tokens/s, each at its fastest "
            f"dtype: **{ratio:.1f}x**{' (paired runs)' if paired else ''} "
            f"(goal >= {GOAL_SPEEDUP:.0f}x)"
        )
        same = []
        for dtype in sorted({_dtype(r) for r in pick}):
            y = [r for r in pick if (r["model"], r["T"]) == REFERENCE and _dtype(r) == dtype]
            g = [r for r in pick if r["model"] == "gpt2" and _dtype(r) == dtype]
            if y and g:
                same.append(f"{dtype} {_ratio(g[0], y[0])[0]:.1f}x")
        if same:
            lines.append(f"- the same ratio with both models in one dtype: {', '.join(same)}")
    if yan and yan.get("frac_of_peak") is not None:
        bound = yan["peak_flops_per_s"] / (yan["flops"] / yan["L"])
        lines.append(
            f"- YAN-TRF (T=3, {_dtype(yan)}): {yan['flops'] / 1e9:.0f} GFLOP per sequence, "
            f"{yan['flops_per_s'] / 1e9:.0f} GFLOP/s achieved vs a measured {_dtype(yan)} "
            f"matmul peak of {yan['peak_flops_per_s'] / 1e9:.0f} GFLOP/s: "
            f"**{100 * yan['frac_of_peak']:.0f}%** of the FLOP-bound {bound:.0f} tokens/s "
            f"(goal >= {100 * GOAL_UTILISATION:.0f}%)"
        )
    diffusion = [r for r in pick if r["model"] == "masked-diffusion" and r["T"] == r["L"]]
    if yan and diffusion:
        md = min(diffusion, key=lambda r: r["seconds"])
        ratio, _ = _ratio(md, yan)
        mark = " (extrapolated from the measured per-step time)" if md["extrapolated"] else ""
        lines.append(
            f"- masked diffusion at T = L ({_dtype(md)}) vs YAN-TRF (T=3, {_dtype(yan)}): "
            f"**{ratio:,.0f}x** slower{mark} (goal >= {GOAL_DIFFUSION:,.0f}x)"
        )
    return lines


def _memory_table(group: list[dict[str, Any]]) -> str | None:
    known = [r for r in group if r.get("peak_mem_mb") is not None]
    if not known:
        return None
    rows = {}
    lengths = sorted({r["L"] for r in known})
    with_dtype = len({_dtype(r) for r in known}) > 1
    for r in known:
        if r["model"] == "masked-diffusion" and r["T"] == r["L"]:
            continue  # the same forward pass as its other T
        label = _label(r, with_dtype)
        row = rows.setdefault(label, {"model": label, "weights MB": r.get("weights_mb")})
        row[f"L={r['L']}"] = r["peak_mem_mb"]
    return markdown_table(
        list(rows.values()), ["model", "weights MB", *map("L={}".format, lengths)], 1
    )


def markdown_report(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The latency report: targets, tokens/s, time ratios and memory per preset and batch, MFU."""
    ref_dtype = meta.get("reference_dtype", "float32")
    out = [
        "# Inference latency and throughput\n",
        f"Device {meta['device']}, {meta['threads']} threads, torch {meta['torch']}; "
        f"1-minute load average {meta['load_start']} at the start and {meta['load_end']} at "
        "the end (the machine is shared).\n",
        "Oracle lengths, greedy decoding, source length = target length L, random weights; "
        "median over repeats after warm-up. `*` = extrapolated from the measured per-step "
        "time (masked diffusion at T = L). Time ratios pair every repeat with a YAN-TRF T=3 "
        f"run ({ref_dtype}) made right after it, so load changes on the machine cancel. "
        "Dtypes: the weights' (see `yan.precision`: YAN's flow state, the gate and the "
        "vocabulary argmax stay float32).\n",
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
                f"\nInference time relative to YAN-TRF T=3 {ref_dtype} (preset `{preset}`, "
                f"batch {batch}):\n"
            )
            out.append(_pivot(group, "time_vs_reference", 2))
        memory = _memory_table(group)
        if memory:
            out.append(
                f"\nPeak memory above the weights during one generation, MB (preset "
                f"`{preset}`, batch {batch}; {meta.get('memory_kind', 'peak RSS')}):\n"
            )
            out.append(memory)
        out.append("")
    util = [r for r in records if r.get("frac_of_peak") is not None]
    if util:
        rows = [
            {
                "model": _label(r, True),
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
        out.append(
            "## FLOP utilisation (FLOPs counted with FlopCounterMode; the peak is a square "
            "matmul in the record's dtype)\n"
        )
        out.append(markdown_table(rows, list(rows[0]), 1))
    return "\n".join(out)


def plot(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Tokens/s and time relative to YAN-TRF T=3 versus L, one pair of panels per preset."""
    ones = [r for r in records if r["batch"] == 1]
    presets = [p for p in PRESETS if any(r["preset"] == p for r in ones)]
    if not presets:
        return None
    with_dtype = len({_dtype(r) for r in ones}) > 1
    fig, axes = new_figure(2 * len(presets), width=4.8)
    for i, preset in enumerate(presets):
        group = [r for r in ones if r["preset"] == preset]
        series: dict[str, list[dict[str, Any]]] = {}
        for r in group:
            series.setdefault(_label(r, with_dtype), []).append(r)
        for label, rs in sorted(series.items()):
            rs = sorted(rs, key=lambda r: r["L"])
            ls = [r["L"] for r in rs]
            style = "-" if label.startswith("yan") else "--"
            width = 2.5 if label.startswith("yan-trf T=3") else 1.2
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
        axes[2 * i].legend(fontsize=6)
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


__all__ = [
    "GOAL_DIFFUSION",
    "GOAL_SPEEDUP",
    "GOAL_UTILISATION",
    "REFERENCE",
    "add_reference_ratios",
    "goal_check",
    "markdown_report",
    "plot",
    "write_outputs",
]
