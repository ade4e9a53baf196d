"""Routing at sampling time: frozen vs re-sampled vs mixture-mean (sec. 3.2).

One MoE-FM model per data set is sampled three ways (:mod:`moefm.sampling`):

- ``frozen`` (the paper's): draw ``e ~ Cat(pi(z0, 0))`` once and integrate ``u_e`` only;
- ``resample``: draw a new expert from ``pi(z_t, t)`` at every Euler step;
- ``mean``: follow the mixture mean ``sum_k pi_k u_k``. At the optimum of Thm 3.2 this *is*
  the VFM optimum ``E[z1 - z0 | z_t, t]`` (sum the fixed-point equations over k), so it inherits
  VFM's averaged directions and curved paths.

The table gives W2, mode coverage and off-mode share per routing and T, and the straightness of
each sampler's own flow; for frozen routing also the worst expert's straightness (the figure
shows every expert).

Run ``python -m labs.routing --out DIR [--quick]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from moefm import sample
from moefm.metrics import Straightness
from moefm.plot import expert_color
from moefm.sampling import ROUTINGS
from moefm.train import TrainResult

from .common import (
    FULL,
    QUICK,
    Budget,
    FigureResult,
    Reference,
    check_axes,
    eval_noise,
    evaluate,
    figure_main,
    reference,
    route_generator,
    train_flow,
)
from .plots import trajectory_panel

COLUMNS = (
    "dataset",
    "routing",
    "T",
    "w2",
    "w2_floor",
    "coverage",
    "off_mode",
    "straightness",
    "straightness_worst_expert",
)
LIMITS = {"grid": 3.2, "half-moons": 3.0, "8-gaussians": 3.2}


@dataclass(frozen=True)
class RoutingConfig:
    """Data sets, routings and step counts; K and sigma default to the paper's 6 and 0.1."""

    datasets: tuple[str, ...] = ("grid", "half-moons")
    routings: tuple[str, ...] = ("frozen", "resample", "mean")
    steps: tuple[int, ...] = (1, 2, 4, 8)
    trajectory_steps: int = 32
    K: int = 6
    sigma: float = 0.1
    seed: int = 0
    budget: Budget = FULL

    def __post_init__(self) -> None:
        check_axes(self.datasets, "routing", self.routings, ROUTINGS, self.steps)
        if self.K < 2:
            raise ValueError(f"routing needs K >= 2 experts, got K={self.K}")


def configure(quick: bool, seed: int) -> RoutingConfig:
    return RoutingConfig(seed=seed, budget=QUICK if quick else FULL)


def train_models(cfg: RoutingConfig) -> dict[str, TrainResult]:
    """One MoE-FM model per data set."""
    return {
        d: train_flow(d, "moefm", cfg.budget, K=cfg.K, sigma=cfg.sigma, seed=cfg.seed)
        for d in cfg.datasets
    }


def score(
    models: dict[str, TrainResult], cfg: RoutingConfig, refs: dict[str, Reference]
) -> tuple[list[dict], dict[tuple[str, str], Straightness]]:
    """The table, and the straightness (with per-expert values) of every (data set, routing)."""
    rows, straight = [], {}
    for d, result in models.items():
        for r in cfg.routings:
            scores, s = evaluate(
                result.model, refs[d], cfg.steps, cfg.budget, routing=r, seed=cfg.seed
            )
            straight[d, r] = s
            worst = max(s.per_expert.values()) if s.per_expert else math.nan
            for sc in scores:
                rows.append(
                    {
                        "dataset": d,
                        "routing": r,
                        "T": sc.T,
                        "w2": sc.w2,
                        "w2_floor": refs[d].w2_floor,
                        "coverage": sc.coverage,
                        "off_mode": sc.off_mode,
                        "straightness": s.total,
                        "straightness_worst_expert": worst,
                    }
                )
    return rows, straight


def draw(
    models: dict[str, TrainResult],
    cfg: RoutingConfig,
    rows: Sequence[dict],
    straight: dict[tuple[str, str], Straightness],
) -> Figure:
    """Per data set: trajectories under each routing, W2 against T, and straightness."""
    ncols = len(cfg.routings) + 2
    fig = Figure(figsize=(2.6 * ncols, 2.7 * len(cfg.datasets)), layout="constrained")
    axes = fig.subplots(len(cfg.datasets), ncols, squeeze=False)
    z0 = eval_noise(cfg.budget, cfg.seed)[:200]
    for i, d in enumerate(cfg.datasets):
        model = models[d].model
        for j, r in enumerate(cfg.routings):
            with torch.inference_mode():
                out = sample(
                    model,
                    z0,
                    cfg.trajectory_steps,
                    routing=r,
                    generator=route_generator(cfg.seed),
                    return_trajectory=True,
                )
            label = f"{r} routing: S = {straight[d, r].total:.2f}"
            trajectory_panel(
                axes[i, j],
                out.trajectory,
                out.experts,
                title=label,
                lim=LIMITS.get(d, 3.5),
                legend=j == 0,
            )
        axes[i, 0].set_ylabel(d, fontsize=10)

        ax = axes[i, -2]
        for r in cfg.routings:
            sel = [row for row in rows if row["dataset"] == d and row["routing"] == r]
            ax.plot([row["T"] for row in sel], [row["w2"] for row in sel], marker="o", label=r)
        ax.axhline(sel[0]["w2_floor"], c="#999999", ls="--", lw=1, label="data floor")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("Euler steps T")
        ax.set_ylabel("exact W2 (lower is better)")
        ax.set_title("W2 to held-out data vs T", fontsize=9)
        ax.legend(fontsize=6)

        ax = axes[i, -1]
        for j, r in enumerate(cfg.routings):
            s = straight[d, r]
            ax.bar(j, s.total, color="#bbbbbb")
            for k, v in s.per_expert.items():
                ax.plot(j, v, marker="o", ms=5, ls="none", c=expert_color(k))
        ax.set_xticks(range(len(cfg.routings)), cfg.routings, fontsize=8)
        ax.set_title("straightness S (dots: frozen experts)", fontsize=9)
    fig.suptitle(f"Routing at sampling time (MoE-FM, K = {cfg.K}, sigma = {cfg.sigma})")
    return fig


def run(cfg: RoutingConfig) -> FigureResult:
    refs = {d: reference(d, cfg.budget.n_eval, cfg.seed) for d in cfg.datasets}
    models = train_models(cfg)
    rows, straight = score(models, cfg, refs)
    return FigureResult(draw(models, cfg, rows, straight), rows, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    return figure_main("routing", __doc__.splitlines()[0], configure, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
