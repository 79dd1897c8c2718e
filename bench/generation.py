"""Throughput of the generate stage: requests/s, output tokens/s and cache hit rate, for any backend.

Runs the real stage (``run_generate``: plan -> requests -> cache -> backend) twice on a synthetic
plan of ``--n-requests`` distinct replay prompts of about ``--prompt-tokens`` tokens (Vicuna v1.1
template around synthetic report sentences): a cold run (every request is a model call) and a
warm run (every request is a cache hit). Writes ``bench/results/generation-<backend>-<device>.json``
with the machine, the settings, both runs and the memory-bandwidth bound of decoding.

Bandwidth bound. A decode step of a batch of B sequences reads every weight once and the K/V
cache of every sequence once, and on a GPU that read dominates the step (decoding is
memory-bound), so

    bytes_per_step = weight_bytes + B * L * kv_bytes_per_token
    kv_bytes_per_token = 2 (K and V) * layers * kv_heads * head_dim * bytes_per_element
    step_time >= bytes_per_step / memory_bandwidth
    output_tokens/s <= B / step_time

with L the mean context during decoding (prompt + half the new tokens). The bandwidth is
measured with a large device-to-device copy (bytes read + written per second). The measured
output tokens/s (prefill included) divided by this bound shows how close a backend comes; tiny
models on a CPU sit far below it (Python and kernel-launch overhead dominate).

Without hub access, ``--random-weights-like lmsys/vicuna-7b-v1.5`` builds a random-weight model
with that model's real shape (its config from the local Hugging Face cache, else the known
Llama shapes below) and a byte-level BPE tokenizer trained on synthetic report text, padded to
the real vocabulary size; the default model is the tiny random Llama of the tests.

    python bench/generation.py --backend transformers --n-requests 64
    python bench/generation.py --backend vllm --random-weights-like lmsys/vicuna-7b-v1.5 --n-requests 2000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from radialog_instruct.schemas import PLAN
from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.io import write_json, write_parquet
from radialog_instruct.tasks.sources.demo import build_studies
from radialog_instruct.tasks.text.conversation import load_conversation
from radialog_instruct.tasks.workdir import Workdir

from machine import machine_info

BENCH = Path(__file__).resolve().parent
INSTRUCTIONS = ("Summarize this report with bullet points.", "Explain the report without medical jargon.",
                "Describe the state of the lungs.", "Please provide an adapted report that mentions edema.")

#: Llama shapes of the presets' models (their config.json on the hub), for building random-weight
#: look-alikes offline.
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "lmsys/vicuna-7b-v1.5": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                                 rms_norm_eps=1e-5),
    "lmsys/vicuna-13b-v1.3": dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                  num_attention_heads=40, num_key_value_heads=40, max_position_embeddings=2048,
                                  rms_norm_eps=1e-6),
}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def report_sentences() -> list[str]:
    return [s for study in build_studies() for s in study.findings]


# --- models ------------------------------------------------------------------------------------

def build_tiny(folder: Path) -> Path:
    from radialog_instruct.tasks.models.tiny_llama import build_tiny_llama

    return folder if folder.exists() else build_tiny_llama(folder, report_sentences(), seed=0)


def build_random_like(model_id: str, folder: Path, dtype: str) -> Path:
    """A random-weight model with ``model_id``'s architecture and a trained, padded tokenizer."""
    if folder.exists():
        return folder
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_id, local_files_only=True)
    except OSError:
        if model_id not in KNOWN_SHAPES:
            sys.exit(f"error: no config for {model_id} in the local Hugging Face cache and no known shape "
                     f"(known: {', '.join(KNOWN_SHAPES)})")
        config = LlamaConfig(**KNOWN_SHAPES[model_id])
    tokenizer_dir = build_tiny(folder.with_name(folder.name + "-tokenizer"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(config.vocab_size - len(tokenizer))])
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.rmtree(tokenizer_dir)
    return folder


