#!/usr/bin/env bash
# Image-embedding throughput of full-size CLIP ViT-B/32 and ViT-L/14 vision towers on a GPU.
#
# Models are randomly initialised from their published configs (speed does not
# depend on the weights), so this needs no hub and no network. Prints one line
# per (model, dtype, batch size): images/s and peak memory.
#
#   bench/gpu.sh                      # cuda if available, fp16 + fp32, batches 32 64 128 256
#   DEVICE=cpu DTYPES=fp32 BATCHES="2" ITERS=1 bench/gpu.sh   # smoke run without a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DEVICE="${DEVICE:-auto}" DTYPES="${DTYPES:-fp16 fp32}" BATCHES="${BATCHES:-32 64 128 256}" \
ITERS="${ITERS:-10}" MODELS="${MODELS:-ViT-B/32 ViT-L/14}" "$PY" - <<'PY'
import os, time, torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

SPECS = {  # from openai/clip-vit-base-patch32 and openai/clip-vit-large-patch14 config.json
    "ViT-B/32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     patch_size=32, image_size=224, projection_dim=512),
    "ViT-L/14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     patch_size=14, image_size=224, projection_dim=768),
}
dev = os.environ["DEVICE"]
if dev == "auto":
    dev = "cuda" if torch.cuda.is_available() else "cpu"
name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
print(f"device: {dev} ({name})  torch {torch.__version__}")
iters = int(os.environ["ITERS"])
for arch in os.environ["MODELS"].split():
    for dt in os.environ["DTYPES"].split():
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dt]
        if dev == "cpu" and dtype != torch.float32:
            continue
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**SPECS[arch])).to(dev, dtype=dtype).eval()
        for bs in map(int, os.environ["BATCHES"].split()):
            x = torch.randn(bs, 3, 224, 224, device=dev, dtype=dtype)
            try:
                with torch.inference_mode():
                    model(pixel_values=x)  # warm-up (kernels, allocator)
                    if dev == "cuda":
                        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                    t = time.perf_counter()
                    for _ in range(iters):
                        model(pixel_values=x).image_embeds
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    dt_s = time.perf_counter() - t
            except torch.OutOfMemoryError:
                print(f"{arch:9s} {dt:5s} batch {bs:4d}: out of memory"); torch.cuda.empty_cache(); continue
            mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else float("nan")
            print(f"{arch:9s} {dt:5s} batch {bs:4d}: {bs * iters / dt_s:9.1f} images/s  peak {mem:5.2f} GiB")
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
PY
