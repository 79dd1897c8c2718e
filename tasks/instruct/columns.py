"""Vectorised text for the task builders: template rendering per variant, Python's string
semantics on Arrow arrays, and conversations as ``list<struct<role, content>>`` arrays.

Every function here returns exactly what the per-row Python it replaces returns (``str.format``,
``str.lower``, ``str.strip``, ``" ".join(s.split())``, list concatenation of turns);
tests/test_columns.py checks them against that Python on edge cases (braces in values, empty and
non-ASCII text, odd whitespace). Where Arrow's kernels could differ from Python - non-ASCII case
mapping, format specs or conversions in a template - the rows concerned take the Python path.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...schemas.tables import MESSAGE_TYPE, MESSAGES
from ..text.conversation import Conversation

Text = pa.Array | pa.ChunkedArray | pd.Series
#: every character ``str.split()`` / ``str.strip()`` treat as whitespace (none lies above U+3000)
PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_WHITESPACE_RUN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]+"
_HEX = np.array([f"{i:02x}".encode() for i in range(256)])
USER, ASSISTANT = "user", "assistant"
#: JSON string escapes (``json.dumps(..., ensure_ascii=False)`` and ``orjson`` write the same):
#: the backslash first, since every other escape adds one
_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"),
            ("\f", "\\f")] + [(chr(c), f"\\u{c:04x}") for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]
_NEEDS_ESCAPE = '[\\\\"\\x00-\\x1f]'


def strings(values: Text | Sequence[str | None] | str, n: int | None = None) -> pa.Array:
    """``values`` as one string array; a str is repeated ``n`` times."""
    if isinstance(values, str):
        return pa.array([values], pa.string()).take(np.zeros(n or 0, dtype=np.int64))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.string(), from_pandas=True)
        if isinstance(values, pa.ChunkedArray):
            return strings(values)
    return values if values.type == pa.string() else values.cast(pa.string())


def python_map(values: Text, fn: Callable[[str], str | None]) -> pa.Array:
    """``fn`` applied in Python to every non-null value (for the few rows Arrow cannot do)."""
    return pa.array([None if v is None else fn(v) for v in strings(values).to_pylist()], pa.string())


def _not(rows: np.ndarray, n: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[rows] = False
    return mask


def _non_ascii(values: pa.Array) -> np.ndarray:
    return np.flatnonzero(~np.asarray(pc.fill_null(pc.string_is_ascii(values), True).to_numpy(zero_copy_only=False)))


def lower(values: Text) -> pa.Array:
    """``str.lower()`` (ASCII rows in Arrow, the others in Python)."""
    values = strings(values)
    other = _non_ascii(values)
    if not len(other):
        return pc.ascii_lower(values)
    ascii_rows = np.flatnonzero(_not(other, len(values)))
    return scatter([pc.ascii_lower(values.take(ascii_rows)), python_map(values.take(other), str.lower)],
                   [ascii_rows, other], len(values))


def strip(values: Text) -> pa.Array:
    """``str.strip()``."""
    return pc.utf8_trim(strings(values), characters=PY_WHITESPACE)


def collapse_whitespace(values: Text) -> pa.Array:
    """``" ".join(s.split())``: whitespace runs become one space, none at the ends."""
    return pc.replace_substring_regex(strip(values), _WHITESPACE_RUN, " ")


def concat(*pieces: Text | str) -> pa.Array:
    """Element-wise concatenation of arrays and constant strings (a null anywhere gives null)."""
    arrays = [p for p in pieces if not isinstance(p, str)]
    n = len(arrays[0]) if arrays else 0
    if not arrays:
        raise ValueError("concat needs at least one array")
    if len(pieces) == 1:
        return strings(pieces[0])
    return pc.binary_join_element_wise(*[p if isinstance(p, str) else strings(p) for p in pieces], "") \
        if n else pa.array([], pa.string())


def scatter(parts: Sequence[pa.Array], positions: Sequence[np.ndarray], n: int) -> pa.Array:
    """One array of length ``n`` whose rows ``positions[k]`` are ``parts[k]``."""
    if not parts:
        return pa.array([], pa.string())
    order = np.concatenate(positions).astype(np.int64)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays([strings(p) for p in parts]).take(inverse)


def sample_id_hex(hashes: np.ndarray) -> pa.Array:
    """``f"{h:016x}"`` of every uint64 hash."""
    n = len(hashes)
    data = _HEX[np.asarray(hashes, dtype=">u8").view(np.uint8).reshape(n, 8)].astype("S2").tobytes()
    offsets = np.arange(0, 16 * n + 1, 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


# --- templates ---------------------------------------------------------------------------------

def _plain_fields(text: str) -> list[tuple[str, str | None]] | None:
    """``text`` as (literal, field name) pieces, or None where it uses more than plain named fields."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    pieces = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (spec or conversion or not field.isidentifier()):
            return None
        pieces.append((literal, field))
    return pieces


