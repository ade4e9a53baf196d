"""A training run's state on disk: checkpoints, per-rank RNG states and the metrics log.

A checkpoint folder ``checkpoints/step-N/`` holds the model (safetensors + config + tokenizer,
loadable with ``YAN.from_pretrained``), the optimiser state (plain tensors, loaded with
``weights_only=True``) and a JSON file with the scheduler, run settings, RNG states and data
position. It is written completely under a hidden name and then renamed, so a crash never
leaves a half-written checkpoint where a resume would look for one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yan.checkpoint import save_pretrained
from yan.model import YAN
from yan.tokenizer import YanTokenizer

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
STATE_FORMAT = 1

RESUME_KEYS = (
    "stage",
    "task",
    "data",
    "columns",
    "sample_by",
    "stream",
    "seed",
    "batch_size",
    "grad_accum",
    "world_size",
    "max_len",
    "lr",
    "warmup",
    "weight_decay",
)


def json_value(value: Any) -> Any:
    """Tuples as JSON gives them back (lists), so saved and live configs compare equal."""
    return list(value) if isinstance(value, tuple) else value


# ---- checkpoints ----------------------------------------------------------------------------
def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest_checkpoint(out: Path) -> Path | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a copy of ``src`` (hard link when possible: no extra disk)."""
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def save_checkpoint(
    out: Path,
    step: int,
    model: YAN,
    tok: YanTokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``checkpoints/step-N`` completely under a hidden name, rename it into place,
    export its weights to ``out`` (atomic replace), then drop all but the newest ``keep``."""
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    if final.exists():
        return final
    staging = root / f".staging-{step:08d}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        save_pretrained(model, staging, tokenizer=tok)
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n")
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for path in sorted(final.iterdir()):
        if path.name not in (OPTIMIZER_FILE, STATE_FILE) and path.is_file():
            _link_or_copy(path, out / path.name)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_staging(out: Path) -> None:
    """Remove leftovers of a save that crashed (hidden folders under ``checkpoints/``)."""
    root = out / CHECKPOINTS
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a resumable checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: unknown trainer state format {state.get('format')!r}")
    return state


def check_resume(saved: dict[str, Any], run: dict[str, Any], saved_cfg: dict, cfg: dict) -> None:
    """Refuse to continue a checkpoint whose config or run settings differ from this run's."""
    problems = [
        f"config.{k}: checkpoint {saved_cfg.get(k)!r}, now {cfg.get(k)!r}"
        for k in sorted(set(saved_cfg) | set(cfg))
        if json_value(saved_cfg.get(k)) != json_value(cfg.get(k))
    ]
    problems += [
        f"{k}: checkpoint {saved['run'].get(k)!r}, now {run.get(k)!r}"
        for k in RESUME_KEYS
        if saved["run"].get(k) != run.get(k)
    ]
    if problems:
        raise ValueError(
            "--resume: the checkpoint in --out belongs to a different run ("
            + "; ".join(problems)
            + "). Use the same arguments as that run, or another --out; nothing was changed."
        )


# ---- RNG state (JSON, per rank) -------------------------------------------------------------
def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch (CPU and CUDA) and the loss generator's states, JSON-ready."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
        "cuda": torch.cuda.get_rng_state(device).tolist() if device.type == "cuda" else None,
        "generator": generator.get_state().tolist(),
    }


def set_rng_state(
    state: Mapping[str, Any], generator: torch.Generator, device: torch.device
) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)
    generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


def rank_seed(seed: int, rank: int) -> int:
    """Independent per-rank seed (latent noise, t, z0 and expert draws differ across ranks)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


# ---- metrics --------------------------------------------------------------------------------
class MetricsLog:
    """Append-only ``metrics.jsonl`` on rank 0; a resume first drops lines past its step."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.is_file()):
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``out/metrics.jsonl`` (train and val), in order."""
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {out}: not a training output folder")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
