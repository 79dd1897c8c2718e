"""Exports of the shards for existing consumers.

* ``llava``: the v1.1 LLaVA-style JSON RaDialog's own trainer reads (``mimic_cxr_instruct_llava_v2``):
  a list of ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}], "task_type"}``;
  the conversation's image slot (e.g. "Image information: <IMG>. ") becomes LLaVA's "<image>. ".
* ``flat``: the v1 flat JSON (``mimic_cxr_instruct_stratified.json`` style) that RaDialog's
  ``finetune.py`` reads: a list of ``{"instruction": <the whole chat prompt ending "ASSISTANT:">,
  "input": "", "output", "dicom"}``. The prompt is rendered with the build's conversation format
  (``plan.templates_dir``): with the imported original it is the original's record, system prompt
  and 32-token image slot included.

Records are made column-wise from a shard's Arrow table (:func:`records`): every text is
JSON-escaped once (:func:`json_escape`, byte for byte what ``orjson.dumps`` writes) and the
records are concatenations of escaped pieces, so a shard converts without a Python object per
row. The files are written as a stream, one shard's records at a time (the assemble stage writes
them while it writes the shards; :func:`export` converts existing shards, in parallel processes),
so 580k samples never sit in memory as one JSON document; byte-identical for identical shards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..instruct.columns import concat, json_escape, parts_of, pick_strings, render_turns
from ..instruct.presets import FINDINGS_QA, FINDINGS_QA_CODES, TASK_CODES
from ..io import atomic_path, drop_written
from ..parallel import default_workers, process_pool
from ..text.conversation import Conversation, load_conversation
from .shards import shard_files

EXPORT_COLUMNS = ["sample_id", "task", "task_mode", "dicom_id", "image_path", "messages", "output"]
LLAVA_IMAGE = "<image>. "
SEPARATOR = ",\n"
def task_code(task: str, task_mode: str | None) -> str:
    if task == FINDINGS_QA:
        return FINDINGS_QA_CODES.get(task_mode or "", "CPQA")
    return TASK_CODES[task]


def _esc(text: str) -> str:
    return orjson.dumps(text).decode()[1:-1]


def _quoted(values: pa.Array) -> pa.Array:
    """JSON string values (``null`` for nulls)."""
    return pc.fill_null(concat('"', json_escape(values), '"'), "null")


def _codes(table: pa.Table) -> pa.Array:
    pairs = pa.table({"task": table.column("task"), "mode": pc.fill_null(table.column("task_mode"), "")})
    distinct = pairs.group_by(["task", "mode"], use_threads=False).aggregate([])
    codes = [task_code(t, m or None) for t, m in zip(distinct.column("task").to_pylist(), distinct.column("mode").to_pylist())]
    keys = pc.binary_join_element_wise(distinct.column("task"), distinct.column("mode"), "\x1f")
    at = pc.index_in(pc.binary_join_element_wise(pairs.column("task"), pairs.column("mode"), "\x1f"), value_set=keys)
    return pick_strings(codes, np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64))


@dataclass(frozen=True)
class Turns:
    """A shard's ``messages`` taken apart, contents JSON-escaped once for every export."""

    offsets: np.ndarray
    roles: pa.Array
    escaped: pa.Array

    @classmethod
    def of(cls, table: pa.Table) -> Turns:
        offsets, roles, contents = parts_of(table.column("messages"))
        return cls(offsets, roles, json_escape(contents))


def llava_records(table: pa.Table, conv: Conversation, turns: Turns, end: str = "") -> pa.Array:
    offsets, roles, values = turns.offsets, turns.roles, turns.escaped
    first = np.zeros(len(values), dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True
    # the first turn's image slot becomes LLaVA's (escaping keeps prefixes: compare escaped texts)
    prefix = _esc(conv.image_prefix)
    slot, rest = pa.array(first), values
    if prefix:
        slot = pc.and_(slot, pc.starts_with(values, prefix))
        rest = pc.utf8_slice_codeunits(values, len(prefix))  # counts code points, as len() does
    values = pc.if_else(slot, concat(_esc(LLAVA_IMAGE), rest), values)
    speaker = pc.if_else(pc.equal(roles, "user"), '{"from":"human","value":"', '{"from":"gpt","value":"')
    turns = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), concat(speaker, values, '"}'))
    return concat('{"id":', _quoted(table.column("dicom_id")), ',"image":', _quoted(table.column("image_path")),
                  ',"conversations":[', pc.binary_join(turns, ","), '],"task_type":', _quoted(_codes(table)), "}" + end)


def flat_records(table: pa.Table, conv: Conversation, turns: Turns, end: str = "") -> pa.Array:
    """The instruction is :meth:`Conversation.render` of all turns but the last (from the escaped
    turns, with the format's strings escaped)."""
    instruction = render_turns(turns.offsets, turns.roles, turns.escaped, conv, drop_last=True, constant=_esc)
    return concat('{"instruction":"', instruction, '","input":"","output":', _quoted(table.column("output")),
                  ',"dicom":', _quoted(table.column("dicom_id")), "}" + end)


