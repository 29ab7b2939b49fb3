#!/usr/bin/env bash
# The GPU checks of issues #17 and #18 in one script, for a session lent a GPU machine: that
# machine has PyTorch's CUDA libtorch but no cargo. Here: `cargo build --release`, `cargo test
# --release --no-run`, `cargo bench --no-run --bench train_step`, then `bash benches/gpu.sh
# pack`, which strips the binaries the parts run into target/gpu-bin (about 55 MB; the
# unstripped ones are 110-130 MB each); carry that folder and run the script there with
# BIN=target/gpu-bin (libtorch is taken from the machine's PyTorch). Each part is its own
# process and prints one summary line (median step time over the timed steps, tokens/s, data
# wait per step, peak reserved memory, last losses; logged every 10 steps, the first 10 left
# out); logs and metrics stay under $out.
#   pack    (here, not on the device) the stripped binaries, as above
#   tests   the tests that check CUDA when it is there (libtorch's fused RMSNorm, logits by
#           slices, the CUDA graph), from `cargo test --release --no-run` binaries
#   graph   tiny_llama's default (bf16, one replayed CUDA graph), 300 steps
#   eager   the same without the graph
#   nccl    the same as `graph` on a 1-rank NCCL world (`--nproc-per-node 1`), issue #17
#   blocks  the same as `graph` with documents kept apart (llama.attn_mask_type=block_causal:
#           SDPA with a mask, so not the flash kernel); compare its step time with graph's
#   shards  the same as `graph` from token shards of $DATA (`--pretokenize` first), issue #18.2
#   bench   cargo's train_step bench on CUDA: titan beside PyTorch eager and torch.compile for
#           tiny, ~125M and ~1B (needs transformers beside the device's PyTorch), issue #18.4
#   scale   benches/scale.sh cuda, issue #18.6
#   profile the same as `graph`, steps 99-100 of every 100 traced with libtorch's profiler
#           (`--profile-every`, PROFILE_EVERY=N to change); prints the trace's costliest CUDA
#           kernels (CPU operators on a CPU), issue #18.3
# Usage: bash benches/gpu.sh [part ...]   (default: tests graph eager nccl; DATA=FILE for shards;
# STEPS=N to shorten the runs; DEVICE=cpu tries the script itself on a machine without a GPU)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
parts="${*:-tests graph eager nccl}"
out="${OUT:-target}/gpu"
mkdir -p "$out"
bindir="${BIN:-target/release}"
bin="$bindir/tiny_llama"
# The binaries' rpath names this checkout's libtorch; on the GPU machine, its PyTorch's.
for lib in /opt/torch/.venv/lib/python3*/site-packages/torch/lib; do
    if [ -d "$lib" ]; then export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
done
device="${DEVICE:-cuda}"
steps=()
if [ -n "${STEPS:-}" ]; then steps=(--steps "$STEPS"); fi

built() { # the newest test or bench binary cargo built as $1-<hash>
    ls -t target/release/deps/"$1"-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true
}

newest() { # the test or bench binary $1: packed as $bindir/$1, else as cargo built it
    if [ -x "$bindir/$1" ]; then echo "$bindir/$1"; else built "$1"; fi
}

summary() { # name dir
    python3 - "$2/metrics.jsonl" "$1" <<'PY'
import json, statistics, sys
path, name = sys.argv[1:]
rows = [json.loads(line) for line in open(path)]
steps = [r for r in rows if "loss" in r]
steps = steps[1:] or steps  # the first window includes warm-up and the graph's capture
val = [r["val_loss"] for r in rows if "val_loss" in r]
if not steps:
    sys.exit(f"{name}: no logged steps in {path}")
step = statistics.median(r["step_time_s"] for r in steps) * 1e3
tps = statistics.median(r["tps"] for r in steps)
wait = statistics.median(r["data_wait_s"] for r in steps) * 1e3
mem = max(r.get("max_reserved_gib") or 0 for r in steps)
print(f"{name}: step {step:.2f} ms, {tps:,.0f} tokens/s, data wait {wait:.3f} ms/step, "
      f"reserved {mem:.2f} GiB, train loss {steps[-1]['loss']:.4f}, "
      f"val loss {f'{val[-1]:.4f}' if val else 'none'}")
PY
}

