"""Impression generation (IG): after the report-generation exchange (findings), write the
impression. Target: the study's impression section (or its last paragraph where MIMIC-CXR's
section rules fall back to it); images of studies without one are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from .base import BuildContext, context_histories, finish, key_batches, keyed, mimic_meta, user_turns
from .inputs import PlanInputs
from .presets import IMPRESSION_GENERATION

TASK = IMPRESSION_GENERATION


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    rows = inputs.part(TASK)
    rows = rows[rows["has_impression"].fillna(False).astype(bool)]
    for batch, keys in key_batches(rows, keyed(TASK, rows["dicom_id"])):
        asked = ctx.instructions(TASK, "default", keys)
        history, modes = context_histories(ctx, TASK, keys, batch)
        yield finish(mimic_meta(batch, keys), task=TASK, ctx=ctx, keys=keys, history=history,
                     instructions=user_turns(ctx, history, asked.texts), outputs=batch["impression"],
                     template_ids=asked.template_ids, context_mode=modes)
