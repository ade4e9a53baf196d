"""The GPU launch scripts run unchanged on CPU with ``--preset tiny --max-steps 2`` (NPROC=1),
build the multi-node torchrun command from NNODES / NODE_RANK / MASTER_ADDR (refusing a
multi-node run without MASTER_ADDR), and scripts/slurm.sbatch runs them on every node of a
(made-up) SLURM allocation: fake ``srun`` / ``scontrol`` / ``scancel`` on the PATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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


# ---- scripts/gpu_smoke.sh -----------------------------------------------------------------------
def _commands(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("+ ")]


def test_gpu_smoke_builds_the_gpu_commands(tmp_path):
    proc = _run("gpu_smoke.sh", [], _env(tmp_path, DRY_RUN="1", OUT="runs/s"))
    assert proc.returncode == 0, proc.stderr
    commands = _commands(proc)
    assert len(commands) == 5  # stage 1 and 2, eager then --compile, then the latency bench
    trains, bench = commands[:4], commands[4]
    for cmd in trains:
        assert "-m torch.distributed.run --standalone --nproc-per-node=1 -m yan.train" in cmd
        assert "--preset paper-trf --data wiki-mini --max-steps 50 --precision bf16" in cmd
        assert "--batch-size 32 --device cuda" in cmd
    assert ["--compile" in cmd for cmd in trains] == [False, False, True, True]
    assert "--stage 1 --out runs/s/eager/stage1" in trains[0]
    assert "--stage 2 --init runs/s/eager/stage1 --out runs/s/eager/stage2" in trains[1]
    assert "--stage 2 --init runs/s/compile/stage1 --out runs/s/compile/stage2" in trains[3]
    assert "-m yan.bench latency --models yan-trf gpt2 --steps 3 --batch-sizes 1" in bench
    assert "--presets paper --lengths 512 --device cuda --repeats 3 --dtypes bfloat16" in bench


def test_gpu_smoke_refuses_without_a_gpu_and_bad_arguments(tmp_path):
    proc = _run("gpu_smoke.sh", ["--fast"], _env(tmp_path))
    assert proc.returncode == 2 and "unknown argument '--fast'" in proc.stderr
    proc = _run("gpu_smoke.sh", [], _env(tmp_path, VARIANTS="eager jit", DRY_RUN="1"))
    assert proc.returncode == 2 and "got 'jit'" in proc.stderr
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    proc = _run("gpu_smoke.sh", [], _env(tmp_path, OUT=str(tmp_path / "never")))
    assert proc.returncode == 2, proc.stderr
    assert "no CUDA GPU is visible" in proc.stderr and "--cpu-dry-run" in proc.stderr
    assert not _commands(proc) and not (tmp_path / "never").exists()


def test_gpu_smoke_cpu_dry_run_trains_benches_and_summarises(tmp_path):
    out = tmp_path / "smoke"
    proc = _run("gpu_smoke.sh", ["--cpu-dry-run"], _env(tmp_path, OUT=str(out)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout[proc.stdout.index("gpu_smoke summary") :]
    for stage in ("stage1", "stage2"):
        assert f"train eager   {stage}: 2 steps" in summary
        YAN.from_pretrained(out / "eager" / stage)
    assert "peak memory n/a (no GPU)" in summary
    assert "latency L=16 batch 1 float32: YAN-TRF T=3" in summary and "speed-up" in summary


def test_multi_node_without_master_addr_is_refused(tmp_path):
    """Without MASTER_ADDR every node would wait for a rendezvous on its own 127.0.0.1."""
    env = _env(tmp_path, NNODES="2", NODE_RANK="1", DRY_RUN="1")
    env.pop("MASTER_ADDR", None)
    for script, args in (("pretrain.sh", []), ("finetune.sh", ["squad"])):
        proc = _run(script, args, env)
        assert proc.returncode == 2, proc.stderr
        assert f"{script}: NNODES=2 needs MASTER_ADDR, the host name or address of node 0" in (
            proc.stderr
        )
        assert "+ " not in proc.stderr  # nothing was launched
    proc = _run("pretrain.sh", [], {**env, "MASTER_ADDR": "node0", "NODE_RANK": "2"})
    assert proc.returncode == 2 and "NODE_RANK=2 must be below NNODES=2" in proc.stderr
    proc = _run("pretrain.sh", [], {**env, "NNODES": "two"})
    assert proc.returncode == 2 and "NNODES=two is not a whole number" in proc.stderr


FAKE_SRUN = """#!/usr/bin/env bash
# srun on a made-up allocation: the command once per node, as SLURM would start it there
while [[ $1 == --* ]]; do shift; done
for ((node = 0; node < SLURM_JOB_NUM_NODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node "$@" || exit $?
done
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && printf 'gpu-a\\ngpu-b\\n'
"""


def test_slurm_sbatch_runs_the_launcher_on_every_node(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = _env(
        tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242",
        SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="gpu-[a-b]", SLURM_GPUS_ON_NODE="8",
        DRY_RUN="1", OUT="runs/x",
    )  # fmt: skip
    for name in ("MASTER_ADDR", "NPROC", "NODE_RANK", "MAX_RESTARTS"):
        env.pop(name, None)
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "slurm.sbatch"), "--max-steps", "7"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert len(commands) == 4  # 2 nodes x (stage 1, stage 2)
    for rank in (0, 1):
        assert sum(f"--nnodes=2 --node-rank={rank} " in cmd for cmd in commands) == 2
    for cmd in commands:
        assert "--nproc-per-node=8" in cmd and "--rdzv-endpoint=gpu-a:29500" in cmd
        assert "--rdzv-id=yan-4242 --max-restarts=3 -m yan.train" in cmd
        assert cmd.endswith("--max-steps 7")  # the job's arguments reach yan train


def test_slurm_sbatch_saves_and_requeues_before_the_time_limit(tmp_path):
    """SLURM's SIGUSR1 to the batch shell (--signal=B:USR1@300) goes on to the job step as
    SIGTERM (scancel --signal=TERM), the step's exit status is kept, and the job is requeued."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fakes = {
        # the job step: runs until it gets SIGTERM, then stops as yan train does (code 75)
        "srun": f"trap 'echo srun got TERM >> {log}; exit 75' TERM\n"
        f"echo $$ > {tmp_path}/srun.pid\nfor i in $(seq 600); do sleep 0.1; done\n",
        "scancel": f'echo "scancel $*" >> {log}\nkill -TERM "$(cat {tmp_path}/srun.pid)"\n',
        "scontrol": f'echo "scontrol $*" >> {log}\n'
        "if [ \"$1 $2\" = 'show hostnames' ]; then echo gpu-a; fi\n",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    env = _env(
        tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="77",
        SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="gpu-a",
    )  # fmt: skip
    job = subprocess.Popen(
        ["bash", str(SCRIPTS / "slurm.sbatch")], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "srun.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # the step runs: the trap is set
        job.send_signal(signal.SIGUSR1)
        _, err = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 75, err
    assert log.read_text().splitlines()[1:] == [
        "scancel --signal=TERM 77",
        "srun got TERM",
        "scontrol requeue 77",
    ]
    assert "requeueing job 77; it resumes from the newest checkpoint" in err


def test_a_stop_signal_starts_no_further_stage(tmp_path):
    """SIGTERM to every process of the job while stage 1 runs: the script outlives it, waits
    for torchrun (here a stand-in that stops cleanly) and exits 75 instead of starting stage 2."""
    calls, pid = tmp_path / "calls.log", tmp_path / "torchrun.pid"
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {calls}\ntrap "exit 0" TERM\necho $$ > {pid}\n'
        "for i in $(seq 600); do sleep 0.1; done\n"
    )
    fake.chmod(0o755)
    job = subprocess.Popen(
        ["bash", str(SCRIPTS / "pretrain.sh")], env=_env(tmp_path, PYTHON=str(fake)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pid.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(int(pid.read_text()), signal.SIGTERM)
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 75, err
    assert "pretrain.sh: stopped by SIGTERM; run it again to resume" in err
    assert len(calls.read_text().splitlines()) == 1  # stage 1 only
