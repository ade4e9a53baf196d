"""The GPU launch scripts run unchanged on CPU with ``--preset tiny --max-steps 2`` (NPROC=1),
and build the multi-node torchrun command from NNODES / NODE_RANK / MASTER_ADDR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yan.model import YAN

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
WORDS = "river mountain city music science history water light garden winter forest".split()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHON": sys.executable, "NPROC": "1", "OMP_NUM_THREADS": "1"}
    env["YAN_DATA_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


def _run(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(2)
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    rows = [f"Entry {i}: " + " ".join(rng.choice(WORDS, size=9)) + "." for i in range(100)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_pretrain_then_finetune_on_cpu(tmp_path, corpus):
    tiny = ["--preset", "tiny", "--max-steps", "2", "--data", str(corpus), "--no-progress"]
    run = tmp_path / "run"
    proc = _run("pretrain.sh", tiny, _env(tmp_path, OUT=str(run)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("stage1", "stage2"):
        assert (run / stage / "checkpoints" / "step-00000002").is_dir()
        YAN.from_pretrained(run / stage)
    # the paper's settings reach yan train (App. B.3), the extra arguments come last
    assert "--batch-size 32 --lr 1e-4 --warmup 1000" in proc.stderr
    assert "--init " + str(run / "stage1") in proc.stderr

    ft = tmp_path / "ft"
    env = _env(tmp_path, OUT=str(ft), INIT=str(run / "stage2"))
    proc = _run("finetune.sh", ["narrativeqa", *tiny], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--stage finetune --task infill" in proc.stderr and "--lr 1e-5" in proc.stderr
    YAN.from_pretrained(ft)


def test_multi_node_command(tmp_path):
    env = _env(
        tmp_path, NNODES="2", NODE_RANK="1", MASTER_ADDR="node0", MASTER_PORT="29555",
        NPROC="8", DRY_RUN="1", OUT="runs/x",
    )  # fmt: skip
    proc = _run("pretrain.sh", [], env)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert len(commands) == 2  # stage 1, then stage 2
    for cmd in commands:
        assert "--nproc-per-node=8 --nnodes=2 --node-rank=1 --rdzv-backend=c10d" in cmd
        assert "--rdzv-endpoint=node0:29555" in cmd and "--standalone" not in cmd
        assert "--preset paper-trf --data finewiki,fineweb-edu" in cmd
    assert "--stage 1" in commands[0] and "--stage 2 --task infill" in commands[1]


def test_finetune_rejects_unknown_dataset(tmp_path):
    proc = _run("finetune.sh", ["poetry"], _env(tmp_path, DRY_RUN="1"))
    assert proc.returncode == 2 and "unknown dataset 'poetry'" in proc.stderr
