"""Findings QA (CheXpert QA): ``complete`` lists every positive finding, ``binary`` asks yes/no
about one condition.

The findings-QA part of the images is halved at random into the two modes (each image drawn on
its own; in the original fidelity exactly halved, binary first, as ``random_split`` does).
Complete: the answer is the positive conditions (No Finding included), lower-cased and
comma-separated, or "no common findings" (original: the empty string). Binary: with probability
``binary_positive_p`` (0.6) and at least one positive finding, a positive condition is asked and
the answer is "yes"; otherwise one of the 13 findings that is not positive (negative, uncertain or
not mentioned) is asked and the answer is "no". Condition names in the question are spoken
(lower-cased; "Pleural Other" reads "other pleural abnormality"), or CheXpert's capitalised names
in the original fidelity. Context dropping applies where the preset says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..hashing import pick
from ..labeling.conditions import FINDINGS
from .base import BuildContext, Keys, context_histories, finish, keyed, mimic_meta, user_turn
from .fidelity import condition_name, findings_listing, near_equal_blocks
from .inputs import PlanInputs, positive_mask
from .presets import FINDINGS_QA

TASK = FINDINGS_QA


def binary_questions(ctx: BuildContext, rows: pd.DataFrame, keys: Keys) -> tuple[list[str], list[str]]:
    """(condition asked, answer) per row."""
    positive = positive_mask(rows, FINDINGS)
    ask_positive = (ctx.draw(f"{TASK}:binary:positive", keys) < ctx.preset.binary_positive_p) & positive.any(axis=1)
    u = ctx.draw(f"{TASK}:binary:condition", keys)
    conditions, answers = [], []
    for i, want in enumerate(ask_positive):
        pool = np.flatnonzero(positive[i] if want else ~positive[i])
        conditions.append(FINDINGS[pool[int(pick(u[i:i + 1], len(pool))[0])]])
        answers.append("yes" if want else "no")
    return conditions, answers


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    rows = inputs.part(TASK)
    keys = keyed(TASK, rows["dicom_id"])
    u = ctx.draw(f"{TASK}:mode", keys)
    modes = near_equal_blocks(u, ["binary", "complete"]) if ctx.original else np.where(u < 0.5, "complete", "binary")
    histories, context_modes = context_histories(ctx, TASK, keys, rows)
    instructions = [""] * len(rows)
    outputs = [""] * len(rows)
    template_ids = [""] * len(rows)
    template = ctx.templates(TASK)
    for mode in ("complete", "binary"):
        idx = np.flatnonzero(modes == mode)
        sub, sub_keys = rows.iloc[idx], keys.take(idx)
        variants = ctx.variants(TASK, mode, sub_keys)
        if mode == "complete":
            texts = [v.fill() for v in variants]
            answers = [findings_listing(s, original=ctx.original) for s in sub["structured_findings"].tolist()]
        else:
            conditions, answers = binary_questions(ctx, sub, sub_keys)
            texts = [v.fill(condition=condition_name(c, original=ctx.original)) for v, c in zip(variants, conditions)]
        for j, i in enumerate(idx):
            instructions[i] = user_turn(ctx, histories[i], texts[j])
            outputs[i] = answers[j]
            template_ids[i] = template.template_id(variants[j])
    meta = mimic_meta(rows, keys, task_mode=modes)
    meta["context_mode"] = context_modes
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories, instructions=instructions, outputs=outputs,
                  template_ids=template_ids)
