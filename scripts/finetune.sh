#!/usr/bin/env bash
# Fine-tune a pretrained YAN on one downstream data set of the paper (sec. 5.1, App. B.2-B.4):
# the stage-2 objective (eq. 11) at lr 1e-5, from the stage-2 output of scripts/pretrain.sh.
#
#   scripts/finetune.sh squad
#   INIT=runs/paper-trf/stage2 OUT=runs/ft-squad scripts/finetune.sh squad
#   NPROC=1 INIT=runs/tiny/stage2 scripts/finetune.sh narrativeqa --preset tiny --max-steps 2 \
#       --data wiki-mini                                              # CPU smoke run
#
# DATASET: narrativeqa (infill), rocstories | simplestories (last-word), babi | squad (qa),
# ag-news | dbpedia | sst2 (classify). Extra arguments go to `yan train` and override the
# defaults (e.g. --data FILE for a local copy). Rerunning resumes from the last checkpoint.
set -euo pipefail
DATASET=${1:?usage: scripts/finetune.sh DATASET [yan train arguments...]}
shift
case "$DATASET" in
  narrativeqa) TASK=infill ;;
  rocstories | simplestories) TASK=last-word ;;
  babi | squad) TASK=qa ;;
  ag-news | dbpedia | sst2) TASK=classify ;;
  *)
    echo "finetune.sh: unknown dataset '$DATASET' (narrativeqa, rocstories, simplestories," \
      "babi, squad, ag-news, dbpedia, sst2)" >&2
    exit 2
    ;;
esac
PRESET=${PRESET:-paper-trf}
INIT=${INIT:-runs/$PRESET/stage2}
OUT=${OUT:-runs/$PRESET/finetune-$DATASET}
# The paper does not give the number of fine-tuning steps; this is our default.
STEPS=${STEPS:-20000}
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

# App. B.3-B.4: lr 1e-5 for fine-tuning, 1000 warm-up steps, global batch 32, oracle lengths.
launch --preset "$PRESET" --stage finetune --task "$TASK" --data "$DATASET" --init "$INIT" \
  --batch-size 32 --lr 1e-5 --warmup 1000 --weight-decay 0.01 --max-steps "$STEPS" \
  --save-every 2000 --eval-every 2000 --log-every 100 --out "$OUT" --resume "$@"
