# Shared by the launch scripts: build and run one torchrun command (sourced, not executed).
#
# Environment (all optional):
#   NPROC         processes (GPUs) per node                      default 8
#   NNODES        nodes; > 1 uses c10d rendezvous at MASTER_ADDR  default 1 (--standalone)
#   NODE_RANK     this node's rank (0 .. NNODES-1)                default 0
#   MASTER_ADDR   rendezvous host (node 0); required when NNODES > 1
#   MASTER_PORT   rendezvous port                                 default 29500
#   RDZV_ID       job id shared by all nodes of one run           default yan-<preset>
#   MAX_RESTARTS  torchrun --max-restarts: restarts of all workers after a failure; each
#                 restart resumes from the last checkpoint        default 0
#   PYTHON        the interpreter with moefm/yan installed        default python
#   DRY_RUN=1     print the commands instead of running them
#
# Stop signals: yan train saves a checkpoint and exits with code 75 on SIGTERM or SIGUSR1.
# torchrun forwards SIGTERM to its workers and gives them TORCH_ELASTIC_SHUTDOWN_TIMEOUT
# seconds to save (120 here; torch's default, and what torch versions without the variable
# wait, is 30). Recent torch versions also forward the signals named in
# TORCHELASTIC_SIGNALS_TO_HANDLE (SIGUSR1 is added here); older ones die of a SIGUSR1, so
# scripts/slurm.sbatch passes SIGTERM on to the job.

NPROC=${NPROC:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_PORT=${MASTER_PORT:-29500}
MAX_RESTARTS=${MAX_RESTARTS:-0}
PYTHON=${PYTHON:-python}

for _var in NPROC NNODES NODE_RANK MASTER_PORT MAX_RESTARTS; do
  if ! [[ ${!_var} =~ ^[0-9]+$ ]]; then
    echo "$(basename "$0"): $_var=${!_var} is not a whole number" >&2
    exit 2
  fi
done
if [ "$NNODES" -gt 1 ]; then
  # without it every node would wait for a rendezvous on its own 127.0.0.1: a silent hang
  if [ -z "${MASTER_ADDR:-}" ]; then
    echo "$(basename "$0"): NNODES=$NNODES needs MASTER_ADDR, the host name or address of" \
      "node 0 (the rendezvous endpoint, the same on every node); under SLURM," \
      "scripts/slurm.sbatch sets it" >&2
    exit 2
  fi
  if [ "$NODE_RANK" -ge "$NNODES" ]; then
    echo "$(basename "$0"): NODE_RANK=$NODE_RANK must be below NNODES=$NNODES" >&2
    exit 2
  fi
fi
export TORCHELASTIC_SIGNALS_TO_HANDLE=${TORCHELASTIC_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1}
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-120}
# This shell outlives a stop signal sent to every process of a job (torchrun and the training
# processes handle it: a trap, unlike an ignored signal, is not inherited by them), and starts
# no further stage after one.
STOP_SIGNAL=
trap 'STOP_SIGNAL=SIGTERM' TERM
trap 'STOP_SIGNAL=SIGUSR1' USR1

launch() {
  if [ -n "$STOP_SIGNAL" ]; then
    echo "$(basename "$0"): stopped by $STOP_SIGNAL; run it again to resume" >&2
    exit 75
  fi
  local cmd=("$PYTHON" -m torch.distributed.run --nproc-per-node="$NPROC")
  if [ "$NNODES" -gt 1 ]; then
    cmd+=(--nnodes="$NNODES" --node-rank="$NODE_RANK" --rdzv-backend=c10d
          --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="${RDZV_ID:-yan-$PRESET}")
  else
    cmd+=(--standalone)
  fi
  cmd+=(--max-restarts="$MAX_RESTARTS" -m yan.train "$@")
  echo "+ ${cmd[*]}" >&2
  if [ "${DRY_RUN:-0}" = 1 ]; then
    return 0
  fi
  "${cmd[@]}"
}
