"""A stand-in for the generator in end-to-end tests: a generation cache written directly.

Answers are built from each study's labels (most faithful, every fifth deliberately broken in turn:
echoed, empty, truncated, inventing a finding) and stored under the request hashes the pipeline
computes, so that the audit has both verdicts to give and assemble finds every replay answer.
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.generation.requests import request_hashes
from radialog_instruct.tasks.labeling.conditions import FINDINGS, column, spoken_name
from radialog_instruct.tasks.workdir import Workdir


def answer(task: str, positives: list[str], k: int) -> tuple[str, str]:
    """(text, finish reason) of the k-th replay row: mostly faithful, every 5th broken in turn."""
    names = [spoken_name(p) for p in positives]
    listing = (", ".join(names[:-1]) + " and " + names[-1]) if len(names) > 1 else "".join(names)
    broken = [("Report: the heart is normal. Summarize the report.", "stop"), ("", "stop"),
              (f"The study shows {listing or 'no acute abnormality'}, with", "length"),
              ("There is a large right pneumothorax and a displaced rib fracture.", "stop")]
    if k % 5 == 4:
        return broken[(k // 5) % len(broken)]
    if task == "region_qa":
        return (f"Yes, there is {listing}." if names else "No, this region looks normal."), "stop"
    return (f"The study shows {listing}." if names else "The lungs are clear and the heart is normal."), "stop"


def write_generation_cache(params: dict[str, Any], wd: Workdir) -> None:
    plan = pq.read_table(wd.table("plan")).to_pandas()
    labels = pq.read_table(wd.table("labels")).to_pandas().set_index("study_id")
    hashes = request_hashes(plan, params, wd)
    rows = []
    for k, (i, h) in enumerate((i, h) for i, h in enumerate(hashes) if h is not None):
        row = plan.iloc[i]
        study = labels.loc[row["study_id"]]
        positives = [f for f in FINDINGS if study[column(f)] == 1]
        text, finish = answer(row["task"], positives, k)
        rows.append({"request_hash": h, "text": text, "finish_reason": finish, "prompt_tokens": 50,
                     "completion_tokens": len(text.split()), "latency_s": 0.01, "backend": "transformers",
                     "model": "test/faithful-writer", "revision": "r1", "sampling": '{"temperature": 0}', "seed": 0,
                     "template_version": str(row["template_version"])})
    with GenerationCache.of(wd).writer(chunk_size=len(rows)) as writer:
        for row in rows:
            writer.add(row)
