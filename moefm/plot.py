"""Matplotlib figures shared by the labs, the benchmark and the app."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

EXPERT_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def expert_color(k: int) -> str:
    return EXPERT_COLORS[k % len(EXPERT_COLORS)]


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_samples(
    ax: Any,
    samples: torch.Tensor,
    data: torch.Tensor | None = None,
    *,
    title: str = "",
    lim: float = 4.0,
    s: float = 2.0,
) -> None:
    """Scatter model samples (dark) over data (light grey)."""
    if data is not None:
        d = _np(data)
        ax.scatter(d[:, 0], d[:, 1], s=s, c="#cccccc", label="data", rasterized=True)
    x = _np(samples)
    ax.scatter(x[:, 0], x[:, 1], s=s, c="#1f3b73", label="samples", rasterized=True)
    _frame(ax, title, lim)


def plot_trajectories(
    ax: Any,
    trajectory: torch.Tensor,
    experts: torch.Tensor | None = None,
    *,
    title: str = "",
    lim: float = 4.0,
    max_paths: int = 300,
    upto: int | None = None,
) -> None:
    """Draw paths ``(T+1, B, 2)`` coloured by their frozen expert; ``upto`` cuts them at a step."""
    tr = _np(trajectory)[: (None if upto is None else upto + 1), :max_paths]
    ex = None if experts is None else _np(experts)
    if ex is not None and ex.ndim > 1:  # resample routing: colour by the expert at t = 0
        ex = ex[0]
    if ex is not None:
        ex = ex[:max_paths]
    for i in range(tr.shape[1]):
        c = expert_color(int(ex[i])) if ex is not None else "#555555"
        ax.plot(tr[:, i, 0], tr[:, i, 1], lw=0.6, alpha=0.6, c=c)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=2, c="#999999")
    end = tr[-1]
    ax.scatter(
        end[:, 0], end[:, 1], s=3, c=[expert_color(int(k)) for k in ex] if ex is not None else "k"
    )
    _frame(ax, title, lim)


def grid_points(lim: float = 4.0, n: int = 100) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """An ``n x n`` grid over ``[-lim, lim]^2``: flat points ``(n*n, 2)`` and the mesh."""
    xs = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(xs, xs)
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float32)
    return pts, xx, yy


@torch.no_grad()
def plot_gate(
    ax: Any, model: Any, t: float = 0.0, *, lim: float = 4.0, n: int = 120, title: str = ""
) -> None:
    """The most probable expert of ``pi(z, t)`` over the plane, shaded by its probability."""
    pts, _, _ = grid_points(lim, n)
    log_pi = model.log_pi(model.features(pts, torch.full((len(pts),), float(t))))
    plot_expert_map(
        ax,
        log_pi.exp().reshape(n, n, -1),
        (-lim, lim, -lim, lim),
        title=title or f"gate argmax pi(z, t={t:.2f})",
    )


def plot_expert_map(
    ax: Any,
    probs: torch.Tensor | np.ndarray,
    extent: tuple[float, float, float, float],
    *,
    title: str = "",
) -> None:
    """Colour a regular grid by its most probable expert, more opaque where that expert is surer.

    Works for any probabilities over K experts on a mesh: the routing ``pi(z, t)`` (eq. 4) or
    the responsibilities ``gamma(u*)`` (eq. 12).

    Args:
        probs: ``(ny, nx, K)`` probabilities, row 0 at the bottom (``y = extent[2]``), as
            returned on the mesh of :func:`grid_points` after ``reshape(n, n, K)``.
        extent: ``(x_min, x_max, y_min, y_max)`` of the mesh.
    """
    from matplotlib.colors import ListedColormap

    p = _np(probs)
    if p.ndim != 3:
        raise ValueError(f"probs must have shape (ny, nx, K), got {p.shape}")
    K = p.shape[-1]
    top = p.argmax(-1)
    conf = p.max(-1)
    cmap = ListedColormap([expert_color(k) for k in range(K)])
    ax.imshow(
        top,
        extent=extent,
        origin="lower",
        cmap=cmap,
        vmin=-0.5,
        vmax=K - 0.5,
        alpha=0.25 + 0.75 * (conf - conf.min()) / max(np.ptp(conf), 1e-9),
        interpolation="nearest",
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    _frame(ax, title, None)


def plot_vector_field(
    ax: Any,
    points: torch.Tensor | np.ndarray,
    vectors: torch.Tensor | np.ndarray,
    *,
    title: str = "",
    lim: float = 4.0,
    color: str = "#1f3b73",
    scale: float | None = None,
) -> None:
    """Arrows ``vectors (n, 2)`` at ``points (n, 2)``, e.g. a velocity field on :func:`grid_points`.

    ``scale`` is matplotlib's quiver scale (data units per arrow length unit); ``None`` lets
    matplotlib choose, a fixed value makes several panels comparable.
    """
    p, v = _np(points), _np(vectors)
    if p.ndim != 2 or p.shape[1] != 2 or v.shape != p.shape:
        raise ValueError(
            f"points and vectors must both have shape (n, 2), got {p.shape} and {v.shape}"
        )
    ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], color=color, scale=scale, width=0.004)
    _frame(ax, title, lim)


def _frame(ax: Any, title: str, lim: float | None) -> None:
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