def model_shape(folder: Path) -> dict[str, int]:
    """Parameter count (from the safetensors headers) and the K/V geometry (from config.json)."""
    params = 0
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                params += count
    config = json.loads((folder / "config.json").read_text())
    heads = config["num_attention_heads"]
    return {"parameters": params, "layers": config["num_hidden_layers"],
            "kv_heads": config.get("num_key_value_heads") or heads,
            "head_dim": config.get("head_dim") or config["hidden_size"] // heads}


# --- the synthetic plan --------------------------------------------------------------------------

def synthetic_plan(n: int, prompt_tokens: int, tokenizer_dir: Path) -> tuple[pa.Table, float]:
    """``n`` distinct replay rows whose rendered prompts have about ``prompt_tokens`` tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    conversation = load_conversation()
    sentences = report_sentences()
    rows, lengths = [], []
    for i in range(n):
        report: list[str] = [f"Study {i}."]
        while True:
            content = "Report: " + " ".join(report) + "\n" + INSTRUCTIONS[i % len(INSTRUCTIONS)]
            length = len(tokenizer(conversation.render([{"role": "user", "content": content}]))["input_ids"])
            if length >= prompt_tokens:
                break
            report.append(sentences[(i * 7919 + len(report)) % len(sentences)])
        lengths.append(length)
        rows.append({"sample_id": f"bench{i}", "split": "train", "task": "summarization", "source": "bench",
                     "dicom_id": f"d{i}", "image_path": "", "history": [], "messages": [], "instruction": "",
                     "context_mode": "full", "template_id": "bench", "is_pseudo_label": True,
                     "sample_key": f"bench:{i}", "template_version": "bench",
                     "gen_messages": [{"role": "user", "content": content}]})
    return pa.Table.from_pylist(rows, schema=PLAN), sum(lengths) / len(lengths)


# --- machine and bandwidth -------------------------------------------------------------------------

def measure_bandwidth(device: str) -> float:
    """Bytes read + written per second by a large copy on ``device``."""
    import torch

    size = (1 << 30) if device == "cuda" else (1 << 28)
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device == "cuda":
        torch.cuda.synchronize()
    repeats = 10
    started = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size * repeats / (time.perf_counter() - started)


def bandwidth_bound(shape: dict[str, int], dtype: str, batch: int, context: float, bandwidth: float,
                    measured_tokens_per_s: float) -> dict[str, Any]:
    element = DTYPE_BYTES[dtype]
    weight_bytes = shape["parameters"] * element
    kv_per_token = 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * element
    per_step = weight_bytes + batch * context * kv_per_token
    step_s = per_step / bandwidth
    bound = batch / step_s
    return {
        "formula": "bytes_per_step = weight_bytes + B*L*kv_bytes_per_token; kv_bytes_per_token = "
                   "2*layers*kv_heads*head_dim*bytes; tokens/s <= B / (bytes_per_step / bandwidth)",
        "weight_bytes": weight_bytes, "kv_bytes_per_token": kv_per_token, "batch": batch,
        "mean_context_tokens": round(context, 1), "bytes_per_step": round(per_step),
        "bandwidth_bytes_per_s": round(bandwidth), "step_time_lower_bound_s": step_s,
        "max_output_tokens_per_s": round(bound, 1),
        "max_output_tokens_per_s_batch_1": round(bandwidth / (weight_bytes + context * kv_per_token), 1),
        "measured_fraction_of_bound": round(measured_tokens_per_s / bound, 4),
    }


# --- the benchmark ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="transformers", choices=["auto", "vllm", "transformers", "openai"])
    parser.add_argument("--model", help="hub id or local folder (default: the tiny random Llama)")
    parser.add_argument("--random-weights-like", metavar="MODEL_ID",
                        help="build a random-weight model with this model's shape (no download)")
    parser.add_argument("--n-requests", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--max-new-tokens", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8, help="transformers batch size")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="vLLM concurrent sequences")
    parser.add_argument("--dtype", choices=sorted(DTYPE_BYTES), help="default: float16 on GPU, float32 on CPU")
    parser.add_argument("--base-url", help="openai backend: the server's /v1 URL")
    parser.add_argument("--workdir", type=Path, default=BENCH / "work" / "generation")
    parser.add_argument("--out", type=Path, help="default: bench/results/generation-<backend>-<device>.json")
    args = parser.parse_args()
    if args.model and args.random_weights_like:
        parser.error("--model and --random-weights-like exclude each other")

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype or ("float16" if device == "cuda" else "float32")
    wd = Workdir.at(args.workdir)
    for stale in (wd.cache, wd.reports, wd.interim):
        shutil.rmtree(stale, ignore_errors=True)
    if args.random_weights_like:
        folder = wd.models / ("random-like-" + args.random_weights_like.replace("/", "--"))
        model = str(build_random_like(args.random_weights_like, folder, dtype))
    else:
        model = args.model or str(build_tiny(wd.models / "tiny-llama"))
    plan, mean_prompt = synthetic_plan(args.n_requests, args.prompt_tokens, Path(model))
    write_parquet(plan, wd.table("plan"))
    params = {"seed": 0, "generate": {
        "model_preset": "demo-tiny", "model": model, "backend": args.backend, "max_new_tokens": args.max_new_tokens,
        "chunk_size": 256,
        "vllm": {"max_model_len": args.prompt_tokens + args.max_new_tokens + 128, "dtype": dtype,
                 "max_num_seqs": args.max_num_seqs, "enforce_eager": device == "cpu"},
        "transformers": {"batch_size": args.batch_size, "device": device, "dtype": dtype},
        "openai": {"base_url": args.base_url},
    }}
    started = time.perf_counter()
    cold = run_generate(params, wd)
    cold_wall = time.perf_counter() - started
    started = time.perf_counter()
    warm = run_generate(params, wd)
    warm_wall = time.perf_counter() - started

    batch = min(args.n_requests, args.batch_size if cold["backend"] == "transformers" else args.max_num_seqs)
    shape = model_shape(Path(model)) if Path(model).is_dir() else None
    result = {
        "backend": cold["backend"], "model": model, "random_weights_like": args.random_weights_like,
        "device": device, "dtype": dtype, "machine": machine_info(),
        "settings": {"n_requests": args.n_requests, "prompt_tokens_target": args.prompt_tokens,
                     "prompt_tokens_mean": round(mean_prompt, 1), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "max_num_seqs": args.max_num_seqs},
        "cold": {"requests": cold["requests"], "model_calls": cold["model_calls"], "wall_s": round(cold_wall, 2),
                 "load_s": cold["load_s"], "generate_s": cold["elapsed_s"],
                 "requests_per_s": cold["requests_per_s"], "output_tokens_per_s": cold["tokens_per_s"],
                 "prompt_tokens": cold["prompt_tokens"], "completion_tokens": cold["completion_tokens"]},
        "warm": {"requests": warm["requests"], "cache_hits": warm["cache_hits"], "model_calls": warm["model_calls"],
                 "cache_hit_rate": warm["cache_hits"] / warm["requests"], "wall_s": round(warm_wall, 3),
                 "requests_per_s": round(warm["requests"] / warm_wall, 1)},
        "model_shape": shape,
        "bandwidth_bound": None if shape is None else bandwidth_bound(
            shape, dtype, batch, mean_prompt + args.max_new_tokens / 2, measure_bandwidth(device),
            cold["tokens_per_s"]),
    }
    name = "cpu" if device == "cpu" else re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    out = args.out or BENCH / "results" / f"generation-{cold['backend']}-{name}.json"
    write_json(result, out)
    print(json.dumps({k: result[k] for k in ("cold", "warm", "bandwidth_bound")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
