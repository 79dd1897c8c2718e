"""Per-row properties of a shard's nested columns, computed on Arrow arrays without Python loops.

GX cannot look inside list / struct columns, and its pandas engine copies the frame for every
conditional expectation and hashes it once per run, so the validate stage gives GX a compact flat
frame (:func:`flat_frame`): a presence marker (a masked boolean, True / NA) for every column the
suites only check for nulls (the nested ones, the texts, the paths), categoricals for the
value-checked columns with few values, ``sample_id`` and ``split`` as (Arrow-backed) strings, and the
columns computed here:

* ``messages_ok`` — at least one turn, an even number of turns alternating user / assistant from a
  user turn, every turn present with a non-blank content;
* ``turns_match`` — ``messages`` is ``history`` followed by the instruction as a user turn and one
  more turn;
* ``answer_equals_output`` — the last turn is the assistant's and its content is ``output``;
* ``has_generation`` — the generation struct is present with every field set;
* ``audit_verdict`` — the audit struct's verdict (null when there is none);
* ``review_decision`` — the human decision of the ``review`` struct ("none" when there is none);
* ``instruction_chars`` / ``output_chars`` — the texts' lengths in characters (NaN when null).

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


def true_where(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean array as numpy, null as false."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Element-wise equality where null equals null."""
    both_null = true_where(pc.and_(pc.is_null(a), pc.is_null(b)))
    return true_where(pc.equal(a, b)) | both_null


def _rows_all(ok: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    """Per row: every element of the row is ok (true for rows without elements)."""
    return np.bincount(owners[~ok], minlength=n) == 0


def messages_ok(m: Turns) -> np.ndarray:
    n = len(m.lengths)
    position = np.arange(len(m.roles)) - np.repeat(m.starts, m.lengths)
    expected = pa.array(["user", "assistant"]).take(position % 2)
    # blank: empty or only whitespace (utf8_is_space classifies as utf8_trim_whitespace trims; no copy)
    blank = pc.or_kleene(pc.equal(m.contents, ""), pc.utf8_is_space(m.contents))
    ok = true_where(pc.equal(m.roles, expected)) & true_where(pc.invert(blank))
    return m.valid & (m.lengths > 0) & (m.lengths % 2 == 0) & _rows_all(ok, m.owners(), n)


def answer_equals_output(m: Turns, output: pa.Array) -> np.ndarray:
    out = np.zeros(len(m.lengths), bool)
    rows = np.flatnonzero(m.valid & (m.lengths > 0))
    last = m.last(rows)
    out[rows] = (true_where(pc.equal(m.roles.take(last), "assistant"))
                 & true_where(pc.equal(m.contents.take(last), output.take(rows))))
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
    asked = (true_where(pc.equal(m.roles.take(question), "user"))
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
    ok = true_where(column.is_valid())
    for field in GENERATION_TYPE:
        ok &= true_where(pc.is_valid(pc.struct_field(column, field.name)))
    return ok


def _struct_field(table: pa.Table, column: str, field: str) -> pa.Array:
    """Field ``field`` of the struct column ``column`` (null strings without such a column or field)."""
    if column in table.column_names:
        values = table.column(column).combine_chunks()
        if pa.types.is_struct(values.type) and values.type.get_field_index(field) >= 0:
            return pc.struct_field(values, field)
    return pa.nulls(table.num_rows, pa.string())


def audit_verdict(table: pa.Table) -> pa.Array:
    return _struct_field(table, "audit", "verdict")


def review_decision(table: pa.Table) -> pa.Array:
    return pc.fill_null(_struct_field(table, "review", "decision"), "none")


#: value-checked string columns with few distinct values (categoricals: cheap for GX to filter)
CATEGORIES = ("task", "task_mode", "context_mode")
#: string columns the suites compare as values
STRINGS = ("sample_id", "split")


def _marker(column: pa.ChunkedArray | pa.Array) -> pd.Series:
    """True where the value is set, NA where it is null (a masked boolean: no Python objects)."""
    valid = true_where(column.is_valid())
    return pd.Series(pd.arrays.BooleanArray(np.ones(len(valid), dtype=bool), ~valid))


def _lengths(values: pa.Array) -> np.ndarray:
    """Characters per string (NaN for nulls)."""
    return pc.utf8_length(values).to_numpy(zero_copy_only=False).astype(float)


def flat_frame(table: pa.Table, shard_split: str) -> pd.DataFrame:
    """The frame GX validates: the shard's columns in its order (values, categoricals or presence
    markers, see the module docstring), then the derived columns."""
    columns: dict[str, pd.Series] = {}
    for field in table.schema:
        column = table.column(field.name)
        if field.name in STRINGS and pa.types.is_string(field.type):
            columns[field.name] = column.to_pandas().reset_index(drop=True)
        elif field.name in CATEGORIES and pa.types.is_string(field.type):
            columns[field.name] = column.dictionary_encode().to_pandas().reset_index(drop=True)
        elif pa.types.is_boolean(field.type):
            columns[field.name] = pd.Series(column.to_numpy(zero_copy_only=False))
        else:
            columns[field.name] = _marker(column)
    messages, history = Turns.of(table, "messages"), Turns.of(table, "history")
    instruction, output = _string(table, "instruction"), _string(table, "output")
    derived = {
        "shard_split": pd.Series([shard_split] * table.num_rows, dtype="str"),
        "messages_ok": messages_ok(messages),
        "turns_match": turns_match(messages, history, instruction),
        "answer_equals_output": answer_equals_output(messages, output),
        "has_generation": has_generation(table),
        "audit_verdict": audit_verdict(table).dictionary_encode().to_pandas(),
        "review_decision": review_decision(table).dictionary_encode().to_pandas(),
        "instruction_chars": _lengths(instruction), "output_chars": _lengths(output),
    }
    return pd.DataFrame({**columns, **derived})
