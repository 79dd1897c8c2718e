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

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..text.sentences import join_names
from .base import BuildContext, finish, key_batches, keyed, mimic_meta, report_history
from .columns import collapse_whitespace, pick_strings, strings, strip
from .fidelity import condition_name
from .inputs import PlanInputs, representative_images
from .presets import NLE

TASK = NLE
#: joins a row's names into one value (no condition name contains it)
_UNIT = "\x1f"


def joined_names(lists: pa.ListArray | pa.ChunkedArray, original: bool) -> pa.Array:
    """:func:`..text.sentences.join_names` of each row's condition names ("a, b and c"): one
    Python join per distinct list."""
    joined = pc.fill_null(pc.binary_join(lists, _UNIT), "")
    distinct = pc.unique(joined)
    texts = [join_names([condition_name(d, original=original) for d in v.split(_UNIT)] if v else [])
             for v in distinct.to_pylist()]
    return pick_strings(texts, pc.index_in(joined, value_set=distinct).to_numpy())


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    nle = inputs.nle[inputs.nle["in_findings"] & (inputs.nle["diagnoses"].map(len) > 0)]
    if ctx.original:
        nle = nle[nle["nle_split"] == "train"]
    images = representative_images(inputs.images[inputs.images["has_findings"].fillna(False).astype(bool)])
    rows = nle[["sentence_id", "study_id", "nle", "diagnoses"]].merge(images, on="study_id", how="inner")
    rows = rows.sort_values("sentence_id", kind="stable").reset_index(drop=True)
    for batch, keys in key_batches(rows, keyed(TASK, rows["sentence_id"])):
        diagnoses = pa.array(batch["diagnoses"], pa.list_(pa.string()))
        asked = ctx.instructions(TASK, "default", keys, conditions=joined_names(diagnoses, ctx.original))
        sentences = strings(batch["nle"])
        targets = strip(sentences) if ctx.original else collapse_whitespace(sentences)
        yield finish(mimic_meta(batch, keys, source_ref=batch["sentence_id"], source="mimic-nle"), task=TASK, ctx=ctx,
                     keys=keys, history=report_history(ctx, batch["structured_findings"], batch["findings"]),
                     instructions=asked.texts, outputs=targets, template_ids=asked.template_ids)
