"""Models of the explorer: the data they learn, checkpoints on disk, and an in-memory store.

A checkpoint is two files with one stem: ``<stem>.safetensors`` (the weights of a
:class:`moefm.FlowModel`) and ``<stem>.json`` (the data set and the resolved
:class:`moefm.train.TrainConfig`), so it loads without guessing how it was trained.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from moefm import FlowModel, toy
from moefm.train import TrainConfig, train

from .state import REF_POINTS, TRAIN_POINTS

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
FORMAT_VERSION = 1
DIM = 2


def training_data(dataset: str) -> torch.Tensor:
    """The fixed training set of a data set (seed 0)."""
    return toy.make(dataset, TRAIN_POINTS, seed=0)


def reference_data(dataset: str) -> torch.Tensor:
    """Held-out points (seed 1) that samples are compared with."""
    return toy.make(dataset, REF_POINTS, seed=1)


def checkpoint_stem(dataset: str, cfg: TrainConfig) -> str:
    """File stem naming what a user can choose: data set, method, K, sigma, training seed."""
    return f"{dataset}_{cfg.method}_K{cfg.experts}_sigma{cfg.sigma:g}_seed{cfg.seed}"


@dataclass
class ModelEntry:
    """A ready model and where it came from (``source``: a checkpoint stem or ``trained``)."""

    model: FlowModel
    dataset: str
    config: TrainConfig
    final_loss: float
    source: str
    seconds: float = 0.0


def build_model(cfg: TrainConfig, dim: int = DIM) -> FlowModel:
    """The architecture :func:`moefm.train.train` builds for ``cfg``."""
    return FlowModel.mlp(dim, K=cfg.experts, hidden=cfg.hidden, depth=cfg.depth)


def save_checkpoint(
    directory: Path | str, model: FlowModel, dataset: str, cfg: TrainConfig, final_loss: float
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` into ``directory``; return the JSON path.

    The JSON holds no timings, so retraining with the same config rewrites identical files.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = checkpoint_stem(dataset, cfg)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / f"{stem}.safetensors"))
    meta = {
        "format": FORMAT_VERSION,
        "dataset": dataset,
        "dim": DIM,
        "train_points": TRAIN_POINTS,
        "train_config": cfg.to_dict(),
        "final_loss": round(float(final_loss), 6),
    }
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(path: Path | str) -> dict:
    """The JSON half of a checkpoint (``path`` may be the .json, the .safetensors or the stem)."""
    path = Path(path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {path}")
    meta = json.loads(path.read_text())
    missing = {"format", "dataset", "dim", "train_config"} - set(meta)
    if missing:
        raise ValueError(f"checkpoint config {path} lacks {', '.join(sorted(missing))}")
    if meta["format"] != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format {meta['format']}, this app reads {FORMAT_VERSION}"
        )
    return meta


def load_checkpoint(path: Path | str) -> ModelEntry:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    weights = Path(path).with_suffix(".safetensors")
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    try:
        cfg = TrainConfig(**meta["train_config"])
    except TypeError as err:  # unknown or missing fields
        raise ValueError(f"checkpoint config {weights.with_suffix('.json')}: {err}") from err
    model = build_model(cfg, int(meta["dim"]))
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"checkpoint weights {weights} are unreadable: {err}") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # missing/unexpected keys or shape mismatch
        raise ValueError(f"checkpoint weights {weights} do not match its config: {err}") from err
    model.eval()
    return ModelEntry(
        model, meta["dataset"], cfg, float(meta.get("final_loss", "nan")), weights.stem
    )


def find_checkpoint(
    dataset: str, cfg: TrainConfig, directory: Path | str | None = None
) -> Path | None:
    """The checkpoint trained on ``dataset`` with exactly ``cfg`` (and this app's data), if any;
    ``directory`` defaults to the shipped ones."""
    path = Path(directory or CHECKPOINT_DIR) / f"{checkpoint_stem(dataset, cfg)}.json"
    if not path.is_file():
        return None
    meta = read_meta(path)
    same = (
        meta["dataset"] == dataset
        and meta.get("train_points") == TRAIN_POINTS
        and meta["train_config"] == cfg.to_dict()
    )
    return path if same else None


def train_model(
    dataset: str, cfg: TrainConfig, progress: Callable[[int, float], None] | None = None
) -> ModelEntry:
    """Train ``cfg`` on the data set's training points with :func:`moefm.train.train`."""
    start = time.perf_counter()
    result = train(training_data(dataset), cfg, progress=progress)
    return ModelEntry(
        result.model, dataset, cfg, result.losses[-1], "trained", time.perf_counter() - start
    )


class ModelStore:
    """Models by (data set, config), shared by all sessions of one app process.

    ``lookup`` answers from memory or from a shipped checkpoint; anything else is trained by
    the caller through :meth:`train`, which shows progress and may be interrupted (a rerun of
    the page) without leaving a half-trained model behind.
    """

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory or CHECKPOINT_DIR)
        self._models: dict[tuple[str, str], ModelEntry] = {}
        self._failures: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(dataset: str, cfg: TrainConfig) -> tuple[str, str]:
        return dataset, json.dumps(cfg.to_dict(), sort_keys=True)

    def lookup(
        self, dataset: str, cfg: TrainConfig, shipped_cfg: TrainConfig | None = None
    ) -> ModelEntry | None:
        """A model for ``cfg`` if one is in memory or shipped.

        ``shipped_cfg`` is the config a shipped checkpoint must match (default ``cfg``); the
        fast test mode trains shorter runs yet still starts from the shipped checkpoints.
        """
        key = self._key(dataset, cfg)
        with self._lock:
            if key in self._models:
                return self._models[key]
        path = find_checkpoint(dataset, shipped_cfg or cfg, self.directory)
        if path is None:
            return None
        entry = load_checkpoint(path)
        with self._lock:
            return self._models.setdefault(key, entry)

    def train(
        self,
        dataset: str,
        cfg: TrainConfig,
        progress: Callable[[int, float], None] | None = None,
    ) -> ModelEntry:
        entry = train_model(dataset, cfg, progress)
        with self._lock:
            return self._models.setdefault(self._key(dataset, cfg), entry)

    def record_failure(self, dataset: str, cfg: TrainConfig, err: BaseException) -> str:
        """Remember why training ``cfg`` failed, so a rerun of the page shows the reason at once
        instead of repeating a run that diverges deterministically."""
        reason = f"{type(err).__name__}: {err}"
        with self._lock:
            self._failures[self._key(dataset, cfg)] = reason
        return reason

    def failure(self, dataset: str, cfg: TrainConfig) -> str | None:
        with self._lock:
            return self._failures.get(self._key(dataset, cfg))

    def forget_failure(self, dataset: str, cfg: TrainConfig) -> None:
        with self._lock:
            self._failures.pop(self._key(dataset, cfg), None)

    def __len__(self) -> int:
        return len(self._models)
