"""The two extremes of sigma (App. A.3) on the exact MoE-FM optimum of a grid of Gaussians.

At one point ``(z_t, t)`` the target velocity ``u* = z1 - z0`` has a known conditional law
``q(u* | z_t, t)``, a Gaussian mixture (:mod:`moefm.theory`). The MoE-FM optimum there (Thm 3.2)
is a fixed point of EM on ``q`` with K experts of width sigma
(:func:`moefm.theory.moefm_optimum`). Sweeping sigma shows both limits:

- sigma -> 0: responsibilities (eq. 12) become the hard nearest-expert rule (Prop. A.5) and each
  expert is the mean of its own cell of ``q`` (Cor. A.6);
- sigma -> inf: responsibilities equal the routing, every expert collapses onto the VFM optimum
  ``E[u* | z_t, t]`` and the routing is no longer identified (App. A.3.2).

For every sigma the routing-weighted mean of the experts equals the VFM optimum (the fixed-point
equations of Thm 3.2 summed over k); the table reports the gap as a check.

Run ``python -m labs.sigma_limits --out DIR [--quick]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from moefm import responsibilities, toy
from moefm.plot import expert_color
from moefm.theory import GaussianMixture, MoEOptimum, moefm_optimum

from .common import FigureResult, figure_main

COLUMNS = (
    "sigma",
    "expert_spread",
    "hardness",
    "gamma_pi_tv",
    "mixture_mean_err",
    "iterations",
    "converged",
)
# Responsibilities need sigma > 0; the sigma = 0 (hard) optimum is scored with this width,
# which makes eq. (12) the nearest-expert rule to machine precision.
HARD_SIGMA = 1e-4


@dataclass(frozen=True)
class SigmaConfig:
    """The mixture, the point ``(z_t, t)``, the number of experts and the sigmas to sweep.

    ``nodes`` is the Gauss-Hermite order per axis used to represent ``q(u* | z_t, t)``;
    sigma = 0 stands for the hard-assignment limit.
    """

    dataset: str = "grid"
    z_t: tuple[float, float] = (0.45, 0.3)
    t: float = 0.5
    K: int = 6
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
    nodes: int = 8
    iters: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if toy.mixture(self.dataset) is None:
            raise ValueError(
                f"dataset {self.dataset!r} has no closed-form optimum; use 'grid' or '8-gaussians'"
            )
        if not 0.0 <= self.t < 1.0:
            raise ValueError(f"t must lie in [0, 1), got {self.t}")
        if not self.sigmas or any(s < 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be numbers >= 0, got {self.sigmas}")
        if len(self.z_t) != 2:
            raise ValueError(f"z_t must be a 2D point, got {self.z_t}")


def configure(quick: bool, seed: int) -> SigmaConfig:
    # the sweep is closed-form and fast; --quick only coarsens the quadrature
    return SigmaConfig(nodes=6 if quick else 8, iters=500 if quick else 2000, seed=seed)


@dataclass
class Sweep:
    """The optimum for every sigma, the quadrature of ``q`` and the VFM optimum at the point."""

    mixture: GaussianMixture
    points: torch.Tensor  # (N, m) quadrature nodes of q(u* | z_t, t)
    weights: torch.Tensor  # (N,)
    vfm: torch.Tensor  # (m,)
    optima: dict[float, MoEOptimum]


def sweep(cfg: SigmaConfig) -> Sweep:
    gm = toy.mixture(cfg.dataset)
    z = torch.tensor([cfg.z_t], dtype=torch.float64)
    pts, wts = gm.velocity_quadrature(z, cfg.t, cfg.nodes)
    optima = {
        s: moefm_optimum(gm, z, cfg.t, cfg.K, s, nodes=cfg.nodes, iters=cfg.iters, tol=1e-9)
        for s in cfg.sigmas
    }
    return Sweep(gm, pts[0], wts[0], gm.vfm_optimum(z, cfg.t)[0], optima)


def gammas(sw: Sweep, sigma: float) -> torch.Tensor:
    """Responsibilities (eq. 12) of every quadrature node under the optimum for ``sigma``."""
    opt = sw.optima[sigma]
    n = len(sw.points)
    u = opt.u[0].expand(n, *opt.u.shape[-2:])
    log_pi = opt.pi[0].clamp_min(1e-300).log().expand(n, -1)
    return responsibilities(u, log_pi, sw.points, sigma if sigma > 0 else HARD_SIGMA)


def score(sw: Sweep) -> list[dict]:
    rows = []
    for sigma, opt in sw.optima.items():
        pi, u = opt.pi[0], opt.u[0]
        g = gammas(sw, sigma)
        rows.append(
            {
                "sigma": sigma,
                # routing-weighted RMS distance of the experts from the VFM optimum
                "expert_spread": float((pi * (u - sw.vfm).pow(2).sum(-1)).sum().sqrt()),
                # E_q[max_k gamma_k]: 1 for a hard assignment, max_k pi_k when gamma = pi
                "hardness": float((sw.weights * g.max(-1).values).sum()),
                # E_q of the total-variation distance between gamma and pi
                "gamma_pi_tv": float((sw.weights * 0.5 * (g - pi).abs().sum(-1)).sum()),
                "mixture_mean_err": float(((pi[:, None] * u).sum(0) - sw.vfm).norm()),
                "iterations": opt.iterations,
                "converged": opt.converged,
            }
        )
    return rows


def _limits(sw: Sweep) -> tuple[float, float, float, float]:
    keep = sw.points[sw.weights > 1e-4]
    lo, hi = keep.min(0).values, keep.max(0).values
    pad = 0.15 * float((hi - lo).max())
    return float(lo[0]) - pad, float(hi[0]) + pad, float(lo[1]) - pad, float(hi[1]) + pad


def draw(sw: Sweep, cfg: SigmaConfig, rows: Sequence[dict]) -> Figure:
    """The point on the data plane, the optimum in velocity space for each sigma, the limits."""
    n_panels = 1 + len(cfg.sigmas) + 2
    ncols = 6
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.8 * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n_panels:]:
        ax.set_visible(False)

    ax = axes[0]
    means = sw.mixture.means
    ax.scatter(*means.T, s=40, c="#cccccc", label="data modes")
    ax.scatter(*(cfg.t * means).T, s=12, c="#888888", label="t x modes")
    ax.plot(*cfg.z_t, marker="X", ms=10, c="#d62728", ls="none", label="z_t")
    ax.set_aspect("equal")
    ax.legend(fontsize=6, loc="lower left")
    ax.set_title(f"z_t = ({cfg.z_t[0]:.2f}, {cfg.z_t[1]:.2f}), t = {cfg.t}", fontsize=9)

    x0, x1, y0, y1 = _limits(sw)
    show = sw.weights > 1e-5
    size = 2 + 400 * sw.weights[show].sqrt()
    for ax, sigma in zip(axes[1:], cfg.sigmas):
        opt = sw.optima[sigma]
        owner = gammas(sw, sigma)[show].argmax(-1)
        ax.scatter(
            *sw.points[show].T, s=size, c=[expert_color(int(k)) for k in owner], alpha=0.5, lw=0
        )
        for k in range(cfg.K):
            ax.scatter(
                *opt.u[0, k],
                marker="*",
                s=60 + 400 * float(opt.pi[0, k]),
                c=expert_color(k),
                edgecolors="k",
                zorder=3,
            )
        ax.plot(*sw.vfm, marker="X", ms=9, c="k", ls="none", zorder=4)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        label = "sigma -> 0 (hard)" if sigma == 0 else f"sigma = {sigma:g}"
        ax.set_title(label, fontsize=9)

    pos = [r for r in rows if r["sigma"] > 0]
    s = [r["sigma"] for r in pos]
    ax = axes[1 + len(cfg.sigmas)]
    ax.plot(s, [r["expert_spread"] for r in pos], marker="o", c="#1f3b73")
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_title("expert spread around E[u* | z_t]", fontsize=9)
    ax = axes[2 + len(cfg.sigmas)]
    ax.plot(s, [r["hardness"] for r in pos], marker="o", label="E max_k gamma_k")
    ax.plot(s, [r["gamma_pi_tv"] for r in pos], marker="s", label="E TV(gamma, pi)")
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("sigma")
    ax.legend(fontsize=7)
    ax.set_title("responsibilities: hard -> equal to pi", fontsize=9)
    fig.suptitle(
        "MoE-FM optimum in velocity space: dots = q(u* | z_t, t) coloured by responsible "
        "expert, stars = experts (size ~ pi), X = VFM optimum",
        fontsize=10,
    )
    return fig


def run(cfg: SigmaConfig) -> FigureResult:
    sw = sweep(cfg)
    rows = score(sw)
    return FigureResult(draw(sw, cfg, rows), rows, COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    return figure_main("sigma_limits", __doc__.splitlines()[0], configure, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
