#!/usr/bin/env bash
# Lint and types (run by scripts/test.sh, so CI runs them): ruff over the package, tests and benchmarks with the
# rules in pyproject.toml; mypy over the modules [tool.mypy] lists (the typed core; more join as they pass).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" -m ruff check --quiet eeg2img_deploy tests benchmarks
"$PY" -m mypy
