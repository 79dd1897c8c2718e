"""What every task builder shares: the build context, sample keys, variant choice, the
report-generation exchange, the assembly of a builder's columns into a plan table
(:func:`finish`) and the original's fuse step (:func:`fuse_rows`).

A builder receives the plan inputs (pandas frames of cheap per-row columns; strings Arrow-backed)
and returns an Arrow table with the columns of :data:`schemas.PLAN`. Text is assembled column-wise
(:mod:`.columns`): an instruction template is rendered once per variant over all the rows that
drew it, and ``history`` / ``messages`` / ``gen_messages`` are ``list<struct<role, content>>``
arrays; no per-row Python objects are made except where a row's text needs Python's own rules
(sentence splitting for context dropping, the fuse step on rows with braces).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...schemas import PLAN
from ..augment.context_dropping import contexts, draw_modes
from ..hashing import draws, key_hashes, pick
from ..text.conversation import Conversation, load_conversation
from .columns import (
    ASSISTANT,
    USER,
    Text,
    append_turns,
    concat,
    lengths_of,
    lower,
    no_turns,
    parts_of,
    pick_strings,
    render,
    sample_id_hex,
    scatter,
    strings,
    strip,
    turns,
)
from .fidelity import IMPROVED, NO_COMMON_FINDINGS, ORIGINAL, fuse_text
from .presets import Preset
from .templates import TaskTemplates, load_templates

STRING = pa.string()


@dataclass(frozen=True)
class Keys:
    """Sample keys with their 64-bit hashes, computed once: the hashes seed every per-row draw and,
    in hex, are the rows' ``sample_id``."""

    values: pa.Array
    hashes: np.ndarray

    @classmethod
    def of(cls, values: Text | Sequence[str]) -> Keys:
        values = strings(values)
        return cls(values, key_hashes(values.to_pylist()))

    def __len__(self) -> int:
        return len(self.values)

    def take(self, positions: Sequence[int] | np.ndarray) -> Keys:
        positions = np.asarray(positions, dtype=np.int64)
        return Keys(self.values.take(positions), self.hashes[positions])

    def sample_ids(self) -> pa.Array:
        return sample_id_hex(self.hashes)


@dataclass(frozen=True)
class Instructions:
    """Rendered instruction variants: the text, the template id and the variant index per row."""

    texts: pa.Array
    template_ids: pa.Array
    choice: np.ndarray