kernels() { # trace: the costliest CUDA kernels of a Chrome trace (CPU operators without any)
    python3 - "$1" <<'PY'
import collections, json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
kind = "kernel" if any(e.get("cat") == "kernel" for e in events) else "cpu_op"
total, calls = collections.Counter(), collections.Counter()
for e in events:
    if e.get("cat") == kind and "dur" in e:
        total[e["name"]] += e["dur"]
        calls[e["name"]] += 1
steps = sum(1 for e in events if str(e.get("name", "")).startswith("ProfilerStep#"))
whole = sum(total.values()) or 1
nested = " (operators nest: inclusive times, shares overlap)" if kind == "cpu_op" else ""
print(f"{sys.argv[1]}: {steps} step(s), {kind} time {whole / 1e3:.2f} ms{nested}")
for name, us in total.most_common(8):
    print(f"  {us / 1e3:8.3f} ms {100 * us / whole:5.1f}%  x{calls[name]:<5} {name[:90]}")
PY
}

run() { # name args...
    local name=$1
    shift
    local dir="$out/$name"
    rm -rf "$dir"
    if "$bin" --device "$device" ${steps[@]+"${steps[@]}"} --log-every 10 --samples 0 \
        --output-dir "$dir" --set training.checkpoint_every=0 "$@" > "$dir.log" 2>&1; then
        summary "$name" "$dir" || echo "$name: no summary"
        grep -m 3 "^note:" "$dir.log" || true
    else
        echo "$name: failed (exit $?), last lines of $dir.log:"
        tail -n 15 "$dir.log"
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "no nvidia-smi: device $device"
for part in $parts; do
    case "$part" in
    pack)
        mkdir -p target/gpu-bin
        for name in tiny_llama llama_125m; do strip -o "target/gpu-bin/$name" "target/release/$name"; done
        for name in titan trainer_loop train_step; do
            exe=$(built "$name")
            if [ -z "$exe" ]; then echo "pack: no $name binary" && continue; fi
            lib=$(ls -t target/release/deps/libtitan-*.rlib 2>/dev/null | head -n 1 || true)
            if [ -n "$lib" ] && [ "$exe" -ot "$lib" ]; then
                echo "pack: $exe is older than titan's library: rebuild it (see above)"
            fi
            strip -o "target/gpu-bin/$name" "$exe"
        done
        du -sh target/gpu-bin
        ;;
    tests)
        for test in titan trainer_loop; do
            exe=$(newest "$test")
            if [ -z "$exe" ]; then
                echo "tests: no $test test binary (cargo test --release --no-run)"
            elif "$exe" cuda > "$out/test-$test.log" 2>&1; then
                echo "tests ($test, those named cuda): $(grep -E '^test result' "$out/test-$test.log")"
            else
                echo "tests ($test): failed, see $out/test-$test.log:"
                grep -E 'panicked|FAILED|differs' "$out/test-$test.log" | head -n 10
            fi
        done
        ;;
    graph) run graph ;;
    eager) run eager --set training.cuda_graph=false ;;
    nccl) run nccl --nproc-per-node 1 ;;
    blocks) run blocks --set llama.attn_mask_type=block_causal ;;
    shards)
        : "${DATA:?shards needs DATA=a text file of documents (e.g. TinyStories)}"
        rm -rf "$out/pretokenize"
        "$bin" --device "$device" --data "$DATA" --pretokenize --output-dir "$out/pretokenize" \
            > "$out/pretokenize.log" 2>&1 || { echo "pretokenize failed:"; tail -n 15 "$out/pretokenize.log"; }
        run shards --data "$DATA"
        grep -m 1 "token shards" "$out/shards.log" || echo "shards: the run read text, not shards"
        ;;
    bench)
        bench=$(newest train_step)
        [ -n "$bench" ] || { echo "bench: no train_step binary (cargo bench --no-run --bench train_step)"; continue; }
        TITAN_BENCH_DEVICES="$device" TITAN_BENCH_SIZES="${TITAN_BENCH_SIZES:-tiny,125m,1b}" \
            "$bench" --bench > "$out/bench.log" 2>&1 || echo "bench: failed (exit $?), see $out/bench.log"
        grep -E '^\||ratio|MFU|error' "$out/bench.log" || tail -n 15 "$out/bench.log"
        ;;
    scale) BIN="$bindir" bash benches/scale.sh "$device" || echo "scale: failed (exit $?)" ;;
    profile)
        run profile --profile-every "${PROFILE_EVERY:-100}" --set training.profile_steps=2
        trace=$(ls -t "$out"/profile/profile/step-*/rank0.pt.trace.json 2>/dev/null | head -n 1 || true)
        if [ -n "$trace" ]; then kernels "$trace"; else echo "profile: no trace written"; fi
        ;;
    *) echo "unknown part $part (graph, eager, nccl, blocks, shards, bench, scale, profile)" && exit 2 ;;
    esac
done
