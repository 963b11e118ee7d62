#!/usr/bin/env bash
# Train model candidates on a GPU machine, in one go: dataset, then several runs side by side.
#
# Made for a machine that has PyTorch, NumPy, SciPy, onnx and onnxruntime but not this
# project's virtual environment (no pydicom, no highdicom): it only builds the dataset
# and trains. The checkpoints come back without their optimizer state, and are exported,
# evaluated and compared on the development machine:
#
#   .venv/bin/python -m scintiseg_training.export --run <OUT>/gland32 --task gland --models models \
#       --version X.Y.Z --hardware "..."
#   .venv/bin/python -m scintiseg_training.evaluate --models models --update-cards
#
# Environment (all optional):
#   OUT                      where the checkpoints and the log go     default runs/gpu
#   SCINTISEG_GPU_MINUTES    training time budget of every run        default 8
#   SCINTISEG_GPU_RUNS       runs, "name:task:base[:init.onnx]" separated by spaces
#                            default "gland16:gland:16 gland32:gland:32 nodule16:nodule:16 nodule32:nodule:32"
#   SCINTISEG_BATCH          batch size                               default 64
#   SCINTISEG_DEVICE         torch device                             default cuda
#   SCINTISEG_SCANS, SCINTISEG_TEST_SCANS   dataset size              default 2300, 400
#   PYTHON                   interpreter                              default python3
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-runs/gpu}
minutes=${SCINTISEG_GPU_MINUTES:-8}
runs=${SCINTISEG_GPU_RUNS:-"gland16:gland:16 gland32:gland:32 nodule16:nodule:16 nodule32:nodule:32"}
batch=${SCINTISEG_BATCH:-64}
device=${SCINTISEG_DEVICE:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The packages from their source folders, without installing anything.
export PYTHONPATH="$PWD/plugin:$PWD/phantoms:$PWD/training${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/train-gpu.log"
: >"$log"

cores=$(nproc)
"$py" -m scintiseg_training.dataset --datasets "$work" --name scintiseg \
    --scans "${SCINTISEG_SCANS:-2300}" --test "${SCINTISEG_TEST_SCANS:-400}" --workers "$cores" 2>&1 \
    | tr '\r' '\n' | tail -n 2 >>"$log"

n_runs=$(wc -w <<<"$runs")
threads=$(( cores / n_runs > 0 ? cores / n_runs : 1 ))
pids=()
for spec in $runs; do
    IFS=: read -r name task base init <<<"$spec"
    extra=()
    [[ -n "${init:-}" ]] && extra=(--init-onnx "$init")
    "$py" -m scintiseg_training.train --task "$task" --data "$work/scintiseg.npz" --out "$work/$name" \
        --base "$base" --batch-size "$batch" --epochs 100000 --time-budget-min "$minutes" \
        --device "$device" --threads "$threads" "${extra[@]}" >"$work/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

for spec in $runs; do
    name=${spec%%:*}
    { echo "== $name"; tr '\r' '\n' <"$work/$name.log" | grep -v -e '^  epoch' -e '^$' || true; } >>"$log"
    if [[ -f "$work/$name/last.pt" ]]; then
        mkdir -p "$out/$name"
        # Without the optimizer state: a base-32 checkpoint fits in a few MB.
        "$py" - "$work/$name/last.pt" "$out/$name/last.pt" <<'EOF'
import sys, torch
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
ckpt.pop("optimizer", None)
torch.save(ckpt, sys.argv[2])
EOF
    fi
done
cp "$work/scintiseg.split.json" "$out/" 2>/dev/null || true
cat "$log"
exit $status
