"""``yan bench [latency|quality|isotropy|learn|all] [options]``: run benchmarks, write reports.

Everything goes to ``--out`` (default ``reports/``): flat JSON records, a markdown report and
PNG figures per part. ``--quick`` is a few-minute version of each part; quality and isotropy
then train their models to small budgets of their own in ``outputs/bench-quick`` and say so in
their reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from yan.bench.latency import LENGTHS, TINY_LENGTHS, LatencyConfig, latency_main
from yan.bench.workloads import MODELS, PRESETS
from yan.cli import exit_with_error
from yan.precision import ALIASES, DTYPES

MODES = ("latency", "quality", "isotropy", "learn", "all")
# `all` is the three parts of a few minutes each (with --quick 530 s together on a 2-core CPU:
# latency 325 s, quality 131 s, isotropy 72 s); `learn` trains eight models to equal budgets
# (~25 minutes even with --quick) and is run on its own
ALL = ("latency", "quality", "isotropy")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yan bench",
        description="Benchmarks of YAN vs GPT-2, BART and masked diffusion: latency and "
        "tokens/s vs length (Fig. 4 bottom), quality vs Euler steps and quality-diversity "
        "(Fig. 4 top, 5, 6), latent isotropy under the stage-1 regularisers (Fig. 3), and "
        "whether YAN learns: copy / infill / last-word / classify against equal-budget "
        "baselines and trivial references (learn).",
    )
    p.add_argument(
        "mode",
        nargs="?",
        choices=MODES,
        default="latency",
        help=f"part to run; all = {', '.join(ALL)} (learn runs on its own)",
    )
    p.add_argument("--quick", action="store_true", help="a few minutes per part on a CPU")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder")
    p.add_argument(
        "--json", type=Path, help="latency or learn records (default OUT/latency.json, learn.json)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--models", nargs="+", choices=MODELS, help="latency: models to time")
    p.add_argument("--presets", nargs="+", choices=PRESETS, help="latency: size presets")
    p.add_argument("--lengths", nargs="+", type=int, help="latency: target lengths L")
    p.add_argument("--steps", nargs="+", type=int, help="latency/quality: Euler steps T")
    p.add_argument("--batch-sizes", nargs="+", type=int, help="latency: batch sizes")
    p.add_argument("--repeats", type=int, help="latency: timed repeats (median reported)")
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=(*DTYPES, *ALIASES),
        help="latency: weight dtypes to time every model in (default: float32, and bfloat16 "
        "where the device runs it natively)",
    )
    p.add_argument("--no-flops", action="store_true", help="latency: skip FLOP counting")
    p.add_argument("--peak-size", type=int, help="latency: side of the peak-measuring matmul")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="quality: a trained YAN infilling checkpoint (default: outputs/yan-demo/stage2 "
        "if present, else one is trained)",
    )
    p.add_argument("--work", type=Path, help="quality/isotropy/learn: folder for trained models")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="learn: a YANConfig field for every YAN run (an ablation, e.g. "
        "expert_assignment=cluster; use another --work); repeatable",
    )
    return p


def latency_config(ns: argparse.Namespace) -> LatencyConfig:
    """The :class:`LatencyConfig` for the command-line options.

    An option given is used as given (``--repeats 0`` is an error, not the default).
    """
    if ns.repeats is not None and ns.repeats < 1:
        raise ValueError(f"--repeats must be an integer >= 1, got {ns.repeats}")
    base = LatencyConfig.quick() if ns.quick else LatencyConfig()
    lengths = dict(base.lengths)
    if ns.presets:
        default = {"tiny": TINY_LENGTHS}
        lengths = {p: base.lengths.get(p, default.get(p, LENGTHS)) for p in ns.presets}
    if ns.lengths:
        lengths = {p: tuple(ns.lengths) for p in lengths}
    fields = dict(
        models=tuple(ns.models) if ns.models else base.models,
        lengths=lengths,
        steps=tuple(ns.steps) if ns.steps else base.steps,
        batch_sizes=tuple(ns.batch_sizes) if ns.batch_sizes else base.batch_sizes,
        repeats=base.repeats if ns.repeats is None else ns.repeats,
        count_flops=not ns.no_flops,
        peak_size=ns.peak_size,
        device=ns.device,
        # None: the dtypes native on the chosen device, which --device may have changed
        dtypes=tuple(ns.dtypes) if ns.dtypes else None,
        reference_dtype=None,  # follows the timed dtypes again
    )
    if ns.lengths:  # batched runs at the requested lengths too
        fields["batch_lengths"] = tuple(ns.lengths)
    if ns.steps:  # the same T for YAN and masked diffusion, batched runs included
        fields["batch_steps"] = tuple(ns.steps)
        fields["diffusion_steps"] = None
    return dataclasses.replace(base, **fields)


def run(ns: argparse.Namespace) -> dict[str, dict[str, Path]]:
    """Run the chosen part(s); returns the written files per part."""
    if ns.threads is not None:
        if ns.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {ns.threads}")
        torch.set_num_threads(ns.threads)
    written: dict[str, dict[str, Path]] = {}

    def wanted(part: str) -> bool:
        return ns.mode == part or (ns.mode == "all" and part in ALL)

    if wanted("latency"):
        written["latency"] = latency_main(latency_config(ns), ns.out, ns.json)
    if wanted("quality"):
        from yan.bench.quality import QualityConfig, quality_main

        qcfg = QualityConfig.quick() if ns.quick else QualityConfig()
        qcfg = qcfg.with_options(
            steps=ns.steps, checkpoint=ns.checkpoint, work=ns.work, device=ns.device
        )
        written["quality"] = quality_main(qcfg, ns.out)
    if wanted("learn"):
        from yan.bench.learn import LearnConfig, learn_main

        lcfg = LearnConfig.quick() if ns.quick else LearnConfig()
        if ns.work is not None:
            lcfg.work = ns.work
        if ns.device is not None:
            lcfg.device = ns.device
        if ns.overrides:
            from yan.config import parse_override

            lcfg.overrides = {**lcfg.overrides, **dict(map(parse_override, ns.overrides))}
        json_path = ns.json if ns.mode == "learn" else None
        written["learn"] = learn_main(lcfg, ns.out, json_path)
    if wanted("isotropy"):
        from yan.bench.isotropy import IsotropyConfig, isotropy_main

        icfg = IsotropyConfig.quick() if ns.quick else IsotropyConfig()
        icfg = icfg.with_options(work=ns.work, device=ns.device)
        written["isotropy"] = isotropy_main(icfg, ns.out)
    return written


def main(argv: list[str] | None = None) -> dict[str, dict[str, Path]]:
    """Entry point of ``yan bench`` and ``python -m yan.bench``."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(ns)
    except (ValueError, FileNotFoundError) as err:
        exit_with_error(parser.prog, err)


__all__ = ["MODES", "build_parser", "latency_config", "main", "run"]
