"""The trainer on two ranks against one. ``accelerate launch --multi_gpu --num_processes 2`` (on CPUs:
two processes over gloo) runs ``radialog-instruct train --demo`` on the test shards; one in-process
run with the same global batch must give the same per-step losses, evaluation losses, skipped-row
counts and weights; the two-rank checkpoint then resumes on one rank exactly like the one-rank
checkpoint does. ``torchrun`` trains with image features (the projector) the same way.

Tolerance: losses within 1e-5 relative, weights within 1e-5 absolute. The runs differ only in float
summation order (each rank sums its own micro-batches, gloo adds the two halves): measured weight
differences are ~1e-7. A row trained twice or not at all, an unsynchronised gradient or a
per-rank loss normalisation moves losses or weights by 1e-3 or more.

Runtime on 2 shared cores: about 1 minute at a load average of 4, 2.5 at 8 (two launches of two
processes, five in-process runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trainer import VERSION, lora_weights, write_features, write_shards

from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.workdir import Workdir
from radialog_instruct.trainer import run_train

from cli_process import free_port

pytestmark = pytest.mark.slow

STEPS, MORE_STEPS = 6, 10
#: 3 x 3 = 9 rows a step (5 + 4 on two ranks); max_length 108 drops about a quarter of the rows, so the ranks'
#: shares differ in size and the skipped counts must be added up across ranks
SETTINGS = {"train.dataset_version": VERSION, "train.micro_batch_size": 3, "train.grad_accum": 3,
            "train.max_length": 108, "train.lr": 3e-3, "train.warmup_steps": 2, "train.eval_every": 3,
            "train.save_every": 3, "train.keep_checkpoints": 5, "train.shuffle_buffer": 64,
            "train.lora.dropout": 0.0, "train.eval_max_rows": None}
RTOL, ATOL = 1e-5, 1e-5


def overrides(**extra: object) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in {**SETTINGS, **extra}.items()]


def state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "state.pt", weights_only=True)["trainable"]


def assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=ATOL), name


def launch(launcher: list[str], wd: Workdir, steps: int, settings: list[str]) -> subprocess.CompletedProcess:
    """``radialog-instruct train --demo`` on two CPU ranks (GPUs hidden, so gloo)."""
    command = [*launcher, "-m", "radialog_instruct.flows.cli", "train", "--demo", "--workdir", str(wd.root),
               "--max-steps", str(steps), *[arg for item in settings for arg in ("--set", item)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PREFECT_HOME": str(wd.root / ".prefect")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Workdir, subprocess.CompletedProcess]:
    wd = Workdir.at(tmp_path_factory.mktemp("ranks") / "work")
    write_shards(wd, rows={"train": 192, "validate": 32, "test": 16})
    # without GPUs --multi_gpu starts the processes over gloo; accelerate's --cpu launcher starts ONE
    # process unless it is given an MPI host file
    accelerate = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(free_port())]
    return wd, launch(accelerate, wd, STEPS, overrides())


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


def test_image_features_train_alike_on_two_ranks_under_torchrun(launched, tmp_path):
    """The projector takes part only in micro-batches with images (DDP looks for unused parameters);
    a quarter of the train dicoms have no features, so the ranks' shares differ in size."""
    wd, _ = launched  # the demo model is built
    dicoms = [f"dicom-{split}-{i:05d}" for split, n in (("train", 192), ("validate", 32)) for i in range(n)
              if split == "validate" or i % 4]
    write_features(tmp_path / "feats.parquet", dicoms, n_tokens=4, dim=8)
    features = {"train.features.path": str(tmp_path / "feats.parquet"), "train.features.n_tokens": 4}
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2",
                "--master_port", str(free_port())]
    launch(torchrun, wd, 4, overrides(**features, **{"train.output_dir": str(tmp_path / "two")}))
    two = json.loads(wd.report("train-summary.json").read_text())
    one = run_train(load_params(demo=True, overrides=overrides(**features, **{"train.output_dir": str(tmp_path / "one")})),
                    wd, max_steps=4)
    assert two["world_size"] == 2 and two["image_features"] and two["skipped_rows"]["no_features"] > 0
    assert two["train_loss_per_step"] == pytest.approx(one["train_loss_per_step"], rel=RTOL)
    assert two["skipped_rows"] == one["skipped_rows"]
    from safetensors.torch import load_file
    for file in ("adapter_model.safetensors", "projector.safetensors"):
        assert_close_states(load_file(tmp_path / "two" / "adapter" / file), load_file(tmp_path / "one" / "adapter" / file))