def format_rows(text: str, slots: Mapping[str, Text | str], n: int) -> pa.Array:
    """``text.format(**row_slots)`` for ``n`` rows (slot values are arrays or constants)."""
    pieces = _plain_fields(text)
    arrays = {k: strings(v, n) if isinstance(v, str) else strings(v) for k, v in slots.items()}
    nulls = any(a.null_count for a in arrays.values())
    if pieces is None or nulls:
        columns = {k: a.to_pylist() for k, a in arrays.items()}
        return pa.array([text.format(**{k: c[i] for k, c in columns.items()}) for i in range(n)], pa.string())
    parts: list[Text | str] = []
    for literal, field in pieces:
        if literal:
            parts.append(literal)
        if field is not None:
            if field not in arrays:
                raise KeyError(field)
            parts.append(arrays[field])
    if not any(not isinstance(p, str) for p in parts):
        return strings("".join(parts), n)
    return concat(*parts)


def render(texts: Sequence[str], choice: np.ndarray, **slots: Text | str) -> pa.Array:
    """Row i gets ``texts[choice[i]].format(**slots of row i)``: each template is rendered once,
    over all the rows that drew it."""
    n = len(choice)
    drawn = np.unique(choice)
    if len(drawn) == 1:
        return format_rows(texts[int(drawn[0])], {k: v if isinstance(v, str) else strings(v) for k, v in slots.items()}, n)
    parts, positions = [], []
    for k in drawn:
        rows = np.flatnonzero(choice == k)
        sub = {name: v if isinstance(v, str) else strings(v).take(rows) for name, v in slots.items()}
        parts.append(format_rows(texts[int(k)], sub, len(rows)))
        positions.append(rows)
    return scatter(parts, positions, n) if n else pa.array([], pa.string())


def pick_strings(options: Sequence[str], choice: np.ndarray) -> pa.Array:
    """``options[choice[i]]`` per row."""
    return pa.array(list(options), pa.string()).take(np.asarray(choice, dtype=np.int64))


# --- conversations -----------------------------------------------------------------------------

def turns(offsets: np.ndarray, roles: Text, contents: Text) -> pa.ListArray:
    """A ``list<struct<role, content>>`` array from element offsets and the flat roles / contents."""
    elements = pa.StructArray.from_arrays([strings(roles), strings(contents)], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), elements, type=MESSAGES)


def no_turns(n: int) -> pa.ListArray:
    return turns(np.zeros(n + 1, dtype=np.int32), pa.array([], pa.string()), pa.array([], pa.string()))


