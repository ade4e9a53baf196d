"""Experiment trackers beside ``metrics.jsonl``: ``--report-to tensorboard`` (``DIR/tensorboard``,
``torch.utils.tensorboard``) and ``--report-to wandb`` (when the ``wandb`` package is installed),
comma-separated for several. Only rank 0 writes, as for ``metrics.jsonl``.

Every record the trainer logs (:class:`yan.run_state.MetricsLog`) goes to the trackers too: its
numeric values as scalars ``train/loss``, ``val/val_ce``, ... at its ``step``. ``metrics.jsonl``
stays the run's own record (``yan plot-run`` reads it, resume cuts it back); a resumed run tells
TensorBoard to hide the events past its checkpoint (``purge_step``), so a curve is not drawn
twice. A wandb run is one invocation: a resume starts another (project ``$WANDB_PROJECT``,
default ``yan``).

Example:
    >>> log = TrackedLog(MetricsLog(out / "metrics.jsonl", True), ("tensorboard",), out)
    >>> log.write({"kind": "train", "step": 10, "loss": 2.5})
    >>> log.close()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from yan.run_state import MetricsLog

REPORTERS = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"

logger = logging.getLogger(__name__)


def parse_report_to(spec: str) -> tuple[str, ...]:
    """``--report-to``: ``none``, or a comma list of :data:`REPORTERS` (duplicates dropped)."""
    names = [part.strip().lower() for part in str(spec).split(",") if part.strip()]
    if not names or names == ["none"]:
        return ()
    unknown = [n for n in names if n not in (*REPORTERS, "none")]
    if unknown or "none" in names:
        bad = ", ".join(unknown) if unknown else "none together with a tracker"
        raise ValueError(
            f"--report-to takes none or a comma list of {', '.join(REPORTERS)}; got {spec!r} "
            f"({bad})"
        )
    return tuple(dict.fromkeys(names))


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics record, tagged ``kind/name`` (``step`` and text left
    out)."""
    kind = record.get("kind", "train")
    return {
        f"{kind}/{k}": float(v)
        for k, v in record.items()
        if k not in ("kind", "step", "stage")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }


class Tracker(Protocol):
    def log(self, values: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    """Scalars into ``DIR/tensorboard`` event files, flushed after each record (a killed run
    loses nothing that ``metrics.jsonl`` has)."""

    def __init__(self, out: Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "--report-to tensorboard needs the tensorboard package "
                "(pip install 'moefm[lm]' or pip install tensorboard)"
            ) from None
        self.writer = SummaryWriter(log_dir=str(out / TENSORBOARD_DIR), purge_step=purge_step)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run in ``DIR`` with the run's arguments as its config."""

    def __init__(self, out: Path, config: Mapping[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise ImportError(
                "--report-to wandb needs the wandb package, which is not installed "
                "(pip install wandb); or use --report-to tensorboard"
            ) from None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "yan"),
            name=out.name,
            dir=str(out),
            config=dict(config),
        )

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def check_reporters(names: tuple[str, ...]) -> None:
    """Fail before training when a requested tracker's package is missing."""
    import importlib.util

    packages = {"tensorboard": "tensorboard", "wandb": "wandb"}
    for name in names:
        if importlib.util.find_spec(packages[name]) is None:
            hint = "pip install wandb" if name == "wandb" else "pip install tensorboard"
            raise ImportError(
                f"--report-to {name} needs the {packages[name]} package, which is not "
                f"installed ({hint})"
            )


class TrackedLog:
    """A :class:`MetricsLog` that also sends each record to the ``--report-to`` trackers.

    The trackers open on first use, after the trainer has prepared ``--out`` (an overwritten
    run's files deleted, a resumed log cut back by :meth:`truncate_after`); disabled (not rank
    0) it is the metrics log alone.
    """

    def __init__(
        self,
        log: MetricsLog,
        reporters: tuple[str, ...],
        out: Path,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.base, self.reporters, self.out = log, reporters, Path(out)
        self.config = dict(config or {})
        self.trackers: list[Tracker] | None = None
        self.purge_step: int | None = None

    @property
    def enabled(self) -> bool:
        return self.base.enabled

    def truncate_after(self, step: int) -> None:
        self.base.truncate_after(step)
        if step > 0:  # a resume: events past the checkpoint are hidden
            self.purge_step = step + 1

    def _open(self) -> list[Tracker]:
        if self.trackers is None:
            self.trackers = []
            if self.enabled:
                for name in self.reporters:
                    if name == "tensorboard":
                        self.trackers.append(TensorBoardTracker(self.out, self.purge_step))
                    else:
                        self.trackers.append(WandbTracker(self.out, self.config))
                    logger.debug("reporting metrics to %s", name)
        return self.trackers

    def write(self, record: Mapping[str, Any]) -> None:
        self.base.write(record)
        trackers = self._open()
        if trackers:
            values, step = scalars(record), int(record.get("step", 0))
            for tracker in trackers:
                tracker.log(values, step)

    def close(self) -> None:
        for tracker in self.trackers or []:
            tracker.close()
        self.trackers = None


__all__ = [
    "REPORTERS",
    "TENSORBOARD_DIR",
    "TensorBoardTracker",
    "TrackedLog",
    "WandbTracker",
    "check_reporters",
    "parse_report_to",
    "scalars",
]
