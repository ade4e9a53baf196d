"""Figure helpers for the notebooks and figure scripts (on top of :mod:`moefm.plot`).

They add what a reader needs to read a panel without the prose: a legend (grey = data), axis
ticks, start and end markers on trajectories, one arrow scale shared by several quiver panels,
one colour scale shared by several histograms, and opacity that means "how sure" on an absolute
scale (with a colour bar).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from moefm.plot import expert_color

DATA_COLOR = "#c8c8c8"
SAMPLE_COLOR = "#1f3b73"
START_COLOR = "#7f7f7f"


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _frame(ax: Any, title: str, lim: float | None, ticks: bool = True) -> None:
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if ticks:
        ax.tick_params(labelsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def sample_panel(
    ax: Any,
    samples: torch.Tensor | None,
    data: torch.Tensor | None = None,
    *,
    title: str = "",
    lim: float | None = 3.2,
    label: str = "samples",
    data_label: str = "data (held out)",
    color: str = SAMPLE_COLOR,
    s: float = 2.0,
    legend: bool = True,
) -> None:
    """Samples (dark) over data (grey), with a legend and ticks."""
    if data is not None:
        d = _np(data)
        ax.scatter(d[:, 0], d[:, 1], s=s, c=DATA_COLOR, label=data_label, rasterized=True)
    if samples is not None:
        x = _np(samples)
        ax.scatter(x[:, 0], x[:, 1], s=s, c=color, label=label, rasterized=True)
    _frame(ax, title, lim)
    if legend:
        ax.legend(fontsize=6, loc="upper right", markerscale=3, framealpha=0.8)


def trajectory_panel(
    ax: Any,
    trajectory: torch.Tensor,
    experts: torch.Tensor | None = None,
    *,
    title: str = "",
    lim: float | None = 3.2,
    max_paths: int = 200,
    data: torch.Tensor | None = None,
    legend: bool = True,
) -> None:
    """Paths ``(T + 1, B, 2)`` with a marker at the start (noise) and at the end (sample).

    ``experts``: ``(B,)`` colours each path by its frozen expert; ``(steps, B)`` (re-sampled
    routing) colours every segment by the expert used on that step.
    """
    tr = _np(trajectory)[:, :max_paths]
    ex = None if experts is None else _np(experts)
    if data is not None:
        d = _np(data)
        ax.scatter(d[:, 0], d[:, 1], s=1, c=DATA_COLOR, label="data", rasterized=True, zorder=0)
    for i in range(tr.shape[1]):
        if ex is None:
            ax.plot(tr[:, i, 0], tr[:, i, 1], lw=0.6, alpha=0.6, c="#555555")
        elif ex.ndim == 1:
            ax.plot(tr[:, i, 0], tr[:, i, 1], lw=0.6, alpha=0.7, c=expert_color(int(ex[i])))
        else:
            for s in range(tr.shape[0] - 1):
                c = expert_color(int(ex[min(s, len(ex) - 1), i]))
                ax.plot(tr[s : s + 2, i, 0], tr[s : s + 2, i, 1], lw=0.6, alpha=0.7, c=c)
    ax.scatter(
        tr[0, :, 0],
        tr[0, :, 1],
        s=8,
        facecolors="none",
        edgecolors=START_COLOR,
        lw=0.6,
        label="start z0 (noise)",
        zorder=3,
    )
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=5, c="k", label="end (sample)", zorder=4)
    _frame(ax, title, lim)
    if legend:
        ax.legend(fontsize=6, loc="upper right", markerscale=1.5, framealpha=0.8)


def shared_quiver_scale(vectors: Sequence[torch.Tensor | np.ndarray], spacing: float) -> float:
    """The quiver ``scale`` (``scale_units='xy'``) that draws the longest of all ``vectors``
    0.9 grid spacings long, so that arrow lengths compare across panels."""
    longest = max(float(np.linalg.norm(_np(v), axis=-1).max()) for v in vectors)
    return max(longest, 1e-12) / (0.9 * spacing)


def field_panel(
    ax: Any,
    points: torch.Tensor | np.ndarray,
    vectors: torch.Tensor | np.ndarray,
    scale: float,
    *,
    title: str = "",
    lim: float | None = 3.2,
    color: str = SAMPLE_COLOR,
    key: float | None = None,
) -> Any:
    """Arrows at ``points`` drawn with a fixed ``scale`` (see :func:`shared_quiver_scale`);
    ``key`` adds a reference arrow of that length (velocity units)."""
    p, v = _np(points), _np(vectors)
    q = ax.quiver(
        p[:, 0],
        p[:, 1],
        v[:, 0],
        v[:, 1],
        color=color,
        angles="xy",
        scale_units="xy",
        scale=scale,
        width=0.005,
    )
    if key is not None:
        ax.quiverkey(
            q,
            0.97,
            0.04,
            key,
            f"|v| = {key:g}",
            labelpos="W",
            coordinates="axes",
            fontproperties={"size": 7},
        )
    _frame(ax, title, lim)
    return q


def density_panels(
    axes: Sequence[Any],
    snapshots: Sequence[torch.Tensor],
    titles: Sequence[str],
    *,
    lim: float = 3.2,
    bins: int = 60,
    vmax: float | None = None,
) -> Any:
    """2D histograms (densities) on one colour scale shared by all panels; returns the last
    image for a colour bar. The scale is a square root, so that thin blur between sharp modes
    stays visible next to them."""
    from matplotlib.colors import PowerNorm

    edges = np.linspace(-lim, lim, bins + 1)
    hists = [
        np.histogram2d(_np(x)[:, 0], _np(x)[:, 1], bins=(edges, edges), density=True)[0]
        for x in snapshots
    ]
    top = vmax if vmax is not None else max(float(h.max()) for h in hists)
    img = None
    for ax, h, title in zip(axes, hists, titles):
        img = ax.imshow(
            h.T,
            origin="lower",
            extent=(-lim, lim, -lim, lim),
            cmap="magma",
            norm=PowerNorm(0.5, vmin=0.0, vmax=top),
            interpolation="nearest",
        )
        _frame(ax, title, lim)
    return img


def expert_map(
    ax: Any,
    probs: torch.Tensor | np.ndarray,
    extent: tuple[float, float, float, float],
    *,
    title: str = "",
) -> None:
    """Colour a mesh ``(ny, nx, K)`` by its most probable expert with opacity = that probability.

    Unlike :func:`moefm.plot.plot_expert_map`, the opacity is not rescaled per panel: a region
    where no expert is preferred (max_k gamma_k near 1/K) is drawn faint in every panel. Pair it
    with :func:`confidence_colorbar`.
    """
    p = _np(probs)
    if p.ndim != 3:
        raise ValueError(f"probs must have shape (ny, nx, K), got {p.shape}")
    from matplotlib.colors import to_rgb

    top, conf = p.argmax(-1), p.max(-1)
    rgb = np.array([to_rgb(expert_color(k)) for k in range(p.shape[-1])])[top]
    ax.imshow(
        np.concatenate([rgb, conf[..., None]], -1),
        extent=extent,
        origin="lower",
        interpolation="nearest",
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    _frame(ax, title, None)


def confidence_colorbar(fig: Any, axes: Any, K: int, label: str = "max_k gamma_k") -> Any:
    """A colour bar for :func:`expert_map`'s opacity, from 1/K (no decision) to 1 (certain)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    cmap = LinearSegmentedColormap.from_list("opacity", ["#ffffff", "#333333"])
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=axes, shrink=0.8)
    bar.set_label(f"{label} (opacity)", fontsize=8)
    bar.ax.axhline(1.0 / K, c="#d62728", lw=1)
    bar.ax.text(
        1.6, 1.0 / K, "1/K", fontsize=7, va="center", transform=bar.ax.get_yaxis_transform()
    )
    return bar


@torch.no_grad()
def gate_panel(
    ax: Any, model: Any, t: float = 0.0, *, lim: float = 3.0, n: int = 80, title: str = ""
) -> None:
    """The gate ``pi(z, t)`` over the plane: colour = most probable expert, opacity = its
    probability (absolute, as in :func:`expert_map`)."""
    from moefm.plot import grid_points

    pts, _, _ = grid_points(lim, n)
    log_pi = model.log_pi(model.features(pts, torch.full((len(pts),), float(t))))
    expert_map(
        ax,
        log_pi.exp().reshape(n, n, -1),
        (-lim, lim, -lim, lim),
        title=title or f"gate: argmax_k pi_k(z, t = {t:g})",
    )
