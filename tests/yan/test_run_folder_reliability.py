"""Run-folder reliability of ``yan train``: the run lock, checksummed checkpoints and the
refusals that keep a run's history (``--overwrite``, ``--allow-stage1-over-flow``).

Every training here is the ``tiny`` preset on a small local corpus, in-process, a few steps.
The faults a reader may want to see survived (kill -9, full disk, two processes) are in
``test_fault_injection.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from yan import run_state
from yan import train as yan_train
from yan.checkpoint import (
    CHECKSUMS_NAME,
    WEIGHTS_NAME,
    load_pretrained,
    save_pretrained,
    verify_checksums,
)
from yan.generate import main as generate_main
from yan.model import YAN
from yan.run_state import (
    LOCK_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    RunLock,
    checkpoint_dirs,
    checkpoint_problem,
    read_metrics,
)
from yan.tokenizer import YanTokenizer

FAST = ["--batch-size", "4", "--warmup", "2", "--log-every", "1", "--eval-every", "0"]
FAST += ["--eval-batches", "1", "--no-progress", "--threads", "1"]
pytestmark = pytest.mark.usefixtures("isolated_data_cache")


@pytest.fixture(scope="module")
def corpus(line_corpus: Path) -> Path:
    return line_corpus


def train(corpus: Path, out: Path, steps: int, *extra: str) -> yan_train.TrainResult:
    argv = ["--preset", "tiny", "--data", str(corpus), "--max-steps", str(steps)]
    return yan_train.main([*argv, "--out", str(out), "--save-every", "2", *FAST, *extra])


def train_steps(out: Path) -> list[int]:
    return [r["step"] for r in read_metrics(out) if r["kind"] == "train"]


def zero_fill(path: Path, offset: int | None = None) -> None:
    """Overwrite the file from ``offset`` (default: a quarter in) to its end with zeros, as a bad
    disk or a stray write would; it keeps its length. Fails if nothing changed (all zeros)."""
    data = path.read_bytes()
    start = len(data) // 4 if offset is None else offset
    damaged = data[:start] + bytes(len(data) - start)
    assert damaged != data
    path.write_bytes(damaged)


def error_of(capsys, fn, *args) -> str:
    """Run a CLI ``main`` that must fail with a one-line argparse error; return that line."""
    with pytest.raises(SystemExit) as err:
        fn(*args)
    assert err.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
    assert len(lines) == 1
    return lines[0]


# ---- the run lock ---------------------------------------------------------------------------
def test_a_held_lock_stops_a_second_run_with_the_owner_named(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock.acquire(out):
        owner = json.loads((out / LOCK_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        line = error_of(capsys, train, corpus, out, 2)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in line
        assert "in use by another training run" in line and str(out / LOCK_FILE) in line
        line = error_of(capsys, train, corpus, out, 2, "--resume")
        assert "in use by another training run" in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing was written
    assert not out.exists()  # the lock made the folder; released empty, it is removed
    assert train(corpus, out, 2).step == 2
    assert not (out / LOCK_FILE).exists()  # a finished run releases its lock


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(corpus, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is now free: the owner of the lock file below no longer exists
    out = tmp_path / "run"
    out.mkdir()
    owner = {"pid": dead.pid, "host": socket.gethostname(), "started": "yesterday"}
    (out / LOCK_FILE).write_text(json.dumps(owner))
    with pytest.warns(UserWarning, match=f"stale lock of pid {dead.pid}"):
        assert train(corpus, out, 2).step == 2
    assert not (out / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_not_taken_over(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    owner = {"pid": 1234, "host": "some-other-host", "started": "today"}
    (out / LOCK_FILE).write_text(json.dumps(owner))
    line = error_of(capsys, train, corpus, out, 2)
    assert "pid 1234 on host some-other-host" in line
    assert f"if that run is no longer running, delete {out / LOCK_FILE}" in line
    assert json.loads((out / LOCK_FILE).read_text()) == owner  # left as it was


def test_without_flock_the_lock_file_is_created_exclusively(tmp_path, monkeypatch):
    """Where ``fcntl`` is missing (Windows) the lock is the exclusive creation of its file."""
    monkeypatch.setattr(run_state, "fcntl", None)
    out = tmp_path / "run"
    lock = RunLock.acquire(out)
    with pytest.raises(ValueError, match=f"pid {os.getpid()}.*delete {out / LOCK_FILE}"):
        RunLock.acquire(out)
    lock.release()
    assert not out.exists()
    RunLock.acquire(out).release()


def test_a_lock_is_released_when_the_run_fails(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the training loop")

    monkeypatch.setattr(yan_train.Trainer, "train_step", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        train(corpus, out, 2)
    assert out.is_dir() and not (out / LOCK_FILE).exists()


# ---- checkpoints: checksums, export, fallback -----------------------------------------------
def test_checkpoints_carry_checksums_and_the_export_is_a_copy(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, 6)
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000004", "step-00000006"]  # keep 2
    newest = checkpoint_dirs(out)[-1]
    recorded = json.loads((newest / CHECKSUMS_NAME).read_text())["files"]
    assert {WEIGHTS_NAME, OPTIMIZER_FILE, STATE_FILE} <= set(recorded)
    verify_checksums(newest)
    verify_checksums(out)
    # a copy, not a hard link: damage to the checkpoint's file is not damage to the export
    assert (out / WEIGHTS_NAME).stat().st_ino != (newest / WEIGHTS_NAME).stat().st_ino
    zero_fill(newest / WEIGHTS_NAME)
    load_pretrained(out)
    with pytest.raises(ValueError, match=f"{newest / WEIGHTS_NAME} is damaged.*sha256"):
        load_pretrained(newest)


def test_damaged_weights_name_the_file_instead_of_a_raw_safetensors_error(tmp_path, capsys):
    tok = YanTokenizer.train(["a small corpus of words"] * 20, vocab_size=260)
    folder = save_pretrained(YAN.from_preset("tiny", vocab_size=tok.vocab_size), tmp_path, tok)
    assert not (folder / CHECKSUMS_NAME).exists()  # a plain save_pretrained folder
    zero_fill(folder / WEIGHTS_NAME, offset=0)  # the header: not parseable
    with pytest.raises(ValueError, match=f"{folder / WEIGHTS_NAME} cannot be read"):
        load_pretrained(folder)
    argv = ["--checkpoint", str(folder), "--task", "infill", "--text", "a <|mask|> corpus"]
    line = error_of(capsys, generate_main, argv)
    assert str(folder / WEIGHTS_NAME) in line and "SafetensorError" not in line


def test_a_truncated_file_is_found_by_its_size(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, 2)
    folder = checkpoint_dirs(out)[-1]
    os.truncate(folder / OPTIMIZER_FILE, 100)
    problem = checkpoint_problem(folder)
    assert problem is not None and f"{folder / OPTIMIZER_FILE} is damaged: 100 bytes" in problem


def test_with_one_checkpoint_kept_a_damaged_one_is_a_one_line_error(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(corpus, out, 4, "--keep-checkpoints", "1")
    folder = checkpoint_dirs(out)[-1]
    zero_fill(folder / OPTIMIZER_FILE)
    before = (out / "metrics.jsonl").read_text()
    line = error_of(capsys, train, corpus, out, 6, "--keep-checkpoints", "1", "--resume")
    assert "no usable checkpoint" in line and str(folder / OPTIMIZER_FILE) in line
    assert "--overwrite" in line
    assert (out / "metrics.jsonl").read_text() == before  # nothing changed
    assert checkpoint_dirs(out) == [folder]


def test_an_unreadable_optimizer_without_checksums_names_the_file(corpus, tmp_path, capsys):
    """A checkpoint written before checksums existed: the load error names the file."""
    out = tmp_path / "run"
    train(corpus, out, 2)
    folder = checkpoint_dirs(out)[-1]
    (folder / CHECKSUMS_NAME).unlink()
    zero_fill(folder / OPTIMIZER_FILE, offset=0)
    line = error_of(capsys, train, corpus, out, 4, "--resume")
    assert f"{folder / OPTIMIZER_FILE} cannot be read" in line
    assert "weights_only=False" not in line  # torch's advice is no fix for a damaged file


# ---- never over a history without --overwrite -----------------------------------------------
def test_resume_without_a_checkpoint_keeps_the_history_unless_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(corpus, out, 4)
    for folder in checkpoint_dirs(out):  # what a user did to get rid of a damaged checkpoint
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    before = (out / "metrics.jsonl").read_text()
    line = error_of(capsys, train, corpus, out, 4, "--resume")
    assert "a metrics history up to step 4 but no checkpoint" in line and "--overwrite" in line
    assert (out / "metrics.jsonl").read_text() == before
    with pytest.warns(UserWarning, match="--overwrite: deleted"):
        res = train(corpus, out, 3, "--resume", "--overwrite")
    assert res.step == 3 and train_steps(out) == [1, 2, 3]  # a new history, from step 0


def test_a_new_run_over_an_old_one_needs_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(corpus, out, 4)
    line = error_of(capsys, train, corpus, out, 2)
    assert "--resume" in line and "--overwrite" in line
    with pytest.warns(UserWarning, match="--overwrite: deleted checkpoints, metrics.jsonl"):
        train(corpus, out, 2, "--overwrite")
    assert train_steps(out) == [1, 2]
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000002"]


def test_a_refused_resume_changes_nothing_even_with_a_damaged_checkpoint(corpus, tmp_path, capsys):
    """A damaged newest checkpoint is set aside only when the run really starts: a resume
    refused for other arguments leaves every file as it was."""
    out = tmp_path / "run"
    train(corpus, out, 4)
    zero_fill(checkpoint_dirs(out)[-1] / WEIGHTS_NAME)
    before = {str(p): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.warns(UserWarning, match="skipping step-00000004"):
        line = error_of(capsys, train, corpus, out, 6, "--resume", "--lr", "3e-4")
    assert "belongs to a different run" in line
    assert {str(p): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


# ---- stage 1 over a trained flow ------------------------------------------------------------
def test_stage1_over_a_trained_flow_is_refused_unless_asked(corpus, tmp_path, capsys):
    s1, s2, again = tmp_path / "s1", tmp_path / "s2", tmp_path / "again"
    train(corpus, s1, 2)
    train(corpus, s2, 2, "--stage", "2", "--init", str(s1))
    line = error_of(capsys, train, corpus, again, 2, "--init", str(s2))
    assert "holds a trained latent flow (it was trained with --stage 2)" in line
    assert "--allow-stage1-over-flow" in line and not again.exists()
    step_folder = checkpoint_dirs(s2)[-1]  # a step-N folder is recognised too
    assert "trained latent flow" in error_of(
        capsys, train, corpus, again, 2, "--init", str(step_folder)
    )
    train(corpus, again, 2, "--init", str(s2), "--allow-stage1-over-flow")
    # the lineage survives the stage-1 rerun: its output still holds a trained flow
    line = error_of(capsys, train, corpus, tmp_path / "third", 2, "--init", str(again))
    assert "its flow was trained by an earlier stage-2 run" in line
    assert train(corpus, tmp_path / "fine", 2, "--init", str(s1)).step == 2  # stage 1 -> 1 is ok
