"""Seeded 2D data sets for the labs and the benchmark.

Each generator returns a float32 tensor ``(n, 2)``. The Gaussian-mixture ones (grid,
8-Gaussians) also expose their :class:`~moefm.theory.GaussianMixture` so the exact optima of
:mod:`moefm.theory` and the mode-coverage metric apply to them directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._checks import check_choice, check_positive_int
from .theory import GaussianMixture


def grid_mixture(k: int = 3, spacing: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """A ``k x k`` grid of equal-weight Gaussians, centred at the origin."""
    k = check_positive_int("k", k)
    axis = (torch.arange(k, dtype=torch.float64) - (k - 1) / 2) * spacing
    means = torch.cartesian_prod(axis, axis)
    return GaussianMixture(means, std)


def eight_gaussians_mixture(radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Eight Gaussians evenly spaced on a circle."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return GaussianMixture(radius * torch.stack([ang.cos(), ang.sin()], 1), std)


def _gen(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


def grid(
    n: int, k: int = 3, spacing: float = 2.0, std: float = 0.1, seed: int | None = 0
) -> torch.Tensor:
    """``n`` points from :func:`grid_mixture` (the paper's Fig. 2a data)."""
    return grid_mixture(k, spacing, std).sample(check_positive_int("n", n), _gen(seed))


def eight_gaussians(
    n: int, radius: float = 2.0, std: float = 0.1, seed: int | None = 0
) -> torch.Tensor:
    return eight_gaussians_mixture(radius, std).sample(check_positive_int("n", n), _gen(seed))


def half_moons(n: int, noise: float = 0.05, seed: int | None = 0) -> torch.Tensor:
    """Two interleaved half circles (``sklearn.datasets.make_moons``), centred and scaled to
    roughly unit variance per axis (the paper's Fig. 2b data)."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(check_positive_int("n", n), noise=noise, random_state=seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    # fixed affine map (not data-dependent) so every n and seed share one frame
    return (x - torch.tensor([0.5, 0.25])) * torch.tensor([1.7, 3.0])


def checkerboard(n: int, squares: int = 4, size: float = 4.0, seed: int | None = 0) -> torch.Tensor:
    """Uniform points on the dark squares of a ``squares x squares`` board of side ``size``."""
    n = check_positive_int("n", n)
    g = _gen(seed)
    cell = size / squares
    # pick a dark square (i + j even), then a uniform point inside it
    dark = torch.tensor(
        [(i, j) for i in range(squares) for j in range(squares) if (i + j) % 2 == 0]
    )
    pick = dark[torch.randint(len(dark), (n,), generator=g)]
    u = torch.rand(n, 2, generator=g)
    return ((pick + u) * cell - size / 2).float()


DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "grid": grid,
    "half-moons": half_moons,
    "8-gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}
MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "grid": grid_mixture,
    "8-gaussians": eight_gaussians_mixture,
}


def make(name: str, n: int, seed: int | None = 0) -> torch.Tensor:
    """``n`` points of the named data set (``grid``, ``half-moons``, ``8-gaussians``, ``checkerboard``)."""
    check_choice("dataset", name, tuple(DATASETS))
    return DATASETS[name](n, seed=seed)


def mixture(name: str) -> GaussianMixture | None:
    """The exact mixture behind a data set, or ``None`` if it is not a Gaussian mixture."""
    check_choice("dataset", name, tuple(DATASETS))
    return MIXTURES[name]() if name in MIXTURES else None
