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

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from ..hashing import pick
from ..labeling.conditions import FINDINGS
from .base import (
    BuildContext,
    Keys,
    context_histories,
    findings_listing,
    finish,
    key_batches,
    keyed,
    mimic_meta,
    user_turns,
)
from .columns import pick_strings, scatter, strings
from .fidelity import condition_name, near_equal_blocks
from .inputs import PlanInputs, positive_mask
from .presets import FINDINGS_QA

TASK = FINDINGS_QA


def binary_questions(ctx: BuildContext, rows: pd.DataFrame, keys: Keys | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(index in FINDINGS of the condition asked, answer) per row: the ``pick``-th of the row's
    positive findings (or of the others), the first column where their running count passes it."""
    positive = positive_mask(rows, FINDINGS)
    ask_positive = (ctx.draw(f"{TASK}:binary:positive", keys) < ctx.preset.binary_positive_p) & positive.any(axis=1)
    candidates = np.where(ask_positive[:, None], positive, ~positive)
    chosen = pick(ctx.draw(f"{TASK}:binary:condition", keys), candidates.sum(axis=1))
    column = np.argmax(np.cumsum(candidates, axis=1) > chosen[:, None], axis=1)
    return column, np.where(ask_positive, "yes", "no")


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    rows = inputs.part(TASK)
    keys = keyed(TASK, rows["dicom_id"])
    u = ctx.draw(f"{TASK}:mode", keys)
    modes = near_equal_blocks(u, ["binary", "complete"]) if ctx.original else np.where(u < 0.5, "complete", "binary")
    for batch, keys, batch_modes in key_batches(rows, keys, modes):
        yield build_batch(ctx, batch, keys, batch_modes)


def build_batch(ctx: BuildContext, rows: pd.DataFrame, keys: Keys, modes: np.ndarray) -> pa.Table:
    history, context_modes = context_histories(ctx, TASK, keys, rows)
    n = len(rows)
    complete, binary = np.flatnonzero(modes == "complete"), np.flatnonzero(modes == "binary")
    conditions, said = binary_questions(ctx, rows.iloc[binary], keys.take(binary))
    names = pick_strings([condition_name(c, original=ctx.original) for c in FINDINGS], conditions)
    # the complete rows' variants have no {condition}: "" keeps their rendering in Arrow
    texts, template_ids = ctx.instructions_by_mode(TASK, modes, ("complete", "binary"), keys,
                                                   condition=scatter([strings("", len(complete)), names],
                                                                     [complete, binary], n))
    answers = scatter([findings_listing(rows["structured_findings"].iloc[complete], original=ctx.original),
                       pa.array(said, pa.string())], [complete, binary], n)
    return finish(mimic_meta(rows, keys, task_mode=modes), task=TASK, ctx=ctx, keys=keys, history=history,
                  instructions=user_turns(ctx, history, texts), outputs=answers, template_ids=template_ids,
                  context_mode=context_modes)
