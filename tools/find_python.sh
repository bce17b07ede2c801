# Sourced by tools/dist_train.sh, dist_test.sh, slurm_train.sh and
# slurm_test.sh: sets PYTHON to the interpreter that runs the tools.
#   1. $PYTHON when it is set;
#   2. `python` on PATH when a virtualenv ($VIRTUAL_ENV) or a conda
#      environment other than base is active: the user chose it;
#   3. the repository's .venv/bin/python when it exists (`make setup`),
#      so the scripts work from a fresh shell right after set-up;
#   4. `python` on PATH.
if [ -z "${PYTHON:-}" ]; then
  _MMGC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -n "${VIRTUAL_ENV:-}" ] || { [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; }; then
    PYTHON=python
  elif [ -x "$_MMGC_ROOT/.venv/bin/python" ]; then
    PYTHON="$_MMGC_ROOT/.venv/bin/python"
  else
    PYTHON=python
  fi
  unset _MMGC_ROOT
fi
