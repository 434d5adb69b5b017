#!/usr/bin/env bash
# Install into .venv and run the test suite (pytest exits non-zero when no test ran); then eval's tests in
# .venv-eval, the environment whose torch imports torchvision (setup-venv.sh). With arguments, only the first
# run, with those arguments. The tiny set and its export are kept in .cache/test-fixtures under a key of everything
# they depend on (tests/fixture_cache.py); the eval session writes its own tiny set (init-tiny writes eval's metric
# networks only where torchvision imports) and takes .venv's export when export finds it up to date for that set.
set -euo pipefail
. "$(dirname "$0")/setup-venv.sh" main
bash scripts/lint.sh
export EEG2IMG_TEST_CACHE="$PWD/.cache/test-fixtures"
python -m pytest -q "$@"
if [ $# -eq 0 ]; then
    main_python="$PWD/.venv/bin/python"
    . scripts/setup-venv.sh eval
    EEG2IMG_TEST_FIXTURE_PYTHON="$main_python" python -m pytest -q tests/eval
fi
