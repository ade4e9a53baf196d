"""The explorer's matplotlib figures; shared panels come from :mod:`moefm.plot`."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from moefm import FlowModel
from moefm.plot import (
    expert_color,
    plot_expert_map,
    plot_gate,
    plot_samples,
    plot_trajectories,
)

from .compute import ResponsibilityBars, ResponsibilityMap, Samples, StepCurve

PANEL_SIZE = (4.2, 4.2)
DPI = 100
MAX_PATHS = 200  # one Line2D per path: more only slows drawing without showing more
MAX_DOTS = 400


def _figure(size: tuple[float, float] = PANEL_SIZE, **margins: float) -> Figure:
    # Figure() rather than pyplot: no global state, nothing to close, safe across sessions.
    # Fixed margins, not a layout engine: constrained layout doubles the cost of every render.
    fig = Figure(figsize=size, dpi=DPI)
    fig.subplots_adjust(**{"left": 0.02, "right": 0.98, "bottom": 0.02, "top": 0.93, **margins})
    return fig


def figure_png(fig: Figure, dpi: int = 130) -> bytes:
    """The figure as PNG bytes, shown in the page and exported by its button."""
    buf = io.BytesIO()
    # light compression: the page re-renders on every change, and zlib's default is slow
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def samples_figure(samples: Samples, reference: np.ndarray, title: str, lim: float) -> Figure:
    fig = _figure()
    plot_samples(fig.add_subplot(), samples.z1, reference, title=title, lim=lim)
    fig.axes[0].legend(loc="lower right", fontsize=7, markerscale=4, framealpha=0.8)
    return fig


def trajectories_figure(samples: Samples, upto: int, title: str, lim: float) -> Figure:
    """Whole paths coloured by their (frozen) expert, with the states at step ``upto`` marked:
    the time slider moves the markers along the paths."""
    fig = _figure()
    ax = fig.add_subplot()
    experts = samples.frozen_experts()
    plot_trajectories(ax, samples.trajectory, experts, title=title, lim=lim, max_paths=MAX_PATHS)
    _mark_states(ax, samples, upto, MAX_PATHS)
    return fig


def _mark_states(ax: Axes, samples: Samples, upto: int, count: int) -> None:
    z = samples.trajectory[upto, :count]
    experts = samples.frozen_experts()
    colors = "w" if experts is None else [expert_color(int(k)) for k in experts[:count]]
    ax.scatter(z[:, 0], z[:, 1], s=9, c=colors, edgecolors="k", linewidths=0.3, zorder=3)


def gate_figure(
    model: FlowModel, t: float, samples: Samples | None, upto: int, lim: float
) -> Figure:
    """``argmax_k pi_k(z, t)`` over the plane (:func:`moefm.plot.plot_gate`) with the sampled
    states at the nearest grid step drawn in their expert's colour."""
    fig = _figure()
    ax = fig.add_subplot()
    plot_gate(ax, model, t, lim=lim, n=100, title=f"gate: argmax pi(z, t={t:.2f})")
    if samples is not None:
        _mark_states(ax, samples, upto, MAX_DOTS)
    return fig


def responsibility_figure(
    rmap: ResponsibilityMap, bars: ResponsibilityBars, z0: tuple[float, float], lim: float
) -> Figure:
    """Top: ``argmax_k gamma_k`` over the noise plane, shaded by its value. Bottom: ``pi`` and
    ``gamma`` of the chosen pair as bars."""
    fig = _figure((4.2, 6.0), left=0.13, right=0.97, bottom=0.08, top=0.95, hspace=0.3)
    ax, bx = fig.subplots(2, 1, height_ratios=(3.0, 1.2))
    K = rmap.gamma.shape[-1]
    plot_expert_map(ax, rmap.gamma, (-lim, lim, -lim, lim))
    ax.plot(*rmap.z1, marker="*", ms=14, c="w", mec="k", label="data point z1")
    ax.plot(*z0, marker="o", ms=7, c="w", mec="k", label="noise z0")
    ax.plot(*bars.z_t, marker="X", ms=8, c="k", label=f"z_t (t={rmap.t:.2f})")
    ticks = np.arange(-int(lim), int(lim) + 1, 2)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)  # the z0 inputs are coordinates: show them
    ax.set_xlabel("noise z0 (x)", fontsize=8)
    ax.set_ylabel("noise z0 (y)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    ax.set_title("argmax_k gamma_k(z_t, t, z1 - z0), eq. (12)", fontsize=9)

    ks = np.arange(K)
    colors = [expert_color(k) for k in ks]
    bx.bar(ks - 0.2, bars.pi, width=0.4, color=colors, alpha=0.4, label="gate pi_k(z_t, t)")
    bx.bar(ks + 0.2, bars.gamma, width=0.4, color=colors, edgecolor="k", label="gamma_k (12)")
    bx.set_xticks(ks, [str(k) for k in ks])
    bx.set_ylim(0.0, 1.0)
    bx.set_xlabel("expert k", fontsize=8)
    bx.tick_params(labelsize=7)
    bx.legend(loc="upper right", fontsize=7)
    bx.set_title("the pair (z0, z1): gate (prior) vs gamma (posterior)", fontsize=9)
    return fig


def curve_figure(curve: StepCurve, current: int, solver: str) -> Figure:
    """W2 to the data and straightness S against T, with the selected T marked."""
    fig = _figure((8.4, 3.0), left=0.07, bottom=0.16, top=0.9, wspace=0.2)
    ax, bx = fig.subplots(1, 2)
    for axis, values, label in (
        (ax, curve.w2, f"W2 to held-out data ({solver})"),
        (bx, curve.straightness, "straightness S (Euler, T steps)"),
    ):
        axis.plot(curve.steps, values, marker="o", c="#1f3b73")
        axis.axvline(current, c="#d62728", lw=1, ls="--", label=f"T = {current}")
        axis.set_xscale("log", base=2)
        axis.set_xticks(curve.steps, [str(s) for s in curve.steps])
        axis.set_xlabel("steps T", fontsize=8)
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return fig
