"""View classification (VC): name the projection of the image. Target: the metadata ViewPosition
mapped by the template's ``answers`` (PA, AP, lateral, LL); images with another or no view
position are skipped.

The question follows the image alone (context mode ``none``), as RaDialog's evaluation code asks it
(RaDialog_LLaVA ``test.py``). With ``plan.view_classification_context: context_dropping`` the
preset's context dropping applies instead (a report history in full, partial or none), the MIDL
paper's list of context-dropping tasks read literally.
"""

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
    if TASK in ctx.preset.context_dropping:
        histories, modes = context_histories(ctx, TASK, keys, rows)
    else:
        histories, modes = [[] for _ in range(len(rows))], ["none"] * len(rows)
    meta = mimic_meta(rows, keys)
    meta["context_mode"] = modes
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories,
                  instructions=[user_turn(ctx, h, v.fill()) for h, v in zip(histories, variants)],
                  outputs=[answers[v] for v in rows["view_position"]],
                  template_ids=[template.template_id(v) for v in variants])
