"""View classification (VC): name the projection of the image. Target: the metadata ViewPosition
mapped by the template's ``answers`` (PA, AP, lateral, LL); images with another or no view
position are skipped.

The question follows the image alone (context mode ``none``), as RaDialog's evaluation code asks it
(RaDialog_LLaVA ``test.py``). With ``plan.view_classification_context: context_dropping`` the
preset's context dropping applies instead (a report history in full, partial or none), the MIDL
paper's list of context-dropping tasks read literally.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from .base import BuildContext, context_histories, finish, key_batches, keyed, mimic_meta, user_turns
from .columns import no_turns
from .inputs import PlanInputs
from .presets import VIEW_CLASSIFICATION

TASK = VIEW_CLASSIFICATION


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    template = ctx.templates(TASK)
    answers: dict[str, str] = template.extra["answers"]
    rows = inputs.part(TASK)
    rows = rows[rows["view_position"].isin(list(answers))]
    for batch, keys in key_batches(rows, keyed(TASK, rows["dicom_id"])):
        asked = ctx.instructions(TASK, "default", keys)
        if TASK in ctx.preset.context_dropping:
            history, modes = context_histories(ctx, TASK, keys, batch)
        else:
            history, modes = no_turns(len(batch)), "none"
        yield finish(mimic_meta(batch, keys), task=TASK, ctx=ctx, keys=keys, history=history,
                     instructions=user_turns(ctx, history, asked.texts), outputs=batch["view_position"].map(answers),
                     template_ids=asked.template_ids, context_mode=modes)
