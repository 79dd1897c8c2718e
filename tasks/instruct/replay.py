"""The replay tasks on a report: easy language (EL: the report in plain words), summarization (SU:
bullet points or a short text) and region QA (RQA: a question about the heart, lungs, pleura,
bones or devices; each variant names its region, stored as ``task_mode`` for the audit).

They differ only in their templates, so one builder serves all three: the question follows the
report-generation exchange (context dropping applies where the preset says so, i.e. region QA in
v1.1), and the answer is pseudo ground truth that the generator writes from the full findings with
the template's generation prompt (``Report: <findings>\\n<instruction>``).
"""

from __future__ import annotations

import pandas as pd

from .base import BuildContext, context_histories, finish, keyed, mimic_meta, user_turn
from .inputs import PlanInputs


def build_report_replay(ctx: BuildContext, inputs: PlanInputs, task: str) -> pd.DataFrame:
    rows = inputs.part(task)
    keys = keyed(task, rows["dicom_id"])
    template = ctx.templates(task)
    variants = ctx.variants(task, "default", keys)
    histories, modes = context_histories(ctx, task, keys, rows)
    prompt = template.generation["prompt"]
    texts = [v.fill() for v in variants]
    gen_messages = [[{"role": "user", "content": prompt.format(report=findings, instruction=text)}]
                    for findings, text in zip(rows["findings"], texts)]
    meta = mimic_meta(rows, keys, task_mode=[v.region for v in variants])
    meta["context_mode"] = modes
    return finish(meta, task=task, ctx=ctx, keys=keys, history=histories,
                  instructions=[user_turn(ctx, h, t) for h, t in zip(histories, texts)],
                  outputs=[None] * len(rows), template_ids=[template.template_id(v) for v in variants],
                  gen_messages=gen_messages)
