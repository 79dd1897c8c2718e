"""Rad-ReStruct QA (RR): hierarchical structured-reporting questions on IU-Xray images.

One sample per (frontal image, QA pair), balanced per question path (see
:mod:`..augment.balancing`). The prompt holds the serialised history of the pair (earlier
questions and answers on the same template path, as the dataset gives it), then the instruction
variant with the answer options and the question. fixed_choice items (a single allowed option)
use the single-choice wording. The answer is the answer list joined with ", ".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..augment.balancing import balance_yes_no
from .base import BuildContext, Keys, finish, keyed
from .inputs import PlanInputs
from .presets import RAD_RESTRUCT_QA
from .templates import Variant

TASK = RAD_RESTRUCT_QA
IMAGE_DIR = "radrestruct/images"


def serialise_history(history: list[dict], template_extra: dict) -> str:
    if not len(history):
        return ""
    items = [template_extra["history_item"].format(question=h["question"], answers=", ".join(h["answers"]))
             for h in history]
    return template_extra["history_prefix"] + template_extra["history_join"].join(items) + template_extra["history_suffix"]


def expand_images(qa: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
    rows = qa[qa["split"].isin(splits)].explode("image_ids").rename(columns={"image_ids": "image_id"})
    rows = rows[rows["image_id"].notna()]
    rows = rows.reset_index(drop=True)
    rows["sample_key"] = keyed(TASK, rows["report_id"], rows["qa_index"], rows["image_id"]).values
    return rows


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    template = ctx.templates(TASK)
    rows = expand_images(inputs.radrestruct, ctx.splits)
    rows, stats = balance_yes_no(rows, ctx.seed)
    inputs.notes.update({f"rad_restruct_{k}": v for k, v in stats.items()})
    rows = rows.reset_index(drop=True)
    keys = Keys.of(rows["sample_key"])
    modes = np.where(rows["answer_type"].to_numpy() == "multi_choice", "multi_choice", "single_choice")
    chosen: list[Variant | None] = [None] * len(rows)
    for mode in ("single_choice", "multi_choice"):
        idx = np.flatnonzero(modes == mode)
        for i, variant in zip(idx, ctx.variants(TASK, mode, keys.take(idx))):
            chosen[i] = variant
    instructions = [
        ctx.conversation.image_prefix + serialise_history(history, template.extra)
        + variant.fill(options=", ".join(options), question=question)
        for variant, history, options, question in zip(chosen, rows["history"].tolist(), rows["options"].tolist(),
                                                       rows["question"].tolist())]
    template_ids = [template.template_id(v) for v in chosen]
    meta = pd.DataFrame({
        "sample_key": rows["sample_key"], "split": rows["split"], "task_mode": modes, "source": "rad-restruct",
        "source_ref": rows["report_id"] + "#" + rows["qa_index"].astype(str),
        "subject_id": None, "study_id": None, "dicom_id": rows["image_id"],
        "image_path": IMAGE_DIR + "/" + rows["image_id"] + ".png", "view_position": None,
        "structured_findings": None, "labeler": None,
    })
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=[[] for _ in range(len(rows))],
                  instructions=instructions, outputs=[", ".join(a) for a in rows["answers"].tolist()],
                  template_ids=template_ids)
