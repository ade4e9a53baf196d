"""The explorer's settings: one dataclass, its bounds, and the training profile it maps to.

Everything the sidebar and the panels let a user choose lives in :class:`Settings`; the widgets
are built from the bounds below, so a value outside them cannot be entered, and
:class:`Settings` re-checks them, so one built in code or from an exported JSON
(:meth:`Settings.from_dict`) cannot hold one either.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from moefm import toy
from moefm.sampling import ROUTINGS, SOLVERS
from moefm.train import METHODS, TrainConfig

DATASETS: tuple[str, ...] = tuple(toy.DATASETS)
METHOD_LABELS = {
    "vfm": "VFM",
    "ot-cfm": "OT-CFM",
    "moefm": "MoE-FM",
    "moefm-cluster": "MoE-FM, path-consistent (one expert per cluster)",
    "moefm-cluster-ot": "MoE-FM, path-consistent, OT pairs",
}
K_RANGE = (1, 10)
# a log-spaced ladder: sigma matters by orders of magnitude (App. A.3: hard vs. soft assignment)
SIGMAS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
STEPS_RANGE = (1, 64)
SEED_RANGE = (0, 10_000)
TRAIN_SEED_RANGE = (0, 99)
PLANE_LIM = 4.0  # every panel shows [-4, 4]^2: it holds all four data sets and most noise

# The one training profile of the app: shipped checkpoints and on-demand runs use the same one,
# so a checkpoint is exactly what training that setting here would produce. A 64-wide trunk
# keeps a MoE-FM checkpoint at ~64 KB and a run at a few seconds on one CPU thread.
TRAIN_POINTS = 5000
REF_POINTS = 1000  # held-out data (another seed) that samples are compared with
TRAIN_PROFILE = dict(steps=2000, batch_size=256, lr=2e-3, hidden=64, depth=3)
FAST_TRAIN_STEPS = 200  # MOEFM_APP_FAST=1: tests train for a few hundred steps only
BASELINE_SIGMA = 0.1  # K = 1 baselines ignore sigma (eq. 2); pin it so the cache key does too


def fast_mode() -> bool:
    """Whether ``MOEFM_APP_FAST=1`` asks for short on-demand training and fewer points."""
    return os.environ.get("MOEFM_APP_FAST", "") not in ("", "0", "false", "False")


def sample_points() -> int:
    """Samples drawn per view: enough for a clear picture and an exact W2 in under a second."""
    return 128 if fast_mode() else 1000


def curve_points() -> int:
    """Samples per T of the W2 / straightness chart (exact W2 on 500 points takes ~0.1 s)."""
    return 64 if fast_mode() else 500


@dataclass(frozen=True)
class Settings:
    """All choices of one view of the explorer.

    Attributes:
        dataset: one of ``moefm.toy.DATASETS``.
        method: ``vfm``, ``ot-cfm`` or ``moefm`` (``moefm.train.METHODS``).
        K: number of experts (MoE-FM only; the baselines have one).
        sigma: expert standard deviation of eq. (4)/(5) (MoE-FM only).
        train_seed: seed of the training run (initialisation and minibatches).
        solver: ``moefm.sampling.SOLVERS``.
        routing: ``moefm.sampling.ROUTINGS`` (moot for K = 1, but always accepted).
        steps: T, the number of solver steps.
        seed: seed of the noise ``z0`` and of the expert draws.
        t: time shown by the trajectory, gate and responsibility panels.
        point: index of the held-out data point ``z1`` whose responsibilities (eq. 12) are
            shown.
        z0: the noise point ``(x, y)`` of the responsibility bars.
    """

    dataset: str = "grid"
    method: str = "moefm"
    K: int = 6
    sigma: float = 0.1
    train_seed: int = 0
    solver: str = "euler"
    routing: str = "frozen"
    steps: int = 4
    seed: int = 0
    t: float = 0.0
    point: int = 0
    z0: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("method", self.method, METHODS)
        _choice("solver", self.solver, SOLVERS)
        _choice("routing", self.routing, ROUTINGS)
        _int_in("K", self.K, K_RANGE)
        _int_in("steps", self.steps, STEPS_RANGE)
        _int_in("seed", self.seed, SEED_RANGE)
        _int_in("train_seed", self.train_seed, TRAIN_SEED_RANGE)
        _int_in("point", self.point, (0, REF_POINTS - 1))
        if not SIGMAS[0] <= float(self.sigma) <= SIGMAS[-1]:
            raise ValueError(f"sigma must be in [{SIGMAS[0]}, {SIGMAS[-1]}], got {self.sigma!r}")
        if not 0.0 <= float(self.t) <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {self.t!r}")
        if len(self.z0) != 2 or not all(abs(float(v)) <= PLANE_LIM for v in self.z0):
            raise ValueError(
                f"z0 must be two numbers in [-{PLANE_LIM}, {PLANE_LIM}], got {self.z0}"
            )
        # frozen dataclass: normalise through object.__setattr__
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "t", float(self.t))
        object.__setattr__(self, "z0", (float(self.z0[0]), float(self.z0[1])))

    @property
    def experts(self) -> int:
        """Experts actually trained: 1 for the VFM and OT-CFM baselines."""
        return self.K if self.method.startswith("moefm") else 1

    def train_config(self, fast: bool = False) -> TrainConfig:
        """The :class:`~moefm.train.TrainConfig` this view's model is trained with.

        The baselines get ``K = 1`` and a pinned sigma, so moving the K or sigma widget while a
        baseline is selected reuses the same model instead of training an identical one.
        """
        profile = dict(TRAIN_PROFILE, steps=FAST_TRAIN_STEPS) if fast else TRAIN_PROFILE
        sigma = self.sigma if self.method == "moefm" else BASELINE_SIGMA
        return TrainConfig(
            method=self.method, K=self.experts, sigma=sigma, seed=self.train_seed, **profile
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["z0"] = list(self.z0)
        return d

    def to_json(self, fast: bool = False) -> str:
        """Settings plus the resolved training config, for the export button."""
        return json.dumps(
            {"settings": self.to_dict(), "train_config": self.train_config(fast).to_dict()},
            indent=2,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown settings keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "z0" in d:
            d["z0"] = tuple(d["z0"])
        return cls(**d)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


def _int_in(name: str, value: int, bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    if isinstance(value, bool) or int(value) != value or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
