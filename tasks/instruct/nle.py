"""Natural-language explanation (RE): why does the report suggest a diagnosis? Target: the
MIMIC-NLE sentence.

An NLE is kept only when its sentence occurs in the findings shown in the conversation history
(whitespace-normalised: the original compared texts whose line breaks had been removed but whose
double spaces had not, losing valid NLEs); NLEs of the impression section are therefore left out.
One row per NLE, on one image of the study (PA before AP before other views). The diagnoses fill
``{conditions}`` spoken and joined "a, b and c". In the original fidelity only the NLEs of
MIMIC-NLE's train file are used (the original read no other), the diagnoses keep their capitalised
names and the target is the sentence stripped at its ends.
"""

from __future__ import annotations

import pandas as pd

from ..text.sentences import join_names
from .base import BuildContext, finish, keyed, mimic_meta, report_turns
from .fidelity import condition_name, nle_target
from .inputs import PlanInputs, representative_images
from .presets import NLE

TASK = NLE


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    nle = inputs.nle[inputs.nle["in_findings"] & (inputs.nle["diagnoses"].map(len) > 0)]
    if ctx.original:
        nle = nle[nle["nle_split"] == "train"]
    images = representative_images(inputs.images[inputs.images["has_findings"].fillna(False).astype(bool)])
    rows = nle[["sentence_id", "study_id", "nle", "diagnoses"]].merge(images, on="study_id", how="inner")
    rows = rows.sort_values("sentence_id", kind="stable").reset_index(drop=True)
    keys = keyed(TASK, rows["sentence_id"])
    variants = ctx.variants(TASK, "default", keys)
    template = ctx.templates(TASK)
    histories = [report_turns(ctx, s, f) for s, f in zip(rows["structured_findings"], rows["findings"])]
    instructions = [v.fill(conditions=join_names([condition_name(d, original=ctx.original) for d in diagnoses]))
                    for v, diagnoses in zip(variants, rows["diagnoses"])]
    meta = mimic_meta(rows, keys, source_ref=rows["sentence_id"].to_numpy(), source="mimic-nle")
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories, instructions=instructions,
                  outputs=[nle_target(t, original=ctx.original) for t in rows["nle"]],
                  template_ids=[template.template_id(v) for v in variants])
