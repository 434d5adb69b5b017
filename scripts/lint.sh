#!/usr/bin/env bash
# Lint and types (run by scripts/test.sh, so CI runs them): ruff over the package, tests and benchmarks with the
# rules in pyproject.toml; mypy over the whole package ([tool.mypy]); the import rules (tests/test_layers.py: a
# second, cheap, so that every landing is held to the layer table).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" -m ruff check --quiet eeg2img_deploy tests benchmarks
"$PY" -m mypy
"$PY" -m pytest -q -p no:cacheprovider tests/test_layers.py
