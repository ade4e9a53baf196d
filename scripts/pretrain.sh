#!/usr/bin/env bash
# Pretrain YAN as in the paper (sec. 4.2, 5.1, App. B.1-B.3): stage 1 (regularised autoencoder,
# eq. 8) then stage 2 (MoE-FM latent flow, eq. 11, infilling framing) on FineWiki 75% +
# FineWeb-Edu 25%, streamed, on one node of 8 GPUs (or several nodes: see _launch.sh).
#
#   scripts/pretrain.sh                                   # paper-trf on 8 GPUs
#   PRESET=paper-mamba scripts/pretrain.sh
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 scripts/pretrain.sh   # on node 0; NODE_RANK=1 on node 1
#   sbatch scripts/slurm.sbatch                           # SLURM: 4 nodes x 8 GPUs, requeued
#   NPROC=1 scripts/pretrain.sh --preset tiny --max-steps 2 --data wiki-mini   # CPU smoke run
#
# Extra arguments go to both stages' `yan train` and override the defaults below (the last
# occurrence of a flag wins). Rerunning resumes each stage from its last checkpoint.
set -euo pipefail
PRESET=${PRESET:-paper-trf}
OUT=${OUT:-runs/$PRESET}
DATA=${DATA:-finewiki,fineweb-edu}
# Sec. 5.1: 75% FineWiki, 25% FineWeb-Edu (one weight per --data source, also for local copies)
DATA_WEIGHTS=${DATA_WEIGHTS:-0.75,0.25}
# DataLoader processes per GPU process that tokenise the streamed text ahead of the model
NUM_WORKERS=${NUM_WORKERS:-4}
# App. B.3/Tab. 3 give 820k steps in total for YAN-TRF (600k for YAN-M) at global batch 32,
# without the split between the stages; half each is our choice.
STAGE1_STEPS=${STAGE1_STEPS:-410000}
STAGE2_STEPS=${STAGE2_STEPS:-410000}
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

# App. B.3: AdamW(0.9, 0.999, wd 0.01), lr 1e-4, 1000 linear warm-up steps, global batch 32.
COMMON=(--preset "$PRESET" --data "$DATA" --data-weights "$DATA_WEIGHTS"
        --num-workers "$NUM_WORKERS" --batch-size 32 --lr 1e-4 --warmup 1000
        --weight-decay 0.01 --save-every 5000 --eval-every 5000 --log-every 100 --resume)

launch "${COMMON[@]}" --stage 1 --task pretrain --max-steps "$STAGE1_STEPS" \
  --out "$OUT/stage1" "$@"
launch "${COMMON[@]}" --stage 2 --task infill --init "$OUT/stage1" --max-steps "$STAGE2_STEPS" \
  --out "$OUT/stage2" "$@"
