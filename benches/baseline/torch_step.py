"""PyTorch baseline of titan's `train_step` bench: Hugging Face `LlamaForCausalLM` with the
same config (read from the JSON titan writes, Hugging Face field names), fused SDPA attention,
the same batch of random ids, AdamW(lr 1e-3, betas (0.9, 0.95), weight decay 0.1; PyTorch's
default implementation for the device) and the same thread count; forward + backward +
optimizer step, timed per step.

Usage: torch_step.py CONFIG_JSON BATCH SEQ STEPS DEVICE THREADS [fp32|bf16] [eager|compile]
bf16 is autocast to bfloat16 over f32 weights (what titan's bf16 does); compile wraps the model
in torch.compile (the optimizer stays eager).
Prints one JSON line: {"step_s": median seconds per step, "peak_gib": peak memory (CUDA: the
caching allocator's reserved; CPU: the process's peak RSS), "threads": ..., "torch": version}.
"""

import json
import resource
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    path, batch, seq, steps, device, threads = sys.argv[1:7]
    precision = sys.argv[7] if len(sys.argv) > 7 else "fp32"
    mode = sys.argv[8] if len(sys.argv) > 8 else "eager"
    batch, seq, steps, threads = int(batch), int(seq), int(steps), int(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(path) as f:
        config = LlamaConfig(**json.load(f), attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    forward = torch.compile(model) if mode == "compile" else model
    ids = torch.randint(config.vocab_size, (batch, seq), device=device)
    device_type = device.split(":")[0]

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(3 if mode == "compile" else 2):
        step()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_reserved(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({
        "step_s": statistics.median(times),
        "peak_gib": peak,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
