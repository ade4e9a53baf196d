# Shared by the launch scripts: build and run one torchrun command (sourced, not executed).
#
# Environment (all optional):
#   NPROC        processes (GPUs) per node                      default 8
#   NNODES       nodes; > 1 uses c10d rendezvous at MASTER_ADDR  default 1 (--standalone)
#   NODE_RANK    this node's rank (0 .. NNODES-1)                default 0
#   MASTER_ADDR  rendezvous host (node 0)                        default 127.0.0.1
#   MASTER_PORT  rendezvous port                                 default 29500
#   RDZV_ID      job id shared by all nodes of one run           default yan-<preset>
#   PYTHON       the interpreter with moefm/yan installed        default python
#   DRY_RUN=1    print the commands instead of running them

NPROC=${NPROC:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
PYTHON=${PYTHON:-python}

launch() {
  local cmd=("$PYTHON" -m torch.distributed.run --nproc-per-node="$NPROC")
  if [ "$NNODES" -gt 1 ]; then
    cmd+=(--nnodes="$NNODES" --node-rank="$NODE_RANK" --rdzv-backend=c10d
          --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="${RDZV_ID:-yan-$PRESET}")
  else
    cmd+=(--standalone)
  fi
  cmd+=(-m yan.train "$@")
  echo "+ ${cmd[*]}" >&2
  if [ "${DRY_RUN:-0}" = 1 ]; then
    return 0
  fi
  "${cmd[@]}"
}
