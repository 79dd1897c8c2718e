"""Impression generation (IG): after the report-generation exchange (findings), write the
impression. Target: the study's impression section (or its last paragraph where MIMIC-CXR's
section rules fall back to it); images of studies without one are skipped."""

from __future__ import annotations

import pandas as pd

from .base import BuildContext, context_histories, finish, keyed, mimic_meta, user_turn
from .inputs import PlanInputs
from .presets import IMPRESSION_GENERATION

TASK = IMPRESSION_GENERATION


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    rows = inputs.part(TASK)
    rows = rows[rows["has_impression"].fillna(False).astype(bool)]
    keys = keyed(TASK, rows["dicom_id"])
    variants = ctx.variants(TASK, "default", keys)
    histories, modes = context_histories(ctx, TASK, keys, rows)
    template = ctx.templates(TASK)
    meta = mimic_meta(rows, keys)
    meta["context_mode"] = modes
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories,
                  instructions=[user_turn(ctx, h, v.fill()) for h, v in zip(histories, variants)],
                  outputs=list(rows["impression"]), template_ids=[template.template_id(v) for v in variants])
