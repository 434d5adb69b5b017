#!/usr/bin/env bash
# Install into .venv and run the test suite (pytest exits non-zero when no test ran).
set -euo pipefail
. "$(dirname "$0")/setup-venv.sh"
bash scripts/lint.sh
python -m pytest -q "$@"
