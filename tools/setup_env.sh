#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv/.
#
# Order matters and plain `pip install -e .` cannot express it:
#   1. setuptools >=77,<81 (torch wants >=77; mmcv and mmengine's `mmdet::`
#      config lookup import pkg_resources, removed in 81);
#   2. torch: kept if one is importable already (a GPU user's build is never
#      replaced); otherwise torch==2.13.0;
#   3. mmcv 2.1.0 built from source WITH its compiled ops, without build
#      isolation so that the build sees torch (PyPI has no mmcv wheels);
#   4. mmengine 0.10.7, mmdet 3.3.0, pycocotools, test tools, mmgc (editable).
# A stamp file makes the second run take seconds.
#
# Environment:
#   PYTHON         interpreter that creates the venv (default: python3.11 or python3)
#   MMGC_VENV      venv location (default: .venv in the repository)
#   TORCH_SPEC     torch requirement when torch must be installed (default torch==2.13.0)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMGC_VENV:-$ROOT/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
LOG_DIR="$VENV/setup-logs"
STAMP="$VENV/.mmgc-setup-stamp"

if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

fail() {  # fail STEP LOGFILE HINT
  echo "mmgc setup: step '$1' FAILED." >&2
  [ -n "${3:-}" ] && echo "  likely cause: $3" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    echo "  last lines of $2:" >&2
    tail -n 15 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

# Fingerprint of everything that decides what gets installed.
fingerprint() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT/requirements.txt" 2>/dev/null | sha256sum | cut -d' ' -f1
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
   && "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmgc" >/dev/null 2>&1; then
  echo "mmgc setup: environment in $VENV is up to date."
  exit 0
fi

step() { echo "mmgc setup: $*"; }

# --- 1. the virtual environment -------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || fail "find python" "" "'$PYTHON' not found; set PYTHON=/path/to/python3.11"
  VENV_ARGS=()
  # Keep a torch the user already has (e.g. a CUDA build): let the venv see it.
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    step "found torch $("$PYTHON" -c 'import torch; print(torch.__version__)') in $PYTHON; the venv will reuse it"
    VENV_ARGS+=(--system-site-packages)
  fi
  step "creating virtual environment $VENV"
  "$PYTHON" -m venv "${VENV_ARGS[@]}" "$VENV" || fail "create venv" "" "python venv module missing (apt-get install python3-venv)"
fi
mkdir -p "$LOG_DIR"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

run_step() {  # run_step NAME HINT CMD...
  local name="$1" hint="$2"; shift 2
  local log="$LOG_DIR/${name// /_}.log"
  step "$name"
  "$@" >"$log" 2>&1 || fail "$name" "$log" "$hint"
}

# --- 2. build tooling -------------------------------------------------------
run_step "install setuptools" "no access to the package index?" \
  "${PIP[@]}" "setuptools>=77,<81" wheel ninja

# --- 3. torch -----------------------------------------------------------------
if "$PY" -c "import torch" >/dev/null 2>&1; then
  step "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  run_step "install torch" "set TORCH_SPEC to a torch build available to you" \
    "${PIP[@]}" "$TORCH_SPEC"
fi

# --- 4. mmengine, then mmcv with compiled ops ---------------------------------
run_step "install mmengine" "" "${PIP[@]}" "mmengine==0.10.7" "numpy" "opencv-python-headless"
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then
  step "keeping mmcv 2.1.0 with ops"
else
  command -v "${CXX:-g++}" >/dev/null 2>&1 || fail "build mmcv" "" "no C++ compiler: apt-get install g++ (mmcv's ops are compiled from source)"
  step "building mmcv 2.1.0 with compiled ops (about 7 minutes on 2 cores the first time; pip caches the wheel)"
  MMCV_WITH_OPS=1 run_step "build mmcv" "compilation failed; see the log (compiler, torch headers, disk space)" \
    "${PIP[@]}" --no-build-isolation "mmcv==2.1.0"
fi

# --- 5. mmdet, pycocotools, test tools, mmgc ----------------------------------
run_step "install mmdet" "" "${PIP[@]}" -r "$ROOT/requirements.txt"
run_step "install mmgc" "" "${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT"

# --- 6. verify ------------------------------------------------------------------
"$PY" - <<'PY' || fail "verify" "" "an import failed after installation (see the message above)"
import torch, mmcv, mmengine, mmdet
import mmcv.ops  # compiled ops must be present
from mmcv.ops import RoIAlign  # noqa: F401
import mmgc
print(f"mmgc setup: OK  torch {torch.__version__} (cuda={torch.cuda.is_available()}), "
      f"mmengine {mmengine.__version__}, mmcv {mmcv.__version__} with ops, mmdet {mmdet.__version__}, "
      f"mmgc {mmgc.__version__}")
PY
fingerprint >"$STAMP"
