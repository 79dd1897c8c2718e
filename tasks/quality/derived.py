"""Per-row properties of a shard's nested columns, computed on Arrow arrays without Python loops.

GX cannot look inside list / struct columns, and handing it those columns is slow (it pickles a
frame with unhashable cells to fingerprint it), so the validate stage gives GX a flat frame: the
shard's scalar columns, a presence marker (True / null) for every nested column, and the columns
computed here:

* ``messages_ok`` — at least one turn, an even number of turns alternating user / assistant from a
  user turn, every turn present with a non-blank content;
* ``turns_match`` — ``messages`` is ``history`` followed by the instruction as a user turn and one
  more turn;
* ``answer_equals_output`` — the last turn is the assistant's and its content is ``output``;
* ``has_generation`` — the generation struct is present with every field set;
* ``audit_verdict`` — the audit struct's verdict (null when there is none);
* ``review_decision`` — the human decision of the ``review`` struct ("none" when there is none).

A column that is missing or has the wrong type counts as null in every row, so a broken shard still
gets every check (and the schema check names the cause).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import schemas

TURNS_TYPE = schemas.INSTRUCT_SAMPLE.field("messages").type
GENERATION_TYPE = schemas.INSTRUCT_SAMPLE.field("generation").type


@dataclass(frozen=True)
class Turns:
    """A list<struct<role, content>> column taken apart: per row validity, length and first
    element index; per element role and content (null where the element itself is null)."""

    valid: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    roles: pa.Array
    contents: pa.Array

    @classmethod
    def of(cls, table: pa.Table, name: str) -> Turns:
        n = table.num_rows
        if name not in table.column_names or not table.schema.field(name).type.equals(TURNS_TYPE):
            empty = pa.array([], pa.string())
            return cls(np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64), empty, empty)
        column = table.column(name).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
        elements = pc.list_flatten(column)
        return cls(valid=column.is_valid().to_numpy(zero_copy_only=False), lengths=lengths,
                   starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                   roles=pc.struct_field(elements, "role"), contents=pc.struct_field(elements, "content"))

    def owners(self) -> np.ndarray:
        """The row of every element."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def last(self, rows: np.ndarray, back: int = 1) -> np.ndarray:
        """Element index of the ``back``-th last turn of ``rows`` (which must have that many)."""
        return self.starts[rows] + self.lengths[rows] - back


def _bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Element-wise equality where null equals null."""
    both_null = _bool(pc.and_(pc.is_null(a), pc.is_null(b)))
    return _bool(pc.equal(a, b)) | both_null


def _rows_all(ok: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    """Per row: every element of the row is ok (true for rows without elements)."""
    return np.bincount(owners[~ok], minlength=n) == 0


def messages_ok(m: Turns) -> np.ndarray:
    n = len(m.lengths)
    position = np.arange(len(m.roles)) - np.repeat(m.starts, m.lengths)
    expected = pa.array(["user", "assistant"]).take(position % 2)
    content = pc.utf8_trim_whitespace(m.contents)
    ok = _bool(pc.equal(m.roles, expected)) & _bool(pc.greater(pc.utf8_length(content), 0))
    return m.valid & (m.lengths > 0) & (m.lengths % 2 == 0) & _rows_all(ok, m.owners(), n)


def answer_equals_output(m: Turns, output: pa.Array) -> np.ndarray:
    out = np.zeros(len(m.lengths), bool)
    rows = np.flatnonzero(m.valid & (m.lengths > 0))
    last = m.last(rows)
    out[rows] = (_bool(pc.equal(m.roles.take(last), "assistant"))
                 & _bool(pc.equal(m.contents.take(last), output.take(rows))))
    return out


def turns_match(m: Turns, h: Turns, instruction: pa.Array) -> np.ndarray:
    n = len(m.lengths)
    out = np.zeros(n, bool)
    rows = np.flatnonzero(m.valid & h.valid & (m.lengths == h.lengths + 2))
    counts = h.lengths[rows]
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    m_idx = np.repeat(m.starts[rows], counts) + local
    h_idx = np.repeat(h.starts[rows], counts) + local
    same = _same(m.roles.take(m_idx), h.roles.take(h_idx)) & _same(m.contents.take(m_idx), h.contents.take(h_idx))
    history_ok = _rows_all(same, np.repeat(np.arange(len(rows)), counts), len(rows))
    question = m.last(rows, 2)
    asked = (_bool(pc.equal(m.roles.take(question), "user"))
             & _same(m.contents.take(question), instruction.take(rows)))
    out[rows] = history_ok & asked
    return out


def _string(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names and pa.types.is_string(table.schema.field(name).type):
        return table.column(name).combine_chunks()
    return pa.nulls(table.num_rows, pa.string())


def has_generation(table: pa.Table) -> np.ndarray:
    if "generation" not in table.column_names or not table.schema.field("generation").type.equals(GENERATION_TYPE):
        return np.zeros(table.num_rows, bool)
    column = table.column("generation").combine_chunks()
    ok = _bool(column.is_valid())
    for field in GENERATION_TYPE:
        ok &= _bool(pc.is_valid(pc.struct_field(column, field.name)))
    return ok


def audit_verdict(table: pa.Table) -> pa.Array:
    if "audit" not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    column = table.column("audit").combine_chunks()
    if not pa.types.is_struct(column.type) or column.type.get_field_index("verdict") < 0:
        return pa.nulls(table.num_rows, pa.string())
    return pc.struct_field(column, "verdict")


def review_decision(table: pa.Table) -> pa.Array:
    if "review" not in table.column_names or not pa.types.is_struct(table.schema.field("review").type) \
            or table.schema.field("review").type.get_field_index("decision") < 0:
        return pa.array(["none"] * table.num_rows, pa.string())
    return pc.fill_null(pc.struct_field(table.column("review").combine_chunks(), "decision"), "none")


def flat_frame(table: pa.Table, shard_split: str) -> pd.DataFrame:
    """The frame GX validates: scalar columns, presence markers for nested ones, the derived columns."""
    flat = table.select([f.name for f in table.schema if not pa.types.is_nested(f.type)])
    scalar = flat.to_pandas()
    # object columns: GX filters the frame once per conditional check, and numpy takes of object
    # pointers are far cheaper than the Arrow takes of pandas' Arrow-backed string columns
    scalar = scalar.astype({f.name: object for f in flat.schema if pa.types.is_string(f.type)})
    for field in table.schema:
        if pa.types.is_nested(field.type):
            present = table.column(field.name).is_valid().to_numpy(zero_copy_only=False)
            scalar[field.name] = pd.Series(np.where(present, True, None), dtype=object)
    scalar = scalar[table.column_names]
    messages, history = Turns.of(table, "messages"), Turns.of(table, "history")
    return scalar.assign(
        shard_split=shard_split,
        messages_ok=messages_ok(messages),
        turns_match=turns_match(messages, history, _string(table, "instruction")),
        answer_equals_output=answer_equals_output(messages, _string(table, "output")),
        has_generation=has_generation(table),
        audit_verdict=pd.Series(audit_verdict(table).to_pylist(), dtype=object),
        review_decision=pd.Series(review_decision(table).to_pylist(), dtype=object),
    )
