"""The paper's Fig. 2: VFM vs MoE-FM (and OT-CFM) on grid and half-moons data.

For each data set and method one flow is trained; samples drawn with T = 1, 2, 4, 8 Euler steps
(frozen routing for MoE-FM, sec. 3.2) sit side by side with the learned trajectories, coloured
by the expert that drove them. The table scores each panel: exact W2 to held-out data (with the
W2 of a second data sample as the floor), mode coverage, the share of samples off every mode,
and the straightness of the learned flow.

Run ``python -m labs.figure2 --out DIR [--quick]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from moefm import sample
from moefm.train import METHODS, TrainResult

from .common import (
    FULL,
    METHOD_LABELS,
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
from .plots import sample_panel, trajectory_panel

COLUMNS = ("dataset", "method", "T", "w2", "w2_floor", "coverage", "off_mode", "straightness")
LIMITS = {"grid": 3.2, "half-moons": 3.0, "8-gaussians": 3.2}


@dataclass(frozen=True)
class Figure2Config:
    """What Fig. 2 trains and shows; K and sigma default to the paper's 6 and 0.1."""

    datasets: tuple[str, ...] = ("grid", "half-moons")
    methods: tuple[str, ...] = ("vfm", "ot-cfm", "moefm")
    steps: tuple[int, ...] = (1, 2, 4, 8)
    trajectory_steps: int = 32
    K: int = 6
    sigma: float = 0.1
    seed: int = 0
    budget: Budget = FULL

    def __post_init__(self) -> None:
        check_axes(self.datasets, "method", self.methods, METHODS, self.steps)


def configure(quick: bool, seed: int) -> Figure2Config:
    return Figure2Config(seed=seed, budget=QUICK if quick else FULL)


Models = dict[tuple[str, str], TrainResult]


def train_models(cfg: Figure2Config) -> Models:
    """One trained flow per (data set, method)."""
    return {
        (d, m): train_flow(d, m, cfg.budget, K=cfg.K, sigma=cfg.sigma, seed=cfg.seed)
        for d in cfg.datasets
        for m in cfg.methods
    }


def score(
    models: Models, cfg: Figure2Config, refs: dict[str, Reference] | None = None
) -> list[dict]:
    """The table: one row per (data set, method, T)."""
    refs = refs or {d: reference(d, cfg.budget.n_eval, cfg.seed) for d in cfg.datasets}
    rows = []
    for (d, m), result in models.items():
        scores, s = evaluate(result.model, refs[d], cfg.steps, cfg.budget, seed=cfg.seed)
        for sc in scores:
            rows.append(
                {
                    "dataset": d,
                    "method": m,
                    "T": sc.T,
                    "w2": sc.w2,
                    "w2_floor": refs[d].w2_floor,
                    "coverage": sc.coverage,
                    "off_mode": sc.off_mode,
                    "straightness": s.total,
                }
            )
    return rows


def draw(
    models: Models,
    cfg: Figure2Config,
    refs: dict[str, Reference] | None = None,
    rows: Sequence[dict] | None = None,
) -> Figure:
    """Samples at every T and trajectories, one row per (data set, method).

    The panels use the same noise as :func:`score`, so a panel's W2 in the title is the table's.
    """
    refs = refs or {d: reference(d, cfg.budget.n_eval, cfg.seed) for d in cfg.datasets}
    w2 = {(r["dataset"], r["method"], r["T"]): r["w2"] for r in rows or ()}
    ncols = len(cfg.steps) + 1
    nrows = len(cfg.datasets) * len(cfg.methods)
    fig = Figure(figsize=(2.3 * ncols, 2.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    z0 = eval_noise(cfg.budget, cfg.seed)  # the noise of common.evaluate: same samples
    n_show = min(len(z0), 1000)
    for i, ((d, m), result) in enumerate(models.items()):
        lim = LIMITS.get(d, 3.5)
        with torch.inference_mode():
            for j, T in enumerate(cfg.steps):
                out = sample(result.model, z0, T, generator=route_generator(cfg.seed))
                title = f"T = {T}" + (f"   W2 {w2[d, m, T]:.2f}" if (d, m, T) in w2 else "")
                sample_panel(
                    axes[i, j],
                    out.z1[:n_show],
                    refs[d].data[:n_show],
                    title=f"{METHOD_LABELS[m]}, {title}",
                    label=METHOD_LABELS[m],
                    lim=lim,
                    legend=j == 0,
                )
            traj = sample(
                result.model,
                z0[:200],
                cfg.trajectory_steps,
                generator=route_generator(cfg.seed),
                return_trajectory=True,
            )
        experts = traj.experts if result.model.K > 1 else None
        trajectory_panel(
            axes[i, -1],
            traj.trajectory,
            experts,
            title=f"{METHOD_LABELS[m]} trajectories (T = {cfg.trajectory_steps})",
            lim=lim,
        )
        axes[i, 0].set_ylabel(f"{d}\n{METHOD_LABELS[m]}", fontsize=10)
    fig.suptitle(
        "VFM vs OT-CFM vs MoE-FM (frozen routing): samples with T Euler steps against held-out "
        "data (grey), and learned trajectories"
    )
    return fig


def run(cfg: Figure2Config) -> FigureResult:
    """Train, score and draw Fig. 2."""
    refs = {d: reference(d, cfg.budget.n_eval, cfg.seed) for d in cfg.datasets}
    models = train_models(cfg)
    rows = score(models, cfg, refs)
    return FigureResult(draw(models, cfg, refs, rows), rows, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    return figure_main("figure2", __doc__.splitlines()[0], configure, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
