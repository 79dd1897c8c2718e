"""Shared helpers of the generation tests: a tiny random Llama, a plan with replay rows, params.

Everything is offline: the tokenizer is trained with the tokenizers library on the texts below
and the model has random weights (tasks/models/tiny_llama.py). Test modules load the fixtures
with ``pytest_plugins = ["gen_fixtures"]`` (this module has no asserts: PYTEST_DONT_REWRITE).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from radialog_instruct.schemas import PLAN, REPORTS
from radialog_instruct.tasks.io import write_parquet
from radialog_instruct.tasks.workdir import Workdir

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1", "VLLM_NO_USAGE_STATS": "1"}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

FINDINGS = [
    "The lungs are clear.", "There is a small left pleural effusion.", "Heart size is normal.",
    "Mild pulmonary edema is present.", "No pneumothorax is seen.", "There is right lower lobe atelectasis.",
    "The cardiomediastinal silhouette is enlarged.", "A right internal jugular line ends in the SVC.",
    "There is no focal consolidation.", "Degenerative changes of the spine are noted.",
]
INSTRUCTIONS = ["Summarize this report with bullet points.", "Explain the report without medical jargon.",
                "Describe the state of the lungs."]

BASE_GENERATE: dict[str, Any] = {
    "model_preset": "demo-tiny", "model": None, "revision": None, "backend": "transformers", "seed": 0,
    "max_new_tokens": 8, "temperature": None, "top_p": None, "chunk_size": 4,
    "vllm": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "max_model_len": 512, "dtype": "float32",
             "enable_prefix_caching": True, "enforce_eager": True, "max_num_seqs": 16},
    "transformers": {"batch_size": 8, "device": "cpu", "dtype": "float32"},
    "openai": {"base_url": None, "api_key_env": None, "concurrency": 4, "timeout_s": 5, "max_retries": 2},
}


def report_texts(n: int) -> list[str]:
    """``n`` distinct report texts of three sentences."""
    k = len(FINDINGS)
    return [f"{FINDINGS[i % k]} {FINDINGS[(i // k + 3) % k]} {FINDINGS[(i * 7 + 1) % k]} Study {i}."
            for i in range(n)]


def replay_messages(n: int) -> list[list[dict[str, str]]]:
    """The ``gen_messages`` of ``n`` distinct replay rows (one user turn: report + instruction)."""
    return [[{"role": "user", "content": f"Report: {text}\n{INSTRUCTIONS[i % len(INSTRUCTIONS)]}"}]
            for i, text in enumerate(report_texts(n))]


def _filler(field: pa.Field) -> Any:
    """A placeholder for a required plan column the generate stage does not read."""
    if pa.types.is_list(field.type):
        return []
    return False if pa.types.is_boolean(field.type) else "x"


def write_plan(wd: Workdir, messages: list[list[dict[str, str]] | None], *, template_version: str = "1") -> None:
    """A plan table with one row per entry of ``messages`` (None: a non-replay row)."""
    required = {f.name: _filler(f) for f in PLAN if not f.nullable}
    rows = [{**required, "sample_id": f"s{i}", "task": "summarization" if m else "report_generation",
             "sample_key": f"k{i}", "template_version": template_version, "gen_messages": m,
             "is_pseudo_label": m is not None} for i, m in enumerate(messages)]
    write_parquet(pa.Table.from_pylist(rows, schema=PLAN), wd.table("plan"))


def write_reports(wd: Workdir, n: int = 40) -> None:
    rows = [{"study_id": i, "subject_id": i, "findings": text, "impression": "No acute process."}
            for i, text in enumerate(report_texts(n))]
    write_parquet(pa.Table.from_pylist(rows, schema=REPORTS), wd.table("reports"))


def make_params(**generate: Any) -> dict[str, Any]:
    """Params with the test ``generate`` section; nested sections merge (``vllm={"dtype": ...}``)."""
    section = copy.deepcopy(BASE_GENERATE)
    for key, value in generate.items():
        if isinstance(value, dict):
            section[key].update(value)
        else:
            section[key] = value
    return {"workdir": "work", "seed": 1234, "generate": section}


@pytest.fixture(scope="session")
def gen_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (head dim 32, as vLLM's CPU attention needs) with a trained tokenizer."""
    from radialog_instruct.tasks.models.tiny_llama import build_tiny_llama

    texts = report_texts(60) + [m[0]["content"] for m in replay_messages(30)]
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", texts, seed=0)


@pytest.fixture()
def gen_wd(tmp_path: Path) -> Workdir:
    return Workdir.at(tmp_path / "work")
