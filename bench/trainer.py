"""Throughput of the LoRA trainer: tokens/s and samples/s per rank, on the real training loop.

    python bench/trainer.py                                   # one CPU process, the tiny model
    torchrun --nproc_per_node 2 bench/trainer.py              # two CPU ranks (gloo)
    accelerate launch --multi_gpu --num_processes 8 bench/trainer.py --shape vicuna-7b --dtype bfloat16

Runs ``run_train`` (shards -> tokens -> DDP steps) on synthetic conversations written as shards
(``--shards`` takes a built dataset version instead) and times every optimizer step after
``--warmup`` of them. A step's time covers tokenising the rank's rows, every forward and backward,
the gradient all-reduce and the optimizer. Tokens are the non-padding input tokens a rank ran
through the model; samples are the rows it trained on.

``--shape vicuna-7b`` builds (once, into bench/work/trainer/models) a random-weight Llama of
Vicuna-7B v1.5's shape (see bench/generation.py) with a byte-level tokenizer padded to 32,000
tokens: throughput depends on the shape, not on the weights.

Expected GPU figure (the 6·N·D rule): a token costs about 6·N FLOPs to train on, N the model's
parameters. For LoRA the frozen weights get no weight gradient (forward 2N + input gradients 2N =
4N), and gradient checkpointing recomputes the forward (+2N), so 6N holds exactly for LoRA with
gradient checkpointing and overstates LoRA without it by 1.5x. tokens/s per GPU = MFU x peak /
(6 N). Results go to bench/results/trainer-<device>.json, one entry per (shape, ranks, settings).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from generation import build_random_like, build_tiny, model_shape, report_sentences

from radialog_instruct.schemas import INSTRUCT_SAMPLE
from radialog_instruct.tasks.io import read_json, write_json
from radialog_instruct.tasks.storage.shards import write_split
from radialog_instruct.tasks.text.conversation import load_conversation
from radialog_instruct.tasks.workdir import Workdir
from radialog_instruct.trainer import distributed, run_train
from radialog_instruct.trainer.loop import Trainer

from machine import machine_info

BENCH = Path(__file__).resolve().parent
VERSION = "bench"
SHAPES = {"tiny": None, "vicuna-7b": "lmsys/vicuna-7b-v1.5"}
#: dense bf16 tensor-core peak of an H100 / H200 SXM (the H200 has the H100's compute, more memory)
H100_BF16_PEAK = 989.4e12
ASSUMED_MFU = 0.40
QUESTIONS = ("Is there a pleural effusion?", "Summarize the report in one sentence.",
             "Explain the findings without medical jargon.", "Which view is this image?")


def synthetic_rows(n: int, seed: int = 0) -> pa.Table:
    """Report-generation conversations (report = 3-9 demo sentences), every other one followed by a
    second question and a short answer, as most RaDialog tasks are."""
    rng = random.Random(seed)
    sentences = report_sentences()
    prefix = load_conversation().image_prefix
    rows = []
    for i in range(n):
        report = " ".join(rng.sample(sentences, rng.randint(3, 9)))
        messages = [{"role": "user", "content": f"{prefix}Predicted Findings: no finding. Write the findings section "
                                                f"of the radiology report for this chest X-ray."},
                    {"role": "assistant", "content": report}]
        if i % 2:
            messages += [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
                         {"role": "assistant", "content": rng.choice(sentences)}]
        rows.append({"sample_id": f"bench-{i:07d}", "split": "train", "task": "report_generation", "source": "bench",
                     "dicom_id": f"d{i}", "image_path": f"files/d{i}.jpg", "history": messages[:-2],
                     "messages": messages, "instruction": messages[-2]["content"], "output": messages[-1]["content"],
                     "context_mode": "full", "template_id": "bench", "is_pseudo_label": False,
                     "pipeline_version": "bench"})
    return pa.Table.from_pylist(rows, schema=INSTRUCT_SAMPLE)


def write_shards(wd: Workdir, n: int) -> None:
    root = wd.shards(VERSION)
    if (root / "manifest.json").exists() and read_json(root / "manifest.json")["rows"] == n:
        return
    entries = write_split(synthetic_rows(n), root / "train", rows_per_shard=4096, row_group_size=256)
    write_json({"version": VERSION, "rows": n, "shards": {f"train/{name}": e for name, e in entries.items()}},
               root / "manifest.json")


class Meter:
    """Wall time, tokens and rows of each optimizer step on this rank (class-level hooks on Trainer)."""

    def __init__(self, cuda: bool):
        self.cuda, self.steps, self.tokens, self.rows = cuda, [], 0, 0
        step, batches = Trainer.train_step, Trainer.micro_batches
        meter = self

        def micro_batches(trainer, examples, size):
            for batch in batches(trainer, examples, size):
                if trainer.engine.training:
                    meter.tokens += int(batch[1].sum())
                    meter.rows += batch[0].shape[0]
                yield batch

        def train_step(trainer, rows):
            meter.sync()
            started, meter.tokens, meter.rows = time.perf_counter(), 0, 0
            done = step(trainer, rows)
            meter.sync()
            meter.steps.append((time.perf_counter() - started, meter.tokens, meter.rows))
            return done

        Trainer.micro_batches, Trainer.train_step = micro_batches, train_step

    def sync(self) -> None:
        if self.cuda:
            import torch
            torch.cuda.synchronize()

    def figures(self, warmup: int) -> dict[str, float]:
        measured = self.steps[warmup:]
        seconds = sum(s for s, _, _ in measured)
        tokens, rows = sum(t for _, t, _ in measured), sum(r for _, _, r in measured)
        return {"steps": len(measured), "seconds": round(seconds, 3), "tokens": tokens, "samples": rows,
                "tokens_per_s": round(tokens / seconds, 1), "samples_per_s": round(rows / seconds, 2),
                "mean_tokens_per_sample": round(tokens / rows, 1)}


def gpu_expectation(params: int, mean_tokens: float, gpus: int = 8) -> dict[str, Any]:
    """tokens/s and samples/s per GPU at ASSUMED_MFU of the H100/H200 bf16 peak, by the 6·N rule,
    and the time of RaDialog's 3 epochs over ~580k samples on ``gpus`` of them."""
    tokens_per_s = ASSUMED_MFU * H100_BF16_PEAK / (6 * params)
    epochs_tokens = 3 * 580_000 * mean_tokens
    return {"rule": "tokens/s per GPU = MFU * peak / (6 * N)", "parameters": params,
            "peak_flops": H100_BF16_PEAK, "assumed_mfu": ASSUMED_MFU,
            "tokens_per_s_per_gpu": round(tokens_per_s), "samples_per_s_per_gpu": round(tokens_per_s / mean_tokens, 1),
            "mean_tokens_per_sample": mean_tokens,
            f"hours_for_3_epochs_of_580k_samples_on_{gpus}_gpus": round(epochs_tokens / (gpus * tokens_per_s) / 3600, 2)}


