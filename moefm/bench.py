"""2D benchmark: VFM vs OT-CFM vs MoE-FM across Euler steps (the paper's Fig. 2, measured).

``python -m moefm.bench [--quick] [--json PATH] [--figure PATH]`` trains every method with equal
steps and width on the grid and half-moons data, samples MoE-FM with each routing mode and
prints W2 per number of Euler steps T, straightness and training time (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from . import toy
from .metrics import mmd, mode_coverage, straightness, wasserstein2
from .sampling import sample
from .train import TrainConfig, train

STEPS = (1, 2, 3, 4, 8, 16, 32)


@dataclass
class BenchConfig:
    datasets: tuple[str, ...] = ("grid", "half-moons")
    seeds: int = 3
    train_steps: int = 3000
    n_train: int = 5000
    n_eval: int = 1000
    sigmas: tuple[float, ...] = (
        0.1,
        0.03,
        0.3,
        1.0,
    )  # first one is the paper's; others: frozen only
    routings: tuple[str, ...] = ("frozen", "resample", "mean")
    straight_steps: int = 64

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            seeds=2, train_steps=800, n_train=3000, n_eval=500, sigmas=(0.1,), straight_steps=32
        )


def _runs(cfg: BenchConfig) -> list[tuple[TrainConfig, tuple[str, ...]]]:
    """(training config, routing modes to evaluate) for one dataset and seed 0."""
    runs = [(TrainConfig(method="vfm"), ("none",)), (TrainConfig(method="ot-cfm"), ("none",))]
    for i, s in enumerate(cfg.sigmas):
        runs.append(
            (TrainConfig(method="moefm", K=6, sigma=s), cfg.routings if i == 0 else ("frozen",))
        )
    return runs


def evaluate(cfg: BenchConfig, progress: bool = True) -> tuple[list[dict], dict]:
    """Train and evaluate everything; one flat record per (dataset, method, sigma, routing, T, seed).

    Also returns the seed-0 models by ``(dataset, method, sigma)`` for the figure.
    """
    records: list[dict] = []
    models: dict[tuple, torch.nn.Module] = {}
    total = len(cfg.datasets) * cfg.seeds * len(_runs(cfg))
    done = 0
    for ds in cfg.datasets:
        mix = toy.mixture(ds)
        for seed in range(cfg.seeds):
            data = toy.make(ds, cfg.n_train, seed=seed)
            test = toy.make(ds, cfg.n_eval, seed=1000 + seed)
            z0 = torch.randn(cfg.n_eval, 2, generator=torch.Generator().manual_seed(2000 + seed))
            for tcfg, routings in _runs(cfg):
                tcfg = TrainConfig(**{**tcfg.to_dict(), "steps": cfg.train_steps, "seed": seed})
                res = train(data, tcfg)
                if seed == 0:
                    models[(ds, tcfg.method, tcfg.sigma)] = res.model
                done += 1
                if progress:
                    print(
                        f"[{done}/{total}] {ds} {tcfg.method} sigma={tcfg.sigma} seed={seed}: "
                        f"{res.seconds:.1f}s",
                        flush=True,
                    )
                for routing in routings:
                    mode = "frozen" if routing == "none" else routing
                    g = torch.Generator().manual_seed(seed)
                    with torch.no_grad():
                        s = straightness(
                            res.model, z0[:500], steps=cfg.straight_steps, routing=mode, generator=g
                        )
                        for T in STEPS:
                            x = sample(res.model, z0, T, routing=mode, generator=g).z1
                            rec = {
                                "dataset": ds,
                                "method": tcfg.method,
                                "K": tcfg.experts,
                                "sigma": tcfg.sigma if tcfg.method == "moefm" else None,
                                "routing": routing,
                                "steps": T,
                                "seed": seed,
                                "w2": wasserstein2(x, test),
                                "mmd": mmd(x, test),
                                "straightness": s.total,
                                "train_seconds": res.seconds,
                            }
                            if mix is not None:
                                ms = mode_coverage(x, mix.means, radius=3 * float(mix.stds.max()))
                                rec.update(coverage=ms.coverage, off_mode=ms.off_mode)
                            records.append(rec)
    return records, models


def aggregate(records: list[dict]) -> list[dict]:
    """Mean (and std of W2) over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["method"], r["sigma"], r["routing"], r["steps"])].append(r)
    out = []
    for key, rs in groups.items():
        agg = dict(zip(("dataset", "method", "sigma", "routing", "steps"), key))
        agg["K"] = rs[0]["K"]
        agg["seeds"] = len(rs)
        for f in ("w2", "mmd", "straightness", "train_seconds", "coverage", "off_mode"):
            if f in rs[0]:
                agg[f] = statistics.fmean(r[f] for r in rs)
        agg["w2_std"] = statistics.pstdev(r["w2"] for r in rs) if len(rs) > 1 else 0.0
        out.append(agg)
    return out


