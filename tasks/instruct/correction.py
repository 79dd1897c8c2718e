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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..labeling.conditions import FINDINGS
from ..labeling.conditions import column as column_of
from ..text.sentences import join_names
from .base import BuildContext, Keys, column, finish, key_batches, keyed, mimic_meta, report_history
from .columns import ASSISTANT, USER, append_turns, concat, no_turns, pick_strings, strings
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


@dataclass(frozen=True)
class RetrievalPool:
    """The retrieval's studies (one row per study of the pool), grouped by (split, label mask) once
    per build; the masks at distance 1 or 2 present are cached per (split, mask) as rows ask."""

    by_key: dict[tuple[str, int], np.ndarray]
    subjects: np.ndarray
    findings: pa.Array
    study_ids: pa.Array
    neighbours: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, pool: pd.DataFrame) -> RetrievalPool:
        studies = pool.drop_duplicates("study_id")
        by_key: dict[tuple[str, int], np.ndarray] = {}
        for (split, mask), idx in pd.Series(range(len(studies))).groupby(
                [studies["split"].to_numpy(), label_masks(studies)]).groups.items():
            by_key[(split, int(mask))] = np.asarray(sorted(idx))
        return cls(by_key, studies["subject_id"].to_numpy(), strings(studies["findings"]),
                   column(studies["study_id"], len(studies)))

    def masks_near(self, split: str, mask: int) -> list[int]:
        found = self.neighbours.get((split, mask))
        if found is None:
            found = self.neighbours[(split, mask)] = [mask ^ f for f in _NEIGHBOUR_FLIPS if (split, mask ^ f) in self.by_key]
        return found


def retrieve_reports(ctx: BuildContext, rows: pd.DataFrame, pool: RetrievalPool) -> Predicted:
    """For each row, a study of ``pool`` (same split, other subject) whose label mask is at
    Hamming distance 1 or 2 (no report where no neighbour exists)."""
    masks = label_masks(rows)
    keys = Keys.of(rows["dicom_id"])
    u_mask = ctx.draw(f"{TASK}:neighbour", keys)
    u_study = ctx.draw(f"{TASK}:study", keys)
    chosen = np.full(len(rows), -1, dtype=np.int64)
    pred_masks = masks.copy()
    for i, (split, mask, subject) in enumerate(zip(rows["split"].tolist(), masks.tolist(), rows["subject_id"].tolist())):
        found = pool.masks_near(split, mask)
        if found:
            cand_mask = found[int(u_mask[i] * len(found))]
            cands = pool.by_key[(split, cand_mask)]
            cands = cands[pool.subjects[cands] != subject]
            if len(cands):
                chosen[i] = cands[int(u_study[i] * len(cands))]
                pred_masks[i] = cand_mask
    hit = chosen >= 0
    at = pa.array(np.where(hit, chosen, 0))
    none = pa.array(~hit)
    report = pc.if_else(none, pa.scalar(None, pa.string()), pool.findings.take(at))
    study = pool.study_ids.take(at)
    return Predicted(report, pred_masks, pc.if_else(none, pa.scalar(None, pa.string()), concat("retrieved:s", study)))


def from_predictions(rows: pd.DataFrame, preds: pd.DataFrame) -> Predicted:
    """Predicted reports (and their label masks) from the predictions table indexed by dicom_id."""
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


def predictor(ctx: BuildContext, inputs: PlanInputs) -> Callable[[pd.DataFrame], Predicted]:
    """The predicted reports of a batch of rows: from the predictions file where there is one, else
    by retrieval (the pool indexed once per build)."""
    if inputs.predictions is not None:
        preds = inputs.predictions.set_index("dicom_id")
        return lambda rows: from_predictions(rows, preds)
    pool = RetrievalPool.of(inputs.images.loc[inputs.images["has_findings"].fillna(False).astype(bool), POOL_COLUMNS])
    return lambda rows: retrieve_reports(ctx, rows, pool)


def build(ctx: BuildContext, inputs: PlanInputs) -> Iterator[pa.Table]:
    rows = inputs.part(TASK)
    predict = predictor(ctx, inputs)
    inputs.notes["correction_candidates"] = len(rows)
    inputs.notes["correction_dropped_no_error"] = 0
    for batch, keys in key_batches(rows, keyed(TASK, rows["dicom_id"])):
        predicted = predict(batch)
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
    gen_messages = append_turns(no_turns(n), (USER, strings(gen["request"], n)), (ASSISTANT, predicted.report),
                                (USER, generator_prompts(gen, add, remove, add_text, remove_text)))
    meta = mimic_meta(rows, keys, task_mode=modes, source_ref=predicted.reference)
    return finish(meta, task=TASK, ctx=ctx, keys=keys, history=report_history(ctx, rows["structured_findings"],
                                                                               predicted.report),
                  instructions=texts, outputs=None, template_ids=template_ids,
                  gen_messages=gen_messages)
