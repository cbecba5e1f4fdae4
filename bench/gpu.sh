#!/usr/bin/env bash
# Image-embedding throughput of full-size CLIP ViT-B/32 and ViT-L/14 vision towers on a GPU.
#
# Models are randomly initialised from their published configs (speed does not
# depend on the weights), so this needs no hub and no network. Prints one line
# per (model, dtype, batch size): images/s and peak memory.
#
#   bench/gpu.sh                      # cuda if available, fp16 + fp32, batches 32 64 128 256
#   DEVICE=cpu DTYPES=fp32 BATCHES="2" ITERS=1 bench/gpu.sh   # smoke run without a GPU
#
# PARTS (default "clip tagger captioner") also times, from published configs with random weights:
#   tagger    - a WD-v3-sized tagger: ViT-B/16 at 448 px, 10,861 sigmoid outputs (SmilingWolf/wd-vit-tagger-v3),
#               in torch, and through ONNX Runtime (what charmeta runs) when its CUDA provider is installed;
#               the issue's goal: >= 500 images/s per H100-class GPU.
#   captioner - BLIP-base image captioning (Salesforce/blip-image-captioning-base sizes), greedy 30 new tokens.
# SMOKE=1 shrinks every model to 2 layers (CPU smoke test of the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DEVICE="${DEVICE:-auto}" DTYPES="${DTYPES:-fp16 fp32}" BATCHES="${BATCHES:-32 64 128 256}" \
ITERS="${ITERS:-10}" MODELS="${MODELS:-ViT-B/32 ViT-L/14}" PARTS="${PARTS:-clip tagger captioner}" SMOKE="${SMOKE:-0}" "$PY" - <<'PY'
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
parts = os.environ["PARTS"].split()
smoke = os.environ["SMOKE"] == "1"
for arch in (os.environ["MODELS"].split() if "clip" in parts else []):
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


def timed(fn, n_images):
    fn()  # warm-up
    if dev == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    return n_images * iters / (time.perf_counter() - t)

def mem():
    return torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else float("nan")

if "tagger" in parts:
    from transformers import ViTConfig, ViTForImageClassification
    cfg = ViTConfig(image_size=448, patch_size=16, num_labels=10861, problem_type="multi_label_classification",
                    **(dict(num_hidden_layers=2) if smoke else {}))
    for dt in os.environ["DTYPES"].split():
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dt]
        if dev == "cpu" and dtype != torch.float32:
            continue
        model = ViTForImageClassification(cfg).to(dev, dtype=dtype).eval()
        for bs in map(int, os.environ["BATCHES"].split()):
            x = torch.randn(bs, 3, 448, 448, device=dev, dtype=dtype)
            try:
                with torch.inference_mode():
                    ips = timed(lambda: torch.sigmoid(model(pixel_values=x).logits), bs)
            except torch.OutOfMemoryError:
                print(f"tagger ViT-B/16-448 {dt:5s} batch {bs:4d}: out of memory"); torch.cuda.empty_cache(); continue
            print(f"tagger ViT-B/16-448 torch {dt:5s} batch {bs:4d}: {ips:9.1f} images/s  peak {mem():5.2f} GiB")
        del model
    try:  # the runtime charmeta uses: ONNX Runtime, NHWC float32 input like the WD models
        import onnxruntime as ort, tempfile
        prov = "CUDAExecutionProvider" if dev == "cuda" else "CPUExecutionProvider"
        if prov not in ort.get_available_providers():
            raise RuntimeError(f"{prov} not installed (pip install onnxruntime-gpu)")
        class NHWC(torch.nn.Module):
            def __init__(self, m):
                super().__init__(); self.m = m
            def forward(self, x):
                return torch.sigmoid(self.m(pixel_values=x.permute(0, 3, 1, 2) / 127.5 - 1).logits)
        model = NHWC(ViTForImageClassification(cfg).eval())
        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/tagger.onnx"
            torch.onnx.export(model, torch.zeros(1, 448, 448, 3), path, input_names=["input"], output_names=["out"],
                              dynamic_axes={"input": {0: "b"}}, dynamo=False)
            sess = ort.InferenceSession(path, providers=[prov])
            import numpy as np
            for bs in map(int, os.environ["BATCHES"].split()):
                xb = np.random.rand(bs, 448, 448, 3).astype("float32") * 255
                ips = timed(lambda: sess.run(None, {"input": xb}), bs)
                print(f"tagger ViT-B/16-448 onnxruntime {prov} fp32 batch {bs:4d}: {ips:9.1f} images/s")
    except Exception as exc:
        print(f"tagger onnxruntime: not measured ({exc})")

if "captioner" in parts:
    from transformers import BlipConfig, BlipForConditionalGeneration
    cfg = BlipConfig()  # BLIP base: ViT-B/16 at 384 + BERT-base text decoder
    if smoke:
        cfg.vision_config.num_hidden_layers = 2; cfg.text_config.num_hidden_layers = 2
    for dt in os.environ["DTYPES"].split():
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dt]
        if dev == "cpu" and dtype != torch.float32:
            continue
        model = BlipForConditionalGeneration(cfg).to(dev, dtype=dtype).eval()
        for bs in map(int, os.environ["BATCHES"].split()):
            x = torch.randn(bs, 3, 384, 384, device=dev, dtype=dtype)
            try:
                with torch.inference_mode():
                    ips = timed(lambda: model.generate(pixel_values=x, max_new_tokens=30, min_new_tokens=30,
                                                       do_sample=False), bs)
            except torch.OutOfMemoryError:
                print(f"captioner BLIP-base {dt:5s} batch {bs:4d}: out of memory"); torch.cuda.empty_cache(); continue
            print(f"captioner BLIP-base {dt:5s} batch {bs:4d}: {ips:9.1f} captions/s (30 tokens)  peak {mem():5.2f} GiB")
        del model
PY
