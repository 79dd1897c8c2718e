"""View classification (VC): name the projection of the image. Target: the metadata ViewPosition
mapped by the template's ``answers`` (PA, AP, lateral, LL); images with another or no view
position are skipped. Context dropping applies."""

from __future__ import annotations

import pandas as pd

from .base import BuildContext, context_histories, finish, keyed, mimic_meta, user_turn
from .inputs import PlanInputs
from .presets import VIEW_CLASSIFICATION

TASK = VIEW_CLASSIFICATION


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    template = ctx.templates(TASK)
    answers: dict[str, str] = template.extra["answers"]
    rows = inputs.part(TASK)
    rows = rows[rows["view_position"].isin(list(answers))]
    keys = keyed(TASK, rows["dicom_id"])
    variants = ctx.variants(TASK, "default", keys)
    histories, modes = context_histories(ctx, TASK, keys, rows)
    meta = mimic_meta(rows, keys)
    meta["context_mode"] = modes
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories,
                  instructions=[user_turn(ctx, h, v.text) for h, v in zip(histories, variants)],
                  outputs=[answers[v] for v in rows["view_position"]],
                  template_ids=[template.template_id(v) for v in variants])