def _label(r: dict) -> str:
    if r["method"] != "moefm":
        return r["method"]
    return f"moefm s={r['sigma']:g} {r['routing']}"


def table(agg: list[dict]) -> str:
    """Markdown: W2 (mean over seeds) per T, then straightness, coverage at T=2, train time."""
    rows: dict[tuple[str, str], dict] = {}
    for r in agg:
        row = rows.setdefault((r["dataset"], _label(r)), {"seeds": r["seeds"]})
        row[r["steps"]] = r["w2"]
        row["S"], row["train"] = r["straightness"], r["train_seconds"]
        if r["steps"] == 2 and "coverage" in r:
            row["cov2"], row["off2"] = r["coverage"], r["off_mode"]
    head = [
        "dataset",
        "method",
        *[f"W2 T={T}" for T in STEPS],
        "straightness",
        "cov@2",
        "off@2",
        "train s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (ds, label), row in rows.items():
        cells = [
            ds,
            label,
            *[f"{row[T]:.3f}" for T in STEPS],
            f"{row['S']:.3f}",
            f"{row['cov2']:.2f}" if "cov2" in row else "-",
            f"{row['off2']:.2f}" if "off2" in row else "-",
            f"{row['train']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(cfg: BenchConfig, agg: list[dict], models: dict, path: Path, steps: int = 2) -> None:
    """Samples + expert-coloured trajectories at ``steps`` Euler steps (seed 0), and W2 vs T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import plot_trajectories

    methods = [("vfm", None), ("ot-cfm", None), ("moefm", cfg.sigmas[0])]
    fig, axes = plt.subplots(
        len(cfg.datasets),
        len(methods) + 1,
        figsize=(4 * (len(methods) + 1), 4 * len(cfg.datasets)),
        squeeze=False,
    )
    for i, ds in enumerate(cfg.datasets):
        data = toy.make(ds, cfg.n_train, seed=0)
        z0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(2000))
        for j, (method, sigma) in enumerate(methods):
            model = models[(ds, method, sigma or TrainConfig.sigma)]
            with torch.no_grad():
                out = sample(
                    model,
                    z0,
                    steps,
                    return_trajectory=True,
                    generator=torch.Generator().manual_seed(0),
                )
            ax = axes[i, j]
            ax.scatter(data[:2000, 0], data[:2000, 1], s=1, c="#dddddd")
            plot_trajectories(
                ax,
                out.trajectory,
                out.experts if method == "moefm" else None,
                title=f"{ds}: {method} (T={steps})",
            )
        ax = axes[i, -1]
        for label in sorted({_label(r) for r in agg if r["dataset"] == ds}):
            pts = sorted(
                (r["steps"], r["w2"]) for r in agg if r["dataset"] == ds and _label(r) == label
            )
            ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("Euler steps T")
        ax.set_ylabel("W2 to data")
        ax.set_title(f"{ds}: W2 vs T")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer seeds/steps, no sigma sweep (< 2 min)"
    )
    p.add_argument("--json", type=Path, help="write the flat per-seed and aggregated records here")
    p.add_argument("--figure", type=Path, help="write the Fig. 2-style PNG here")
    p.add_argument("--seeds", type=int, help="override the number of seeds")
    p.add_argument(
        "--datasets", nargs="+", choices=tuple(toy.DATASETS), help="override the data sets"
    )
    args = p.parse_args(argv)
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    if args.seeds:
        cfg.seeds = args.seeds
    if args.datasets:
        cfg.datasets = tuple(args.datasets)
    torch.set_num_threads(1)  # tiny MLPs: threads cost more than they give
    start = time.perf_counter()
    records, models = evaluate(cfg)
    agg = aggregate(records)
    print()
    print(table(agg))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(agg, indent=1))
        args.json.with_suffix(".per_seed.json").write_text(json.dumps(records, indent=1))
        print(f"\nwrote {args.json}")
    if args.figure:
        figure(cfg, agg, models, args.figure)
        print(f"wrote {args.figure}")
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
