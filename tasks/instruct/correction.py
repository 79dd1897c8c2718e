"""Correction (CO): the history holds an erroneous "predicted" report; the user asks to add the
missed findings and/or remove the wrong ones; the generator writes the corrected report.

Predicted reports come from a predictions file (``sources.predictions``: dicom_id -> report,
labelled by the label stage) or, by default, by retrieval: for each image, the findings of another
study of the same split (another patient) whose binarised labels (1 -> positive, anything else ->
not; No Finding excluded) differ from the image's own by one or two findings. The neighbouring
label vector and the study within it are drawn from (seed, dicom_id).

False positives (in the prediction, not in the image's labels) are to be removed, false negatives
added; rows with neither are dropped and counted. The mode (add / remove / both) follows from
which lists are non-empty; the training instruction is a variant of that mode, while the generator
always gets the template's fixed explicit prompt (whitespace at its ends stripped, as the original
does). Names are spoken (see ``conditions.spoken_name``; CheXpert's capitalised names in the
original fidelity) and joined "a, b and c".
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ..labeling.conditions import FINDINGS
from ..text.sentences import join_names
from .base import BuildContext, Keys, finish, keyed, mimic_meta, report_turns
from .fidelity import condition_name
from .inputs import PlanInputs, positive_mask
from .presets import CORRECTION

TASK = CORRECTION
_NEIGHBOUR_FLIPS = [1 << i for i in range(len(FINDINGS))] + [
    (1 << i) | (1 << j) for i, j in combinations(range(len(FINDINGS)), 2)]


def label_masks(frame: pd.DataFrame) -> np.ndarray:
    """Bitmask per row of the positive findings (No Finding excluded)."""
    bits = positive_mask(frame, FINDINGS).astype(np.int64)
    return (bits << np.arange(len(FINDINGS), dtype=np.int64)).sum(axis=1)


def retrieve_reports(ctx: BuildContext, rows: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """For each row, a study of ``pool`` (same split, other subject) whose label mask is at
    Hamming distance 1 or 2. Returns columns predicted_report, predicted_mask and reference
    (``retrieved:s<study_id>``; None where no neighbour exists)."""
    studies = pool.drop_duplicates("study_id")
    study_masks = label_masks(studies)
    by_key: dict[tuple[str, int], np.ndarray] = {}
    for (split, mask), idx in pd.Series(range(len(studies))).groupby(
            [studies["split"].to_numpy(), study_masks]).groups.items():
        by_key[(split, int(mask))] = np.asarray(sorted(idx))
    masks = label_masks(rows)
    keys = Keys.of(rows["dicom_id"])
    u_mask = ctx.draw(f"{TASK}:neighbour", keys)
    u_study = ctx.draw(f"{TASK}:study", keys)
    study_ids = studies["study_id"].to_numpy()
    subjects = studies["subject_id"].to_numpy()
    findings = studies["findings"].to_numpy(dtype=object)
    neighbours: dict[tuple[str, int], list[int]] = {}  # per distinct (split, mask): the masks present
    reports, pred_masks, refs = [], [], []
    for i, (split, mask, subject) in enumerate(zip(rows["split"].tolist(), masks.tolist(), rows["subject_id"].tolist())):
        found = neighbours.get((split, mask))
        if found is None:
            found = neighbours[(split, mask)] = [mask ^ f for f in _NEIGHBOUR_FLIPS if (split, mask ^ f) in by_key]
        chosen = None
        if found:
            cand_mask = found[int(u_mask[i] * len(found))]
            cands = by_key[(split, cand_mask)]
            cands = cands[subjects[cands] != subject]
            if len(cands):
                chosen = cands[int(u_study[i] * len(cands))]
        if chosen is None:
            reports.append(None)
            refs.append(None)
            pred_masks.append(mask)
        else:
            reports.append(findings[chosen])
            refs.append(f"retrieved:s{int(study_ids[chosen])}")
            pred_masks.append(cand_mask)
    return pd.DataFrame({"predicted_report": reports, "predicted_mask": pred_masks, "reference": refs},
                        index=rows.index)


def from_predictions(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Predicted reports (and their label masks) from the predictions table, by dicom_id."""
    preds = predictions.set_index("dicom_id")
    found = rows["dicom_id"].isin(preds.index)
    matched = preds.reindex(rows["dicom_id"])
    masks = np.where(found, label_masks(matched), label_masks(rows))
    return pd.DataFrame({"predicted_report": matched["report"].where(found.to_numpy(), None).to_numpy(),
                         "predicted_mask": masks,
                         "reference": np.where(found, "predictions:" + rows["dicom_id"], None)},
                        index=rows.index)


def _names(mask: int, original: bool) -> list[str]:
    return [condition_name(FINDINGS[i], original=original) for i in range(len(FINDINGS)) if mask >> i & 1]


def build(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    rows = inputs.part(TASK)
    if inputs.predictions is not None:
        predicted = from_predictions(rows, inputs.predictions)
    else:
        predicted = retrieve_reports(ctx, rows, inputs.images[inputs.images["has_findings"].fillna(False).astype(bool)])
    own = label_masks(rows)
    add = [_names(g & ~p, ctx.original) for g, p in zip(own, predicted["predicted_mask"])]
    remove = [_names(p & ~g, ctx.original) for g, p in zip(own, predicted["predicted_mask"])]
    usable = np.array([r is not None and bool(a or d) for r, a, d in zip(predicted["predicted_report"], add, remove)],
                      dtype=bool)
    inputs.notes["correction_candidates"] = len(rows)
    inputs.notes["correction_dropped_no_error"] = int((~usable).sum())
    rows, predicted = rows[usable], predicted[usable]
    add = [a for a, ok in zip(add, usable) if ok]
    remove = [d for d, ok in zip(remove, usable) if ok]
    modes = ["both" if a and d else "add" if a else "remove" for a, d in zip(add, remove)]
    keys = keyed(TASK, rows["dicom_id"])
    template = ctx.templates(TASK)
    gen = template.generation
    instructions, template_ids, gen_messages, histories = [], [], [], []
    variants = {m: ctx.variants(TASK, m, keys) for m in ("add", "remove", "both")}
    for i, (mode, a, d, report, findings) in enumerate(zip(modes, add, remove, predicted["predicted_report"],
                                                            rows["structured_findings"])):
        variant = variants[mode][i]
        slots = {"add": join_names(a), "remove": join_names(d)}
        instructions.append(variant.fill(**slots))
        template_ids.append(template.template_id(variant))
        fixed = gen["prompt"].format(
            remove_clause=gen["remove_clause"].format(**slots) if d else "",
            add_clause=gen["add_clause"].format(**slots) if a else "").strip()
        gen_messages.append([{"role": "user", "content": gen["request"]},
                             {"role": "assistant", "content": report},
                             {"role": "user", "content": fixed}])
        histories.append(report_turns(ctx, findings, report))
    meta = mimic_meta(rows, keys, task_mode=modes, source_ref=predicted["reference"].to_numpy())
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=histories, instructions=instructions,
                  outputs=[None] * len(rows), template_ids=template_ids, gen_messages=gen_messages)
