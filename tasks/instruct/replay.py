"""The replay tasks on a report: easy language (EL: the report in plain words), summarization (SU:
bullet points or a short text) and region QA (RQA: a question about the heart, lungs, pleura,
bones or devices; each variant names its region, stored as ``task_mode`` for the audit).

They differ only in their templates, so one builder serves all three: the question follows the
report-generation exchange (context dropping applies where the preset says so, i.e. region QA in
v1.1), and the answer is pseudo ground truth that the generator writes from the full findings with
the template's generation prompt (``Report: <findings>\\n<instruction>``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from .base import BuildContext, context_histories, finish, key_batches, keyed, mimic_meta, user_turns
from .columns import USER, format_rows, pick_strings, turns
from .inputs import PlanInputs


def build_report_replay(ctx: BuildContext, inputs: PlanInputs, task: str) -> Iterator[pa.Table]:
    rows = inputs.part(task)
    template = ctx.templates(task)
    for batch, keys in key_batches(rows, keyed(task, rows["dicom_id"])):
        n = len(batch)
        asked = ctx.instructions(task, "default", keys)
        history, modes = context_histories(ctx, task, keys, batch)
        request = format_rows(template.generation["prompt"], {"report": batch["findings"], "instruction": asked.texts}, n)
        gen_messages = turns(np.arange(n + 1), pick_strings((USER,), np.zeros(n, dtype=np.int64)), request)
        regions = pick_strings([v.region for v in template.variants("default")], asked.choice)
        yield finish(mimic_meta(batch, keys, task_mode=regions), task=task, ctx=ctx, keys=keys, history=history,
                     instructions=user_turns(ctx, history, asked.texts), outputs=None,
                     template_ids=asked.template_ids, context_mode=modes, gen_messages=gen_messages)
