"""2D benchmark: VFM vs OT-CFM vs MoE-FM across Euler steps (the paper's Fig. 2, measured).

``python -m moefm.bench [--quick] [--json PATH] [--figure PATH]`` trains every method with equal
steps and width on the grid, half-moons, 8-gaussians and checkerboard data, samples MoE-FM with
each routing mode and prints W2 per number of Euler steps T, straightness and training time
(mean over seeds). Besides the paper's MoE-FM it trains the path-consistent variants
``moefm-cluster`` and ``moefm-cluster-ot`` (:mod:`moefm.clusters`), which keep frozen routing
exact as T grows.
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
from .tables import markdown_table
from .theory import GaussianMixture
from .train import TrainConfig, train

STEPS = (1, 2, 3, 4, 8, 16, 32)


@dataclass
class BenchConfig:
    datasets: tuple[str, ...] = ("grid", "half-moons", "8-gaussians", "checkerboard")
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
    # path-consistent MoE-FM: one expert per k-means cluster; more clusters than modes make
    # each cluster's flow straighter (see the K sweep in the README)
    cluster_K: int = 16
    cluster_routings: tuple[str, ...] = ("frozen", "mean")
    # `--k-sweep`: instead of the comparison, paper MoE-FM (first sigma) and moefm-cluster
    # with frozen routing at each of these numbers of experts
    k_sweep: tuple[int, ...] = ()

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            datasets=("grid", "half-moons"),
            seeds=2,
            train_steps=800,
            n_train=3000,
            n_eval=500,
            sigmas=(0.1,),
            straight_steps=32,
        )


def _runs(cfg: BenchConfig) -> list[tuple[TrainConfig, tuple[str, ...]]]:
    """(training config, routing modes to evaluate) for one dataset and seed 0."""
    if cfg.k_sweep:
        return [
            (TrainConfig(method=method, K=K, sigma=cfg.sigmas[0]), ("frozen",))
            for K in cfg.k_sweep
            for method in ("moefm", "moefm-cluster")
        ]
    runs = [(TrainConfig(method="vfm"), ("none",)), (TrainConfig(method="ot-cfm"), ("none",))]
    for i, s in enumerate(cfg.sigmas):
        runs.append(
            (TrainConfig(method="moefm", K=6, sigma=s), cfg.routings if i == 0 else ("frozen",))
        )
    for method in ("moefm-cluster", "moefm-cluster-ot"):
        runs.append((TrainConfig(method=method, K=cfg.cluster_K), cfg.cluster_routings))
    return runs


def _diverged(rec: dict, reason: str) -> dict:
    """A record of a run that produced no finite samples: no metric, the reason instead."""
    return {**rec, "diverged": True, "reason": reason, "w2": None, "mmd": None}


def evaluate(cfg: BenchConfig, progress: bool = True) -> tuple[list[dict], dict]:
    """Train and evaluate everything; one flat record per (dataset, method, sigma, routing, T, seed).

    A run whose training diverges, or whose samples at some T hold NaN or inf, is recorded with
    ``diverged: True`` and a ``reason`` instead of metrics (W2 of NaN samples would otherwise
    read 0, a perfect score); every other record has ``diverged: False``. Also returns the
    seed-0 models by ``(dataset, method, sigma)`` for the figure (diverged trainings have none).
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
                try:
                    res, failed = train(data, tcfg), None
                except FloatingPointError as err:  # the loss became NaN/inf
                    res, failed = None, str(err)
                if seed == 0 and res is not None:
                    models[(ds, tcfg.method, tcfg.sigma)] = res.model
                done += 1
                if progress:
                    status = f"{res.seconds:.1f}s" if res is not None else str(failed)
                    print(
                        f"[{done}/{total}] {ds} {tcfg.method} sigma={tcfg.sigma} seed={seed}: "
                        f"{status}",
                        flush=True,
                    )
                for routing in routings:
                    base = {
                        "dataset": ds,
                        "method": tcfg.method,
                        "K": tcfg.experts,
                        "sigma": tcfg.sigma if tcfg.method == "moefm" else None,
                        "routing": routing,
                        "seed": seed,
                        "train_seconds": res.seconds if res is not None else None,
                    }
                    if res is None:
                        records += [_diverged({**base, "steps": T}, str(failed)) for T in STEPS]
                        continue
                    records += _evaluate_run(cfg, res.model, routing, base, z0, test, mix)
    return records, models


def _evaluate_run(
    cfg: BenchConfig,
    model: torch.nn.Module,
    routing: str,
    base: dict,
    z0: torch.Tensor,
    test: torch.Tensor,
    mix: GaussianMixture | None,
) -> list[dict]:
    """The records of one trained model and routing mode, one per number of steps T."""
    mode = "frozen" if routing == "none" else routing
    g = torch.Generator().manual_seed(base["seed"])
    out: list[dict] = []
    with torch.no_grad():
        try:
            straight: float | None = straightness(
                model, z0[:500], steps=cfg.straight_steps, routing=mode, generator=g
            ).total
        except FloatingPointError:  # the fine-step ODE diverged; the T-step samples may not
            straight = None
        for T in STEPS:
            rec = {**base, "steps": T}
            x = sample(model, z0, T, routing=mode, generator=g).z1
            if not torch.isfinite(x).all():
                bad = int((~torch.isfinite(x)).any(-1).sum())
                out.append(_diverged(rec, f"{bad} of {len(x)} samples at T={T} hold NaN or inf"))
                continue
            rec.update(
                diverged=False, w2=wasserstein2(x, test), mmd=mmd(x, test), straightness=straight
            )
            if mix is not None:
                ms = mode_coverage(x, mix.means, radius=3 * float(mix.stds.max()))
                rec.update(coverage=ms.coverage, off_mode=ms.off_mode)
            out.append(rec)
    return out


