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

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..labeling.conditions import FINDINGS
from ..labeling.conditions import column as column_of
from ..text.sentences import join_names
from .base import BuildContext, Keys, column, finish, key_batches, keyed, mimic_meta, report_history
from .columns import ASSISTANT, USER, concat, pick_strings, strings, turns
from .fidelity import condition_name
from .inputs import PlanInputs, positive_mask
from .presets import CORRECTION

TASK = CORRECTION
#: what the retrieval reads of the images with findings
POOL_COLUMNS = ["study_id", "subject_id", "split", "findings", *(column_of(c) for c in FINDINGS)]
_NEIGHBOUR_FLIPS = [1 << i for i in range(len(FINDINGS))] + [
    (1 << i) | (1 << j) for i, j in combinations(range(len(FINDINGS)), 2)]


def label_masks(frame: pd.DataFrame) -> np.ndarray:
    """Bitmask per row of the positive findings (No Finding excluded)."""
    bits = positive_mask(frame, FINDINGS).astype(np.int64)
    return (bits << np.arange(len(FINDINGS), dtype=np.int64)).sum(axis=1)


@dataclass(frozen=True)
class Predicted:
    """The erroneous report of each row: its text (null where none was found), label mask and
    reference (``retrieved:s<study_id>`` or ``predictions:<dicom_id>``)."""

    report: pa.Array
    mask: np.ndarray
    reference: pa.Array

    def filter(self, keep: np.ndarray) -> Predicted:
        return Predicted(self.report.filter(pa.array(keep)), self.mask[keep], self.reference.filter(pa.array(keep)))


def retrieve_reports(ctx: BuildContext, rows: pd.DataFrame, pool: pd.DataFrame) -> Predicted:
    """For each row, a study of ``pool`` (same split, other subject) whose label mask is at
    Hamming distance 1 or 2 (no report where no neighbour exists)."""
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
    subjects = studies["subject_id"].to_numpy()
    neighbours: dict[tuple[str, int], list[int]] = {}  # per distinct (split, mask): the masks present
    chosen = np.full(len(rows), -1, dtype=np.int64)
    pred_masks = masks.copy()
    for i, (split, mask, subject) in enumerate(zip(rows["split"].tolist(), masks.tolist(), rows["subject_id"].tolist())):
        found = neighbours.get((split, mask))
        if found is None:
            found = neighbours[(split, mask)] = [mask ^ f for f in _NEIGHBOUR_FLIPS if (split, mask ^ f) in by_key]
        if found:
            cand_mask = found[int(u_mask[i] * len(found))]
            cands = by_key[(split, cand_mask)]
            cands = cands[subjects[cands] != subject]
            if len(cands):
                chosen[i] = cands[int(u_study[i] * len(cands))]
                pred_masks[i] = cand_mask
    hit = chosen >= 0
    at = pa.array(np.where(hit, chosen, 0))
    none = pa.array(~hit)
    report = pc.if_else(none, pa.scalar(None, pa.string()), strings(studies["findings"]).take(at))
    study = column(studies["study_id"], len(studies)).take(at)
    return Predicted(report, pred_masks, pc.if_else(none, pa.scalar(None, pa.string()), concat("retrieved:s", study)))


def from_predictions(rows: pd.DataFrame, predictions: pd.DataFrame) -> Predicted:
    """Predicted reports (and their label masks) from the predictions table, by dicom_id."""
    preds = predictions.set_index("dicom_id")
    found = rows["dicom_id"].isin(preds.index).to_numpy()
    matched = preds.reindex(rows["dicom_id"])
    masks = np.where(found, label_masks(matched), label_masks(rows))
    missing = pa.array(~found)
    return Predicted(pc.if_else(missing, pa.scalar(None, pa.string()), strings(matched["report"])), masks,
                     pc.if_else(missing, pa.scalar(None, pa.string()), concat("predictions:", rows["dicom_id"])))


def name_lists(masks: np.ndarray, original: bool) -> pa.Array:
    """"a, b and c" of the findings in each mask (one Python join per distinct mask)."""
    distinct, inverse = np.unique(masks, return_inverse=True)
    texts = [join_names([condition_name(FINDINGS[i], original=original) for i in range(len(FINDINGS)) if m >> i & 1])
             for m in distinct.tolist()]
    return pick_strings(texts, inverse.reshape(-1))


def generator_prompts(gen: dict[str, str], add: np.ndarray, remove: np.ndarray, add_text: pa.Array,
                      remove_text: pa.Array) -> pa.Array:
    """The fixed explicit prompt per row (a function of the two name lists: one format per pair)."""
    pairs = np.stack([add, remove], axis=1)
    distinct, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    adds, removes = add_text.take(pa.array(first)).to_pylist(), remove_text.take(pa.array(first)).to_pylist()
    texts = []
    for (a, d), a_text, d_text in zip(distinct.tolist(), adds, removes):
        slots = {"add": a_text, "remove": d_text}
        texts.append(gen["prompt"].format(remove_clause=gen["remove_clause"].format(**slots) if d else "",
                                          add_clause=gen["add_clause"].format(**slots) if a else "").strip())
    return pick_strings(texts, inverse.reshape(-1))


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    rows = inputs.part(TASK)
    pool = inputs.images.loc[inputs.images["has_findings"].fillna(False).astype(bool), POOL_COLUMNS]
    inputs.notes["correction_candidates"] = len(rows)
    inputs.notes["correction_dropped_no_error"] = 0
    for batch, keys in key_batches(rows, keyed(TASK, rows["dicom_id"])):
        predicted = from_predictions(batch, inputs.predictions) if inputs.predictions is not None else \
            retrieve_reports(ctx, batch, pool)
        own = label_masks(batch)
        add, remove = own & ~predicted.mask, predicted.mask & ~own
        usable = np.asarray(predicted.report.is_valid().to_numpy(zero_copy_only=False), dtype=bool) & ((add | remove) != 0)
        inputs.notes["correction_dropped_no_error"] += int((~usable).sum())
        if usable.any():
            yield build_batch(ctx, batch[usable], keys.take(np.flatnonzero(usable)), predicted.filter(usable),
                              add[usable], remove[usable])


def build_batch(ctx: BuildContext, rows: pd.DataFrame, keys: Keys, predicted: Predicted, add: np.ndarray,
                remove: np.ndarray) -> pa.Table:
    """The correction rows with an erroneous report (``add`` / ``remove``: the findings masks)."""
    modes = np.where((add != 0) & (remove != 0), "both", np.where(add != 0, "add", "remove"))
    add_text, remove_text = name_lists(add, ctx.original), name_lists(remove, ctx.original)
    texts, template_ids = ctx.instructions_by_mode(TASK, modes, ("add", "remove", "both"), keys,
                                                   add=add_text, remove=remove_text)
    n = len(rows)
    gen = ctx.templates(TASK).generation
    # the generator's conversation: the request, the report to correct, the fixed explicit prompt
    contents = pa.concat_arrays([strings(gen["request"], n), predicted.report,
                                 generator_prompts(gen, add, remove, add_text, remove_text)])
    gen_messages = turns(np.arange(0, 3 * n + 1, 3), pick_strings((USER, ASSISTANT, USER), np.tile([0, 1, 2], n)),
                         contents.take(pa.array((np.arange(n)[:, None] + np.array([0, n, 2 * n])).reshape(-1))))
    meta = mimic_meta(rows, keys, task_mode=modes, source_ref=predicted.reference)
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=report_history(ctx, rows["structured_findings"],
                                                                               predicted.report),
                  instructions=texts, outputs=None, template_ids=template_ids,
                  gen_messages=gen_messages)
