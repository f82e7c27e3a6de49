#!/usr/bin/env bash
# Is the demo's photos32 cnn6 DCT detector job bit-for-bit repeatable on a GPU?
# Two runs as shipped (device=cuda), then two with torch.use_deterministic_algorithms(True)
# (through a sitecustomize on PYTHONPATH, so no code changes), each pair compared with
# `freqbackdoor fingerprint`. Usage: benchmarks/gpu_determinism.sh OUT_DIR
set -uo pipefail
out="${1:?usage: gpu_determinism.sh OUT_DIR}"
mkdir -p "$out"
root="$(cd "$(dirname "$0")/.." && pwd)"
target=results/detectors/photos32/cnn6_kmax128_dct.pt
strict="$(mktemp -d)"
cat > "$strict/sitecustomize.py" <<'PY'
import os
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch
torch.use_deterministic_algorithms(True, warn_only=True)
torch.backends.cudnn.benchmark = False
PY
run() {  # run NAME EXTRA_PYTHONPATH
    local dir="/tmp/gpu_det_$1"
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$root"/{Snakefile,rules,workflow,report,config,environment.yml} "$dir"/
    local start=$SECONDS
    (cd "$dir" && PYTHONPATH="$2${PYTHONPATH:+:$PYTHONPATH}" python -m snakemake --cores 4 "$target" \
        --config device=cuda -q > "$out/$1.log" 2>&1)
    echo "$1 exit $? in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    python -m freqbackdoor fingerprint "$dir/results" > "$out/$1.tsv"
    grep -h "epoch\|samples/s" "$dir"/logs/detector/photos32/*.log >> "$out/$1.log"
}
run plain_a ""
run plain_b ""
run strict_a "$strict"
run strict_b "$strict"
for pair in plain strict; do
    echo "== $pair" >> "$out/summary.txt"
    python -m freqbackdoor fingerprint "/tmp/gpu_det_${pair}_b/results" --compare "$out/${pair}_a.tsv" \
        >> "$out/summary.txt" 2>&1
done
cat "$out/summary.txt"
