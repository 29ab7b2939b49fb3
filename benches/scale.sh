#!/usr/bin/env bash
# How step time and memory grow with sequence length and model size: tiny_llama at 4,096 tokens
# per step (8,192 at seq 8192), the ~125M experiment (llama_125m) at 4,096 tokens per step (8,192
# at seq 8192), and the ~1B Llama 3 shape (16 layers, 2048 wide, 32 heads, 8 KV heads, FFN 8192)
# on llama_125m's recipe. Each point is its own process (peak memory is per process), 4 eager
# steps, the last 3 timed, no checkpoints. Prints a Markdown table.
# Usage: bash benches/scale.sh [cpu|cuda] [tiny|125m|1b ...]   (build first: cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
device="${1:-cpu}"
shift || true
sizes="${*:-tiny 125m 1b}"
out=target/scale
mkdir -p "$out"

point() { # binary name seq batch extra-args...
    local binary=$1 name=$2 seq=$3 batch=$4
    shift 4
    local bin=${BIN:-target/release}/$binary dir="$out/$binary-$seq-$batch"
    rm -rf "$dir"
    "$bin" --device "$device" --steps 4 --log-every 1 --eval-every 0 --samples 0 \
        --batch-size "$batch" --output-dir "$dir" \
        --set "training.seq_len=$seq" --set "bpe.max_len=$seq" --set "dataset.tokenizer_sample=2000" \
        --set "training.eval_batches=1" --set training.cuda_graph=false \
        --set training.checkpoint_every=0 "$@" > "$dir.log" 2>&1 || { echo "| $name | $seq | $batch | failed: see $dir.log | | | | |"; return; }
    python3 - "$dir/metrics.jsonl" "$name" "$seq" "$batch" <<'PY'
import json, sys
path, name, seq, batch = sys.argv[1:]
steps = [r for r in map(json.loads, open(path)) if "loss" in r]
timed = steps[1:]
step_s = sum(r["step_time_s"] for r in timed) / len(timed)
device = steps[-1].get("max_reserved_gib")
memory = f"{device:.2f} GiB (CUDA reserved)" if device is not None else f"{steps[-1]['max_rss_gib']:.2f} GiB"
mfu = steps[-1].get("mfu")
mfu = f"{mfu:.1f}%" if mfu is not None else "n/a"
tflops = sum(r["tflops"] for r in timed) / len(timed)
print(f"| {name} | {seq} | {batch} | {step_s * 1e3:,.1f} ms | {sum(r['tps'] for r in timed) / len(timed):,.0f} | {tflops:.3g} | {mfu} | {memory} |")
PY
}

echo "| model | seq_len | batch | step time | tokens/s | model TFLOP/s | MFU | peak memory (CUDA: allocator reserved; CPU: host RSS) |"
echo "|---|---|---|---|---|---|---|---|"
for size in $sizes; do
    case "$size" in
    tiny)
        for seq in 256 512 1024 2048 4096; do
            point tiny_llama tiny "$seq" $((4096 / seq))
        done
        point tiny_llama tiny 8192 1
        ;;
    125m)
        for seq in 512 2048; do
            point llama_125m "~125M" "$seq" $((4096 / seq))
        done
        point llama_125m "~125M" 8192 1 --set llama.max_position_embeddings=8192
        ;;
    1b)
        # On CPU, 1 x 256 keeps the weights, gradients and AdamW's moments (about 17 GB in
        # fp32 with llama_125m's 32K vocabulary) within a 24 GiB machine; on a GPU, 2048.
        if [ "$device" = cpu ]; then seqs="256"; else seqs="2048"; fi
        for seq in $seqs; do
            point llama_125m "~1B (16 x 2048, FFN 8192)" "$seq" 1 \
                --set llama.hidden_size=2048 --set llama.num_hidden_layers=16 \
                --set llama.num_attention_heads=32 --set llama.num_key_value_heads=8 \
                --set llama.intermediate_size=8192
        done
        ;;
    *) echo "unknown size $size (tiny, 125m or 1b)" >&2; exit 2 ;;
    esac
done
