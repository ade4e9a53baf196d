"""Why one vector field blurs modes: the *exact* VFM optimum on a grid of Gaussians (Prop. 3.1).

No network is trained. The minimiser of eq. (2), ``E[z1 - z0 | z_t, t]``, is known in closed
form for Gaussian-mixture data (:mod:`moefm.theory`); integrating it with T Euler steps shows
what even a perfectly trained VFM model does: at few steps its samples land between the modes,
because early on the field averages the directions towards all of them, and its trajectories
are curved. The table scores each T (exact W2, mode coverage, share of samples off every mode)
and gives the straightness of the exact flow.

Run ``python -m labs.vfm_blur --out DIR [--quick]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from moefm import sample, toy
from moefm.plot import grid_points

from .common import (
    FULL,
    QUICK,
    Budget,
    ExactVFMField,
    FigureResult,
    Reference,
    eval_noise,
    evaluate,
    figure_main,
    reference,
)
from .plots import field_panel, sample_panel, shared_quiver_scale, trajectory_panel

COLUMNS = ("dataset", "T", "w2", "w2_floor", "coverage", "off_mode", "straightness")


@dataclass(frozen=True)
class BlurConfig:
    """Which mixture, which step counts, and the times at which the field is drawn."""

    dataset: str = "grid"
    steps: tuple[int, ...] = (1, 2, 4, 8, 32)
    field_times: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9)
    seed: int = 0
    budget: Budget = FULL

    def __post_init__(self) -> None:
        if toy.mixture(self.dataset) is None:
            raise ValueError(
                f"dataset {self.dataset!r} has no closed-form optimum; use 'grid' or '8-gaussians'"
            )
        if not self.steps or any(not isinstance(T, int) or T < 1 for T in self.steps):
            raise ValueError(f"steps must be integers >= 1, got {self.steps}")
        if any(not 0.0 <= t < 1.0 for t in self.field_times):
            raise ValueError(f"field_times must lie in [0, 1), got {self.field_times}")


def configure(quick: bool, seed: int) -> BlurConfig:
    return BlurConfig(seed=seed, budget=QUICK if quick else FULL)


def score(field: ExactVFMField, cfg: BlurConfig, ref: Reference) -> list[dict]:
    scores, s = evaluate(field, ref, cfg.steps, cfg.budget, seed=cfg.seed)
    return [
        {
            "dataset": cfg.dataset,
            "T": sc.T,
            "w2": sc.w2,
            "w2_floor": ref.w2_floor,
            "coverage": sc.coverage,
            "off_mode": sc.off_mode,
            "straightness": s.total,
        }
        for sc in scores
    ]


def draw(
    field: ExactVFMField, cfg: BlurConfig, ref: Reference, rows: Sequence[dict] = ()
) -> Figure:
    """Top: samples of the exact optimum at each T. Bottom: the field at several times and
    the exact (fine-step) trajectories."""
    ncols = max(len(cfg.steps), len(cfg.field_times) + 1)
    fig = Figure(figsize=(2.4 * ncols, 5.0), layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    w2 = {r["T"]: r["w2"] for r in rows}
    z0 = eval_noise(cfg.budget, cfg.seed)
    with torch.inference_mode():
        for j, T in enumerate(cfg.steps):
            out = sample(field, z0, T)
            title = f"T = {T}" + (f"   W2 {w2[T]:.2f}" if T in w2 else "")
            axes[0, j].set_visible(True)
            sample_panel(
                axes[0, j],
                out.z1[:1000],
                ref.data[:1000],
                title=title,
                label=f"exact VFM, T = {T}",
                legend=j == 0,
            )
        pts, _, _ = grid_points(3.0, 15)
        fields = [field.field(field.features(pts, torch.tensor(t)), None) for t in cfg.field_times]
        scale = shared_quiver_scale(fields, spacing=6.0 / 14)  # arrow lengths compare across t
        for j, (t, v) in enumerate(zip(cfg.field_times, fields)):
            axes[1, j].set_visible(True)
            ax = axes[1, j]
            ax.scatter(*ref.anchors.T, s=30, c="#cccccc")
            key = 2.0 if j == len(cfg.field_times) - 1 else None
            field_panel(ax, pts, v, scale, title=f"E[z1 - z0 | z_t, t = {t:.1f}]", key=key)
        traj = sample(field, z0[:200], 64, return_trajectory=True)
    axes[1, -1].set_visible(True)
    trajectory_panel(axes[1, -1], traj.trajectory, None, title="exact trajectories (64 steps)")
    fig.suptitle(
        "The exact VFM optimum (Prop. 3.1): samples at T Euler steps (grey: held-out data) and its "
        "field, one arrow scale for all t"
    )
    return fig


def run(cfg: BlurConfig) -> FigureResult:
    field = ExactVFMField(toy.mixture(cfg.dataset))
    ref = reference(cfg.dataset, cfg.budget.n_eval, cfg.seed)
    rows = score(field, cfg, ref)
    return FigureResult(draw(field, cfg, ref, rows), rows, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    return figure_main("vfm_blur", __doc__.splitlines()[0], configure, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
