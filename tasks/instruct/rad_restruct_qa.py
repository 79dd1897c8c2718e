"""Rad-ReStruct QA (RR): hierarchical structured-reporting questions on IU-Xray images.

One sample per (frontal image, QA pair), balanced per question path (see
:mod:`..augment.balancing`). The prompt holds the serialised history of the pair (earlier
questions and answers on the same template path, as the dataset gives it), then the instruction
variant with the answer options and the question. fixed_choice items (a single allowed option)
use the single-choice wording. The answer is the answer list joined with ", ".
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..augment.balancing import balance_yes_no
from .base import BuildContext, Keys, finish, key_batches, keyed
from .columns import concat, format_rows, lengths_of, no_turns, strings
from .inputs import PlanInputs
from .presets import RAD_RESTRUCT_QA

TASK = RAD_RESTRUCT_QA
IMAGE_DIR = "radrestruct/images"


HISTORY_TYPE = pa.list_(pa.struct([("question", pa.string()), ("answers", pa.list_(pa.string()))]))


def serialise_history(history: pa.ListArray, template_extra: dict) -> pa.Array:
    """Each row's earlier QA pairs as the template's ``history_prefix`` + items joined by
    ``history_join`` + ``history_suffix`` (the empty string for a row without history)."""
    lengths = lengths_of(history)
    flat = pc.list_flatten(history)
    answers = pc.binary_join(pc.struct_field(flat, "answers"), ", ")
    items = format_rows(template_extra["history_item"], {"question": pc.struct_field(flat, "question"),
                                                         "answers": answers}, len(flat))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), template_extra["history_join"])
    wrapped = concat(template_extra["history_prefix"], joined, template_extra["history_suffix"])
    return pc.if_else(pa.array(lengths > 0), wrapped, "")


def expand_images(qa: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
    rows = qa[qa["split"].isin(splits)].explode("image_ids").rename(columns={"image_ids": "image_id"})
    rows = rows[rows["image_id"].notna()]
    rows = rows.reset_index(drop=True)
    rows["sample_key"] = keyed(TASK, rows["report_id"], rows["qa_index"], rows["image_id"]).values
    return rows


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    template = ctx.templates(TASK)
    rows = expand_images(inputs.radrestruct, ctx.splits)
    rows, stats = balance_yes_no(rows, ctx.seed)
    inputs.notes.update({f"rad_restruct_{k}": v for k, v in stats.items()})
    rows = rows.reset_index(drop=True)
    for batch, keys in key_batches(rows, Keys.of(rows["sample_key"])):
        n = len(batch)
        modes = np.where(batch["answer_type"].to_numpy() == "multi_choice", "multi_choice", "single_choice")
        options = pc.binary_join(pa.array(batch["options"], pa.list_(pa.string())), ", ")
        questions = strings(batch["question"])
        texts, template_ids = ctx.instructions_by_mode(TASK, modes, ("single_choice", "multi_choice"), keys,
                                                       options=options, question=questions)
        history = serialise_history(pa.array(batch["history"], HISTORY_TYPE), template.extra)
        instructions = concat(ctx.conversation.image_prefix, history, texts)
        image_id = strings(batch["image_id"])
        meta = {
            "sample_key": keys.values, "split": batch["split"], "task_mode": modes, "source": "rad-restruct",
            "source_ref": concat(strings(batch["report_id"]), "#", pa.array(batch["qa_index"]).cast(pa.string())),
            "subject_id": None, "study_id": None, "dicom_id": image_id,
            "image_path": concat(IMAGE_DIR + "/", image_id, ".png"), "view_position": None,
            "structured_findings": None, "labeler": None,
        }
        yield finish(meta, task=TASK, ctx=ctx, keys=keys, history=no_turns(n), instructions=instructions,
                     outputs=pc.binary_join(pa.array(batch["answers"], pa.list_(pa.string())), ", "),
                     template_ids=template_ids)