def record(result: dict[str, Any], out: Path) -> None:
    """Add ``result`` to the results file, replacing an earlier run with the same key."""
    data = read_json(out) if out.exists() else {"runs": []}
    data["runs"] = [r for r in data["runs"] if r["key"] != result["key"]] + [result]
    data["runs"].sort(key=lambda r: r["key"])
    data["machine"] = result.pop("machine")
    result["load_average"] = data["machine"]["load_average"]  # per run: the machine may be shared
    write_json(data, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--shards", type=Path, help="a built shards/<version> folder (default: synthetic rows)")
    parser.add_argument("--rows", type=int, default=2048, help="synthetic train rows")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=8, help="micro-batches per step over all ranks")
    parser.add_argument("--max-length", type=int, default=800)
    parser.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--workdir", type=Path, default=BENCH / "work" / "trainer")
    parser.add_argument("--out", type=Path, help="default: bench/results/trainer-<device>.json")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    wd = Workdir.at(args.workdir)
    ranks = distributed.start()
    folder = wd.models / args.shape
    if SHAPES[args.shape]:
        ranks.on_main(lambda: build_random_like(SHAPES[args.shape], folder, "bfloat16" if cuda else "float32"))
    else:
        ranks.on_main(lambda: build_tiny(folder))
    if args.shards:
        wd, version = Workdir.at(args.shards.parent.parent), args.shards.name
    else:
        ranks.on_main(lambda: write_shards(wd, args.rows))
        version = VERSION
    meter = Meter(cuda)
    params = {"seed": 0, "train": {
        "base_model": str(folder), "dataset_version": version, "output_dir": str(args.workdir / "adapter"),
        "micro_batch_size": args.micro_batch_size, "grad_accum": args.grad_accum, "max_length": args.max_length,
        "dtype": args.dtype, "gradient_checkpointing": args.gradient_checkpointing, "epochs": 1, "eval_every": None,
        "save_every": 10**9, "warmup_steps": 2, "shuffle_buffer": 1024, "lora": {"target_modules": ["q_proj", "v_proj"]},
        "max_steps": args.warmup + args.steps}}
    summary = run_train(params, wd, resume=False)
    per_rank = [meter.figures(args.warmup)]
    if ranks.world > 1:
        gathered: list[Any] = [None] * ranks.world
        torch.distributed.all_gather_object(gathered, per_rank[0])
        per_rank = gathered
    if not ranks.is_main:
        return

    params_n = model_shape(folder)["parameters"]
    tokens_per_s = sum(r["tokens_per_s"] for r in per_rank)
    mean_tokens = round(sum(r["tokens"] for r in per_rank) / sum(r["samples"] for r in per_rank), 1)
    device = "cpu" if not cuda else re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    result = {
        "key": f"{args.shape}|ranks={ranks.world}|{summary['dtype']}|gc={args.gradient_checkpointing}"
               f"|mbs={args.micro_batch_size}|accum={args.grad_accum}",
        "shape": args.shape, "parameters": params_n, "world_size": ranks.world, "device": summary["device"],
        "dtype": summary["dtype"], "gradient_checkpointing": args.gradient_checkpointing,
        "micro_batch_size": args.micro_batch_size, "grad_accum": args.grad_accum,
        "rows_per_step": args.micro_batch_size * args.grad_accum, "max_length": args.max_length,
        "per_rank": per_rank, "tokens_per_s_all_ranks": round(tokens_per_s, 1),
        "samples_per_s_all_ranks": round(sum(r["samples_per_s"] for r in per_rank), 2),
        "mean_tokens_per_sample": mean_tokens,
        "model_flops_per_s_6N": round(6 * params_n * tokens_per_s),
        "gpu_expectation_vicuna_7b": gpu_expectation(6_738_415_616, mean_tokens),
        "machine": machine_info(("torch", "transformers", "peft", "accelerate")),
    }
    if cuda:
        result["mfu_6N"] = round(6 * params_n * tokens_per_s / ranks.world / H100_BF16_PEAK, 4)
    out = args.out or BENCH / "results" / f"trainer-{device}.json"
    record(dict(result), out)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
