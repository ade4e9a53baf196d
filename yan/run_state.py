"""A training run's state on disk: the run-folder lock, checkpoints, per-rank RNG states and the
metrics log.

A checkpoint folder ``checkpoints/step-N/`` holds the model (safetensors + config + tokenizer,
loadable with ``YAN.from_pretrained``), the optimiser state (plain tensors, loaded with
``weights_only=True``), a JSON file with the scheduler, run settings, per-rank RNG states and
the data position (one for the whole run, which any number of processes continues:
:mod:`yan.elastic`), and ``checksums.json`` (sha256 and size of every other file). It is
written completely under a hidden name and then renamed, so a crash never leaves a
half-written checkpoint where a resume would look for one; the checksums catch what a rename
cannot: a file damaged later (a bad disk, a stray write, a copy cut short). A resume takes the
newest checkpoint that verifies.

One training process owns a run folder at a time (:class:`RunLock`): two runs writing one
``metrics.jsonl`` and one ``checkpoints/`` folder destroy each other's history.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yan.atomic import atomic_write_text
from yan.checkpoint import (
    CARD_NAME,
    CHECKSUMS_NAME,
    EMA_NAME,
    WEIGHTS_NAME,
    read_checksums,
    save_pretrained,
    verify_checksums,
    write_checksums,
)
from yan.model import YAN
from yan.tokenizer import YanTokenizer

try:  # POSIX; elsewhere the lock falls back to exclusive creation of the lock file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
LOCK_FILE = ".train.lock"  # hidden: not part of the run's results
DAMAGED_PREFIX = "damaged-"  # checkpoints/damaged-step-N: set aside by a resume, kept to inspect
STATE_FORMAT = 1
# What ``--overwrite`` deletes before a new run starts in a used folder: everything a training
# run writes that would otherwise describe the old run (config and tokenizer are rewritten).
RUN_OUTPUTS = (
    CHECKPOINTS,
    METRICS_FILE,
    RUN_FILE,
    WEIGHTS_NAME,
    EMA_NAME,  # a stale average would load as the new run's (weights="ema")
    CARD_NAME,
    CHECKSUMS_NAME,
    "tensorboard",  # yan.tracking.TENSORBOARD_DIR, the --report-to tensorboard event files
)

# What a --resume must share with its checkpoint. Not the number of processes nor --grad-accum:
# only the global batch they split matters (yan.elastic.batch_layout checks it first).
RESUME_KEYS = (
    "stage",
    "task",
    "data",
    "columns",
    "sample_by",
    "stream",
    "data_weights",
    "seed",
    "batch_size",
    "max_len",
    "lr",
    "warmup",
    "weight_decay",
)


def json_value(value: Any) -> Any:
    """Tuples as JSON gives them back (lists), so saved and live configs compare equal."""
    return list(value) if isinstance(value, tuple) else value


# ---- the run-folder lock --------------------------------------------------------------------
class RunLock:
    """Exclusive ownership of a run folder for the whole run (rank 0 under DDP).

    The lock is an ``flock`` on ``DIR/.train.lock``, a file that also names its owner (pid, host,
    start time) for the error message of whoever finds it taken. The kernel drops an ``flock``
    when its process dies, however it dies (``kill -9``, out of memory), so a lock file left
    behind is recognised as stale and taken over with a warning. A lock file whose owner ran on
    another host is not taken over: on a shared file system the owner may still be running
    there (``flock`` is not seen across hosts on every network file system), so the message says
    which file to delete once that run is known to be gone.

    Use :meth:`acquire` and :meth:`release` (or ``with RunLock.acquire(out):``).
    """

    def __init__(self, path: Path, fd: int, created_dir: bool) -> None:
        self.path, self.fd, self.created_dir = path, fd, created_dir

    @classmethod
    def acquire(cls, out: Path) -> RunLock:
        """Take the lock of ``out`` (created if needed), or raise ``ValueError`` naming the owner."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        path = out / LOCK_FILE
        try:
            for _ in range(100):  # another process may unlink the file between open and lock
                lock = cls._try(path, created)
                if lock is not None:
                    return lock
            raise ValueError(f"--out {out}: could not take the run lock {path}")
        except BaseException:
            if created:
                _remove_if_empty(out)
            raise

    @classmethod
    def _try(cls, path: Path, created: bool) -> RunLock | None:
        if fcntl is None:
            return cls._try_exclusive(path, created)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:  # some file systems report a taken lock as EACCES
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise ValueError(_busy_message(path, _read_owner(fd))) from None
            # the previous holder unlinks the file before it unlocks: a lock on an unlinked
            # inode protects nothing, so start again with the file now at ``path``
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return None
            except FileNotFoundError:
                return None
            previous = _read_owner(fd)
            if previous:
                if previous.get("host") != socket.gethostname():
                    raise ValueError(_busy_message(path, previous, foreign=True))
                warnings.warn(
                    f"{path}: taking over a stale lock of pid {previous.get('pid')} (started "
                    f"{previous.get('started')}), which no longer holds it: that run ended "
                    "without releasing it (killed or crashed)",
                    stacklevel=4,
                )
            _write_owner(fd)
            taken = True
            return cls(path, fd, created)
        finally:
            if not taken:
                os.close(fd)

    @classmethod
    def _try_exclusive(cls, path: Path, created: bool) -> RunLock:
        """Without ``flock`` (Windows): exclusive creation of the lock file. Whether its owner is
        alive cannot be told safely there, so a file left by a killed run is deleted by hand."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(path, os.O_RDONLY)
            try:
                owner = _read_owner(fd)
            finally:
                os.close(fd)
            raise ValueError(_busy_message(path, owner, foreign=True)) from None
        _write_owner(fd)
        return cls(path, fd, created)

    def release(self) -> None:
        """Unlink the lock file, then unlock (in that order: see :meth:`_try`). Idempotent."""
        if self.fd < 0:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)
            self.fd = -1
        if self.created_dir:
            _remove_if_empty(self.path.parent)  # a run that failed before writing anything

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _read_owner(fd: int) -> dict[str, Any]:
    """The owner record in an open lock file; ``{}`` when empty or unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace")
        owner = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _write_owner(fd: int) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)