def parts_of(column: pa.ListArray | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(offsets from 0, roles, contents) of a turns column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = np.concatenate([[0], np.cumsum(lengths_of(column))])
    flat = pc.list_flatten(column)
    return offsets, pc.struct_field(flat, "role"), pc.struct_field(flat, "content")


def lengths_of(column: pa.ListArray | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def append_turns(history: pa.ListArray | pa.ChunkedArray, *more: tuple[str, Text],
                 order: np.ndarray | pa.Array | None = None) -> pa.ListArray:
    """Each row's turns followed by one turn per ``(role, contents)`` of ``more`` (a null content
    adds no turn): ``history + [{"role": r, "content": c}, ...]``. With ``order`` the result's row i
    is built from ``history`` row ``order[i]`` (one take instead of a take per reordering); the
    ``more`` values are aligned with the result."""
    offsets, roles, contents = parts_of(history)
    rows = np.arange(len(offsets) - 1) if order is None else np.asarray(order, dtype=np.int64)
    n = len(rows)
    old = np.diff(offsets)[rows]
    extra = [(role, strings(values)) for role, values in more]
    present = [np.asarray(v.is_valid().to_numpy(zero_copy_only=False), dtype=bool) for _, v in extra]
    lengths = old + sum((p.astype(np.int64) for p in present), np.zeros(n, dtype=np.int64))
    new_offsets = np.concatenate([[0], np.cumsum(lengths)])
    # where each element comes from: the row's old turns first, then each appended turn in order
    pool_roles = [roles] + [pick_strings((role,), np.zeros(n, dtype=np.int64)) for role, _ in extra]
    pool_contents = [contents] + [v for _, v in extra]
    index = np.empty(int(new_offsets[-1]), dtype=np.int64)
    owner = np.repeat(np.arange(n), old)
    local = np.arange(len(owner)) - np.repeat(np.cumsum(old) - old, old)
    index[new_offsets[:-1][owner] + local] = offsets[:-1][rows][owner] + local
    at = new_offsets[:-1] + old
    base = len(roles)
    for p in present:
        hit = np.flatnonzero(p)
        index[at[hit]] = base + hit
        at = at + p
        base += n
    take = pa.array(index)
    return turns(new_offsets, pa.concat_arrays(pool_roles).take(take),
                 pa.concat_arrays([strings(c) for c in pool_contents]).take(take))


def json_escape(values: Text) -> pa.Array:
    """Each string as it appears between the quotes of its JSON form: only the rows with a quote,
    backslash or control character are rewritten, and only for the characters they contain."""
    values = strings(values)
    rows = np.flatnonzero(np.asarray(pc.fill_null(pc.match_substring_regex(values, _NEEDS_ESCAPE), False)
                                     .to_numpy(zero_copy_only=False), dtype=bool))
    if not len(rows):
        return values
    changed = values.take(pa.array(rows))
    present = set(np.unique(np.frombuffer(changed.buffers()[2], dtype=np.uint8)).tolist())
    for char, escaped in _ESCAPES:
        if ord(char) in present:
            changed = pc.replace_substring(changed, char, escaped)
    rest = np.flatnonzero(_not(rows, len(values)))
    return scatter([values.take(pa.array(rest)), changed], [rest, rows], len(values))


def render_turns(offsets: np.ndarray, roles: pa.Array, contents: pa.Array, conv: Conversation, *,
                 drop_last: bool = False, constant: Callable[[str], str] = str) -> pa.Array:
    """:meth:`Conversation.render` of every row's turns, taken apart by :func:`parts_of` (without
    its last turn with ``drop_last``), the final ``ASSISTANT:`` included where the last rendered
    turn is the user's or there is none; the format's own strings pass through ``constant`` (e.g.
    JSON-escaping, when ``contents`` are escaped)."""
    lengths = np.diff(offsets)
    if drop_last:
        owner = np.repeat(np.arange(len(lengths)), lengths)
        keep = pa.array(np.arange(len(roles)) - offsets[:-1][owner] < lengths[owner] - 1)
        roles, contents = roles.filter(keep), contents.filter(keep)
        lengths = np.maximum(lengths - 1, 0)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
    unknown = pc.invert(pc.is_in(roles, value_set=pa.array([USER, ASSISTANT])))
    if pc.any(unknown).as_py():
        raise ValueError(f"unknown role {pc.filter(roles, unknown)[0].as_py()!r} (expected user or assistant)")
    user = pc.equal(roles, USER)
    pieces = concat(pc.if_else(user, constant(f"{conv.user}: "), constant(f"{conv.assistant}: ")), contents,
                    pc.if_else(user, constant(conv.sep), constant(conv.sep2)))
    body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pieces), "")
    last_user = np.zeros(len(lengths), dtype=bool)
    has = lengths > 0
    last_user[has] = np.asarray(user.to_numpy(zero_copy_only=False), dtype=bool)[offsets[1:][has] - 1]
    return concat(constant(conv.system + conv.sep), body,
                  pc.if_else(pa.array(~has | last_user), constant(f"{conv.assistant}:"), ""))
