# Sourced by demo.sh and test.sh (or run with bash): a virtual environment with the toolkit and its test extras.
#   setup-venv.sh [main]  .venv       torch 2.13.0 (CPU build), every extra but eval: the development environment
#   setup-venv.sh eval    .venv-eval  every extra and eval's metric networks: torchvision imports here only beside
#                                     torch 2.14.1 (x86_64, a CUDA build, ~6.4 GB) or 2.9.1 (aarch64), not beside
#                                     2.13.0's CPU build, so eval gets an environment of its own (README, "Evaluating")
# torch is pinned and installed first: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-main}" in
    main) venv=.venv; torch_pins=(torch==2.13.0); extras=cpu,export,eeg,stream,bench,serve,dev ;;
    eval)
        venv=.venv-eval; extras=cpu,export,eeg,stream,bench,serve,dev,eval
        case "$(uname -m)" in
            aarch64|arm64) torch_pins=(torch==2.9.1 torchvision==0.24.1) ;;
            *) torch_pins=(torch==2.14.1 torchvision==0.29.1) ;;
        esac ;;
    *) echo "setup-venv.sh: expected 'main' or 'eval', got '$1'" >&2; exit 2 ;;
esac
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "${torch_pins[@]}"
python -m pip install -q -e ".[$extras]"