def _busy_message(path: Path, owner: Mapping[str, Any], foreign: bool = False) -> str:
    who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    since = f" since {owner['started']}" if owner.get("started") else ""
    message = (
        f"--out {path.parent} is in use by another training run ({who}{since}, lock file "
        f"{path}): wait for it to finish or choose another --out"
    )
    if foreign:
        message += f"; if that run is no longer running, delete {path}"
    return message


# ---- checkpoints ----------------------------------------------------------------------------
def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (verified or not: see
    :func:`checkpoint_problem`)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest_checkpoint(out: Path) -> Path | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (one line naming the file), or ``None`` if it can.

    Every file is checked against ``checksums.json``; a checkpoint written before checksums
    existed is only checked for its files being present and its state readable.
    """
    try:
        if read_checksums(folder) is not None:
            verify_checksums(folder)
        else:
            for name in (WEIGHTS_NAME, OPTIMIZER_FILE):
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"{folder / name} is missing")
        read_state(folder)
    except (ValueError, FileNotFoundError) as err:
        return str(err)
    return None


def resumable_checkpoint(out: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that verifies, and the damaged ones newer than it with the reason.

    Returns ``(None, damaged)`` when no checkpoint verifies (``damaged`` then lists them all).
    """
    damaged: list[tuple[Path, str]] = []
    for folder in reversed(checkpoint_dirs(out)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, damaged
        damaged.append((folder, problem))
    return None, damaged


def set_aside(folder: Path) -> Path:
    """Rename a damaged ``step-N`` to ``damaged-step-N`` (kept to inspect, out of every listing),
    so that the resumed run can write a fresh ``step-N`` when it gets there again."""
    target = folder.with_name(DAMAGED_PREFIX + folder.name)
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{DAMAGED_PREFIX}{folder.name}.{n}")
    os.replace(folder, target)
    return target


def metrics_history(out: Path) -> int | None:
    """The last step logged in ``out/metrics.jsonl``, or ``None`` when nothing was logged."""
    path = out / METRICS_FILE
    if not path.is_file():
        return None
    steps = [r.get("step", 0) for r in _parse_metrics(path, warn=False)]
    return max(steps) if steps else None


def clear_run(out: Path) -> list[str]:
    """Delete what a previous run wrote in ``out`` (``--overwrite``); returns the names removed."""
    removed = []
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _fsync(path: Path) -> None:
    """Flush a file or folder to the disk: a rename is only as durable as what it points to."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def export_files(folder: Path, out: Path) -> None:
    """Copy a checkpoint's model files (weights, config, tokenizer) to ``out``.

    Copies, never hard links: a link would share one inode between the export and the
    checkpoint, so damage to one would be damage to both and the export could not serve as a
    fallback. All copies are written under hidden names first and then renamed over the old
    files, so a full disk leaves the previous export whole; ``out/checksums.json`` is removed
    while the files are swapped and rewritten (from the checkpoint's entries) afterwards.
    """
    recorded = read_checksums(folder) or {}
    names = [
        p.name
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (OPTIMIZER_FILE, STATE_FILE, CHECKSUMS_NAME)
    ]
    staged: list[tuple[Path, Path]] = []
    try:
        for name in names:
            tmp = out / f".{name}.{os.getpid()}.tmp"
            staged.append((tmp, out / name))  # before the copy: a failed copy is removed too
            shutil.copyfile(folder / name, tmp)
            _fsync(tmp)
        (out / CHECKSUMS_NAME).unlink(missing_ok=True)
        for tmp, dst in staged:
            os.replace(tmp, dst)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    entries = {n: recorded[n] for n in names if n in recorded}
    if entries:
        write_checksums(out, entries)


def save_checkpoint(
    out: Path,
    step: int,
    model: YAN | torch.nn.Module,
    tok: YanTokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int,
    write_model: Callable[[Path], None] | None = None,
    extra: Callable[[Path], Any] | None = None,
) -> Path:
    """Write ``checkpoints/step-N`` completely under a hidden name (with ``checksums.json`` and
    flushed to disk), rename it into place, export its model files to ``out``, then drop all but
    the newest ``keep``. A failure before the rename leaves the previous checkpoints untouched.

    ``write_model(folder)`` writes the model's files into the new folder where they are not
    YAN's (``save_pretrained(model, folder, tokenizer=tok)``): a baseline's, for instance.
    ``extra(folder)`` writes more model files beside the weights (the EMA's), before the
    checksums are taken."""
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    if final.exists():
        return final
    staging = root / f".staging-{step:08d}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        if write_model is None:
            save_pretrained(model, staging, tokenizer=tok)
        else:
            write_model(staging)
        if extra is not None:
            extra(staging)
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n")
        write_checksums(staging)
        for path in staging.iterdir():
            _fsync(path)
        _fsync(staging)
        os.replace(staging, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    export_files(final, out)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_staging(out: Path) -> None:
    """Remove leftovers of a save that crashed (hidden folders under ``checkpoints/``, hidden
    temporary copies of an export). Only safe under the run lock: they may be a live save's."""
    root = out / CHECKPOINTS
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)
    if out.is_dir():
        for path in out.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
                path.unlink(missing_ok=True)


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
def _parse_metrics(path: Path, warn: bool = True) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; lines that are not a JSON object are skipped.

    A process killed while appending leaves a partial last line; it must not make the whole
    history unreadable (a resume, ``yan plot-run``), so it is skipped with a warning naming the
    line. A resume rewrites the file without it (:meth:`MetricsLog.truncate_after`).
    """
    records, bad = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(n)
    if bad and warn:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"{path}: skipped {len(bad)} unreadable line(s) ({shown}): a write cut short by a "
            "crash?",
            stacklevel=3,
        )
    return records


class MetricsLog:
    """Append-only ``metrics.jsonl`` on rank 0; a resume first drops lines past its step."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """Keep the records up to ``step`` (those the resumed checkpoint has seen), dropping
        unreadable lines too: appending after a partial line would damage the next record."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = [r for r in _parse_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``out/metrics.jsonl`` (train and val), in order; unreadable lines (a
    write cut short by a crash) are skipped with a warning."""
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {out}: not a training output folder")
    return _parse_metrics(path)