@dataclass(frozen=True)
class BuildContext:
    seed: int
    preset: Preset
    splits: tuple[str, ...] = ("train", "validate", "test")
    templates_dir: str | None = None
    #: ``original`` or ``improved`` (resolved; see :mod:`.fidelity`)
    fidelity: str = IMPROVED

    @property
    def original(self) -> bool:
        return self.fidelity == ORIGINAL

    @property
    def conversation(self) -> Conversation:
        return load_conversation(self.templates_dir)

    def templates(self, task: str) -> TaskTemplates:
        return load_templates(task, self.templates_dir)

    def draw(self, purpose: str, keys: Keys | Sequence[str] | pd.Series) -> np.ndarray:
        return draws(self.seed, purpose, (keys if isinstance(keys, Keys) else Keys.of(keys)).hashes)

    def variant_choice(self, task: str, mode: str, keys: Keys) -> np.ndarray:
        """One instruction variant index per key, drawn from (seed, task, mode, key)."""
        return pick(self.draw(f"variant:{task}:{mode}", keys), len(self.templates(task).variants(mode)))

    def instructions(self, task: str, mode: str, keys: Keys, **slots: Text | str) -> Instructions:
        """Each key's drawn variant of ``mode``, filled with the row's ``slots``."""
        template = self.templates(task)
        options = template.variants(mode)
        choice = self.variant_choice(task, mode, keys)
        return Instructions(render([v.text for v in options], choice, **slots),
                            pick_strings([template.template_id(v) for v in options], choice), choice)

    def instructions_by_mode(self, task: str, modes: np.ndarray, order: Sequence[str], keys: Keys,
                             **slots: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Each row's drawn variant of its own mode (``modes``, taken in ``order``), filled with the
        row's ``slots``: the texts and the template ids, in row order."""
        texts, template_ids, positions = [], [], []
        for mode in order:
            idx = np.flatnonzero(modes == mode)
            at = pa.array(idx)
            asked = self.instructions(task, mode, keys.take(idx), **{k: v.take(at) for k, v in slots.items()})
            texts.append(asked.texts)
            template_ids.append(asked.template_ids)
            positions.append(idx)
        return scatter(texts, positions, len(modes)), scatter(template_ids, positions, len(modes))

    @cached_property
    def _report_generation_text(self) -> str:
        (variant,) = self.templates("report_generation").variants("default")[:1]
        return variant.text


def findings_listing(structured_findings: Text, *, original: bool) -> pa.Array:
    """:func:`.fidelity.findings_listing` of every row: the positives lower-cased and stripped;
    "no common findings" where there are none (the original: empty)."""
    listing = strip(lower(pc.fill_null(strings(structured_findings), "")))
    if original:
        return listing
    return pc.if_else(pc.equal(listing, ""), NO_COMMON_FINDINGS, listing)


def report_generation_prompts(ctx: BuildContext, listing: Text) -> pa.Array:
    """The report-generation question with ``Predicted Findings`` = ``listing`` (first variant)."""
    listing = strings(listing)
    return render([ctx._report_generation_text], np.zeros(len(listing), dtype=np.int64),
                  image_prefix=ctx.conversation.image_prefix, findings=listing)


def report_history(ctx: BuildContext, structured_findings: Text, reports: Text) -> pa.ListArray:
    """The report-generation exchange that report-based tasks carry in their history (its findings
    as :func:`findings_listing` has them for the fidelity); no turns where the report is null."""
    reports = strings(reports)
    prompts = report_generation_prompts(ctx, findings_listing(structured_findings, original=ctx.original))
    asked = pc.if_else(reports.is_valid(), prompts, pa.scalar(None, STRING))
    return append_turns(no_turns(len(reports)), (USER, asked), (ASSISTANT, reports))


def user_turns(ctx: BuildContext, history: pa.ListArray, instructions: Text) -> pa.Array:
    """A conversation without history starts with the image slot."""
    instructions = strings(instructions)
    first = pa.array(lengths_of(history) == 0)
    return pc.if_else(first, concat(ctx.conversation.image_prefix, instructions), instructions)


def column(values: Any, n: int, type_: pa.DataType = STRING) -> pa.Array:
    """A plan column from an array, a pandas Series, a numpy array or a constant (None: nulls)."""
    if values is None:
        return pa.nulls(n, type_)
    if isinstance(values, str | bool):
        return pa.array([values], type_).take(np.zeros(n, dtype=np.int64))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, from_pandas=True)
    return values if values.type == type_ else values.cast(type_)


def mimic_meta(rows: pd.DataFrame, keys: Keys, *, task_mode: Any = None, source_ref: Any = None,
               source: str = "mimic-cxr") -> dict[str, Any]:
    """The id / provenance columns of MIMIC-CXR image rows."""
    return {
        "sample_key": keys.values, "split": rows["split"], "task_mode": task_mode, "source": source,
        "source_ref": source_ref, "subject_id": rows["subject_id"], "study_id": rows["study_id"],
        "dicom_id": rows["dicom_id"], "image_path": rows["image_path"], "view_position": rows["view_position"],
        "structured_findings": rows["structured_findings"], "labeler": rows["labeler"],
    }


def finish(meta: dict[str, Any], *, task: str, ctx: BuildContext, keys: Keys, history: pa.ListArray,
           instructions: Text, outputs: Text | None, template_ids: Text, context_mode: Any = "full",
           gen_messages: pa.ListArray | None = None) -> pa.Table:
    """The task's plan table: ``meta`` (ids and provenance) and the conversation columns.

    ``instructions`` are the final user turns as they appear in the conversation; ``outputs`` the
    answers (None for replay rows, whose answer the generator writes).
    """
    n = len(keys)
    output = column(outputs, n)
    columns = {
        **meta, "task": task, "history": history, "instruction": instructions, "output": output,
        "messages": append_turns(history, (USER, instructions), (ASSISTANT, output)),
        "context_mode": context_mode, "template_id": template_ids,
        "is_pseudo_label": gen_messages is not None, "sample_id": keys.sample_ids(),
        "template_version": ctx.templates(task).version, "gen_messages": gen_messages,
    }
    return pa.Table.from_arrays([column(columns[f.name], n, f.type) for f in PLAN], schema=PLAN)


#: rows a builder assembles at once: a task's text is built and written batch by batch
BATCH_ROWS = 50_000


