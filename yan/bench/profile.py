"""Where one generation spends its time: ``python -m yan.bench.profile [--dtype bfloat16]``.

Builds a benchmark model (:func:`yan.bench.workloads.build_generator`: random weights, oracle
length, greedy decoding), warms it up once, and prints the operators of one generation by
self time (``torch.profiler``), with their share of the total. ``docs/speed.md`` reads it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from yan.bench.report import markdown_table
from yan.bench.timing import resolve_device
from yan.bench.workloads import MODELS, PRESETS, build_generator, random_source
from yan.precision import ALIASES, DTYPES


def profile_generation(
    model: str = "yan-trf",
    preset: str = "paper",
    length: int = 512,
    steps: int | None = 3,
    dtype: str = "float32",
    device: str | None = None,
    rows: int = 12,
) -> list[dict[str, Any]]:
    """The ``rows`` operators of one generation with the most self time, plus the rest."""
    dev = resolve_device(device)
    gen = build_generator(model, preset, max_len=length, device=dev, dtype=dtype)
    src, mask = random_source(gen, 1, length, dev)
    with torch.inference_mode():
        gen.generate(src, mask, length, steps)  # warm-up: allocator, kernel choice
        activities = [ProfilerActivity.CPU]
        if dev.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            gen.generate(src, mask, length, steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / 1e3  # ms
    out = [
        {
            "operator": e.key,
            "calls": e.count,
            "self ms": e.self_cpu_time_total / 1e3,
            "share %": 100 * e.self_cpu_time_total / 1e3 / total,
        }
        for e in events[:rows]
    ]
    rest = total - sum(r["self ms"] for r in out)
    out.append(
        {"operator": "(all others)", "calls": None, "self ms": rest, "share %": 100 * rest / total}
    )
    out.append({"operator": "total", "calls": None, "self ms": total, "share %": 100.0})
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(
        prog="python -m yan.bench.profile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", choices=MODELS, default="yan-trf")
    p.add_argument("--preset", choices=PRESETS, default="paper")
    p.add_argument("--length", type=int, default=512, help="source and target length L")
    p.add_argument("--steps", type=int, default=3, help="Euler / denoising steps T")
    p.add_argument("--dtype", choices=(*DTYPES, *ALIASES), default="float32")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(ns.threads)
    rows = profile_generation(ns.model, ns.preset, ns.length, ns.steps, ns.dtype, ns.device)
    print(
        f"{ns.model} ({ns.preset}), L={ns.length}, T={ns.steps}, {ns.dtype}, {ns.threads} thread(s)\n"
    )
    print(markdown_table(rows, list(rows[0]), 1))
    return rows


if __name__ == "__main__":
    main()
