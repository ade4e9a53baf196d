#!/usr/bin/env bash
# GPU smoke check, meant to take under 8 minutes on one GPU: YAN-TRF (paper-trf) stage 1 then
# stage 2 for $STEPS steps each with bf16 autocast under torchrun --nproc-per-node=1, eager and
# with --compile, then `yan bench latency` at L = 512 for YAN-TRF T = 3 against GPT-2 (paper
# sizes, batch 1, bfloat16). It ends with a summary: steps/s and peak GPU memory of every
# training, and YAN-TRF's speed-up over GPT-2.
#
#   scripts/gpu_smoke.sh                  # on a machine with a CUDA GPU
#   scripts/gpu_smoke.sh --cpu-dry-run    # the same steps at tiny sizes on CPU (what
#                                         # tests/yan/test_scripts.py runs)
#
# Environment (all optional):
#   OUT        output folder                        default runs/gpu-smoke (runs are overwritten)
#   STEPS      optimiser steps per stage            default 50 (CPU dry run: 2)
#   PRESET     YAN preset                           default paper-trf (CPU dry run: tiny)
#   DATA       training corpus                      default wiki-mini (offline, ships with yan)
#   VARIANTS   trainings to run: eager and/or compile   default "eager compile" (CPU: "eager")
#   TOKENIZER  yan train --tokenizer                default the preset's (paper-trf: llama3)
#   PYTHON     the interpreter with moefm/yan installed default python
#   DRY_RUN=1  print the commands instead of running them
set -euo pipefail
CPU=0
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) CPU=1 ;;
    *) echo "gpu_smoke.sh: unknown argument '$arg' (the only option is --cpu-dry-run)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/gpu-smoke}
DATA=${DATA:-wiki-mini}
if [ "$CPU" = 1 ]; then
  PRESET=${PRESET:-tiny}
  STEPS=${STEPS:-2}
  VARIANTS=${VARIANTS:-eager}  # torch.compile on CPU builds C++ kernels for minutes
  SIZE=(--batch-size 4 --device cpu --log-every 1)
  BENCH=(--presets tiny --lengths 16 --device cpu --repeats 1 --dtypes float32 --no-flops
         --peak-size 64)
else
  PRESET=${PRESET:-paper-trf}
  STEPS=${STEPS:-50}
  VARIANTS=${VARIANTS:-eager compile}
  SIZE=(--batch-size 32 --device cuda --log-every 10)
  BENCH=(--presets paper --lengths 512 --device cuda --repeats 3 --dtypes bfloat16)
fi
for variant in $VARIANTS; do
  case "$variant" in
    eager | compile) ;;
    *) echo "gpu_smoke.sh: VARIANTS may hold eager and compile, got '$variant'" >&2; exit 2 ;;
  esac
done
if [ "$CPU" = 0 ] && [ "${DRY_RUN:-0}" != 1 ] &&
   ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_smoke.sh: no CUDA GPU is visible to $PYTHON (torch.cuda.is_available() is False);" \
       "run it on a machine with a GPU, or pass --cpu-dry-run for a tiny pass on CPU" >&2
  exit 2
fi

run() {
  echo "+ $*" >&2
  if [ "${DRY_RUN:-0}" = 1 ]; then
    return 0
  fi
  "$@"
}

TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node=1)
for variant in $VARIANTS; do
  flags=()
  if [ -n "${TOKENIZER:-}" ]; then
    flags+=(--tokenizer "$TOKENIZER")
  fi
  if [ "$variant" = compile ]; then
    flags+=(--compile)
  fi
  dir="$OUT/$variant"
  common=(--preset "$PRESET" --data "$DATA" --max-steps "$STEPS" --precision bf16
          --eval-every 0 --eval-batches 2 --save-every "$STEPS" --overwrite --no-progress
          "${SIZE[@]}" ${flags[@]+"${flags[@]}"})
  run "${TORCHRUN[@]}" -m yan.train "${common[@]}" --stage 1 --out "$dir/stage1"
  run "${TORCHRUN[@]}" -m yan.train "${common[@]}" --stage 2 --init "$dir/stage1" \
    --out "$dir/stage2"
done
run "$PYTHON" -m yan.bench latency --models yan-trf gpt2 --steps 3 --batch-sizes 1 \
  "${BENCH[@]}" --out "$OUT/bench"
if [ "${DRY_RUN:-0}" = 1 ]; then
  exit 0
fi

# the summary: from each run's metrics.jsonl and the bench's latency.json
# shellcheck disable=SC2086
"$PYTHON" - "$OUT" $VARIANTS <<'PY'
import json
import sys
from pathlib import Path

out, variants = Path(sys.argv[1]), sys.argv[2:]
print("\ngpu_smoke summary")
speed = {}
for variant in variants:
    for stage in ("stage1", "stage2"):
        lines = (out / variant / stage / "metrics.jsonl").read_text().splitlines()
        train = [r for r in map(json.loads, filter(str.strip, lines)) if r.get("kind") == "train"]
        first, last = train[0], train[-1]
        overall = last["step"] / last["elapsed"]
        # after the first logged step: without start-up (and compilation) time
        later = last["step"] - first["step"]
        steady = later / (last["elapsed"] - first["elapsed"]) if later else float("nan")
        speed[variant, stage] = steady
        peaks = [r["peak_mem_mb"] for r in train if r.get("peak_mem_mb") is not None]
        memory = f"{max(peaks) / 1024:.2f} GiB" if peaks else "n/a (no GPU)"
        print(
            f"  train {variant:7s} {stage}: {last['step']} steps, {overall:.2f} steps/s overall, "
            f"{steady:.2f} steps/s after step {first['step']}, peak memory {memory}, "
            f"loss {last['loss']:.4f}"
        )
for stage in ("stage1", "stage2"):
    if ("eager", stage) in speed and ("compile", stage) in speed:
        ratio = speed["compile", stage] / speed["eager", stage]
        print(f"  --compile {stage}: {ratio:.2f}x the eager steps/s")
records = json.loads((out / "bench" / "latency.json").read_text())
for gpt in (r for r in records if r["model"] == "gpt2"):
    yan = next(
        r
        for r in records
        if r["model"] == "yan-trf"
        and r["T"] == 3
        and (r["L"], r["batch"], r["dtype"]) == (gpt["L"], gpt["batch"], gpt["dtype"])
    )
    memory = " / ".join(
        "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f} MB" for r in (yan, gpt)
    )
    print(
        f"  latency L={gpt['L']} batch {gpt['batch']} {gpt['dtype']}: YAN-TRF T=3 "
        f"{yan['seconds'] * 1e3:.1f} ms, GPT-2 {gpt['seconds'] * 1e3:.1f} ms: speed-up "
        f"{gpt['seconds'] / yan['seconds']:.1f}x (peak memory {memory})"
    )
PY
