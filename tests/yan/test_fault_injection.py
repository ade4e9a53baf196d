"""What a ``yan train`` run folder survives: each test injects one fault into a real (``tiny``,
a few steps) training run and checks what the user gets afterwards. docs/reliability.md is the
table of these faults and behaviours; run ``pytest tests/yan/test_fault_injection.py -v`` to
see it hold.

Faults: a process killed (SIGKILL) between writing a checkpoint and renaming it into place; a
damaged newest checkpoint (zeros written into one of its files); a ``metrics.jsonl`` whose last
line was cut short; two processes training into one folder; a full disk (a write that raises
``OSError(ENOSPC)``) at three points of a save; a scheduler's SIGTERM (preemption).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from yan import run_state
from yan import train as yan_train
from yan.checkpoint import WEIGHTS_NAME, load_pretrained, verify_checksums
from yan.plot_run import main as plot_main
from yan.run_state import (
    LOCK_FILE,
    METRICS_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    checkpoint_dirs,
    checkpoint_problem,
    read_metrics,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--batch-size", "4", "--warmup", "2", "--log-every", "1", "--eval-every", "0"]
FAST += ["--eval-batches", "1", "--no-progress", "--save-every", "2"]
FAST += ["--threads", "1"]  # as the killed subprocesses (OMP_NUM_THREADS=1): same sums
pytestmark = pytest.mark.usefixtures("isolated_data_cache")


@pytest.fixture(scope="module")
def corpus(line_corpus: Path) -> Path:
    return line_corpus


def argv(corpus: Path, out: Path, steps: int, *extra: str) -> list[str]:
    head = ["--preset", "tiny", "--data", str(corpus), "--max-steps", str(steps)]
    return [*head, "--out", str(out), *FAST, *extra]


def train(corpus: Path, out: Path, steps: int, *extra: str) -> yan_train.TrainResult:
    return yan_train.main(argv(corpus, out, steps, *extra))


def spawn(code: str, args: list[str]) -> subprocess.Popen[str]:
    """A separate Python process running ``code`` with ``sys.argv[1:] = args``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_steps(out: Path) -> list[int]:
    return [r["step"] for r in read_metrics(out) if r["kind"] == "train"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / WEIGHTS_NAME))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus) -> Path:
    """The reference: the same 6 steps without any fault."""
    out = tmp_path_factory.mktemp("straight") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))
    try:
        train(corpus, out, 6)
    finally:
        mp.undo()
    return out


# ---- kill -9 between the staging write and the rename ---------------------------------------
KILL_BEFORE_RENAME = """
    import os, signal, sys
    from pathlib import Path
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        # the checkpoint of step 4 is complete under its hidden name: die before the rename
        if Path(src).name.startswith(".staging-00000004") and Path(dst).name == "step-00000004":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    from yan.train import main
    main(sys.argv[1:])
"""


def test_kill_9_between_staging_write_and_rename(corpus, tmp_path, straight):
    out = tmp_path / "run"
    proc = spawn(KILL_BEFORE_RENAME, argv(corpus, out, 6))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    # what the kill left: the previous checkpoint, a staging folder, the dead owner's lock
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000002"]
    assert any(p.name.startswith(".staging-") for p in (out / "checkpoints").iterdir())
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == proc.pid
    assert checkpoint_problem(checkpoint_dirs(out)[-1]) is None
    load_pretrained(out)  # the export is step 2's, whole
    with pytest.warns(UserWarning, match=f"stale lock of pid {proc.pid}"):
        res = train(corpus, out, 6, "--resume")
    assert res.step == 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-00000004",
        "step-00000006",
    ]  # the staging folder is gone, step 4 was written again
    assert train_steps(out) == [1, 2, 3, 4, 5, 6]  # each step logged once
    assert same_weights(out, straight)  # as if nothing had happened


# ---- a damaged newest checkpoint ------------------------------------------------------------
@pytest.mark.parametrize("name", [WEIGHTS_NAME, OPTIMIZER_FILE, STATE_FILE])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(corpus, tmp_path, straight, name):
    out = tmp_path / "run"
    train(corpus, out, 4)
    newest = checkpoint_dirs(out)[-1]
    path = newest / name
    data = path.read_bytes()
    start = len(data) // 4
    path.write_bytes(data[:start] + bytes(len(data) - start))  # zeros, same length
    load_pretrained(out)  # the export is a copy: still whole
    with pytest.warns(UserWarning, match=f"skipping step-00000004: {path} is damaged"):
        res = train(corpus, out, 6, "--resume")
    assert res.step == 6
    assert (out / "checkpoints" / "damaged-step-00000004").is_dir()  # kept, out of the way
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000004", "step-00000006"]
    assert train_steps(out) == [1, 2, 3, 4, 5, 6]
    assert same_weights(out, straight)


