#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_smoothquant.sh - W8A8 static with and without SmoothQuant, against
# fp32: masked-LM accuracy, logits KL and embedding cosine (proteus evaluate
# --reference), on a synthetic t6 with planted activation outliers and on
# the bundled trained t6 (held-out data/proteins/eval_sample.fasta).
#
# usage: scripts/bench/bench_smoothquant.sh PROTEUS [MAX_SEQS] [ALPHA]
set -euo pipefail
P=$(readlink -f "$1"); N=${2:-100}; A=${3:-0.5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
EVAL=$ROOT/data/proteins/eval_sample.fasta
TRAINED=$ROOT/data/models/esm2_t6_8M_proteus_mlm.f16.safetensors
"$P" synth --arch esm2_t6_8M_UR50D --seed 1 --outliers 4 --out "$T/outliers.safetensors" >/dev/null
row() { # model label flags...
    local m=$1 label=$2; shift 2
    "$P" quantize --model "$m" --out "$T/q.h5" -q --scheme static --per-channel "$@" >/dev/null
    "$P" evaluate --model "$T/q.h5" --reference "$m" --fasta "$EVAL" --max-seqs "$N" --threads 2 \
        --json "$T/e.json" >/dev/null
    python3 - "$T/e.json" "$label" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {100*d['accuracy_reference']:.2f} % -> {100*d['accuracy_quantized']:.2f} % "
      f"| {d['logits_kl_mean']:.3g} | {d['logits_cosine_mean']:.6f} | {d['embedding_cosine_mean']:.6f} |")
PY
}
echo "| model, W8A8 static per-channel | accuracy fp32 -> q | logits KL mean | logits cos | emb. cos |"
echo "|---|---|---|---|---|"
row "$T/outliers.safetensors" "synthetic t6, 4 outlier channels x 50" 
row "$T/outliers.safetensors" "synthetic t6, 4 outlier channels x 50, --smoothquant $A" --smoothquant "$A"
row "$TRAINED" "trained t6" 
row "$TRAINED" "trained t6, --smoothquant $A" --smoothquant "$A"