def aggregate(records: list[dict]) -> list[dict]:
    """Mean (and std of W2) over the seeds that did not diverge; ``diverged`` counts the others.

    A metric no seed has a finite value for is ``None``, never a number.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["method"], r["K"], r["sigma"], r["routing"], r["steps"])].append(r)
    out = []
    for key, rs in groups.items():
        agg = dict(zip(("dataset", "method", "K", "sigma", "routing", "steps"), key))
        agg["seeds"] = len(rs)
        ok = [r for r in rs if not r.get("diverged")]
        agg["diverged"] = len(rs) - len(ok)
        for f in ("w2", "mmd", "straightness", "train_seconds", "coverage", "off_mode"):
            # a training that finished took its time even when its samples diverged
            values = [r[f] for r in (rs if f == "train_seconds" else ok) if r.get(f) is not None]
            if values or any(f in r for r in rs):
                agg[f] = statistics.fmean(values) if values else None
        w2 = [r["w2"] for r in ok]
        agg["w2_std"] = statistics.pstdev(w2) if len(w2) > 1 else (0.0 if w2 else None)
        out.append(agg)
    return out


def _label(r: dict) -> str:
    if r["method"] == "moefm":
        return f"moefm K={r['K']} s={r['sigma']:g} {r['routing']}"
    if r["method"].startswith("moefm"):
        return f"{r['method']} K={r['K']} {r['routing']}"
    return r["method"]


def _cell(value: float | None, spec: str, partial: bool = False) -> str:
    if value is None:
        return "diverged"
    return f"{value:{spec}}" + ("*" if partial else "")


def table(agg: list[dict]) -> str:
    """Markdown: W2 (mean over seeds) per T, then straightness, coverage at T=2, train time.

    A cell reads ``diverged`` when no seed gave finite samples, and carries a ``*`` when some
    seeds diverged and the mean is over the others.
    """
    rows: dict[tuple[str, str], dict] = {}
    for r in agg:
        row = rows.setdefault((r["dataset"], _label(r)), {"seeds": r["seeds"]})
        partial = 0 < r.get("diverged", 0) < r["seeds"]
        row[r["steps"]] = (r["w2"], partial)
        row["partial"] = row.get("partial", False) or partial
        row["S"], row["train"] = r.get("straightness"), r.get("train_seconds")
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
    body = [
        [
            ds,
            label,
            *[_cell(row[T][0], ".3f", row[T][1]) if T in row else "-" for T in STEPS],
            _cell(row["S"], ".3f"),
            _cell(row["cov2"], ".2f") if "cov2" in row else "-",
            _cell(row["off2"], ".2f") if "off2" in row else "-",
            _cell(row["train"], ".1f"),
        ]
        for (ds, label), row in rows.items()
    ]
    text = markdown_table(head, body)
    if any(row["partial"] for row in rows.values()):
        text += "\n\n`*` some seeds diverged; the mean is over the others."
    return text


def figure(cfg: BenchConfig, agg: list[dict], models: dict, path: Path, steps: int = 2) -> None:
    """Samples + expert-coloured trajectories at ``steps`` Euler steps (seed 0), and W2 vs T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import plot_trajectories

    methods = [
        ("vfm", None),
        ("ot-cfm", None),
        ("moefm", cfg.sigmas[0]),
        ("moefm-cluster", None),
    ]
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
            ax = axes[i, j]
            model = models.get((ds, method, sigma or TrainConfig.sigma))
            if model is None:  # seed 0 diverged in training
                ax.set_title(f"{ds}: {method} (training diverged)")
                continue
            with torch.no_grad():
                out = sample(
                    model,
                    z0,
                    steps,
                    return_trajectory=True,
                    generator=torch.Generator().manual_seed(0),
                )
            ax.scatter(data[:2000, 0], data[:2000, 1], s=1, c="#dddddd")
            plot_trajectories(
                ax,
                out.trajectory,
                out.experts if method.startswith("moefm") else None,
                title=f"{ds}: {method} (T={steps})",
            )
        ax = axes[i, -1]
        for label in sorted({_label(r) for r in agg if r["dataset"] == ds}):
            pts = sorted(
                (r["steps"], r["w2"])
                for r in agg
                if r["dataset"] == ds and _label(r) == label and r["w2"] is not None
            )
            if pts:  # a run that diverged at every T has no line
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
        "--k-sweep",
        type=int,
        nargs="+",
        metavar="K",
        help="train paper MoE-FM and moefm-cluster (frozen routing) at each K instead",
    )
    p.add_argument(
        "--datasets", nargs="+", choices=tuple(toy.DATASETS), help="override the data sets"
    )
    args = p.parse_args(argv)
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    if args.seeds:
        cfg.seeds = args.seeds
    if args.datasets:
        cfg.datasets = tuple(args.datasets)
    if args.k_sweep:
        cfg.k_sweep = tuple(args.k_sweep)
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
