#!/usr/bin/env bash
# The GPU check of edgekd's TensorRT path, for a machine with an NVIDIA GPU and TensorRT (a
# workstation, or a Jetson: see deploy/jetson/README.md). It
#   1. builds tests/tiny.yaml with INT8, FP16 and TensorRT on (TensorRT required),
#   2. builds an fp16 and an int8 engine on this device with `edgekd engine` (each evaluated and
#      added to the bundle, its card and its manifest),
#   3. benches every artifact with `edgekd bench --all --eval`, and
#   4. prints, per artifact, its agreement with the student and its latency,
# in under 10 minutes (each step gets what is left of them).
#
# Where there is no NVIDIA GPU or no TensorRT it says so in one line and checks what can be
# checked without them: it builds tests/tiny.yaml with INT8 and FP16 on the CPU for the deployment
# target $TARGET (default orin-jetpack6.1) and runs `edgekd engine BUNDLE --check`: every file
# meant for TensorRT against the target's parser rules and, where the trt-check extra is
# installed, through TensorRT-RTX's parser and builder (a proxy, not the device). Exit 1 when a
# file fails.
#
# Usage: deploy/gpu_check.sh [OUT_DIR]        (default: a new folder under $TMPDIR)
#   PYTHON=~/edgekd-venv/bin/python deploy/gpu_check.sh   chooses the Python that has edgekd
#   TARGET=orin-jetpack6.0 deploy/gpu_check.sh            the deployment target (JetPack 6.0 here)
set -euo pipefail

fail() { echo "gpu_check: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIMIT=600
SECONDS=0

status=$("$PY" -c 'from edgekd.export.tensorrt import tensorrt_status; print(tensorrt_status() or "")' 2>&1) \
    || fail "$PY cannot import edgekd (set PYTHON to the Python of the edgekd install): ${status##*$'\n'}"
missing=""
if ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /etc/nv_tegra_release ]; then
    missing="no NVIDIA GPU here (nvidia-smi not found)"
elif command -v nvidia-smi >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
    missing="nvidia-smi finds no GPU (nvidia-smi -L failed; check the NVIDIA driver)"
elif [ -n "$status" ]; then
    missing="$status"
fi

step() {  # step NAME COMMAND...: run with the time that is left of the 10 minutes
    local name=$1; shift
    local left=$((LIMIT - SECONDS))
    [ "$left" -gt 0 ] || fail "over ${LIMIT} s before: $name"
    echo "== $name (${SECONDS} s so far)" >&2
    timeout "$left" "$@"
}

OUT=${1:-$(mktemp -d "${TMPDIR:-/tmp}/edgekd-gpu-check.XXXXXX")}
BUNDLE="$OUT/tiny/bundle"
EDGEKD=("$PY" -m edgekd)  # an array, not a function: `timeout` runs programs only

if [ -n "$missing" ]; then
    echo "gpu_check: $missing: no engine can be built here; checking the files meant for TensorRT by the target's rules and TensorRT-RTX's parser instead" >&2
    step "build tests/tiny.yaml for ${TARGET:-orin-jetpack6.1} (CPU)" "${EDGEKD[@]}" build "$ROOT/tests/tiny.yaml" \
        --out "$OUT" --set export.target="${TARGET:-orin-jetpack6.1}" --set export.onnx.exporter=null \
        --set export.onnx.opset=null --set export.int8.enabled=true --set export.int8.qat=off \
        --set export.fp16.enabled=true >/dev/null
    step "engine --check" "${EDGEKD[@]}" engine "$BUNDLE" --check
    echo "gpu_check: bundle $BUNDLE checked without a GPU, ${SECONDS} s" >&2
    exit 0
fi

step "build tests/tiny.yaml with TensorRT" "${EDGEKD[@]}" build "$ROOT/tests/tiny.yaml" --out "$OUT" \
    --set export.target="${TARGET:-orin-jetpack6.1}" \
    --set export.int8.enabled=true --set export.fp16.enabled=true \
    --set export.tensorrt.enabled=true --set export.tensorrt.required=true
step "engine fp16" "${EDGEKD[@]}" engine "$BUNDLE" --precision fp16
int8=0
step "engine int8" "${EDGEKD[@]}" engine "$BUNDLE" --precision int8 || int8=$?
step "bench --all --eval" "${EDGEKD[@]}" bench "$BUNDLE" --all --eval --batch-sizes 1,8 --iterations 200 \
    --json "$OUT/bench-all.json"
step "verify" "${EDGEKD[@]}" verify "$BUNDLE"

"$PY" - "$BUNDLE" "$OUT/bench-all.json" <<'EOF'
import json
import sys
from pathlib import Path

from edgekd.bench.all_artifacts import artifact_format

bundle, result = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
models = {e["file"]: (name, e) for name, e in json.loads((bundle / "card.json").read_text())["models"].items()
          if e.get("file")}
print(f"\n{'artifact':<26} {'format':<22} {'agreement with the student':<34} {'p50 ms b1':>10} {'p50 ms b8':>10}")
for r in result["results"]:
    file = r["artifact"]["file"]
    name, entry = models.get(file, (None, {}))
    vs = entry.get("vs_student") or {}
    if vs.get("agreement_with"):  # built on this device: measured against model.onnx
        low, high = vs.get("student_agreement_bounds") or (None, None)
        agree = "-" if low is None else f"{low:.4f}" if low == high else f"{low:.4f}-{high:.4f}"
        agree += " (via model.onnx)"
    elif vs:
        agree = f"{vs['prediction_agreement']:.4f} (at build)"
    else:
        agree = "-"
    p50 = {t["batch"]: t["latency_ms"]["p50"] for t in r["results"]}
    print(f"{file:<26} {artifact_format(r):<22} {agree:<34} {p50.get(1, float('nan')):>10.3f} "
          f"{p50.get(8, float('nan')):>10.3f}")
for item in result["skipped"]:
    print(f"skipped {item['file']}: {item['reason']}")
EOF

echo "gpu_check: bundle $BUNDLE, bench result $OUT/bench-all.json, ${SECONDS} s" >&2
[ "$int8" -eq 0 ] || fail "the int8 engine failed (exit $int8; its error is above)"
