"""The trainer on two ranks against one: ``accelerate launch --cpu --num_processes 2`` (gloo) runs
``radialog-instruct train --demo`` on the test shards, and one in-process run with the same global
batch must give the same per-step losses, evaluation losses, skipped-row counts and weights; the
two-rank checkpoint then resumes on one rank as if the run had never changed size.

Tolerance: losses within 1e-5 relative, LoRA weights within 1e-5 absolute. The runs differ only in
float summation order (each rank sums its own micro-batches, gloo adds the two halves), which moves
float32 results by ~1e-7; a different row, a doubled row or a wrong loss normalisation moves them
by 1e-2 or more. Runtime on 2 shared cores: about 1-2 minutes, most of it the two processes' start.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trainer import VERSION, lora_weights, write_shards

from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.workdir import Workdir
from radialog_instruct.trainer import run_train

pytestmark = pytest.mark.slow

STEPS, MORE_STEPS = 6, 10
#: 3 x 3 = 9 rows a step (5 + 4 on two ranks); max_length 108 drops about a quarter of the rows, so the ranks'
#: shares differ in size and the skipped counts must be added up across ranks
SETTINGS = {"train.dataset_version": VERSION, "train.micro_batch_size": 3, "train.grad_accum": 3,
            "train.max_length": 108, "train.lr": 3e-3, "train.warmup_steps": 2, "train.eval_every": 3,
            "train.save_every": 3, "train.keep_checkpoints": 5, "train.shuffle_buffer": 64,
            "train.lora.dropout": 0.0, "train.eval_max_rows": None}
RTOL, ATOL = 1e-5, 1e-5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def overrides(**extra: object) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in {**SETTINGS, **extra}.items()]


def state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "state.pt", weights_only=True)["trainable"]


def assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=ATOL), name


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Workdir, subprocess.CompletedProcess]:
    wd = Workdir.at(tmp_path_factory.mktemp("ranks") / "work")
    write_shards(wd, rows={"train": 192, "validate": 32, "test": 16})
    accelerate = Path(sys.executable).with_name("accelerate")
    # on a machine without GPUs --multi_gpu starts the processes over gloo; accelerate's --cpu launcher
    # starts ONE process unless it is given an MPI host file
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "radialog_instruct.flows.cli", "train", "--demo", "--workdir", str(wd.root),
               "--max-steps", str(STEPS), *[arg for item in overrides() for arg in ("--set", item)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PREFECT_HOME": str(wd.root / ".prefect")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return wd, done


def test_two_ranks_train_log_their_world_size_and_write_one_adapter(launched):
    wd, done = launched
    assert "[rank 0] world size 2 (backend gloo" in done.stderr
    adapters = wd.root / "adapters" / VERSION
    assert sorted(p.name for p in adapters.iterdir()) == ["adapter", "checkpoints"]  # no leftovers of a second writer
    summary = json.loads(wd.report("train-summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == STEPS and summary["skipped_rows"]["too_long"] > 0
    meta = json.loads((adapters / "adapter" / "radialog_metadata.json").read_text())
    assert meta["step"] == STEPS
    stamp = json.loads((wd.stamps / "train.json").read_text())
    assert stamp["summary"]["world_size"] == 2
    assert done.stdout.count("train: done") == 1  # rank 0 alone prints the summary


@pytest.fixture(scope="module")
def one_rank(launched, tmp_path_factory) -> tuple[dict, Path]:
    wd, _ = launched
    out = tmp_path_factory.mktemp("one-rank") / "adapters"
    return run_train(load_params(demo=True, overrides=overrides(**{"train.output_dir": str(out)})), wd,
                     max_steps=STEPS), out


def test_two_ranks_match_one_rank_with_the_same_global_batch(launched, one_rank):
    wd, _ = launched
    one, one_dir = one_rank
    two_dir = wd.root / "adapters" / VERSION
    two = json.loads(wd.report("train-summary.json").read_text())
    assert one["world_size"] == 1
    assert two["train_loss_per_step"] == pytest.approx(one["train_loss_per_step"], rel=RTOL)
    assert [e["step"] for e in two["evals"]] == [e["step"] for e in one["evals"]] == [3, 6]
    assert [e["eval_loss"] for e in two["evals"]] == pytest.approx([e["eval_loss"] for e in one["evals"]], rel=RTOL)
    assert two["skipped_rows"] == one["skipped_rows"] and two["supervised_tokens"] == one["supervised_tokens"]
    for step in ("step-0000003", "step-0000006"):
        assert_close_states(state(two_dir / "checkpoints" / step), state(one_dir / "checkpoints" / step))
    assert_close_states(lora_weights(two_dir / "adapter"), lora_weights(one_dir / "adapter"))


def test_a_two_rank_checkpoint_resumes_on_one_rank(launched, one_rank, tmp_path):
    """Both runs stopped at step 6 and go on to step 10 on one rank (the longer run also stretches the
    learning-rate schedule, the same way for both)."""
    wd, _ = launched
    runs = {}
    for name, source in (("one", one_rank[1]), ("two", wd.root / "adapters" / VERSION)):
        shutil.copytree(source, tmp_path / name)
        params = load_params(demo=True, overrides=overrides(**{"train.output_dir": str(tmp_path / name)}))
        runs[name] = run_train(params, wd, max_steps=MORE_STEPS)
        assert runs[name]["resumed"] and runs[name]["steps"] == MORE_STEPS and runs[name]["world_size"] == 1
    # the same rows in the same steps: a repeated or skipped row would change the losses by far more
    assert runs["two"]["train_loss_per_step"] == pytest.approx(runs["one"]["train_loss_per_step"], rel=RTOL)
    assert runs["two"]["skipped_rows"] == runs["one"]["skipped_rows"]
    final = f"step-{MORE_STEPS:07d}"
    assert_close_states(state(tmp_path / "two" / "checkpoints" / final), state(tmp_path / "one" / "checkpoints" / final))
