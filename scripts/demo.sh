#!/usr/bin/env bash
# Install into .venv-eval (every extra, eval's metric networks included: see setup-venv.sh) and run the whole job
# on the tiny model set: init-tiny -> reference -> export -> build-engines (onnxruntime) -> infer (+ the low-level
# path) -> bench -> stream --replay -> eval (the paper's metrics, retrieval, the sweep of speed knobs).
# Output in demo/.
set -euo pipefail
. "$(dirname "$0")/setup-venv.sh" eval
out=demo
rm -rf "$out"
eeg2img-deploy init-tiny --out "$out/weights"
eeg2img-deploy reference --weights "$out/weights" --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 --out "$out/reference"
eeg2img-deploy export --weights "$out/weights" --out "$out/bundle"
eeg2img-deploy build-engines --bundle "$out/bundle" --backend onnxruntime --out "$out/engines"
eeg2img-deploy infer --bundle "$out/engines" --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 --out "$out/infer"
# the low-level path: img2img from the low-level encoder's image, 4 steps at strength 0.5 (2 run)
eeg2img-deploy reference --weights "$out/weights" --low-level --steps 4 --strength 0.5 \
    --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 --out "$out/reference-low-level"
eeg2img-deploy infer --bundle "$out/engines" --low-level --steps 4 --strength 0.5 \
    --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 --out "$out/infer-low-level"
eeg2img-deploy bench --bundle "$out/engines" --runs 5 --warmup 1 --json "$out/bench.json" --plot "$out/bench.png" \
    --baseline torch --weights "$out/weights"
eeg2img-deploy stream --bundle "$out/engines" --replay "$out/weights/eeg/recording_raw.fif" --subject 8 --max-epochs 5 \
    --out "$out/stream"
# eval: infer's images scored against the tiny truth (the paper's eight metrics), the encoder's zero-shot retrieval,
# and every speed knob's quality cost beside its latency (one table, one plot)
eeg2img-deploy eval --images "$out/infer" --truth "$out/weights/eval/truth" --weights "$out/weights/eval/weights" \
    --out "$out/eval"
eeg2img-deploy eval --retrieval --bundle "$out/engines" --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 \
    --image-features "$out/weights/eval/image_features.npy" --out "$out/eval-retrieval"
eeg2img-deploy eval --sweep --bundle "$out/bundle" --eeg "$out/weights/eeg/synthetic_eeg.npy" --subject 8 \
    --truth "$out/weights/eval/truth" --weights "$out/weights/eval/weights" \
    --image-features "$out/weights/eval/image_features.npy" --out "$out/eval-sweep"
echo "done: images in $out/reference and $out/infer, latency in $out/bench.json, live replay in $out/stream, metrics in" \
    "$out/eval*/ (tiny weights are random: the images are noise and the metrics near chance)"