# ---- a metrics.jsonl cut short ----------------------------------------------------------------
def test_truncated_metrics_line_is_skipped_by_plot_and_resume(corpus, tmp_path, straight):
    out = tmp_path / "run"
    train(corpus, out, 4)
    with open(out / METRICS_FILE, "a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # the process died mid-write
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        assert train_steps(out) == [1, 2, 3, 4]
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        png = plot_main([str(out)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        assert train(corpus, out, 6, "--resume").step == 6
    lines = (out / METRICS_FILE).read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # rewritten clean
    assert train_steps(out) == [1, 2, 3, 4, 5, 6]
    assert same_weights(out, straight)


# ---- two writers on one folder --------------------------------------------------------------
RUN = """
    import sys
    from yan.train import main
    main(sys.argv[1:])
"""


def test_two_processes_on_one_folder(corpus, tmp_path, capsys):
    """Run A owns the folder; B (a new run, then a --resume) is refused while A is paused
    mid-run; A then finishes with a history and checkpoints that are A's alone."""
    out = tmp_path / "run"
    a = spawn(RUN, argv(corpus, out, 8))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and a.poll() is None:
            try:  # the owner record is written once the lock is held
                if json.loads((out / LOCK_FILE).read_text()).get("pid") == a.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        assert a.poll() is None, a.communicate()[1][-2000:]
        a.send_signal(signal.SIGSTOP)  # A holds the lock, wherever it is in its run
        for extra in ([], ["--resume"]):
            with pytest.raises(SystemExit) as err:
                train(corpus, out, 8, *extra)
            assert err.value.code == 2
            message = capsys.readouterr().err
            assert f"is in use by another training run (pid {a.pid} on host" in message
        a.send_signal(signal.SIGCONT)
        _, a_err = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
            a.kill()
            a.wait()
    assert a.returncode == 0, a_err[-2000:]
    assert train_steps(out) == list(range(1, 9))  # one run's history
    assert json.loads((out / "run.json").read_text())["max_steps"] == 8
    for folder in checkpoint_dirs(out):
        verify_checksums(folder)
    verify_checksums(out)
    assert not (out / LOCK_FILE).exists()


# ---- a full disk ----------------------------------------------------------------------------
def _disk_full(path: Path) -> None:
    Path(path).write_bytes(b"partial")  # what made it to the disk before it filled up
    raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(path))


@pytest.mark.parametrize("where", ["optimizer", "checksums", "export"])
def test_full_disk_during_a_save_keeps_the_previous_checkpoint(
    corpus, tmp_path, monkeypatch, straight, where
):
    """The save of step 4 fails with ENOSPC: writing the optimiser state or the checksums
    (inside the staging folder), or copying the weights to the export after the rename."""
    out = tmp_path / "run"
    saves: list[int] = []
    real_save, real_checksums, real_copy = (
        torch.save,
        run_state.write_checksums,
        shutil.copyfile,
    )

    def torch_save(obj, path, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            _disk_full(path)
        return real_save(obj, path, *args, **kwargs)

    def write_checksums(folder, *args, **kwargs):
        if ".staging-00000004" in str(folder):
            _disk_full(Path(folder) / "checksums.json")
        return real_checksums(folder, *args, **kwargs)

    def copyfile(src, dst, *args, **kwargs):
        if "step-00000004" in str(src) and Path(src).name == WEIGHTS_NAME:
            _disk_full(dst)
        return real_copy(src, dst, *args, **kwargs)

    if where == "optimizer":
        monkeypatch.setattr(run_state.torch, "save", torch_save)
    elif where == "checksums":
        monkeypatch.setattr(run_state, "write_checksums", write_checksums)
    else:
        monkeypatch.setattr(run_state.shutil, "copyfile", copyfile)
    with pytest.raises(OSError, match="No space left"):
        train(corpus, out, 6)
    monkeypatch.undo()
    # the step-2 checkpoint is intact and the export is whole and verifies
    assert checkpoint_problem(out / "checkpoints" / "step-00000002") is None
    verify_checksums(out)
    load_pretrained(out)
    assert not [p for p in out.rglob(".*") if p.name != LOCK_FILE]  # no temporary leftovers
    assert not (out / LOCK_FILE).exists()  # the failed run released its lock
    newest = [p.name for p in checkpoint_dirs(out)]
    # before the rename step 4 never appears; after it (export) step 4 is complete
    assert newest == (
        ["step-00000002", "step-00000004"] if where == "export" else ["step-00000002"]
    )
    assert same_weights(out, checkpoint_dirs(out)[0])  # the export is still step 2's
    res = train(corpus, out, 6, "--resume")
    assert res.step == 6 and train_steps(out) == [1, 2, 3, 4, 5, 6]
    assert same_weights(out, straight)


# ---- preemption: SIGTERM from outside -------------------------------------------------------
def test_sigterm_saves_a_checkpoint_exits_75_and_the_resume_is_exact(corpus, tmp_path, straight):
    """A scheduler's SIGTERM (sent once the first checkpoint exists) ends the run at the next
    step boundary with a checkpoint of that step and exit code 75; ``--resume`` then finishes
    with the weights and losses of an uninterrupted run."""
    out = tmp_path / "run"
    proc = spawn(RUN, argv(corpus, out, 6))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "checkpoints" / "step-00000002").is_dir():
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, stderr[-2000:]
    stopped = checkpoint_dirs(out)[-1]
    step = int(stopped.name.split("-")[1])
    assert 2 <= step < 6 and checkpoint_problem(stopped) is None
    assert f"stopped by SIGTERM at step {step}" in stdout and "--resume" in stdout
    assert train_steps(out) == list(range(1, step + 1))
    assert not [r for r in read_metrics(out) if r["kind"] == "val"]  # no final validation
    assert not (out / LOCK_FILE).exists()  # a clean exit released the lock
    assert same_weights(out, stopped)  # the export is the stopped step's
    res = train(corpus, out, 6, "--resume")
    assert res.step == 6 and train_steps(out) == [1, 2, 3, 4, 5, 6]
    assert same_weights(out, straight)

    def losses(folder: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_metrics(folder) if r["kind"] == "train"]

    assert losses(out) == losses(straight)
