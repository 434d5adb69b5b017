#!/usr/bin/env bash
# Install into .venv and run the test suite (pytest exits non-zero when no test ran); then eval's tests in
# .venv-eval, the environment whose torch imports torchvision (setup-venv.sh). With arguments, only the first
# run, with those arguments.
set -euo pipefail
. "$(dirname "$0")/setup-venv.sh" main
bash scripts/lint.sh
python -m pytest -q "$@"
if [ $# -eq 0 ]; then
    . scripts/setup-venv.sh eval
    python -m pytest -q tests/eval
fi
