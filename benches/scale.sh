#!/usr/bin/env bash
# How step time and memory grow with sequence length (tiny_llama, 4,096 tokens per step) and
# with model size (tiny vs ~115M parameters at 8 x 512): each point is its own tiny_llama
# process (peak memory is per process), 4 eager steps, the last 3 timed. Prints a Markdown table.
# Usage: bash benches/scale.sh [cpu|cuda]   (build first: cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
device="${1:-cpu}"
bin=target/release/tiny_llama
out=target/scale
mkdir -p "$out"

point() { # name seq batch extra-args...
    local name=$1 seq=$2 batch=$3
    shift 3
    local dir="$out/$name-$seq"
    "$bin" --device "$device" --steps 4 --log-every 1 --eval-every 0 --samples 0 \
        --batch-size "$batch" --output-dir "$dir" \
        --set "training.seq_len=$seq" --set "bpe.max_len=$seq" --set "dataset.tokenizer_sample=2000" \
        --set "training.eval_batches=1" --set training.cuda_graph=false "$@" > "$dir.log" 2>&1 || { echo "| $name | $seq | failed: see $dir.log |"; return; }
    python3 - "$dir/metrics.jsonl" "$name" "$seq" "$batch" <<'PY'
import json, sys
path, name, seq, batch = sys.argv[1:]
steps = [r for r in map(json.loads, open(path)) if "loss" in r]
timed = steps[1:]
step_s = sum(r["step_time_s"] for r in timed) / len(timed)
device = steps[-1].get("max_reserved_gib")
memory = f"{device:.2f} GiB (CUDA reserved)" if device is not None else f"{steps[-1]['max_rss_gib']:.2f} GiB"
print(f"| {name} | {seq} | {batch} | {step_s * 1e3:,.1f} ms | {sum(r['tps'] for r in timed) / len(timed):,.0f} | {memory} |")
PY
}

echo "| model | seq_len | batch | step time | tokens/s | peak memory (CUDA: allocator reserved; CPU: host RSS) |"
echo "|---|---|---|---|---|---|"
for seq in 256 512 1024 2048 4096; do
    point tiny "$seq" $((4096 / seq))
done
point "~115M (12 x 768, FFN 3072)" 512 8 \
    --set llama.hidden_size=768 --set llama.num_hidden_layers=12 \
    --set llama.num_attention_heads=12 --set llama.num_key_value_heads=12 \
    --set llama.intermediate_size=3072