def key_batches(rows: pd.DataFrame, keys: Keys, *aligned: np.ndarray,
                positions: np.ndarray | None = None) -> Iterator[tuple[Any, ...]]:
    """The task's rows with their ``keys`` (and any arrays ``aligned`` with them) in key order, the
    plan's order within a task, :data:`BATCH_ROWS` rows at a time: ``(rows, keys, *aligned)`` per
    batch. With ``positions`` the task's rows are those rows of ``rows`` (repeats allowed), taken
    batch by batch. Builders make their decisions over the whole task first and assemble the text
    per batch, so memory holds one batch's columns, not the task's."""
    order = np.asarray(pc.sort_indices(keys.values).to_numpy(), dtype=np.int64)
    for start in range(0, len(order), BATCH_ROWS):
        at = order[start:start + BATCH_ROWS]
        yield (rows.iloc[at if positions is None else positions[at]], keys.take(at),
               *(np.asarray(a)[at] for a in aligned))


def keyed(task: str, *parts: pd.Series | pa.Array | str) -> Keys:
    """Stable sample keys ``task:part1:part2...`` (parts are aligned Series / arrays or constants)."""
    arrays = [p if isinstance(p, str) else column(p, len(p)) for p in parts]
    n = next(len(a) for a in arrays if not isinstance(a, str))
    return Keys.of(pc.binary_join_element_wise(task, *arrays, ":") if n else pa.array([], pa.string()))


def context_histories(ctx: BuildContext, task: str, keys: Keys, rows: pd.DataFrame) -> tuple[pa.ListArray, np.ndarray]:
    """Each row's history (the report-generation exchange, possibly cut by context dropping) and
    its context mode; tasks without context dropping always get the full context."""
    if task in ctx.preset.context_dropping:
        modes = draw_modes(ctx.draw(f"context:{task}", keys))
    else:
        modes = np.full(len(rows), "full", dtype=object)
    texts = contexts(ctx.seed, keys.values, modes, strings(rows["findings"]))
    return report_history(ctx, rows["structured_findings"], texts), modes


def fuse_rows(table: pa.Table) -> tuple[pa.Table, int]:
    """The original's fuse step on an instruct task's rows: every history turn and the question
    formatted with ``findings`` = the row's lower-cased positive labels (:func:`.fidelity.fuse_text`).
    Rows on which the original would have stopped (a stray brace) are dropped; returns the rows and
    the number dropped. Text without braces is left as it is by ``str.format``, so only the rows
    with a brace go through Python."""
    offsets, roles, contents = parts_of(table.column("history"))
    instruction = strings(table.column("instruction"))
    n = table.num_rows
    braces = r"[{}]"
    owner = np.repeat(np.arange(n), np.diff(offsets))
    in_turn = np.asarray(pc.match_substring_regex(contents, braces).to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.union1d(owner[in_turn],
                      np.flatnonzero(np.asarray(pc.match_substring_regex(instruction, braces)
                                                .to_numpy(zero_copy_only=False), dtype=bool)))
    if not len(rows):
        return table, 0
    listing = findings_listing(table.column("structured_findings").take(rows), original=True).to_pylist()
    fused = np.isin(owner, rows)
    at, other = np.flatnonzero(fused), np.flatnonzero(~fused)  # the turns of the rows with a brace, the rest
    of_row = np.searchsorted(rows, owner[at]).tolist()
    texts = [fuse_text(t, listing[k]) for t, k in zip(contents.take(at).to_pylist(), of_row)]
    questions = [fuse_text(t, listing[k]) for k, t in enumerate(instruction.take(rows).to_pylist())]
    failed = np.array([q is None for q in questions], dtype=bool)
    failed[[k for k, t in zip(of_row, texts) if t is None]] = True
    keep = np.ones(n, dtype=bool)
    keep[rows[failed]] = False
    history = turns(offsets, roles, scatter([contents.take(other), pa.array(texts, STRING)], [other, at], len(contents)))
    rest = np.setdiff1d(np.arange(n), rows)
    instruction = scatter([instruction.take(rest), pa.array(questions, STRING)], [rest, rows], n)
    messages = append_turns(history, (USER, instruction), (ASSISTANT, table.column("output")))
    out = table.set_column(table.schema.get_field_index("history"), "history", history)
    out = out.set_column(out.schema.get_field_index("instruction"), "instruction", instruction)
    out = out.set_column(out.schema.get_field_index("messages"), "messages", messages)
    out = out.filter(pa.array(keep))
    return out, int((~keep).sum())
