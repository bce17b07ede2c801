#!/usr/bin/env bash
# Training on a Slurm cluster.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   [SIGNAL_MARGIN=90] [REQUEUE=1] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# Preemption and time limits: srun sends SIGUSR1 SIGNAL_MARGIN seconds
# before the job's time limit (SIGNAL_MARGIN=0: none); on SIGUSR1 or
# SIGTERM (preemption, scancel) training stops after the current iteration,
# writes a checkpoint and exits with status 75. The run always starts with
# --resume auto (unless the arguments name --resume), so it continues from
# the newest valid checkpoint in WORK_DIR. On status 75 inside a batch job
# (sbatch; submit with --requeue) the script asks Slurm to requeue it
# (REQUEUE=0: don't); otherwise rerun the same command.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
SIGNAL_MARGIN=${SIGNAL_MARGIN:-90}
REQUEUE=${REQUEUE:-1}
PREEMPTED=75
PY_ARGS=${@:5}
case " ${PY_ARGS} " in
  *" --resume"*) ;;
  *) PY_ARGS="--resume auto ${PY_ARGS}" ;;
esac
SIGNAL_ARGS=""
[ "${SIGNAL_MARGIN}" != 0 ] && SIGNAL_ARGS="--signal=USR1@${SIGNAL_MARGIN}"
# PYTHON: see tools/find_python.sh (the project's .venv when no other
# environment is active)
source "$(dirname "$0")/find_python.sh"

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SIGNAL_ARGS} \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname $0)/train.py" ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS}
STATUS=$?
if [ ${STATUS} -eq ${PREEMPTED} ] && [ "${REQUEUE}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  scontrol requeue "${SLURM_JOB_ID}" ||
    echo "slurm_train.sh: preempted, but job ${SLURM_JOB_ID} cannot be requeued (not a batch job, or submitted without --requeue): rerun the same command to continue" >&2
fi
exit ${STATUS}
