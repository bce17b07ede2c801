#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun.
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
# Honours NNODES, NODE_RANK, MASTER_ADDR, PORT, and MAX_RESTARTS (default 0):
# how often torchrun restarts the whole group after a rank dies; a
# restarted group resumes from the newest valid checkpoint in the work dir
# by itself. Without GPUs, GPUS CPU processes train with the gloo backend.
set -e
CONFIG=$1
GPUS=$2
if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
  echo "usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MAX_RESTARTS=${MAX_RESTARTS:-0}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(dirname "$0")/.."
# PYTHON: see tools/find_python.sh (the project's .venv when no other
# environment is active)
source "$(dirname "$0")/find_python.sh"

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    --max-restarts=$MAX_RESTARTS \
    "$(dirname "$0")/train.py" \
    $CONFIG \
    --launcher pytorch ${@:3}