EXPORTS: dict[str, Callable[..., pa.Array]] = {"llava": llava_records, "flat": flat_records}


def records(kind: str, table: pa.Table, conversation: Conversation, turns: Turns, end: str = "") -> pa.Array:
    """The JSON text of every row of ``table`` (columns :data:`EXPORT_COLUMNS`) for export ``kind``,
    each followed by ``end``."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    return EXPORTS[kind](table, conversation, turns, end)


def _write_records(fh: BinaryIO, kind: str, table: pa.Table, conversation: Conversation, turns: Turns) -> None:
    """The records of ``table`` joined by ``,\\n``, written straight from the Arrow buffer (each
    record is made with the separator after it; the last one's is not written)."""
    values = records(kind, table, conversation, turns, end=SEPARATOR)
    if not len(values):
        return
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    fh.write(memoryview(values.buffers()[2])[int(offsets[0]):int(offsets[-1]) - len(SEPARATOR)])


def write_records(table: pa.Table, parts: Mapping[str, Path], conversation: Conversation) -> int:
    """The records of ``table`` (one shard) for every ``kind -> part file``, comma-separated (no
    brackets); returns the row count."""
    turns = Turns.of(table) if table.num_rows else None
    for kind, part in parts.items():
        with open(part, "wb") as fh:
            if turns is not None:
                _write_records(fh, kind, table, conversation, turns)
    return table.num_rows


def write_shard_records(shard: Path, parts: Mapping[str, Path], conversation: Conversation) -> int:
    return write_records(pq.read_table(shard, columns=EXPORT_COLUMNS), parts, conversation)


def _next_item(fh: BinaryIO, written: int) -> None:
    """Open a JSON list file's next item: ``[`` before the first, ``,`` after one (then a newline)."""
    fh.write(b",\n" if written else b"[\n")


def _end_list(fh: BinaryIO, written: int) -> None:
    fh.write(b"\n]\n" if written else b"[]\n")


def join_parts(kinds: Mapping[str, Path], parts: Sequence[Mapping[str, Path]], counts: Sequence[int]) -> None:
    """Each export file from its part files in order: ``[``, the parts joined by ``,``, ``]``;
    each file appears atomically."""
    for kind, target in kinds.items():
        with atomic_path(target) as out, open(out, "wb") as fh:
            written = 0
            for part, count in zip(parts, counts):
                if count:
                    _next_item(fh, written)
                    with open(part[kind], "rb") as src:
                        shutil.copyfileobj(src, fh, 1 << 22)
                    written += count
            _end_list(fh, written)


def export(kinds: Mapping[str, Path], version_dir: Path, splits: Iterable[str], *, workers: int | None = None,
           conversation: Conversation | None = None) -> int:
    """Write the exports ``kind -> path`` of ``splits`` (one read of the shards for all kinds), with
    ``conversation`` (default: the packaged one); returns the record count. Shards are converted
    by up to ``workers`` processes (default: CPU count, at most 8; see :mod:`..parallel`) into part
    files joined in shard order, so the bytes do not depend on the number of workers."""
    shards = [path for split in splits for path in shard_files(version_dir, split)]
    conversation = conversation or load_conversation()
    workers = default_workers(len(shards)) if workers is None else workers
    first = next(iter(kinds.values()))
    first.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=first.parent, prefix=".export-") as tmp:
        parts = [{kind: Path(tmp, f"{i:05d}.{kind}") for kind in kinds} for i in range(len(shards))]
        if workers > 1:
            with process_pool(workers) as pool:
                counts = list(pool.map(write_shard_records, shards, parts, [conversation] * len(shards)))
        else:
            counts = [write_shard_records(shard, part, conversation) for shard, part in zip(shards, parts)]
        join_parts(kinds, parts, counts)
    return sum(counts)


class ExportWriter:
    """Export files written shard by shard while the shards are made (the assemble stage): each
    file is opened under a temporary name, gets every shard's records as they come, and is
    renamed into place by :meth:`finish` (and removed if the stage fails first)."""

    def __init__(self, kinds: Mapping[str, Path], conversation: Conversation, stack: ExitStack):
        self.conversation = conversation
        self.files = {kind: stack.enter_context(open(stack.enter_context(atomic_path(target)), "wb"))
                      for kind, target in kinds.items()}
        self.count = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        turns = Turns.of(table)
        for kind, fh in self.files.items():
            _next_item(fh, self.count)
            _write_records(fh, kind, table, self.conversation, turns)
            fh.flush()
            drop_written(fh.fileno())  # a shard's records (~100 MB) at a time, never the whole file
        self.count += table.num_rows

    def finish(self) -> int:
        """Close the lists; the files are renamed into place when the stage's ``with`` block ends."""
        for fh in self.files.values():
            _end_list(fh, self.count)
            fh.flush()
        return self.count
